"""Receptive fields checked with autograd: every row's analytic field, stride and global flag against the exact
gradient support of its units, on the linear positive copy of the model (rf_linear.py; the user's model is
never touched).

What is checked, per row (`check_fields`):

- a local row: for each unit asked for (`centre`: a unit with the largest field, inside the input if one fits;
  `first`, `last`), the pixels it depends on along each image axis, and the **stride**: a neighbour k units
  away along each axis (k = 1 where the analytic field moves evenly, 2 after a 2x upsampling, ...) must
  depend on pixels shifted by k·stride, at an end of the two fields that lies inside the input. Units in
  tokens or NHWC rows (image axes spread over several dims) are found with `FieldInfo.positions`;
- a global row: one unit must depend on every pixel; and where the row also has a local field (SE blocks,
  ASPP, a residual beside attention), that local field is measured as above in a second pass in which every
  module output the analysis calls global with no per-unit field (global pooling, the gate of an SE block,
  an attention output) is detached: exactly the paths the analysis leaves out of the local field. Where
  such a path merges inside one module's functional code, no module output can be cut, and the local field
  is not checkable (said so);
- a constant row (no dependence on the input): its gradient must be zero.

Speed: probes whose analytic supports lie apart share one backward (rf_probe.py), and the copy runs in
float32. That is exact: the gradient is a sum of products of positive numbers, so nothing cancels, and the
only risk is underflow, which is checked: the smallest nonzero value of every probe's support profile must
be at least 2^-96 (2^30 above float32's smallest normal number) and the largest at most 2^96. The backward
is linear in its seed, which starts at 2^64 (unit gradients are small: this lifts them clear of float32's
slow subnormal range); when the values leave that band the backward is redone with the seed putting the
largest at 2^88, then in float64. A probe that differs from the
analysis, or reads pixels outside its box in a shared backward, is measured again alone, and a difference
found in float32 is confirmed in float64: every field found different comes from a float64 backward of that
unit alone (a stride found different, from fields that equal the analysis). A shared backward could only
mislead if a unit's true support had a piece beyond a gap of at least `Probe.gap` zero pixels, lying inside
another probe's box: the analysis's fields are intervals, and the check reads them as such.

The effective field (model's own weights) is in effective_rf.py.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from torch import nn

from inspectlab.analysis.receptive_field import FieldInfo, FieldMap, FieldRow
from inspectlab.runtime.rf_cut import cut_plan, cutting
from inspectlab.runtime.rf_linear import Linearise, linear_positive_copy
from inspectlab.runtime.rf_probe import Bin, Job, Probe, Span, depth_of, local_options, pack, tabled, whole
from inspectlab.runtime.row_outputs import row_tensor, run_with_hooks

__all__ = ["CheckRun", "EmpiricalRow", "StrideCheck", "axis_names", "check_fields", "linear_positive_copy",
           "row_verdict", "run_checks"]

TINY, HUGE = 2.0**-96, 2.0**96
SEED = 2.0**64  # a float32 backward starts from this seed: its small values stay far from the subnormals (slow)


@dataclass
class StrideCheck:
    """Along one axis: the neighbour k units away and the shift of its field, in pixels per unit."""

    axis: int
    analytic: Fraction  # the stride the analysis reports
    k: int = 0
    unit: list[int] | None = None  # the neighbour
    measured: Fraction | None = None  # measured shift / k
    neighbour_match: bool = True  # the neighbour's own field equals its analytic one
    reason: str | None = None  # why it is not checkable

    @property
    def status(self) -> str:
        if self.reason is not None:
            return "not checkable"
        return "equal" if self.neighbour_match and self.measured == self.analytic else "differs"


@dataclass
class EmpiricalRow:
    """One measurement of one row: the measured support of its unit next to the analytic one (both within the
    input), the strides, and what could not be checked (`notes`)."""

    name: str
    mode: str  # "centre" / "first" / "last": that unit's local field; "global": every pixel; "constant"
    unit: list[int | None]
    analytic: list[Span | None]
    measured: list[Span | None]
    fits: bool  # the unclipped analytic field lies inside the input
    reachable: bool = True  # False: no module call returns the tensor at run time; nothing was measured
    strides: list[StrideCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dtype: str = "float32"  # of the backward that gave the result

    @property
    def match(self) -> bool:
        return (self.reachable and self.analytic == self.measured
                and all(s.status != "differs" for s in self.strides))

    @property
    def size(self) -> list[int | None]:
        return [None if span is None else span[1] - span[0] + 1 for span in self.measured]


@dataclass
class CheckRun:
    """Every measurement, and what they cost."""

    rows: list[EmpiricalRow]
    forwards: int = 0
    backwards: int = 0
    float64_backwards: int = 0


def check_fields(model: nn.Module, fields: FieldMap, rows: Sequence[FieldRow], inputs_shape: Sequence[int],
                 device: str = "cpu", units: Sequence[str] = ("centre",)) -> list[EmpiricalRow]:
    """The measurements of `run_checks`: one per row and unit of `units` (any of "centre", "first", "last"),
    plus "global" for a global row and "constant" for a row that does not depend on the input. A row whose
    field is unknown has nothing to compare and no entry (`row_verdict` says so)."""
    return run_checks(model, fields, rows, inputs_shape, device, units).rows


def run_checks(model: nn.Module, fields: FieldMap, rows: Sequence[FieldRow], inputs_shape: Sequence[int],
               device: str = "cpu", units: Sequence[str] = ("centre",),
               before_float64: Callable[[], None] | None = None) -> CheckRun:
    """Measure every row with a known field on the linear positive copy of `model` (module docstring).
    `before_float64` is called before a float64 copy is made (a memory check that may refuse)."""
    extents = fields.input_size
    cuts, dirty = cut_plan(fields)
    planned: list[tuple[Job, list[Any]]] = []
    notes: dict[int, list[str]] = {}
    first: dict[tuple[int, int], int] = {}  # (tensor, field) -> the row measuring it (a Sequential, its last child)
    for position, row in enumerate(rows):
        info, depth = row.field, depth_of(fields, row)
        if info.unknown or first.setdefault((row.tensor, id(info)), position) != position:
            continue
        if info.constant:
            probe = whole(position, "tensor", extents, depth)
            planned.append((Job(position, "constant", False, probe), [(probe, None, [], True)]))
            continue
        has_table = any(tabled(a) for a in info.axes)
        if info.is_global and not has_table and any(a.summary().size is not None for a in info.axes):
            notes[position] = ["the local field shown beside the global flag is a summary with no per-unit field "
                               "(measured on the rows before it)"]
        if has_table and info.is_global and row.tensor in dirty:
            notes[position] = ["local field not checkable: a global path merges into it inside a module's own "
                               "code, where no module output can be cut"]
        elif has_table:
            for mode in units:
                options = local_options(position, mode, info, extents, depth)
                planned.append((Job(position, mode, info.is_global, options[0][0]), options))
        if info.is_global:
            index = local_options(position, "centre", info, extents, depth)[0][0].index if has_table else ()
            probe = whole(position, "unit" if has_table else "element", extents, depth, index)
            planned.append((Job(position, "global", False, probe), [(probe, None, [], True)]))
    jobs, bins = pack(planned)
    run = CheckRun([])
    results = _Measurements(model, fields, rows, inputs_shape, device, cuts, run, before_float64)
    results.measure(bins)
    entries: dict[int, list[EmpiricalRow]] = {}
    for job in jobs:
        entry = _entry(rows[job.row], job, results)
        if job.mode == "global":
            entry.notes.extend(notes.get(job.row, []))
        entries.setdefault(job.row, []).append(entry)
    for row in rows:  # rows of the same tensor share its measurements
        for entry in entries.get(first.get((row.tensor, id(row.field)), -1), []):
            run.rows.append(dataclasses.replace(entry, name=row.name, notes=list(entry.notes)))
    return run


def row_verdict(row: FieldRow, checks: Sequence[EmpiricalRow]) -> tuple[str, list[str]]:
    """A row's verdict, "equal", "differs" or "not checkable", and what was not checked (with the reasons)."""
    if row.field.unknown:
        return "not checkable", [f"the analysis gives no field: {row.field.unknown}"]
    notes = list(dict.fromkeys(n for c in checks for n in c.notes))
    measured = [c for c in checks if c.reachable]
    if any(not c.match for c in measured):
        return "differs", notes
    if not checks:
        return "not checkable", ["no axis keeps a per-unit field to measure, and it is not global"]
    if not measured:
        return "not checkable", notes
    return "equal", notes


