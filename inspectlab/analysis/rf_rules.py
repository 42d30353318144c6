"""The receptive-field rules: for each aten op, how its outputs' fields follow from its inputs' (the exact
index map of the op: convolution taps, pooling windows, interpolation taps...). See receptive_field.py."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from fractions import Fraction
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from inspectlab.analysis.rf_fields import (
    CONSTANT,
    EMPTY,
    AxisField,
    FieldInfo,
    NoRule,
    aligned_dims,
    gather,
)
from inspectlab.tracing.records import OpRecord

if TYPE_CHECKING:
    from inspectlab.analysis.receptive_field import Walk

# --------------------------------------------------------------------------------------------------
# rules: each maps (walk, op) to one FieldInfo per output tensor


Rule = Callable[["Walk", OpRecord], list[FieldInfo]]


def constant(walk: Walk, op: OpRecord) -> list[FieldInfo]:
    return [CONSTANT] * len(op.outputs)


def times_zero(walk: Walk, op: OpRecord) -> bool:
    """x * 0 (or 0 / x): the result is a known zero, whatever x is (a recurrent state starting at zero)."""
    if op.packet in ("aten.mul", "aten.mul_"):
        return any(walk.field(t).zero for t in op.inputs)
    if op.packet in ("aten.div", "aten.div_"):
        numerator = op.tensor_args.get("self")
        return isinstance(numerator, int) and walk.field(numerator).zero
    return False


def pointwise(walk: Walk, op: OpRecord) -> list[FieldInfo]:
    """Elementwise op (activations, add, mul, where, ...): union of the broadcast inputs' fields."""
    out_shape = walk.shape(op.outputs[0])
    if times_zero(walk, op):
        return [FieldInfo(zero=True)] * len(op.outputs)
    parts = [(walk.field(t), aligned_dims(len(walk.shape(t)), len(out_shape))) for t in op.inputs]
    merged = walk.merge(op, parts, out_shape)
    return [merged] * len(op.outputs)


def _passthrough(walk: Walk, op: OpRecord) -> list[FieldInfo]:
    """Copies and per-channel ops (detach, clone, batch norm, dropout): the first output has the main
    input's field; the other outputs (saved statistics, masks) have none."""
    main = walk.main(op)
    if walk.shape(op.outputs[0]) != walk.shape(main):
        raise NoRule("output shape differs from the input's")
    info = walk.field(main)
    if walk.others_global(op, main) and op.packet not in _NORMS:
        info = replace(info, is_global=True)
    return [info] + [CONSTANT] * (len(op.outputs) - 1)


def _per_position(walk: Walk, op: OpRecord) -> list[FieldInfo]:
    """Ops that mix channels only (glu, channel_shuffle, index_select over channels): the field passes,
    unless the op's `dim` is an image axis."""
    main = walk.main(op)
    info = walk.field(main)
    rank = len(walk.shape(main))
    dim = op.args.get("dim", op.args.get("axis"))
    if isinstance(dim, int) and any(a.dim == dim % rank for a in info.axes):
        raise NoRule("it works along an image axis")
    out_shape = walk.shape(op.outputs[0])
    if len(out_shape) != rank or any(a.tabled and out_shape[a.dim] != walk.shape(main)[a.dim] for a in info.axes):
        raise NoRule("it changes the size of an image axis")
    return [replace(info, is_global=info.is_global or walk.others_global(op, main))] * len(op.outputs)


def _copy(walk: Walk, op: OpRecord) -> list[FieldInfo]:
    """copy_(self, src): the destination now holds src (broadcast)."""
    src = op.tensor_args.get("src")
    if not isinstance(src, int):
        raise NoRule("no source tensor")
    out_shape = walk.shape(op.outputs[0])
    merged = walk.merge(op, [(walk.field(src), aligned_dims(len(walk.shape(src)), len(out_shape)))], out_shape)
    return [merged] * len(op.outputs)


def _ints(value: Any, count: int, default: int) -> list[int]:
    if value is None or value == []:
        return [default] * count
    if isinstance(value, int):
        return [value] * count
    values = list(value)
    return values * count if len(values) == 1 else values


