"""Receptive fields on the whole dataflow graph of a Trace (a pure function of the Trace).

For every tensor and every spatial axis of the analysed input (H and W), the walk keeps, per unit of
the tensor along that axis, the interval of input pixels the unit depends on:

- through all paths (their union: "rf"), and through the path with the smallest field ("rf_min");
- in unclipped input coordinates: a padded tap of a convolution or a pool counts as the input unit
  that would sit there (extrapolated with the effective stride), as the usual r/j/c formulas do.

It also keeps the effective stride (jump) j per axis. The ops are walked in recorded (topological)
order, each op mapping the tables of its inputs to those of its outputs with the exact index map of
the op (convolution taps, pooling windows, the interpolation taps torch itself uses, ...). For a
convolution or pooling with kernel k, stride s, padding p and dilation d this is the classic
r' = r + (k-1)·d·j, j' = j·s, c' = c + ((k-1)·d/2 - p)·j, per unit. Where paths meet (add, mul, cat)
the field is the union, and merges whose inputs are not centred on the same pixels are noted with
their offsets. A reduction over a spatial axis (global pooling, flatten + linear, softmax over
positions, attention) makes the field global: the axis keeps, as a summary, the local field it had.
An op with no rule makes its outputs "unknown" (with the reason), never a guess.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import cache, lru_cache
from typing import Any

import numpy as np

from inspectlab.analysis.report import Report
from inspectlab.errors import InspectlabError
from inspectlab.tracing.records import ModuleCall, OpRecord, Trace

_INF = math.inf


# --------------------------------------------------------------------------------------------------
# data classes


@dataclass(frozen=True)
class AxisSummary:
    """Field of one axis summed up: largest field over units (all paths / shortest path), padding, centre."""

    size: float | None
    size_min: float | None
    padding: float | None  # how far the first unit's field starts before pixel 0
    center: float | None  # centre of the first unit's field, in input pixels


@dataclass
class AxisField:
    """The field along one input axis in one tensor.

    `table` is (6, n): per unit along tensor dim `dim`, the field's first and last input pixel through
    all paths, then through the shortest path (unclipped: padded taps count as the pixels they stand
    for), then the first and last pixel the unit actually depends on (padding is nothing; this is what
    autograd measures). +inf/-inf: the unit depends on nothing. It is None once the axis is folded into
    another dim (flatten) or reduced away; `frozen` then holds its summary.
    """

    dim: int | None
    jump: Fraction
    table: np.ndarray | None = None
    frozen: AxisSummary | None = None

    def summary(self) -> AxisSummary:
        if self.table is None or self.table.shape[1] == 0:
            return self.frozen or AxisSummary(None, None, None, None)
        lo, hi, lo_min, hi_min = self.table[:4]
        sizes = _finite(hi - lo + 1)
        sizes_min = _finite(hi_min - lo_min + 1)
        first = math.isfinite(lo[0]) and math.isfinite(hi[0])
        return AxisSummary(
            size=float(sizes.max()) if sizes.size else None,
            size_min=float(sizes_min.max()) if sizes_min.size else None,
            padding=float(-lo[0]) if first else None,
            center=float((lo[0] + hi[0]) / 2) if first else None,
        )

    def folded(self, dim: int | None) -> AxisField:
        """This axis without its per-unit table (kept as a summary), carried by `dim`."""
        return AxisField(dim, self.jump, None, self.summary())

    def moved(self, dim: int | None) -> AxisField:
        return replace(self, dim=dim)

    @property
    def tabled(self) -> bool:
        return self.table is not None


@dataclass
class FieldInfo:
    """The receptive field of one tensor: one AxisField per input axis (H, W), or none for a tensor that
    does not depend on the input. `is_global`: some path reaches every input pixel (global pooling, a
    linear layer over positions, attention); the axes then keep the local field of the other paths."""

    axes: tuple[AxisField, ...] = ()
    is_global: bool = False
    zero: bool = False  # a constant known to be all zeros (new_zeros, zeros_like): x * 0 has no field
    unknown: str | None = None  # why the field is not known (an op with no rule upstream)

    @property
    def constant(self) -> bool:
        return not self.axes and self.unknown is None

    def _per_axis(self, pick: Callable[[AxisField], Any]) -> tuple[Any, ...] | None:
        return None if self.unknown or not self.axes else tuple(pick(a) for a in self.axes)

    @property
    def size(self) -> tuple[float | None, ...] | None:
        """Largest field over the tensor's units, through all paths, per axis (input pixels)."""
        return self._per_axis(lambda a: a.summary().size)

    @property
    def size_min(self) -> tuple[float | None, ...] | None:
        """Field through the shortest path (largest over units), per axis."""
        return self._per_axis(lambda a: a.summary().size_min)

    @property
    def stride(self) -> tuple[Fraction, ...] | None:
        return self._per_axis(lambda a: a.jump)

    @property
    def padding(self) -> tuple[float | None, ...] | None:
        return self._per_axis(lambda a: a.summary().padding)

    @property
    def center(self) -> tuple[float | None, ...] | None:
        return self._per_axis(lambda a: a.summary().center)

    @property
    def dims(self) -> tuple[int | None, ...]:
        """The tensor dim indexing each input axis (None where folded or reduced)."""
        return tuple(a.dim if a.tabled else None for a in self.axes)

    def unit(self, index: Sequence[int], actual: bool = False) -> list[tuple[float, float] | None]:
        """Per axis, the field [first, last pixel] of the unit at `index` (one index per axis) through all
        paths: unclipped, or with `actual` the pixels it really depends on (None: none, or no per-unit
        table for that axis)."""
        rows = (4, 5) if actual else (0, 1)
        result: list[tuple[float, float] | None] = []
        for axis, position in zip(self.axes, index, strict=True):
            span = None
            if axis.table is not None:
                lo, hi = float(axis.table[rows[0], position]), float(axis.table[rows[1], position])
                span = (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None
            result.append(span)
        return result


CONSTANT = FieldInfo()


@dataclass(frozen=True)
class FieldNote:
    """Something the walk wants the user to know: an op with no rule, or a misaligned merge."""

    kind: str  # "no-rule" | "misaligned"
    op: int
    where: str  # module label
    text: str
    offsets: tuple[tuple[float, ...], ...] = ()  # misaligned: per input, per axis, centre offset in px


class FieldMap(dict[int, FieldInfo]):
    """tensor id -> FieldInfo, with the notes the walk made and the analysed input."""

    def __init__(self, trace: Trace, input_id: int, spatial_dims: tuple[int, ...]) -> None:
        super().__init__()
        self.trace = trace
        self.input_id = input_id
        self.spatial_dims = spatial_dims
        self.notes: list[FieldNote] = []

    @property
    def input_size(self) -> tuple[int, ...]:
        shape = self.trace.tensors[self.input_id].shape
        return tuple(shape[d] for d in self.spatial_dims)

    def of(self, tensor_id: int) -> FieldInfo:
        return self.get(tensor_id, CONSTANT)


class _NoRule(Exception):
    """The op is known but this use of it is not (e.g. a gather along a spatial axis)."""


# --------------------------------------------------------------------------------------------------
# table primitives


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def _identity_table(n: int) -> np.ndarray:
    units = np.arange(n, dtype=np.float64)
    return np.stack([units] * 6)


_EMPTY = np.array([_INF, -_INF, _INF, -_INF, _INF, -_INF])


def _gather(axis: AxisField, taps: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Union of the fields of input units `taps` (n_out, k), masked. Units outside the tensor are the
    virtual units a padding adds: extrapolated with the axis's stride in the unclipped rows, nothing in
    the actual rows."""
    table = axis.table
    assert table is not None
    n = table.shape[1]
    if n == 0:
        raise _NoRule("an image axis of size 0")
    taps = np.asarray(taps, dtype=np.int64)
    if taps.ndim == 1:
        taps = taps[:, None]
    inside = np.clip(taps, 0, n - 1)
    keep = np.ones(taps.shape, dtype=bool) if mask is None else mask
    real = keep & (inside == taps)
    with np.errstate(invalid="ignore"):
        values = table[:, inside]  # (6, n_out, k)
        values[:4] += (taps - inside) * float(axis.jump)
    masks = np.stack([keep] * 4 + [real] * 2)
    values = np.where(masks, values, _EMPTY[:, None, None])
    return np.stack([
        values[0].min(-1), values[1].max(-1), values[2].min(-1), values[3].max(-1), values[4].min(-1),
        values[5].max(-1),
    ])


def _union(tables: Sequence[np.ndarray]) -> np.ndarray:
    """Per unit: the union of the fields (all paths, unclipped and actual) and the narrowest of the
    shortest-path fields."""
    if len(tables) == 1:
        return tables[0]
    stack = np.stack(tables)  # (m, 6, n)
    width = stack[:, 3] - stack[:, 2]
    width = np.where(np.isfinite(width), width, _INF)
    pick = width.argmin(0)
    columns = np.arange(stack.shape[2])
    return np.stack([
        stack[:, 0].min(0), stack[:, 1].max(0), stack[pick, 2, columns], stack[pick, 3, columns],
        stack[:, 4].min(0), stack[:, 5].max(0),
    ])


def _broadcast(table: np.ndarray, n: int) -> np.ndarray:
    if table.shape[1] == n:
        return table
    if table.shape[1] == 1:
        return np.repeat(table, n, axis=1)
    raise _NoRule(f"cannot broadcast {table.shape[1]} units to {n}")


def _centres(table: np.ndarray) -> np.ndarray:
    return (table[0] + table[1]) / 2


# --------------------------------------------------------------------------------------------------
# the walk


class _Walk:
    """Propagates FieldInfos through the ops of a trace, in order."""

    def __init__(self, trace: Trace, fields: FieldMap) -> None:
        self.trace = trace
        self.fields = fields

    def shape(self, tensor_id: int) -> tuple[int, ...]:
        return self.trace.tensors[tensor_id].shape

    def field(self, tensor_id: int | None) -> FieldInfo:
        return CONSTANT if tensor_id is None else self.fields.of(tensor_id)

    def where(self, op: OpRecord) -> str:
        return self.trace.calls[op.module_call].label if op.module_call is not None else "(outside modules)"

    def note(self, op: OpRecord, kind: str, text: str, offsets: tuple[tuple[float, ...], ...] = ()) -> None:
        self.fields.notes.append(FieldNote(kind, op.index, self.where(op), text, offsets))

    def run(self) -> None:
        for op in self.trace.forward_ops():
            if op.outputs:
                self.step(op)

    def step(self, op: OpRecord) -> None:
        inputs = [self.field(t) for t in op.inputs]
        unknown = next((f.unknown for f in inputs if f.unknown), None)
        if unknown is not None:
            self.assign(op, [FieldInfo(unknown=unknown)] * len(op.outputs))
            return
        rule = _rule_for(op)
        if all(f.constant for f in inputs) or rule is _constant:
            zero = op.packet in _ZERO_FACTORIES or (
                op.packet == "aten.fill_" and op.args.get("value") == 0
            ) or (rule is _pointwise and _times_zero(self, op))
            self.assign(op, [FieldInfo(zero=zero)] * len(op.outputs))
            return
        if rule is None:
            reason = f"no rule for {op.packet} (op #{op.index} in {self.where(op)})"
            self.note(op, "no-rule", reason)
            self.assign(op, [FieldInfo(unknown=reason)] * len(op.outputs))
            return
        try:
            results = rule(self, op)
        except _NoRule as exc:
            reason = f"no rule for {op.packet} here: {exc} (op #{op.index} in {self.where(op)})"
            self.note(op, "no-rule", reason)
            results = [FieldInfo(unknown=reason)] * len(op.outputs)
        self.assign(op, results)

    def assign(self, op: OpRecord, results: Sequence[FieldInfo]) -> None:
        for tensor_id, info in zip(op.outputs, results, strict=False):
            self.fields[tensor_id] = info

    # helpers shared by the rules ---------------------------------------------------------------
    def main(self, op: OpRecord) -> int:
        for name in ("input", "self"):
            value = op.tensor_args.get(name)
            if isinstance(value, int):
                return value
        return op.inputs[0]

    def others_global(self, op: OpRecord, main: int) -> bool:
        """An input other than the main one depends on the image (input-dependent weights): global."""
        return any(not self.field(t).constant for t in op.inputs if t != main)

    def merge(self, op: OpRecord, parts: Sequence[tuple[FieldInfo, dict[int, int]]], out_shape: Sequence[int],
              ) -> FieldInfo:
        """Union of several inputs' fields on the output's dims. `parts`: (field, {input dim: output dim})."""
        live = [(f, dim_map) for f, dim_map in parts if not f.constant]
        if not live:
            return CONSTANT
        count = len(live[0][0].axes)
        is_global = any(f.is_global for f, _ in live)
        axes: list[AxisField] = []
        offsets: list[list[float]] = [[] for _ in live]
        jumps: list[list[Fraction]] = []
        for k in range(count):
            tabled: list[tuple[int, AxisField, int]] = []  # (part, axis, output dim)
            folded: list[AxisField] = []
            for p, (f, dim_map) in enumerate(live):
                axis = f.axes[k]
                out_dim = dim_map.get(axis.dim) if axis.dim is not None else None
                if axis.tabled and out_dim is not None:
                    tabled.append((p, axis, out_dim))
                else:
                    folded.append(axis.moved(out_dim))
            if not tabled:
                best = max(folded, key=lambda a: a.summary().size or -1)
                dims = {a.dim for a in folded if a.dim is not None}
                axes.append(best.moved(dims.pop() if len(dims) == 1 else None))
                for row in offsets:
                    row.append(0.0)
                continue
            out_dims = {d for _, _, d in tabled}
            if len(out_dims) > 1:
                raise _NoRule("the inputs carry the same image axis on different dims")
            out_dim = out_dims.pop()
            tables = [_broadcast(a.table, out_shape[out_dim]) for _, a, _ in tabled]  # type: ignore[arg-type]
            shifts = {p: _offset(tables[0], table) for (p, _, _), table in zip(tabled, tables, strict=True)}
            for p, row in enumerate(offsets):
                row.append(shifts.get(p, 0.0))
            jumps.append([a.jump for _, a, _ in tabled])
            axes.append(AxisField(out_dim, tabled[0][1].jump, _union(tables)))
        self.note_misaligned(op, offsets, jumps)
        return FieldInfo(tuple(axes), is_global)

    def note_misaligned(self, op: OpRecord, offsets: list[list[float]], jumps: list[list[Fraction]]) -> None:
        """One note per merge whose inputs have different strides or are centred on different pixels."""
        texts = []
        if any(len(set(per_axis)) > 1 for per_axis in jumps):
            texts.append("strides " + " vs ".join(
                "(" + ", ".join(str(j) for j in per_input) + ")" for per_input in zip(*jumps, strict=False)))
        if any(abs(v) > 1e-9 for row in offsets for v in row):
            texts.append("centres offset by " + ", ".join(
                "(" + ", ".join(f"{v:+g}" for v in row) + ")" for row in offsets) + " px")
        if texts:
            self.note(op, "misaligned", f"{op.function or op.packet}: inputs " + "; ".join(texts),
                      tuple(tuple(r) for r in offsets))


def _offset(reference: np.ndarray, table: np.ndarray) -> float:
    """Median shift of the field centres of `table` from those of `reference` (borders, where torch clamps
    interpolation taps, do not weigh in)."""
    a, b = _centres(reference), _centres(table)
    both = np.isfinite(a) & np.isfinite(b)
    return float(np.median(b[both] - a[both])) if both.any() else 0.0


def _aligned_dims(in_rank: int, out_rank: int) -> dict[int, int]:
    """Broadcasting: input dims align with the output's trailing dims."""
    return {d: d + out_rank - in_rank for d in range(in_rank)}


# --------------------------------------------------------------------------------------------------
# rules: each maps (walk, op) to one FieldInfo per output tensor


Rule = Callable[[_Walk, OpRecord], list[FieldInfo]]


def _constant(walk: _Walk, op: OpRecord) -> list[FieldInfo]:
    return [CONSTANT] * len(op.outputs)


def _times_zero(walk: _Walk, op: OpRecord) -> bool:
    """x * 0 (or 0 / x): the result is a known zero, whatever x is (a recurrent state starting at zero)."""
    if op.packet in ("aten.mul", "aten.mul_"):
        return any(walk.field(t).zero for t in op.inputs)
    if op.packet in ("aten.div", "aten.div_"):
        numerator = op.tensor_args.get("self")
        return isinstance(numerator, int) and walk.field(numerator).zero
    return False


def _pointwise(walk: _Walk, op: OpRecord) -> list[FieldInfo]:
    """Elementwise op (activations, add, mul, where, ...): union of the broadcast inputs' fields."""
    out_shape = walk.shape(op.outputs[0])
    if _times_zero(walk, op):
        return [FieldInfo(zero=True)] * len(op.outputs)
    parts = [(walk.field(t), _aligned_dims(len(walk.shape(t)), len(out_shape))) for t in op.inputs]
    merged = walk.merge(op, parts, out_shape)
    return [merged] * len(op.outputs)


def _passthrough(walk: _Walk, op: OpRecord) -> list[FieldInfo]:
    """Copies and per-channel ops (detach, clone, batch norm, dropout): the first output has the main
    input's field; the other outputs (saved statistics, masks) have none."""
    main = walk.main(op)
    if walk.shape(op.outputs[0]) != walk.shape(main):
        raise _NoRule("output shape differs from the input's")
    info = walk.field(main)
    if walk.others_global(op, main) and op.packet not in _NORMS:
        info = replace(info, is_global=True)
    return [info] + [CONSTANT] * (len(op.outputs) - 1)


def _per_position(walk: _Walk, op: OpRecord) -> list[FieldInfo]:
    """Ops that mix channels only (glu, channel_shuffle, index_select over channels): the field passes,
    unless the op's `dim` is an image axis."""
    main = walk.main(op)
    info = walk.field(main)
    rank = len(walk.shape(main))
    dim = op.args.get("dim", op.args.get("axis"))
    if isinstance(dim, int) and any(a.dim == dim % rank for a in info.axes):
        raise _NoRule("it works along an image axis")
    out_shape = walk.shape(op.outputs[0])
    if len(out_shape) != rank or any(a.tabled and out_shape[a.dim] != walk.shape(main)[a.dim] for a in info.axes):
        raise _NoRule("it changes the size of an image axis")
    return [replace(info, is_global=info.is_global or walk.others_global(op, main))] * len(op.outputs)


def _copy(walk: _Walk, op: OpRecord) -> list[FieldInfo]:
    """copy_(self, src): the destination now holds src (broadcast)."""
    src = op.tensor_args.get("src")
    if not isinstance(src, int):
        raise _NoRule("no source tensor")
    out_shape = walk.shape(op.outputs[0])
    merged = walk.merge(op, [(walk.field(src), _aligned_dims(len(walk.shape(src)), len(out_shape)))], out_shape)
    return [merged] * len(op.outputs)


def _ints(value: Any, count: int, default: int) -> list[int]:
    if value is None or value == []:
        return [default] * count
    if isinstance(value, int):
        return [value] * count
    values = list(value)
    return values * count if len(values) == 1 else values


def _window_op(walk: _Walk, op: OpRecord, kernel: Sequence[int], stride: Sequence[int],
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
            table = _gather(axis, units * s - p + t * d)
            jump = axis.jump * s
        else:  # output o receives input i where o = i*s - p + t*d
            numerator = units + p - t * d
            mask = numerator % s == 0
            table = _gather(axis, np.where(mask, numerator // s, 0), mask)
            jump = axis.jump / s
        axes.append(AxisField(axis.dim, jump, table))
    return FieldInfo(tuple(axes), info.is_global or walk.others_global(op, main))


def _convolution(walk: _Walk, op: OpRecord) -> list[FieldInfo]:
    weight = op.tensor_args.get("weight")
    if not isinstance(weight, int):
        raise _NoRule("no weight tensor")
    kernel = list(walk.shape(weight)[2:])
    count = len(kernel)
    result = _window_op(
        walk, op, kernel, _ints(op.args.get("stride"), count, 1), _ints(op.args.get("padding"), count, 0),
        _ints(op.args.get("dilation"), count, 1), transposed=bool(op.args.get("transposed", False)),
    )
    return [result] * len(op.outputs)


def _pool(walk: _Walk, op: OpRecord) -> list[FieldInfo]:
    kernel = list(op.args["kernel_size"])
    count = len(kernel)
    stride = _ints(op.args.get("stride"), count, 0)
    stride = [s or k for s, k in zip(stride, kernel, strict=True)]
    result = _window_op(walk, op, kernel, stride, _ints(op.args.get("padding"), count, 0),
                        _ints(op.args.get("dilation"), count, 1))
    return [result] * len(op.outputs)  # max pool's indices depend on the same window


def _adaptive_pool(walk: _Walk, op: OpRecord) -> list[FieldInfo]:
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
        axes.append(AxisField(axis.dim, axis.jump * Fraction(n, m), _gather(axis, taps, taps < ends[:, None])))
    return [FieldInfo(tuple(axes), is_global)] * len(op.outputs)


_SCALE_NAMES = {1: ("scales",), 2: ("scales_h", "scales_w"), 3: ("scales_d", "scales_h", "scales_w")}


def _interpolate(walk: _Walk, op: OpRecord) -> list[FieldInfo]:
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
                              _gather(axis, order, mask)))
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


def _index_map(walk: _Walk, op: OpRecord, per_dim: Callable[[int, int, int], tuple[np.ndarray, Fraction] | None],
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
            axes.append(AxisField(axis.dim, axis.jump * factor, _gather(axis, taps)))
    return FieldInfo(tuple(axes), info.is_global)


def _pad_pairs(pads: Sequence[int], rank: int) -> dict[int, int]:
    """F.pad order (last dim first, before/after pairs) -> {dim: padding before}."""
    return {rank - 1 - i: int(pads[2 * i]) for i in range(len(pads) // 2)}


def _pad(walk: _Walk, op: OpRecord) -> list[FieldInfo]:
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


def _slice(walk: _Walk, op: OpRecord) -> list[FieldInfo]:
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


def _flip(walk: _Walk, op: OpRecord) -> list[FieldInfo]:
    main = walk.main(op)
    rank = len(walk.shape(main))
    dims = {d % rank for d in _ints(op.args.get("dims"), 1, 0)}

    def per_dim(dim: int, n_in: int, n_out: int) -> tuple[np.ndarray, Fraction] | None:
        return (n_in - 1 - np.arange(n_out), Fraction(-1)) if dim in dims else None

    return [_index_map(walk, op, per_dim)] * len(op.outputs)


def _pixel_shuffle(walk: _Walk, op: OpRecord) -> list[FieldInfo]:
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


def _select(walk: _Walk, op: OpRecord) -> list[FieldInfo]:
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


def _split(walk: _Walk, op: OpRecord) -> list[FieldInfo]:
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


def _cat(walk: _Walk, op: OpRecord) -> list[FieldInfo]:
    """cat along channels: union of the inputs' fields (a merge); along an image axis: tables end to end."""
    parts = op.tensor_args.get("tensors")
    if not isinstance(parts, list):
        raise _NoRule("no tensor list")
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
                pieces.append(np.tile(_EMPTY[:, None], (1, n)))
            elif not f.axes[k].tabled or f.axes[k].dim != target:
                raise _NoRule("inputs do not all carry this image axis on the concatenated dim")
            else:
                pieces.append(f.axes[k].table)
        axes.append(AxisField(target, reference.jump, np.concatenate(pieces, axis=1)))
    return [FieldInfo(tuple(axes), any(f.is_global for f in live))]


def _stack(walk: _Walk, op: OpRecord) -> list[FieldInfo]:
    parts = op.tensor_args.get("tensors")
    if not isinstance(parts, list):
        raise _NoRule("no tensor list")
    out_shape = walk.shape(op.outputs[0])
    target = op.args.get("dim", 0) % len(out_shape)
    shift = {d: d if d < target else d + 1 for d in range(len(out_shape) - 1)}
    return [walk.merge(op, [(walk.field(t), shift) for t in parts], out_shape)]


def _remap(info: FieldInfo, dim_of: Callable[[AxisField], AxisField]) -> FieldInfo:
    return FieldInfo(tuple(dim_of(a) for a in info.axes), info.is_global)


def _reshape(walk: _Walk, op: OpRecord) -> list[FieldInfo]:
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


def _expand(walk: _Walk, op: OpRecord) -> list[FieldInfo]:
    main = walk.main(op)
    out_shape = walk.shape(op.outputs[0])
    dim_map = _aligned_dims(len(walk.shape(main)), len(out_shape))
    return [walk.merge(op, [(walk.field(main), dim_map)], out_shape)] * len(op.outputs)


def _permute(walk: _Walk, op: OpRecord) -> list[FieldInfo]:
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


def _reduce(walk: _Walk, op: OpRecord) -> list[FieldInfo]:
    """sum / mean / amax / var / ... over dims: an image axis reduced away makes the field global, keeping
    the local field as a summary; reductions over channels pass the field."""
    if op.name.endswith(".other"):  # max(a, b) / min(a, b): elementwise
        return _pointwise(walk, op)
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


def _matmul(walk: _Walk, op: OpRecord) -> list[FieldInfo]:
    """mm / addmm / bmm / baddbmm: rows come from the first matrix, columns from the second; an image
    axis on the contracted dim (flatten + linear, attention over positions) makes the field global."""
    names = {"aten.mm": ("self", "mat2"), "aten.addmm": ("mat1", "mat2"), "aten.bmm": ("self", "mat2"),
             "aten.baddbmm": ("batch1", "batch2")}[op.packet]
    first, second = (op.tensor_args.get(n) for n in names)
    if not isinstance(first, int) or not isinstance(second, int):
        raise _NoRule("missing matrix")
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
        parts.append((walk.field(bias), _aligned_dims(len(walk.shape(bias)), len(out_shape))))
    carried = [(f, m) for f, m in parts if any(a.dim is not None and a.dim in m for a in f.axes)]
    if len(carried) > 1 and any(a.tabled for f, _ in carried for a in f.axes):
        # positions on both sides (attention scores): every entry mixes two positions; call it global
        parts = [(FieldInfo(tuple(a.folded(None) if a.tabled else a.moved(None) for a in f.axes), True), m)
                 for f, m in parts]
    merged = walk.merge(op, parts, out_shape)
    if contracted_global:
        merged = replace(merged, is_global=True)
    return [merged] * len(op.outputs)


def _attention(walk: _Walk, op: OpRecord) -> list[FieldInfo]:
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


_ZERO_FACTORIES = {"aten.zeros", "aten.zeros_like", "aten.new_zeros", "aten.zero_", "aten.zero"}
_FACTORIES = {
    "aten.empty", "aten.empty_like", "aten.new_empty", "aten.empty_strided", "aten.new_empty_strided",
    "aten.ones", "aten.ones_like", "aten.new_ones", "aten.full", "aten.full_like", "aten.new_full",
    "aten.rand_like", "aten.randn_like", "aten.randint_like", "aten.scalar_tensor", "aten.arange",
    "aten.fill_", "aten.fill", "aten.normal_", "aten.uniform_", "aten.bernoulli_", "aten.bernoulli",
    "aten.random_", "aten.exponential_", "aten.lift_fresh", "aten.sym_size", "aten.sym_numel",
    "aten.sym_stride", "aten.size", "aten.stride", "aten._local_scalar_dense", "aten.argmax", "aten.argmin",
} | _ZERO_FACTORIES
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
    **{p: _constant for p in _FACTORIES},
    **{p: _passthrough for p in _NORMS},
    **{p: _passthrough for p in (
        "aten.alias", "aten.detach", "aten.detach_", "aten.clone", "aten.contiguous", "aten._to_copy",
        "aten.to", "aten.lift_fresh_copy", "aten.native_dropout", "aten.dropout", "aten.feature_dropout",
        "aten._conj", "aten.positive", "aten.resolve_conj", "aten.resolve_neg",
    )},
    "aten.copy_": _copy, "aten.copy": _copy,
    # elementwise ops torch does not tag `pointwise`
    **{f"aten.{name}": _pointwise for name in (
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


def _rule_for(op: OpRecord) -> Rule | None:
    rule = _RULES.get(op.packet)
    if rule is not None:
        return rule
    return _pointwise if _is_pointwise(op.name) else None


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


# --------------------------------------------------------------------------------------------------
# public functions


def image_axes(shape: Sequence[int]) -> tuple[int, ...]:
    """The dims of an input that are image axes: the last two (N, C, H, W, ...), the last one for (N, C, L)."""
    if len(shape) >= 4:
        return (len(shape) - 2, len(shape) - 1)
    if len(shape) == 3:
        return (2,)
    raise InspectlabError(f"receptive fields need an input with spatial dims such as N×C×H×W, got {list(shape)}")


def receptive_fields(trace: Trace, input_index: int = 0) -> FieldMap:
    """The field of every tensor of the trace with respect to input `input_index` (tensor id -> FieldInfo).

    The other inputs count as constants. `FieldMap.notes` lists ops with no rule and misaligned merges.
    """
    if not trace.inputs:
        raise InspectlabError("the trace has no input tensor")
    input_id = trace.inputs[input_index]
    shape = trace.tensors[input_id].shape
    dims = image_axes(shape)
    fields = FieldMap(trace, input_id, dims)
    fields[input_id] = FieldInfo(tuple(AxisField(d, Fraction(1), _identity_table(shape[d])) for d in dims))
    _Walk(trace, fields).run()
    return fields


def call_field(fields: FieldMap, call: ModuleCall) -> FieldInfo | None:
    """The field of a module call's (first input-dependent) output tensor; None when it has no output."""
    infos = [fields.of(t) for t in call.outputs]
    return next((f for f in infos if not f.constant), infos[0] if infos else None)


@dataclass
class FieldRow:
    """One row of the rf table: a module call's output tensor and its field."""

    name: str
    call: int
    output: int  # position among the call's output tensors
    tensor: int
    shape: list[int]
    field: FieldInfo
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "output_shape": self.shape, **field_columns(self.field), "notes": list(self.notes)}


def field_columns(info: FieldInfo | None) -> dict[str, Any]:
    """The rf columns of a table row: rf, rf_min, stride, padding ([h, w] numbers or None) and global."""
    if info is None:
        info = CONSTANT
    return {
        "rf": _numbers(info.size), "rf_min": _numbers(info.size_min), "stride": _numbers(info.stride),
        "padding": _numbers(info.padding), "global": info.is_global,
    }


def _numbers(values: Iterable[Any] | None) -> list[int | float | None] | None:
    if values is None:
        return None
    out: list[int | float | None] = []
    for value in values:
        if value is None:
            out.append(None)
        elif float(value) == int(value):
            out.append(int(value))
        else:
            out.append(round(float(value), 4))
    return out


def field_rows(fields: FieldMap, depth: int | None = None, layers: str | None = None) -> list[FieldRow]:
    """One row per module call output (several outputs: `name[k]`), in call order, filtered by depth and a
    glob on the module name."""
    rows = []
    for call in fields.trace.calls:
        if depth is not None and call.depth > depth:
            continue
        if layers and not (fnmatch.fnmatchcase(call.name, layers) or fnmatch.fnmatchcase(call.label, layers)):
            continue
        for position, tensor in enumerate(call.outputs):
            info = fields.of(tensor)
            name = call.label if len(call.outputs) == 1 else f"{call.label}[{position}]"
            notes = [info.unknown] if info.unknown else []
            rows.append(FieldRow(name, call.index, position, tensor, list(fields.trace.tensors[tensor].shape),
                                 info, notes))
    return rows


def field_report(fields: FieldMap, model: str, depth: int | None = None, layers: str | None = None) -> Report:
    """The rf table as a Report: rows, the model output's field as totals, and the walk's notes."""
    rows = field_rows(fields, depth, layers)
    trace = fields.trace
    root = next((call for call in trace.calls if call.parent is None), None)
    totals: dict[str, Any] = {}
    if root is not None and call_field(fields, root) is not None:
        totals = field_columns(call_field(fields, root))
    extra = {
        "input_axes": list(fields.spatial_dims),
        "notes": [{"kind": n.kind, "op": n.op, "module": n.where, "text": n.text,
                   **({"offsets": [list(o) for o in n.offsets]} if n.offsets else {})} for n in fields.notes],
    }
    return Report(model=model, inputs=trace.shapes(trace.inputs), layers=[r.as_dict() for r in rows],
                  totals=totals, extra=extra)