def axis_names(count: int) -> list[str]:
    """The image axes' names: L; H, W; D, H, W."""
    return {1: ["L"], 2: ["H", "W"], 3: ["D", "H", "W"]}.get(count, [f"axis {a}" for a in range(count)])


# --------------------------------------------------------------------------------------------------
# measuring


@dataclass
class _Result:
    spans: list[Span | None]
    reachable: bool = True
    dtype: str = "float32"
    negative: bool = False


class _Measurements:
    """Runs the passes (plain, cut; float32, and float64 where needed) and keeps each probe's result."""

    def __init__(self, model: nn.Module, fields: FieldMap, rows: Sequence[FieldRow], shape: Sequence[int],
                 device: str, cuts: dict[tuple[str, int], set[int]], run: CheckRun,
                 before_float64: Callable[[], None] | None = None) -> None:
        self.model, self.fields, self.rows, self.shape, self.device = model, fields, rows, tuple(shape), device
        self.cuts, self.run, self.before_float64 = cuts, run, before_float64
        self.extents = fields.input_size
        self.results: dict[Probe, _Result] = {}
        self.copies: dict[torch.dtype, nn.Module] = {}

    def __getitem__(self, probe: Probe) -> _Result:
        return self.results[probe]

    def measure(self, bins: list[Bin]) -> None:
        """The plain pass, then the cut one, in float32; then, with the float32 copy released, the probes that
        need it in float64, one by one."""
        later = {cut: self._pass(todo, cut, torch.float32) for cut in (False, True)
                 if (todo := [b for b in bins if b.cut == cut])}
        self.copies.pop(torch.float32, None)
        for cut, probes in later.items():
            if probes:
                self._pass([Bin(cut, [p], p.depth) for p in probes], cut, torch.float64)

    def _pass(self, bins: list[Bin], cut: bool, dtype: torch.dtype) -> list[Probe]:
        """One forward, then each bin's backward; returns the probes to measure again in float64."""
        if dtype not in self.copies:
            if dtype == torch.float64 and self.before_float64 is not None:
                self.before_float64()
            self.copies[dtype] = linear_positive_copy(self.model, self.device, dtype)
        x = torch.ones(self.shape, dtype=dtype, device=self.device, requires_grad=True)
        later: list[Probe] = []
        with torch.enable_grad(), cutting(self.copies[dtype], self.cuts if cut else {}):
            outputs = run_with_hooks(self.copies[dtype], [x], Linearise())
        self.run.forwards += 1
        tensors: dict[int, torch.Tensor | None] = {}
        for row in {p.row for b in bins for p in b.probes}:
            tensor = row_tensor(outputs, self.fields, self.rows[row])
            tensors[row] = tensor if tensor is not None and list(tensor.shape) == self.rows[row].shape else None
        queue = list(bins)
        while queue:
            current = queue.pop(0)
            live = [p for p in current.probes if tensors[p.row] is not None]
            for p in current.probes:
                if tensors[p.row] is None:
                    self.results[p] = _Result([], reachable=False)
            if not live:
                continue
            found = self._backward(current, live, tensors, x, dtype)
            for probe, (result, trusted, suspicious) in found.items():
                wrong = probe.seen(result.spans) != probe.analytic
                # a path to the input with a zero gradient: exact in float64 only (float32 may have underflowed)
                zero = probe.kind == "tensor" and bool(tensors[probe.row].requires_grad)  # type: ignore[union-attr]
                if (suspicious or wrong) and not current.solo:
                    queue.append(Bin(cut, [probe], probe.depth))  # measure it alone
                elif dtype == torch.float32 and (wrong or not trusted or zero):
                    later.append(probe)
                    self.results[probe] = result
                else:
                    self.results[probe] = result
        del outputs
        return later

    def _backward(self, current: Bin, probes: list[Probe], tensors: dict[int, torch.Tensor | None],
                  x: torch.Tensor, dtype: torch.dtype) -> dict[Probe, tuple[_Result, bool, bool]]:
        """The probes' supports from one backward of the sum of their units (redone with a scaled seed when the
        float32 values leave [2^-96, 2^96]): per probe its result, whether its values are trusted, and whether
        it read pixels at the edge of its region or outside every region (then measured alone)."""
        objective = sum((_value(tensors[p.row], self.fields, self.rows[p.row].field, p) for p in probes),
                        start=torch.zeros((), dtype=dtype, device=x.device))
        scale = SEED if dtype == torch.float32 else 1.0
        for attempt in range(2):
            grad = None
            if objective.requires_grad:
                self.run.backwards += 1
                self.run.float64_backwards += dtype == torch.float64
                grad = torch.autograd.grad(objective * scale, x, retain_graph=True, allow_unused=True)[0]
            magnitude, negative = _profile(grad, x, self.fields.spatial_dims)
            found = {p: _read(magnitude, current, p, self.extents) for p in probes}
            lows = [low for _, low, _ in found.values() if low is not None]
            peak = float(magnitude.max()) if magnitude.size else 0.0
            finite = bool(np.isfinite(magnitude).all())
            trusted = dtype == torch.float64 or (finite and (not lows or min(lows) >= TINY) and peak <= HUGE)
            if trusted or attempt or not finite or peak == 0:
                break
            scale = 2.0 ** min(100, 88 - math.ceil(math.log2(peak)))  # the largest value near 2^88
        outside = _outside(magnitude, current, probes, self.extents)
        label = "float64" if dtype == torch.float64 else "float32"
        return {p: (_Result(spans, True, label, negative), trusted, touch or outside)
                for p, (spans, _, touch) in found.items()}


