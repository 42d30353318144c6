"""The strides of the Trace's tensors, inferred from the ops that made them: what a kernel needs to know to
decide whether it must copy an operand first (`x.contiguous()` inside a CPU kernel is an allocation).

The Trace keeps shapes, not strides. The rule:
- a tensor that owns its storage (the output of a non-view op, an input, a parameter) is contiguous, or
  channels-last when the op asked for that memory format or read a 4-d channels-last operand (the layout
  TensorIterator and the convolutions propagate);
- a view's strides follow from its base's by the view op's semantics (slice/split keep them, select/unbind
  drop a dim, permute/transpose reorder them, expand puts 0 on the expanded dims, view/reshape of a
  contiguous base is contiguous, unsqueeze/squeeze add/remove a dim);
- an in-place version has the strides of the version it overwrote.
A view op not listed here (or a view of a non-contiguous base by `view`) has unknown strides (None).
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

from inspectlab.tracing.records import OpRecord, Trace

Strides = tuple[int, ...]

_SAME = frozenset({"aten.alias", "aten.detach", "aten.lift_fresh", "aten._conj", "aten._neg_view",
                   "aten.split", "aten.split_with_sizes", "aten.chunk", "aten.tensor_split", "aten.slice",
                   "aten.narrow"})
_RESHAPE = frozenset({"aten.view", "aten._unsafe_view", "aten.reshape", "aten._reshape_alias", "aten.flatten",
                      "aten.unflatten", "aten.view_as"})


def contiguous_strides(shape: Sequence[int]) -> Strides:
    """Row-major strides of `shape`, in elements."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def channels_last_strides(shape: Sequence[int]) -> Strides:
    """NHWC strides of a 4-d NCHW shape (other ranks: row-major)."""
    if len(shape) != 4:
        return contiguous_strides(shape)
    n, c, h, w = shape
    return (h * w * c, 1, w * c, c)


def is_contiguous(shape: Sequence[int], strides: Strides | None) -> bool:
    """torch's rule: dims of size 1 do not matter; an empty tensor is contiguous. Unknown strides: True."""
    if strides is None or prod(shape) == 0:
        return True
    expected = 1
    for size, stride in zip(reversed(shape), reversed(strides), strict=True):
        if size == 1:
            continue
        if stride != expected:
            return False
        expected *= size
    return True


def is_channels_last(shape: Sequence[int], strides: Strides | None) -> bool:
    """Whether a 4-d tensor is contiguous in NHWC order (what `is_contiguous(channels_last)` says)."""
    if strides is None or len(shape) != 4:
        return False
    order = (1, 3, 2, 0)  # C fastest, then W, H, N
    expected = 1
    for dim in order:
        if shape[dim] != 1 and strides[dim] != expected:
            return False
        expected *= shape[dim]
    return True


class Layouts:
    """Strides per tensor id of one Trace, inferred in creation order (a view's base, an op's operands and an
    overwritten version always have smaller ids than the tensor made from them)."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        ops = {op.index: op for op in trace.ops}
        self._strides: dict[int, Strides | None] = {}
        for tensor_id in sorted(trace.tensors):
            self._strides[tensor_id] = self._infer(tensor_id, ops)

    def strides(self, tensor_id: int) -> Strides | None:
        return self._strides.get(tensor_id)

    def contiguous(self, tensor_id: int) -> bool:
        return is_contiguous(self.trace.tensors[tensor_id].shape, self.strides(tensor_id))

    def channels_last(self, tensor_id: int) -> bool:
        return is_channels_last(self.trace.tensors[tensor_id].shape, self.strides(tensor_id))

    def _infer(self, tensor_id: int, ops: dict[int, OpRecord]) -> Strides | None:
        info = self.trace.tensors[tensor_id]
        op = ops.get(info.producer) if info.producer is not None else None
        if info.alias_of is None:
            return self._fresh(info.shape, op)
        base = self.trace.tensors[info.alias_of]
        base_strides = self._strides.get(info.alias_of)
        if op is None or base_strides is None:
            return None
        if op.inplace and info.alias_of in op.inputs and base.shape == info.shape:
            return base_strides
        return _view_strides(op, base.shape, base_strides, info.shape)

    def _fresh(self, shape: Sequence[int], op: OpRecord | None) -> Strides:
        if op is not None and len(shape) == 4:
            if "channels_last" in str(op.args.get("memory_format", "")):
                return channels_last_strides(shape)
            for tensor_id in op.inputs:
                source = self.trace.tensors[tensor_id].shape
                strides = self._strides.get(tensor_id)
                if len(source) == 4 and is_channels_last(source, strides) and not is_contiguous(source, strides):
                    return channels_last_strides(shape)
        return contiguous_strides(shape)


def _view_strides(op: OpRecord, base_shape: Sequence[int], base: Strides, shape: Sequence[int]) -> Strides | None:
    packet, args = op.packet, op.args
    rank = len(base_shape)

    def dim(value: object, of: int = rank) -> int:
        index = int(value) if value is not None else 0  # type: ignore[call-overload]
        return index + of if index < 0 else index

    if packet in _SAME:
        if len(shape) != rank:
            return None
        strides = list(base)
        step = args.get("step")
        if packet == "aten.slice" and step not in (None, 1):
            strides[dim(args.get("dim"))] *= int(step)
        return tuple(strides)
    if packet in ("aten.select", "aten.unbind"):
        index = dim(args.get("dim"))
        return tuple(s for i, s in enumerate(base) if i != index)
    if packet == "aten.permute":
        return tuple(base[dim(d)] for d in args.get("dims", []))
    if packet in ("aten.transpose", "aten.t", "aten.swapaxes", "aten.swapdims"):
        if rank < 2:
            return tuple(base)
        first, second = (dim(args.get("dim0")), dim(args.get("dim1"))) if packet != "aten.t" else (0, 1)
        strides = list(base)
        strides[first], strides[second] = strides[second], strides[first]
        return tuple(strides)
    if packet == "aten.expand":
        extra = len(shape) - rank
        return tuple(0 if i < extra or (base_shape[i - extra] == 1 and size != 1) else base[i - extra]
                     for i, size in enumerate(shape))
    if packet in _RESHAPE:
        return contiguous_strides(shape) if is_contiguous(base_shape, base) else None
    if packet == "aten.unsqueeze":
        index = dim(args.get("dim"), rank + 1)
        inner = base[index] * base_shape[index] if index < rank else 1
        return tuple(base[:index]) + (inner,) + tuple(base[index:])
    if packet == "aten.squeeze":
        kept = [i for i in range(rank) if len(shape) == rank or base_shape[i] != 1 or _kept(args, i, rank)]
        return tuple(base[i] for i in kept) if len(kept) == len(shape) else None
    if packet == "aten.as_strided":
        given = args.get("stride")
        return tuple(int(s) for s in given) if isinstance(given, list) else None
    return None


def _kept(args: dict, index: int, rank: int) -> bool:
    """Whether `squeeze(dim=...)` keeps dim `index` (a size-1 dim not named in `dim` stays)."""
    named = args.get("dim")
    if named is None:
        return False
    names = named if isinstance(named, list) else [named]
    return all((int(d) + rank if int(d) < 0 else int(d)) != index for d in names)