def _window_op(walk: Walk, op: OpRecord, kernel: Sequence[int], stride: Sequence[int],
               padding: Sequence[int], dilation: Sequence[int], transposed: bool = False) -> FieldInfo:
    """Convolution / pooling over the last len(kernel) dims of the main input."""
    main = walk.main(op)
    info = walk.field(main)
    rank = len(walk.shape(main))
    out_shape = walk.shape(op.outputs[0])
    first = rank - len(kernel)
    axes = []
    for axis in info.axes:
        if axis.dim is None or axis.dim < first or not axis.tabled:
            axes.append(axis)
            continue
        i = axis.dim - first
        k, s, p, d = kernel[i], stride[i], padding[i], dilation[i]
        n_out = out_shape[axis.dim]
        units = np.arange(n_out)[:, None]
        t = np.arange(k)[None, :]
        if not transposed:
            table = gather(axis, units * s - p + t * d)
            jump = axis.jump * s
        else:  # output o receives input i where o = i*s - p + t*d
            numerator = units + p - t * d
            mask = numerator % s == 0
            table = gather(axis, np.where(mask, numerator // s, 0), mask)
            jump = axis.jump / s
        axes.append(AxisField(axis.dim, jump, table))
    return FieldInfo(tuple(axes), info.is_global or walk.others_global(op, main))


def _convolution(walk: Walk, op: OpRecord) -> list[FieldInfo]:
    weight = op.tensor_args.get("weight")
    if not isinstance(weight, int):
        raise NoRule("no weight tensor")
    kernel = list(walk.shape(weight)[2:])
    count = len(kernel)
    result = _window_op(
        walk, op, kernel, _ints(op.args.get("stride"), count, 1), _ints(op.args.get("padding"), count, 0),
        _ints(op.args.get("dilation"), count, 1), transposed=bool(op.args.get("transposed", False)),
    )
    return [result] * len(op.outputs)


def _pool(walk: Walk, op: OpRecord) -> list[FieldInfo]:
    kernel = list(op.args["kernel_size"])
    count = len(kernel)
    stride = _ints(op.args.get("stride"), count, 0)
    stride = [s or k for s, k in zip(stride, kernel, strict=True)]
    result = _window_op(walk, op, kernel, stride, _ints(op.args.get("padding"), count, 0),
                        _ints(op.args.get("dilation"), count, 1))
    return [result] * len(op.outputs)  # max pool's indices depend on the same window


def _adaptive_pool(walk: Walk, op: OpRecord) -> list[FieldInfo]:
    """Adaptive pooling: unit o averages input [floor(o·n/m), ceil((o+1)·n/m)); to size 1 it is global."""
    main = walk.main(op)
    info = walk.field(main)
    out_shape = walk.shape(op.outputs[0])
    count = len(op.args["output_size"])
    first = len(walk.shape(main)) - count
    axes, is_global = [], info.is_global
    for axis in info.axes:
        if axis.dim is None or axis.dim < first or not axis.tabled:
            axes.append(axis)
            continue
        n, m = walk.shape(main)[axis.dim], out_shape[axis.dim]
        if m == 1:
            axes.append(axis.folded(axis.dim))
            is_global = True
            continue
        starts = (np.arange(m) * n) // m
        ends = -((-(np.arange(m) + 1) * n) // m)
        width = int((ends - starts).max())
        taps = starts[:, None] + np.arange(width)[None, :]
        axes.append(AxisField(axis.dim, axis.jump * Fraction(n, m), gather(axis, taps, taps < ends[:, None])))
    return [FieldInfo(tuple(axes), is_global)] * len(op.outputs)


_SCALE_NAMES = {1: ("scales",), 2: ("scales_h", "scales_w"), 3: ("scales_d", "scales_h", "scales_w")}


def _interpolate(walk: Walk, op: OpRecord) -> list[FieldInfo]:
    """Interpolation (nearest, bilinear, bicubic, ...): the taps torch's own kernel reads for each output
    unit (found by running the op on one-hot inputs), so clamping at the borders and taps of weight 0
    are exactly torch's; the stride scales by the op's coordinate scale."""
    main = walk.main(op)
    info = walk.field(main)
    in_shape, out_shape = walk.shape(main), walk.shape(op.outputs[0])
    count = len(in_shape) - 2
    align = op.args.get("align_corners")
    scales = op.args.get("scale_factors")
    if scales is None:
        scales = [op.args.get(name) for name in _SCALE_NAMES.get(count, ())]
    scales = list(scales) if scales else [None] * count
    axes = []
    for axis in info.axes:
        if axis.dim is None or axis.dim < 2 or not axis.tabled:
            axes.append(axis)
            continue
        i = axis.dim - 2
        n_in, n_out = in_shape[axis.dim], out_shape[axis.dim]
        support = _interpolation_support(op.packet, count, i, n_in, n_out, align, scales[i])
        width = max(int(support.sum(1).max()), 1)
        order = np.argsort(~support, axis=1, kind="stable")[:, :width]
        mask = np.take_along_axis(support, order, axis=1)
        axes.append(AxisField(axis.dim, axis.jump * _coordinate_scale(n_in, n_out, align, scales[i]),
                              gather(axis, order, mask)))
    return [FieldInfo(tuple(axes), info.is_global)] * len(op.outputs)


def _coordinate_scale(n_in: int, n_out: int, align: bool | None, scale: float | None) -> Fraction:
    """Input units per output unit, as torch maps coordinates (area_pixel_compute_scale)."""
    if align:
        return Fraction(n_in - 1, n_out - 1) if n_out > 1 else Fraction(0)
    if scale:
        return 1 / Fraction(scale).limit_denominator(1 << 20)
    return Fraction(n_in, n_out)


@lru_cache(maxsize=256)
def _interpolation_support(packet: str, count: int, axis: int, n_in: int, n_out: int, align: bool | None,
                           scale: float | None) -> np.ndarray:
    """(n_out, n_in) booleans: which input units each output unit reads along `axis` (nonzero weight)."""
    import torch

    overload = getattr(torch.ops.aten, packet.split(".", 1)[1]).default
    # the other axes: size 2 resized to 2, an identity (the antialiased kernels misbehave at size 1)
    shape = [n_in if d == axis else 1 for d in range(count)]
    one_hot = torch.eye(n_in, dtype=torch.float64).reshape(1, n_in, *shape)
    one_hot = one_hot.expand(1, n_in, *[n_in if d == axis else 2 for d in range(count)]).contiguous()
    kwargs: dict[str, Any] = {}
    names = [a.name for a in overload._schema.arguments]
    if "align_corners" in names:
        kwargs["align_corners"] = bool(align)
    for d, name in enumerate(_SCALE_NAMES.get(count, ())):
        if name in names:
            kwargs[name] = scale if d == axis else None
    out = overload(one_hot, [n_out if d == axis else 2 for d in range(count)], **kwargs)
    out = out[(0, slice(None), *[slice(None) if d == axis else 0 for d in range(count)])]
    return (out != 0).T.numpy()


def _index_map(walk: Walk, op: OpRecord, per_dim: Callable[[int, int, int], tuple[np.ndarray, Fraction] | None],
               main: int | None = None, out: int = 0) -> FieldInfo:
    """Apply a per-dim index map: per_dim(dim, n_in, n_out) -> (taps (n_out,) or (n_out, k), jump factor)."""
    main = walk.main(op) if main is None else main
    info = walk.field(main)
    in_shape, out_shape = walk.shape(main), walk.shape(op.outputs[out])
    axes = []
    for axis in info.axes:
        mapped = per_dim(axis.dim, in_shape[axis.dim], out_shape[axis.dim]) if (
            axis.tabled and axis.dim is not None) else None
        if mapped is None:
            axes.append(axis)
        else:
            taps, factor = mapped
            axes.append(AxisField(axis.dim, axis.jump * factor, gather(axis, taps)))
    return FieldInfo(tuple(axes), info.is_global)


def _pad_pairs(pads: Sequence[int], rank: int) -> dict[int, int]:
    """F.pad order (last dim first, before/after pairs) -> {dim: padding before}."""
    return {rank - 1 - i: int(pads[2 * i]) for i in range(len(pads) // 2)}


def _pad(walk: Walk, op: OpRecord) -> list[FieldInfo]:
    """Constant padding adds virtual units (unclipped coordinates, like a conv's padding); reflection and
    replication read real units."""
    main = walk.main(op)
    before = _pad_pairs(op.args.get("pad") or op.args.get("padding") or [], len(walk.shape(main)))
    mode = "reflect" if "reflection" in op.packet else "replicate" if "replication" in op.packet else "constant"

    def per_dim(dim: int, n_in: int, n_out: int) -> tuple[np.ndarray, Fraction] | None:
        if dim not in before:
            return None
        source = np.arange(n_out) - before[dim]
        if mode == "reflect":
            period = 2 * (n_in - 1) if n_in > 1 else 1
            source = np.abs(source) % period
            source = np.where(source >= n_in, period - source, source)
        elif mode == "replicate":
            source = np.clip(source, 0, n_in - 1)
        return source, Fraction(1)

    return [_index_map(walk, op, per_dim)] * len(op.outputs)


def _slice(walk: Walk, op: OpRecord) -> list[FieldInfo]:
    main = walk.main(op)
    rank = len(walk.shape(main))
    target = op.args.get("dim", 0) % rank
    start, step = op.args.get("start"), op.args.get("step") or 1

    def per_dim(dim: int, n_in: int, n_out: int) -> tuple[np.ndarray, Fraction] | None:
        if dim != target:
            return None
        first = 0 if start is None else (start + n_in if start < 0 else start)
        first = min(max(first, 0), n_in)
        return first + np.arange(n_out) * step, Fraction(step)

    return [_index_map(walk, op, per_dim)] * len(op.outputs)


def _flip(walk: Walk, op: OpRecord) -> list[FieldInfo]:
    main = walk.main(op)
    rank = len(walk.shape(main))
    dims = {d % rank for d in _ints(op.args.get("dims"), 1, 0)}

    def per_dim(dim: int, n_in: int, n_out: int) -> tuple[np.ndarray, Fraction] | None:
        return (n_in - 1 - np.arange(n_out), Fraction(-1)) if dim in dims else None

    return [_index_map(walk, op, per_dim)] * len(op.outputs)


def _pixel_shuffle(walk: Walk, op: OpRecord) -> list[FieldInfo]:
    """pixel_shuffle(r): output unit o comes from input unit o // r; pixel_unshuffle(r): from o·r .. o·r+r-1."""
    main = walk.main(op)
    rank = len(walk.shape(main))
    shuffle = op.packet == "aten.pixel_shuffle"
    r = int(op.args.get("upscale_factor") or op.args.get("downscale_factor"))

    def per_dim(dim: int, n_in: int, n_out: int) -> tuple[np.ndarray, Fraction] | None:
        if dim < rank - 2:
            return None
        units = np.arange(n_out)
        if shuffle:
            return units // r, Fraction(1, r)
        return units[:, None] * r + np.arange(r)[None, :], Fraction(r)

    return [_index_map(walk, op, per_dim)] * len(op.outputs)


def _select(walk: Walk, op: OpRecord) -> list[FieldInfo]:
    """select(dim, index): a spatial axis selected at one unit keeps that unit's field as a summary."""
    main = walk.main(op)
    rank = len(walk.shape(main))
    target, index = op.args.get("dim", 0) % rank, op.args.get("index", 0)
    info = walk.field(main)
    axes = []
    for axis in info.axes:
        if axis.dim is None or axis.dim < target:
            axes.append(axis)
        elif axis.dim > target:
            axes.append(axis.moved(axis.dim - 1))
        elif axis.tabled:
            n = walk.shape(main)[target]
            single = AxisField(None, axis.jump, axis.table[:, [index % n]])  # type: ignore[index]
            axes.append(single.folded(None))
        else:
            axes.append(axis.moved(None))
    return [FieldInfo(tuple(axes), info.is_global)] * len(op.outputs)


def _split(walk: Walk, op: OpRecord) -> list[FieldInfo]:
    """split / split_with_sizes / unbind / chunk: each output is a slice (or a select) of the input."""
    main = walk.main(op)
    rank = len(walk.shape(main))
    target = op.args.get("dim", 0) % rank
    results, offset = [], 0
    for position, out in enumerate(op.outputs):
        out_shape = walk.shape(out)
        if len(out_shape) < rank:  # unbind: selects
            fake = replace(op, args={"dim": target, "index": position}, outputs=[out])
            results.extend(_select(walk, fake))
            continue
        start = offset

        def per_dim(dim: int, n_in: int, n_out: int, start: int = start) -> tuple[np.ndarray, Fraction] | None:
            return (start + np.arange(n_out), Fraction(1)) if dim == target else None

        results.append(_index_map(walk, op, per_dim, main, position))
        offset += out_shape[target]
    return results


def _cat(walk: Walk, op: OpRecord) -> list[FieldInfo]:
    """cat along channels: union of the inputs' fields (a merge); along an image axis: tables end to end."""
    parts = op.tensor_args.get("tensors")
    if not isinstance(parts, list):
        raise NoRule("no tensor list")
    out_shape = walk.shape(op.outputs[0])
    rank = len(out_shape)
    target = op.args.get("dim", 0) % rank
    parts = [t for t in parts if walk.shape(t) != (0,)]  # legacy empty tensors are skipped by torch
    live = [walk.field(t) for t in parts if not walk.field(t).constant]
    spatial = any(a.dim == target for f in live for a in f.axes)
    if not spatial:
        return [walk.merge(op, [(walk.field(t), {d: d for d in range(rank)}) for t in parts], out_shape)]
    axes = []
    for k, reference in enumerate(live[0].axes):
        if reference.dim != target:
            merged = walk.merge(op, [(replace(f, axes=(f.axes[k],)), {d: d for d in range(rank)}) for f in live],
                                out_shape)
            axes.append(merged.axes[0])
            continue
        pieces = []
        for t in parts:
            f = walk.field(t)
            n = walk.shape(t)[target]
            if f.constant:
                pieces.append(np.tile(EMPTY[:, None], (1, n)))
            elif not f.axes[k].tabled or f.axes[k].dim != target:
                raise NoRule("inputs do not all carry this image axis on the concatenated dim")
            else:
                pieces.append(f.axes[k].table)
        axes.append(AxisField(target, reference.jump, np.concatenate(pieces, axis=1)))
    return [FieldInfo(tuple(axes), any(f.is_global for f in live))]


def _stack(walk: Walk, op: OpRecord) -> list[FieldInfo]:
    parts = op.tensor_args.get("tensors")
    if not isinstance(parts, list):
        raise NoRule("no tensor list")
    out_shape = walk.shape(op.outputs[0])
    target = op.args.get("dim", 0) % len(out_shape)
    shift = {d: d if d < target else d + 1 for d in range(len(out_shape) - 1)}
    return [walk.merge(op, [(walk.field(t), shift) for t in parts], out_shape)]


def _remap(info: FieldInfo, dim_of: Callable[[AxisField], AxisField]) -> FieldInfo:
    return FieldInfo(tuple(dim_of(a) for a in info.axes), info.is_global)


def _reshape(walk: Walk, op: OpRecord) -> list[FieldInfo]:
    """view / reshape / flatten / unflatten / squeeze / unsqueeze: element order is kept, so an image
    axis keeps its table where some output dim has its size and the same elements after it; otherwise it
    is folded into the output dim that now holds it (its per-unit table is summed up)."""
    main = walk.main(op)
    in_shape, out_shape = walk.shape(main), walk.shape(op.outputs[0])

    def inner(shape: Sequence[int], dim: int) -> int:
        return math.prod(shape[dim + 1:])

    def moved(axis: AxisField) -> AxisField:
        if axis.dim is None:
            return axis
        n, after = in_shape[axis.dim], inner(in_shape, axis.dim)
        for e in range(len(out_shape)):
            if out_shape[e] == n and inner(out_shape, e) == after and (axis.tabled or n > 1):
                return axis.moved(e)
        holder = next((e for e in range(len(out_shape)) if inner(out_shape, e) <= after), None)
        if holder is not None and out_shape[holder] == 1:
            holder = None
        return axis.folded(holder) if axis.tabled else axis.moved(holder)

    return [_remap(walk.field(main), moved)] * len(op.outputs)


def _expand(walk: Walk, op: OpRecord) -> list[FieldInfo]:
    main = walk.main(op)
    out_shape = walk.shape(op.outputs[0])
    dim_map = aligned_dims(len(walk.shape(main)), len(out_shape))
    return [walk.merge(op, [(walk.field(main), dim_map)], out_shape)] * len(op.outputs)


def _permute(walk: Walk, op: OpRecord) -> list[FieldInfo]:
    main = walk.main(op)
    rank = len(walk.shape(main))
    if op.packet == "aten.permute":
        order = [d % rank for d in op.args["dims"]]
    else:
        order = list(range(rank))
        if op.packet in ("aten.t", "aten.numpy_T") or "dim0" not in op.args:
            order = order[::-1]
        else:
            a, b = op.args["dim0"] % rank, op.args["dim1"] % rank
            order[a], order[b] = order[b], order[a]
    new_dim = {old: new for new, old in enumerate(order)}
    return [_remap(walk.field(main), lambda a: a.moved(None if a.dim is None else new_dim[a.dim]))] * len(
        op.outputs)


def _reduced_dims(op: OpRecord, rank: int) -> set[int]:
    dims = op.args.get("dim")
    if dims is None or dims == []:
        return set(range(rank))
    return {d % rank for d in _ints(dims, 1, 0)}


def _reduce(walk: Walk, op: OpRecord) -> list[FieldInfo]:
    """sum / mean / amax / var / ... over dims: an image axis reduced away makes the field global, keeping
    the local field as a summary; reductions over channels pass the field."""
    if op.name.endswith(".other"):  # max(a, b) / min(a, b): elementwise
        return pointwise(walk, op)
    main = walk.main(op)
    rank = len(walk.shape(main))
    reduced = _reduced_dims(op, rank)
    keep = bool(op.args.get("keepdim", False)) or op.packet in _SAME_SHAPE_REDUCTIONS
    info = walk.field(main)
    axes, is_global = [], info.is_global
    for axis in info.axes:
        if axis.dim is not None and axis.dim in reduced:
            is_global = True
            axes.append(axis.folded(axis.dim if keep else None))
        elif axis.dim is not None and not keep:
            axes.append(axis.moved(axis.dim - sum(1 for d in reduced if d < axis.dim)))
        else:
            axes.append(axis)
    return [FieldInfo(tuple(axes), is_global)] * len(op.outputs)


def _matmul(walk: Walk, op: OpRecord) -> list[FieldInfo]:
    """mm / addmm / bmm / baddbmm: rows come from the first matrix, columns from the second; an image
    axis on the contracted dim (flatten + linear, attention over positions) makes the field global."""
    names = {"aten.mm": ("self", "mat2"), "aten.addmm": ("mat1", "mat2"), "aten.bmm": ("self", "mat2"),
             "aten.baddbmm": ("batch1", "batch2")}[op.packet]
    first, second = (op.tensor_args.get(n) for n in names)
    if not isinstance(first, int) or not isinstance(second, int):
        raise NoRule("missing matrix")
    out_shape = walk.shape(op.outputs[0])
    batched = len(out_shape) == 3
    b = 1 if batched else 0
    parts: list[tuple[FieldInfo, dict[int, int]]] = []
    contracted_global = False
    for tensor, (keep_dim, contracted) in ((first, (b, b + 1)), (second, (b + 1, b))):
        info = walk.field(tensor)
        if info.constant:
            continue
        axes = []
        for axis in info.axes:
            if axis.dim == contracted:
                contracted_global = True
                axes.append(axis.folded(None))
            else:
                axes.append(axis)
        dim_map = {keep_dim: keep_dim, **({0: 0} if batched else {})}
        parts.append((FieldInfo(tuple(axes), info.is_global), dim_map))
    bias = op.tensor_args.get("self") if op.packet in ("aten.addmm", "aten.baddbmm") else None
    if isinstance(bias, int) and not walk.field(bias).constant:
        parts.append((walk.field(bias), aligned_dims(len(walk.shape(bias)), len(out_shape))))
    carried = [(f, m) for f, m in parts if any(a.dim is not None and a.dim in m for a in f.axes)]
    if len(carried) > 1 and any(a.tabled for f, _ in carried for a in f.axes):
        # positions on both sides (attention scores): every entry mixes two positions; call it global
        parts = [(FieldInfo(tuple(a.folded(None) if a.tabled else a.moved(None) for a in f.axes), True), m)
                 for f, m in parts]
    merged = walk.merge(op, parts, out_shape)
    if contracted_global:
        merged = replace(merged, is_global=True)
    return [merged] * len(op.outputs)


def _attention(walk: Walk, op: OpRecord) -> list[FieldInfo]:
    """Fused scaled-dot-product attention: every query position reads every key position."""
    query = op.tensor_args.get("query")
    info = walk.field(query if isinstance(query, int) else op.inputs[0])
    axes = tuple(a.folded(a.dim) if a.tabled else a for a in info.axes)
    if not axes:
        axes = next((walk.field(t).axes for t in op.inputs if not walk.field(t).constant), ())
        axes = tuple(a.folded(None) for a in axes)
    return [FieldInfo(axes, True)] + [FieldInfo(axes, True)] * (len(op.outputs) - 1)


# --------------------------------------------------------------------------------------------------
# the rule table


ZERO_FACTORIES = {"aten.zeros", "aten.zeros_like", "aten.new_zeros", "aten.zero_", "aten.zero"}
_FACTORIES = {
    "aten.empty", "aten.empty_like", "aten.new_empty", "aten.empty_strided", "aten.new_empty_strided",
    "aten.ones", "aten.ones_like", "aten.new_ones", "aten.full", "aten.full_like", "aten.new_full",
    "aten.rand_like", "aten.randn_like", "aten.randint_like", "aten.scalar_tensor", "aten.arange",
    "aten.fill_", "aten.fill", "aten.normal_", "aten.uniform_", "aten.bernoulli_", "aten.bernoulli",
    "aten.random_", "aten.exponential_", "aten.lift_fresh", "aten.sym_size", "aten.sym_numel",
    "aten.sym_stride", "aten.size", "aten.stride", "aten._local_scalar_dense", "aten.argmax", "aten.argmin",
} | ZERO_FACTORIES
_NORMS = {
    "aten.native_batch_norm", "aten._native_batch_norm_legit", "aten._native_batch_norm_legit_no_training",
    "aten._native_batch_norm_legit_functional", "aten.cudnn_batch_norm", "aten.miopen_batch_norm",
    "aten.native_layer_norm", "aten.native_group_norm", "aten.batch_norm", "aten.layer_norm", "aten.group_norm",
    "aten.instance_norm",
}
_SAME_SHAPE_REDUCTIONS = {"aten._softmax", "aten._log_softmax", "aten.softmax", "aten.log_softmax",
                          "aten.cumsum", "aten.cumprod", "aten.logcumsumexp", "aten.cummax", "aten.cummin",
                          "aten.topk", "aten.sort"}
_RULES: dict[str, Rule] = {
    **{p: constant for p in _FACTORIES},
    **{p: _passthrough for p in _NORMS},
    **{p: _passthrough for p in (
        "aten.alias", "aten.detach", "aten.detach_", "aten.clone", "aten.contiguous", "aten._to_copy",
        "aten.to", "aten.lift_fresh_copy", "aten.native_dropout", "aten.dropout", "aten.feature_dropout",
        "aten._conj", "aten.positive", "aten.resolve_conj", "aten.resolve_neg",
    )},
    "aten.copy_": _copy, "aten.copy": _copy,
    # elementwise ops torch does not tag `pointwise`
    **{f"aten.{name}": pointwise for name in (
        "hardswish", "hardswish_", "prelu", "_prelu_kernel", "log_sigmoid", "log_sigmoid_forward",
        "rrelu_with_noise", "rrelu_with_noise_", "rrelu", "rrelu_",
    )},
    **{f"aten.{name}": _per_position for name in (
        "glu", "channel_shuffle", "native_channel_shuffle", "index_select",
    )},
    **{p: _convolution for p in ("aten.convolution", "aten._convolution", "aten.convolution_overrideable")},
    **{f"aten.{kind}_pool{n}d{suffix}": _pool for kind in ("max", "avg") for n in (1, 2, 3)
       for suffix in ("", "_with_indices")},
    **{f"aten.{prefix}adaptive_{kind}_pool{n}d": _adaptive_pool for prefix in ("", "_") for kind in ("max", "avg")
       for n in (1, 2, 3)},
    **{f"aten.{name}": _interpolate for name in (
        "upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "_upsample_nearest_exact1d",
        "_upsample_nearest_exact2d", "_upsample_nearest_exact3d", "upsample_linear1d", "upsample_bilinear2d",
        "upsample_trilinear3d", "upsample_bicubic2d", "_upsample_bilinear2d_aa", "_upsample_bicubic2d_aa",
    )},
    **{f"aten.{kind}_pad{n}d": _pad for kind in ("reflection", "replication") for n in (1, 2, 3)},
    "aten.constant_pad_nd": _pad,
    "aten.slice": _slice, "aten.narrow": _slice,
    "aten.select": _select,
    **{p: _split for p in ("aten.split", "aten.split_with_sizes", "aten.unbind", "aten.chunk",
                           "aten.unsafe_split", "aten.unsafe_split_with_sizes", "aten.unsafe_chunk")},
    "aten.cat": _cat, "aten.concat": _cat, "aten.stack": _stack,
    **{p: _reshape for p in ("aten.view", "aten._unsafe_view", "aten.reshape", "aten.flatten", "aten.unflatten",
                             "aten.squeeze", "aten.squeeze_", "aten.unsqueeze", "aten.unsqueeze_",
                             "aten._reshape_alias", "aten.view_as")},
    "aten.expand": _expand, "aten.expand_as": _expand,
    **{p: _permute for p in ("aten.permute", "aten.transpose", "aten.transpose_", "aten.t", "aten.swapaxes",
                             "aten.swapdims", "aten.movedim")},
    **{p: _reduce for p in (
        "aten.sum", "aten.mean", "aten.amax", "aten.amin", "aten.max", "aten.min", "aten.var", "aten.std",
        "aten.var_mean", "aten.std_mean", "aten.prod", "aten.logsumexp", "aten.norm", "aten.linalg_vector_norm",
        "aten.nansum", "aten.nanmean", "aten.any", "aten.all", "aten.aminmax", "aten.median", "aten.nanmedian",
        "aten.mode",
    )} | {p: _reduce for p in _SAME_SHAPE_REDUCTIONS},
    **{p: _matmul for p in ("aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm")},
    **{p: _attention for p in (
        "aten._scaled_dot_product_flash_attention", "aten._scaled_dot_product_efficient_attention",
        "aten._scaled_dot_product_cudnn_attention", "aten._scaled_dot_product_flash_attention_for_cpu",
        "aten.scaled_dot_product_attention", "aten._scaled_dot_product_attention_math",
        "aten._fused_sdp_choice",
    )},
    "aten.pixel_shuffle": _pixel_shuffle, "aten.pixel_unshuffle": _pixel_shuffle,
    "aten.flip": _flip,
}


def rule_for(op: OpRecord) -> Rule | None:
    rule = _RULES.get(op.packet)
    if rule is not None:
        return rule
    return pointwise if _is_pointwise(op.name) else None


@cache
def _is_pointwise(name: str) -> bool:
    """torch tags elementwise ops `pointwise`; an in-place op is elementwise when its out-of-place op is."""
    import torch

    parts = name.split(".")
    if len(parts) < 3 or parts[0] != "aten":
        return False
    candidates = [(parts[1], parts[2])]
    if parts[1].endswith("_"):
        candidates += [(parts[1][:-1], parts[2]), (parts[1][:-1], "default")]
    for packet, overload in candidates:
        try:
            op = getattr(getattr(torch.ops.aten, packet), overload)
        except (AttributeError, RuntimeError):
            continue
        if torch.Tag.pointwise in op.tags:
            return True
    return False
