"""The receptive-field data of one tensor (per input axis: per-unit tables of input intervals, the jump) and a few
table basics; the primitives the rules build tables with are in rf_gather.py. See receptive_field.py for the
method."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from inspectlab.analysis.rf_tables import PackedTable

if TYPE_CHECKING:
    from inspectlab.tracing.records import Trace

INF = math.inf
Pieces = tuple[tuple[int, int, int], ...]  # (dim, inner, count) per piece of an image axis, most significant first


class Slot(NamedTuple):
    """Where the positions of an axis lie along a dim that also holds tokens without a position (a class token,
    distillation or register tokens: `cat` on the token dim). Along `dim` the token is q = (index // inner) %
    size; tokens q in [start, start + length) are positions p = q - start, whose digits the axis's pieces give
    ((p // inner) % count: the pieces' `inner` counts positions, not indices); the others ("extras") have no
    position: their field is nothing (a constant token) or, with `extras_global`, global."""

    dim: int
    inner: int
    size: int
    start: int
    length: int
    extras_global: bool


# --------------------------------------------------------------------------------------------------
# data classes


@dataclass(frozen=True)
class AxisSummary:
    """Field of one axis summed up: largest field over units (all paths / shortest path), padding, centre."""

    size: float | None
    size_min: float | None
    padding: float | None  # how far the first unit's field starts before pixel 0
    center: float | None  # centre of the first unit's field, in input pixels
    smallest: float | None = None  # smallest field over units (all paths): it never shrinks along a path


class AxisField:
    """The field along one input axis in one tensor.

    `table` is (6, n): per unit along tensor dim `dim`, the field's first and last input pixel through
    all paths, then through the shortest path (unclipped: padded taps count as the pixels they stand
    for), then the first and last pixel the unit actually depends on (padding is nothing; this is what
    autograd measures). +inf/-inf: the unit depends on nothing. It is None once the axis is folded into
    another dim (flatten) or reduced away; `frozen` then holds its summary.

    `pieces` is set (and `dim` is None) when the axis's units are spread over several tensor dims, or share one
    with other axes: tokens (N, H·W, C), the rows of a Linear over an NHWC tensor (N·H·W, C), Swin's windows
    (N·H/7·W/7, 7·7, C). It lists (dim, inner, count), most significant first: along `dim` the piece's digit
    is (index // inner) % count, and the unit is the mixed-radix number of the digits. `table` is then None
    (no single dim to index it by; `per_unit` has it), `tabled` False: a rule that does not follow pieces
    never reads such an axis (rf_layout.layout_guard makes its output unknown instead). `slot` is set when that
    dim also holds tokens without a position (a class token): see Slot; the pieces then count positions.

    The table is kept packed (rf_tables.PackedTable, a few bytes a unit) with its summary, and never changes:
    each read of `table` unpacks a new copy, and several fields (the H and W axes of a square image, a copy's
    output) may share one packed table, `packed`.
    """

    __slots__ = ("_summary", "dim", "frozen", "jump", "packed", "pieces", "slot")

    def __init__(self, dim: int | None, jump: Fraction, table: np.ndarray | PackedTable | None = None,
                 frozen: AxisSummary | None = None, pieces: Pieces | None = None, slot: Slot | None = None) -> None:
        self.dim = None if pieces else dim
        self.jump = jump
        self.frozen = frozen
        self.pieces = pieces or None
        self.slot = slot if pieces else None
        self.packed = table if isinstance(table, PackedTable) or table is None else PackedTable(table)
        self._summary = _summarize(table) if isinstance(table, np.ndarray) and table.shape[1] else None

    def __repr__(self) -> str:
        size = None if self.packed is None else self.packed.n
        where = f"pieces={self.pieces}" if self.pieces else f"dim={self.dim}"
        where += f", {self.slot}" if self.slot else ""
        return f"AxisField({where}, jump={self.jump}, units={size}, frozen={self.frozen})"

    @property
    def table(self) -> np.ndarray | None:
        """The per-unit table along `dim` (None when folded, or spread over several dims: see `per_unit`)."""
        return None if self.packed is None or self.pieces else self.packed.unpack()

    @property
    def per_unit(self) -> np.ndarray | None:
        """The per-unit table, wherever the units lie (one dim or pieces)."""
        return None if self.packed is None else self.packed.unpack()

    @property
    def units(self) -> int:
        """The number of units along the axis (0 when it has no table)."""
        return 0 if self.packed is None else self.packed.n

    def summary(self) -> AxisSummary:
        if self.packed is None or self.packed.n == 0:
            return self.frozen or AxisSummary(None, None, None, None)
        if self._summary is None:
            self._summary = _summarize(self.packed.unpack())
        return self._summary

    def folded(self, dim: int | None) -> AxisField:
        """This axis without its per-unit table (kept as a summary), carried by `dim`."""
        return AxisField(dim, self.jump, None, self.summary())

    def moved(self, dim: int | None) -> AxisField:
        assert not self.pieces, "an axis spread over several dims moves with relaid()"
        moved = AxisField(dim, self.jump, self.packed, self.frozen)
        moved._summary = self._summary
        return moved

    def relaid(self, dim: int | None, pieces: Pieces | None, slot: Slot | None = None) -> AxisField:
        """The same units, now along `dim` or spread over `pieces` (of positions in `slot`, if given)."""
        moved = AxisField(dim, self.jump, self.packed, self.frozen, pieces, slot)
        moved._summary = self._summary
        return moved

    def with_table(self, table: np.ndarray) -> AxisField:
        """The same layout (dim or pieces and slot) and stride, with a new per-unit table of as many units."""
        return AxisField(self.dim, self.jump, table, None, self.pieces, self.slot)

    @property
    def tabled(self) -> bool:
        """A per-unit table along one dim, `dim`."""
        return self.packed is not None and not self.pieces


def _summarize(table: np.ndarray) -> AxisSummary:
    lo, hi, lo_min, hi_min = table[:4]
    sizes = finite(hi - lo + 1)
    sizes_min = finite(hi_min - lo_min + 1)
    first = math.isfinite(lo[0]) and math.isfinite(hi[0])
    return AxisSummary(
        size=float(sizes.max()) if sizes.size else None,
        size_min=float(sizes_min.max()) if sizes_min.size else None,
        padding=float(-lo[0]) if first else None,
        center=float((lo[0] + hi[0]) / 2) if first else None,
        smallest=float(sizes.min()) if sizes.size else None,
    )


@dataclass
class FieldInfo:
    """The receptive field of one tensor: one AxisField per input axis (H, W), or none for a tensor that
    does not depend on the input. `is_global`: some path reaches every input pixel (global pooling, a
    linear layer over positions, attention); the axes then keep the local field of the other paths."""

    axes: tuple[AxisField, ...] = ()
    is_global: bool = False
    zero: bool = False  # a constant known to be all zeros (new_zeros, zeros_like): x * 0 has no field
    unknown: str | None = None  # why the field is not known: an op with no rule upstream, or "inconsistent: ..."
    # what the numbers alone do not say, carried to everything downstream: a data-dependent op counted as global
    # (grid_sample), a roll that wraps around the border
    flags: tuple[str, ...] = ()

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
        """The tensor dim indexing each input axis (None where folded, reduced or spread over several dims)."""
        return tuple(a.dim if a.tabled else None for a in self.axes)

    def unit(self, index: Sequence[int], actual: bool = False) -> list[tuple[float, float] | None]:
        """Per axis, the field [first, last pixel] of the unit at `index` (one index per axis) through all
        paths: unclipped, or with `actual` the pixels it really depends on (None: none, or no per-unit
        table for that axis)."""
        rows = (4, 5) if actual else (0, 1)
        result: list[tuple[float, float] | None] = []
        for axis, position in zip(self.axes, index, strict=True):
            span = None
            if axis.packed is not None:
                position = range(axis.packed.n)[position]  # a negative index counts from the end; IndexError
                lo, hi = axis.packed.value(rows[0], position), axis.packed.value(rows[1], position)
                span = (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None
            result.append(span)
        return result

    def positions(self, index: Sequence[int], shape: Sequence[int]) -> dict[int, np.ndarray]:
        """Where the unit at `index` (one unit per axis, as in `unit`) lies in a tensor of `shape`: per dim that
        holds an axis, the indices along it (every index along the other dims). An axis spread over several dims
        fixes the digits of its pieces and leaves the rest free (the batch in N·H·W rows); along a Slot's dim the
        tokens without a position are left out."""
        keep: dict[int, np.ndarray] = {}
        for axis, position in zip(self.axes, index, strict=True):
            if axis.packed is None or not (axis.pieces or axis.dim is not None):
                continue
            position = range(axis.units)[position]
            weight = axis.units
            slot = axis.slot
            for dim, inner, count in axis.pieces or ((axis.dim, 1, axis.units),):  # type: ignore[union-attr]
                weight //= count
                along = keep.get(dim, np.arange(shape[dim]))
                local = along
                if slot is not None:
                    local = (along // slot.inner) % slot.size - slot.start
                    inside = (local >= 0) & (local < slot.length)
                    along, local = along[inside], local[inside]
                keep[dim] = along[(local // inner) % count == (position // weight) % count]
        return keep


CONSTANT = FieldInfo()


@dataclass(frozen=True)
class FieldNote:
    """Something the walk wants the user to know: an op with no rule, or a misaligned merge."""

    kind: str  # "no-rule" | "misaligned" | "inconsistent"
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


class NoRule(Exception):
    """The op is known but this use of it is not (e.g. a gather along a spatial axis)."""


class Inconsistent(NoRule):
    """A field breaks an invariant (rf_checks.py): a bug, so the field is unknown rather than a wrong number."""


# --------------------------------------------------------------------------------------------------
# table primitives


def finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def identity_table(n: int) -> np.ndarray:
    units = np.arange(n, dtype=np.float64)
    return np.stack([units] * 6)


class Reuse:
    """Within one op: an axis whose table and index map are those of an axis already done (H and W of a
    square image) gets that axis's result, not a second copy of it."""

    def __init__(self) -> None:
        self._done: dict[tuple[Any, ...], AxisField] = {}

    def field(self, axis: AxisField, key: tuple[Any, ...], make: Callable[[], AxisField]) -> AxisField:
        full = (id(axis.packed), axis.jump, *key)
        done = self._done.get(full)
        if done is None:
            done = self._done[full] = make()
            return done
        return done.moved(axis.dim)


EMPTY = np.array([INF, -INF, INF, -INF, INF, -INF])  # a unit that depends on nothing


def aligned_dims(in_rank: int, out_rank: int) -> dict[int, int]:
    """Broadcasting: input dims align with the output's trailing dims."""
    return {d: d + out_rank - in_rank for d in range(in_rank)}