def _value(tensor: torch.Tensor | None, fields: FieldMap, info: FieldInfo, probe: Probe) -> torch.Tensor:
    """The sum of the probe's unit of `tensor` (all its elements at that position), its first element, or all
    of it."""
    assert tensor is not None
    if probe.kind == "tensor":
        return tensor.sum()
    if probe.kind == "element":
        return tensor.reshape(-1)[0]
    selected = tensor
    for dim, indices in info.positions(list(probe.index), tensor.shape).items():
        selected = selected.index_select(dim, torch.as_tensor(indices, device=tensor.device))
    return selected.sum()


def _profile(grad: torch.Tensor | None, x: torch.Tensor, spatial: Sequence[int]) -> tuple[np.ndarray, bool]:
    """|gradient|, its largest over the non-image dims (an array over the image axes), and whether any entry
    is negative (the copy is then not positive: cancellation could hide pixels)."""
    if grad is None:
        return np.zeros([x.shape[d] for d in spatial]), False
    others = [d for d in range(grad.dim()) if d not in spatial]
    magnitude = grad.abs().amax(dim=others) if others else grad.abs()
    return magnitude.double().cpu().numpy(), bool((grad < 0).any())


def _read(magnitude: np.ndarray, current: Bin, probe: Probe, extents: Sequence[int],
          ) -> tuple[list[Span | None], float | None, bool]:
    """Within the probe's region: per axis the first and last pixel with a nonzero gradient, the smallest
    nonzero value of those profiles, and whether the support touches the region's edge inside the input."""
    region = current.region(probe, extents)
    part = magnitude[region]
    spans: list[Span | None] = []
    low: float | None = None
    touch = False
    for a, where in enumerate(region):
        others = tuple(d for d in range(part.ndim) if d != a)
        line = part.max(axis=others) if others and part.size else part
        hits = np.flatnonzero(line > 0)
        if not hits.size:
            spans.append(None)
            continue
        lo, hi = where.start + int(hits[0]), where.start + int(hits[-1])
        spans.append((lo, hi))
        smallest = float(line[hits].min())
        low = smallest if low is None else min(low, smallest)
        touch |= (lo == where.start and where.start > 0) or (hi == where.stop - 1 and where.stop < extents[a])
    return spans, low, touch and not current.solo


