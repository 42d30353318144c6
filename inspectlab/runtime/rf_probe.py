"""What the empirical check measures, and how the measurements share backwards (see empirical_rf.py).

A *probe* is one unit of a row's tensor (or its first element, or all of it) whose gradient support one
backward reveals. Each row gets a *job* per unit it checks: the unit itself and a neighbour k units away along
every image axis (k = 1 where the analytic field moves evenly from unit to unit), whose shift checks the
strides.

Probes whose analytic supports lie apart (by more than `Probe.gap` pixels along some axis) share one backward:
the gradient of their sum is the union of their supports, and each probe reads its own box of the input (its
analytic support widened by half the gap). `pack` places them greedily, largest first, choosing for a row's
"centre" unit any unit with the largest field that fits in the input, so that several fit side by side.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from inspectlab.analysis.receptive_field import AxisField, FieldInfo, FieldMap, FieldRow

Span = tuple[int, int]
CANDIDATES = 8  # per axis, for a row's "centre" unit
LONGEST_PERIOD = 32  # the largest k tried for an evenly moving field (a 32x upsampling: a decoder back to the input)


@dataclass(eq=False)
class Probe:
    """One thing a backward measures: a unit of `row` (`index`, one unit per axis, 0 where an axis has no
    per-unit table), the first element of its tensor ("element"), or all of it ("tensor")."""

    row: int  # position in the checked rows
    kind: str  # "unit" | "element" | "tensor"
    index: tuple[int, ...]
    analytic: list[Span | None]  # per image axis: the pixels it depends on (None: none, or not known per unit)
    box: np.ndarray  # (axes, 2): the pixels it may read, where no other probe of its backward may read
    gap: int
    depth: int  # cost of its backward: the index of the op that made its tensor
    solo: bool = False  # measured alone (a whole-input box, or nothing to place)
    compared: tuple[bool, ...] = ()  # the axes whose measurement is compared (those with a per-unit field)

    def seen(self, spans: Sequence[Span | None]) -> list[Span | None]:
        """The measured spans on the compared axes (None on the others)."""
        return [s if c else None for s, c in zip(spans, self.compared, strict=True)] if spans else list(spans)


@dataclass
class StridePlan:
    """How one axis's stride is checked: the neighbour lies `step` units away along it (+-k), and `ends` says
    which ends of the two fields lie inside the input (only those show the shift)."""

    axis: int
    jump: Fraction
    step: int = 0
    ends: tuple[bool, bool] = (False, False)
    reason: str | None = None  # why not checkable


@dataclass
class Job:
    """One measurement of one row: its unit's field and strides ("centre"/"first"/"last"), every pixel for a
    global row ("global"), or no dependence at all for a constant one ("constant"). The neighbour is one
    unit moved along every axis whose stride is checkable (diagonally in an image)."""

    row: int
    mode: str
    cut: bool  # measured with the global paths cut (a global row's local field)
    base: Probe
    neighbour: Probe | None = None
    strides: list[StridePlan] = field(default_factory=list)
    fits: bool = True


Option = tuple[Probe, Probe | None, list[StridePlan], bool]  # base, neighbour, strides, fits


def tabled(axis: AxisField) -> bool:
    """The axis has a per-unit field that a unit index can address (on one dim or spread over pieces)."""
    return axis.packed is not None and (axis.pieces is not None or axis.dim is not None)


def _spans(info: FieldInfo, index: Sequence[int], actual: bool) -> list[Span | None]:
    spans: list[Span | None] = []
    for axis, span in zip(info.axes, info.unit(list(index), actual=actual), strict=True):
        spans.append(None if span is None or not tabled(axis) else (int(span[0]), int(span[1])))
    return spans


def _probe(row: int, info: FieldInfo, index: Sequence[int], extents: Sequence[int], depth: int) -> Probe:
    analytic = _spans(info, index, actual=True)
    box = np.array([span if span is not None else (0, n - 1) for span, n in zip(analytic, extents, strict=True)])
    has_table = [tabled(a) for a in info.axes]
    jumps = [a.jump for a, t in zip(info.axes, has_table, strict=True) if t]
    gap = max(4, 2 * math.ceil(max(jumps, default=1)))
    nothing = any(t and span is None for t, span in zip(has_table, analytic, strict=True))
    return Probe(row, "unit", tuple(index), analytic, box, gap, depth, solo=nothing, compared=tuple(has_table))


def whole(row: int, kind: str, extents: Sequence[int], depth: int, index: Sequence[int] = ()) -> Probe:
    """A probe measured alone, whose box is the whole input (a global row's coverage, a constant row)."""
    analytic: list[Span | None] = [(0, n - 1) for n in extents] if kind != "tensor" else [None] * len(extents)
    box = np.array([(0, n - 1) for n in extents])
    return Probe(row, kind, tuple(index), analytic, box, 0, depth, solo=True, compared=(True,) * len(extents))


def centre_candidates(table: np.ndarray, extent: int, limit: int = CANDIDATES) -> list[int]:
    """Units with the largest field that fit inside the input: the first and last of them, and others spread
    between, in order (packing puts the first ones in a corner), the one nearest the centre of the tensor among
    them; where none fits, the unit with the largest field nearest the centre."""
    lo, hi = table[0], table[1]
    with np.errstate(invalid="ignore"):
        sizes = np.where(np.isfinite(hi - lo), hi - lo, -np.inf)
    if not np.isfinite(sizes).any():
        return [(len(lo) - 1) // 2]
    best = np.flatnonzero(sizes == sizes.max())
    fitting = best[(lo[best] >= 0) & (hi[best] <= extent - 1)]
    pool = fitting if fitting.size else best
    nearest = int(pool[np.argmin(np.abs(pool - (len(lo) - 1) / 2))])
    if not fitting.size:  # the field covers the input: the unit whose field is the most centred
        return [nearest]
    spread = pool[np.unique(np.linspace(0, len(pool) - 1, limit - 1).round().astype(int))]
    return sorted({nearest, *(int(u) for u in spread)})


def even_period(table: np.ndarray) -> int | str:
    """The smallest k <= LONGEST_PERIOD over which the analytic field moves by the same amount everywhere along
    the axis: 1 after convolutions and pooling (every unit), 2 after a 2x upsampling (k units in from each end
    excepted, where an interpolation clamps; two periods at least); or why there is none."""
    n = table.shape[1]
    if n < 2:
        return "one unit along this axis"
    for k in range(1, min(LONGEST_PERIOD, n - 1) + 1):
        first, last = (k, n - 1 - 2 * k) if k > 1 else (0, n - 2)
        if last - first + 1 < (2 * k if k > 1 else 1):  # two whole periods at least
            continue
        steps = table[:2, first + k:last + k + 1] - table[:2, first:last + 1]
        if np.isfinite(steps).all() and (steps == steps[:, :1]).all():
            return k
    with np.errstate(invalid="ignore"):
        seen = np.unique(finite_values(table[0, 1:] - table[0, :-1]))
    shown = ", ".join(f"{v:g}" for v in seen[:4]) + (", ..." if seen.size > 4 else "")
    return (f"the field moves unevenly from unit to unit (by {shown or 'no'} px): the stride is an average "
            "(windows, a resize with align_corners, or a merge of paths with different strides)")


def _checkable(k: int | str, jump: Fraction) -> int | str:
    """k, unless a shift over k units (whole pixels) cannot equal k strides (a resize's sample spacing)."""
    if isinstance(k, str) or (jump * k).denominator == 1:
        return k
    return (f"the stride {jump} px is the spacing of the units' sample positions (an interpolation), finer than "
            f"the whole-pixel shift of their fields over {k} unit{'s' if k > 1 else ''} can show")


def finite_values(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def step_plan(table: np.ndarray, unit: int, k: int | str, extent: int) -> tuple[int, tuple[bool, bool]] | str:
    """(+-k, free ends) for checking the stride at `unit` with its neighbour k units away (the one whose field
    shares more ends with this unit's inside the input, and moves as the rest of the axis does), or why not.
    An end is free when it lies strictly inside the input for both units, where the analysis counts no padding
    (an end on the input's edge may be one clipped there)."""
    if isinstance(k, str):
        return k
    n = table.shape[1]
    typical = table[:2, min(k, n - 1 - k) + k] - table[:2, min(k, n - 1 - k)]
    options = []
    for step in (k, -k):
        other = unit + step
        if not 0 <= other < n:
            continue
        a, b = min(unit, other), max(unit, other)
        if not np.array_equal(table[:2, b] - table[:2, a], typical):
            continue
        ends = tuple(all(table[e, u] == table[4 + e, u] and (0 < table[e, u] if e == 0 else table[e, u] < extent - 1)
                         for u in (unit, other)) for e in (0, 1))
        options.append((sum(ends), step, ends))
    if not options:
        return ("at this border unit the field moves differently from the rest of the axis (an interpolation "
                "clamps there, a roll wraps)")
    free, step, ends = max(options, key=lambda o: o[0])
    if not free:
        return ("the field reaches the input's edges at both ends, which hides its shift (a larger input would "
                "show it)")
    return step, ends  # type: ignore[return-value]


def local_options(position: int, mode: str, info: FieldInfo, extents: Sequence[int], depth: int,
                  ) -> list[Option]:
    """The ways to measure the local field of a row's unit `mode` (centre, first or last): per choice of unit,
    its probe, its neighbour's, the stride plans per axis, and whether the unit's field fits the input."""
    per_axis: list[list[int]] = []
    tables = [a.per_unit if tabled(a) else None for a in info.axes]
    periods = [None if t is None else _checkable(even_period(t), a.jump)
               for t, a in zip(tables, info.axes, strict=True)]
    for table, extent in zip(tables, extents, strict=True):
        if table is None:
            per_axis.append([0])
        elif mode == "centre":
            per_axis.append(centre_candidates(table, extent))
        else:
            per_axis.append([0 if mode == "first" else table.shape[1] - 1])
    options: list[Option] = []
    for index in itertools.islice(itertools.product(*per_axis), 64):
        base = _probe(position, info, index, extents, depth)
        strides, moved = [], list(index)
        for a, (axis, table, k) in enumerate(zip(info.axes, tables, periods, strict=True)):
            if table is None or k is None:
                continue
            plan = step_plan(table, index[a], k, extents[a])
            if isinstance(plan, str):
                strides.append(StridePlan(a, axis.jump, reason=plan))
            else:
                strides.append(StridePlan(a, axis.jump, plan[0], plan[1]))
                moved[a] += plan[0]
        neighbour = _probe(position, info, moved, extents, depth) if moved != list(index) else None
        unclipped = info.unit(list(index))
        fits = all(s is None or (s[0] >= 0 and s[1] <= n - 1) for s, n in zip(unclipped, extents, strict=True))
        options.append((base, neighbour, strides, fits))
    return sorted(options, key=lambda o: sum(s.reason is not None for s in o[2]))  # checkable strides first


def depth_of(fields: FieldMap, row: FieldRow) -> int:
    producer = fields.trace.tensors[row.tensor].producer
    return producer if producer is not None else 0


# --------------------------------------------------------------------------------------------------
# packing


@dataclass
class Bin:
    """Probes measured by one backward (in the plain or the cut pass)."""

    cut: bool
    probes: list[Probe] = field(default_factory=list)
    depth: int = 0

    @property
    def solo(self) -> bool:
        return len(self.probes) == 1

    def admits(self, probe: Probe) -> bool:
        """The probe's box lies apart from every box here, by the larger of the two gaps along some axis."""
        if probe.solo or any(p.solo for p in self.probes):
            return not self.probes
        if not self.probes:
            return True
        boxes = np.stack([p.box for p in self.probes])  # (m, axes, 2)
        gaps = np.maximum(np.array([p.gap for p in self.probes]), probe.gap)[:, None]
        apart = (boxes[:, :, 0] - probe.box[None, :, 1] > gaps) | (probe.box[None, :, 0] - boxes[:, :, 1] > gaps)
        return bool(apart.any(axis=1).all())

    def region(self, probe: Probe, extents: Sequence[int]) -> tuple[slice, ...]:
        """The pixels the probe's measurement reads: the whole input when alone, else its box widened by half
        its gap (regions of one bin never overlap)."""
        if self.solo:
            return tuple(slice(0, n) for n in extents)
        half = probe.gap // 2
        return tuple(slice(max(0, lo - half), min(n, hi + half + 1))
                     for (lo, hi), n in zip(probe.box.tolist(), extents, strict=True))


def pack(jobs: Sequence[tuple[Job, list[Option]]]) -> tuple[list[Job], list[Bin]]:
    """Choose each job's unit among its options and put every probe in a backward (a Bin), largest boxes
    first: the first option whose probes all fit in existing bins, else the first option in new bins."""
    bins: list[Bin] = []

    def area(j: int) -> int:
        box = jobs[j][1][0][0].box
        return int(np.prod(box[:, 1] - box[:, 0] + 1))

    chosen: dict[int, Job] = {}
    for j in sorted(range(len(jobs)), key=lambda j: -area(j)):
        job, options = jobs[j]
        tries = [] if options[0][0].solo else [(o, False) for o in options]
        for (base, neighbour, strides, fits), fresh in [*tries, (options[0], True)]:
            if _place(bins, [base] + ([neighbour] if neighbour else []), job.cut, fresh):
                chosen[j] = Job(job.row, job.mode, job.cut, base, neighbour, strides, fits)
                break
    return [chosen[j] for j in range(len(jobs))], bins


def _place(bins: list[Bin], probes: list[Probe], cut: bool, fresh: bool) -> bool:
    """Put the probes in bins, the one adding the least backward depth first; with `fresh`, open new bins for
    those that fit nowhere; else None (and nothing placed) unless all fit."""
    done: list[tuple[Bin, Probe]] = []
    for probe in probes:
        fitting = [b for b in bins if b.cut == cut and b.admits(probe)]
        if fitting:
            target = min(fitting, key=lambda b: (max(0, probe.depth - b.depth), -b.depth))
        elif fresh:
            target = Bin(cut)
            bins.append(target)
        else:
            for b, p in done:
                b.probes.remove(p)
            return False
        target.probes.append(probe)
        done.append((target, probe))
    for b, p in done:
        b.depth = max(b.depth, p.depth)
    return True