def _outside(magnitude: np.ndarray, current: Bin, probes: list[Probe], extents: Sequence[int]) -> bool:
    """A nonzero gradient outside every probe's region (a shared backward can then not tell whose it is)."""
    if current.solo:
        return False
    mask = np.zeros(magnitude.shape, dtype=bool)
    for probe in probes:
        mask[current.region(probe, extents)] = True
    return bool((magnitude[~mask] > 0).any())


def _entry(row: FieldRow, job: Job, results: _Measurements) -> EmpiricalRow:
    """The measurement of one job, as the row it reports."""
    base = results[job.base]
    unit: list[int | None] = [u if tabled(a) else None for u, a in zip(job.base.index or (0,) * len(row.field.axes),
                                                                       row.field.axes, strict=True)]
    if job.mode == "global" and job.base.kind == "element":
        unit = [None] * len(row.field.axes)
    if not base.reachable:
        return EmpiricalRow(row.name, job.mode, unit, [], [], job.fits, reachable=False,
                            notes=["no module call returns its tensor at run time (functional code in the parent's "
                                   "forward)"])
    measured = job.base.seen(base.spans)  # an axis with no per-unit field has nothing to compare
    strides = [_stride(job, plan, results) for plan in job.strides]
    names = axis_names(len(row.field.axes))
    reasons: dict[str, list[str]] = {}
    for s in strides:
        if s.reason:
            reasons.setdefault(s.reason, []).append(names[s.axis])
    notes = [f"stride along {' and '.join(axes)} not checkable: {reason}" for reason, axes in reasons.items()]
    if job.mode not in ("global", "constant") and any(not tabled(a) for a in row.field.axes):
        notes.append("an axis without a per-unit field (folded) is not compared")
    probes = [job.base] + ([job.neighbour] if job.neighbour else [])
    if any(results[p].negative for p in probes):
        notes.append("the linear copy is not positive here (a negative gradient: a subtraction such as x - "
                     "x.mean()), so cancellation could hide pixels")
    dtypes = {results[p].dtype for p in probes}
    return EmpiricalRow(row.name, job.mode, unit, job.base.analytic, measured, job.fits, strides=strides,
                        notes=notes, dtype="float64" if "float64" in dtypes else "float32")


def _stride(job: Job, plan: Any, results: _Measurements) -> StrideCheck:
    """The shift of the neighbour's field along the plan's axis, per unit moved."""
    check = StrideCheck(plan.axis, plan.jump, abs(plan.step), reason=plan.reason)
    if plan.reason is not None or job.neighbour is None:
        return check
    check.unit = list(job.neighbour.index)
    got = results[job.neighbour]
    if not got.reachable:
        check.reason = "no module call returns its tensor at run time"
        return check
    check.neighbour_match = job.neighbour.seen(got.spans) == job.neighbour.analytic
    here, there = results[job.base].spans[plan.axis], got.spans[plan.axis]
    if here is None or there is None:
        return check
    shifts = {Fraction(there[e] - here[e], plan.step) for e in (0, 1) if plan.ends[e]}
    # two ends that moved by different amounts: report the one farther from the stride
    check.measured = max(shifts, key=lambda f: abs(f - plan.jump))
    return check
