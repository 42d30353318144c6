"""Receptive fields: the analytic table from the Trace, its autograd check on a linear positive copy, and
the effective field of one output drawn as a heatmap."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from inspectlab.analysis.memory import estimate_memory
from inspectlab.analysis.receptive_field import (
    FieldMap,
    FieldRow,
    RfRow,
    field_report,
    field_rows,
    plain_number,
    receptive_fields,
)
from inspectlab.analysis.report import Report
from inspectlab.analysis.summary import input_details
from inspectlab.core.display import Displayable
from inspectlab.core.errors import InspectlabError
from inspectlab.core.io import check_writable
from inspectlab.core.shapes import InputSize, shape_text
from inspectlab.render.erf_plot import erf_png
from inspectlab.runtime.effective_rf import effective_field
from inspectlab.runtime.empirical_rf import CheckRun, EmpiricalRow, row_verdict, run_checks
from inspectlab.runtime.memory import check_fits
from inspectlab.workflows.files import write_files
from inspectlab.workflows.guard import hands_off
from inspectlab.workflows.models import ModelOrSpec, model_name, resolve
from inspectlab.workflows.trace import trace

if TYPE_CHECKING:
    from inspectlab.tracing.records import Trace

UNITS = ("centre", "first", "last")


@dataclass
class FieldCheck:
    """What the empirical check found, per row of the table: `equal` (everything measured equals the
    analysis), `differ`, `unmeasurable` (not checkable: `reasons` says why, reason -> rows), and on equal rows
    what was not checked (`unchecked`: note -> rows, e.g. a stride where the field reaches the input's edges);
    `measured` = equal + differ. What it cost: forwards and backwards (float64 among them), seconds (in the
    JSON document, not in the lines, which stay the same from run to run)."""

    measured: int
    differ: int
    unmeasurable: int
    equal: int = 0
    strides_checked: int = 0  # rows with at least one stride measured
    reasons: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    unchecked: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    forwards: int = 0
    backwards: int = 0
    float64_backwards: int = 0
    seconds: float = 0.0

    def summary_lines(self) -> list[str]:
        """The lines under the table: the counts, then why each row not checkable is not, then what equal rows
        left unchecked (a few row names each)."""
        cost = (f"{self.backwards} backward{'s' if self.backwards != 1 else ''} after {self.forwards} "
                f"forward{'s' if self.forwards != 1 else ''}"
                + (f", {self.float64_backwards} in float64" if self.float64_backwards else ", float32"))
        lines = [f"Empirical check (autograd on a linear positive copy): {self.equal} rows equal, {self.differ} "
                 f"differ, {self.unmeasurable} not checkable; strides measured on {self.strides_checked} rows "
                 f"({cost})"]
        lines += [f"Not checkable: {_names(rows)}: {reason}" for reason, rows in self.reasons.items()]
        lines += [f"Not checked: {_names(rows)}: {note}" for note, rows in self.unchecked.items()]
        return lines


def _names(rows: list[str], shown: int = 4) -> str:
    more = len(rows) - shown
    return ", ".join(rows[:shown]) + (f" and {more} more" if more > 0 else "")


@dataclass
class EffectiveFieldResult:
    """The effective field of one module output's unit, and the heatmap written."""

    layer: str
    unit: list[int]
    samples: int
    radius50: float
    radius90: float
    center: list[float]
    analytic_rf: list[Any]
    path: str


@dataclass
class FieldResult(Displayable):
    """The rf command's result: the table (with checks attached to its rows), and what was measured."""

    report: Report[RfRow]
    input_shape: tuple[int, ...]
    check: FieldCheck | None = None
    effective: EffectiveFieldResult | None = None


def receptive_field(model_or_spec: ModelOrSpec, input_size: InputSize | None = None, *,
                    args: Mapping[str, Any] | None = None, depth: int | None = None, layers: str | None = None,
                    input_data: Any = None, weights: str | None = None,
                    strict: bool = True) -> Report[RfRow]:
    """One row per module output with rf, rf_min (shortest path), stride, padding and the global flag."""
    recorded = _image_trace(trace(model_or_spec, input_size, input_data=input_data, args=args, weights=weights,
                                  strict=strict))
    return _with_inputs(field_report(receptive_fields(recorded), model_name(model_or_spec), depth, layers), recorded)


def rf(model_or_spec: ModelOrSpec, input_size: InputSize | None = None, *, args: Mapping[str, Any] | None = None,
       depth: int | None = 2, layers: str | None = None, empirical: bool = False, units: Sequence[str] = ("centre",),
       erf: str | None = None, erf_layer: str | None = None, samples: int = 16, weights: str | None = None,
       seed: int = 0, device: str = "cpu", force: bool = False, strict: bool = True,
       input_data: Any = None) -> FieldResult:
    """The receptive-field table, checked against autograd (`empirical`) and with the effective field of
    `erf_layer` written as a PNG to `erf`. A spec is built for the real runs under a forked RNG seeded with
    `seed` (the process's RNG is left as it was). `input_data`: the inputs themselves (the fields are of the
    first one's image axes)."""
    if not units or any(u not in UNITS for u in units):
        raise InspectlabError(f"--units takes a comma-separated subset of {', '.join(UNITS)}, got {','.join(units)!r}")
    if samples < 1:
        raise InspectlabError("--samples must be at least 1")
    if erf is not None:
        check_writable(erf, force)  # before any work
    recorded = _image_trace(trace(model_or_spec, input_size, input_data=input_data, args=args, weights=weights,
                                  strict=strict))
    fields = receptive_fields(recorded)
    rows = field_rows(fields, depth, layers)
    if layers and not rows:
        raise InspectlabError(f"no module matches --layers {layers!r} at depth ≤ {depth}")
    report = _with_inputs(field_report(fields, model_name(model_or_spec), depth, layers), recorded)
    result = FieldResult(report, tuple(recorded.tensors[fields.input_id].shape))
    if not (empirical or erf):
        return result
    what = f"the autograd runs of {model_name(model_or_spec)}"
    if not force:
        check_fits(_autograd_peak(recorded, empirical, erf is not None), torch.device(device), what)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = resolve(model_or_spec, args, "cpu", weights, strict).module
    with hands_off(network, real=True, owned=isinstance(model_or_spec, str)):
        if empirical:
            started = time.perf_counter()
            fallback = _autograd_peak(recorded, empirical, False, float64=True)
            run = run_checks(network, fields, rows, result.input_shape, device, list(units), before_float64=None if
                             force else lambda: check_fits(fallback, torch.device(device), f"{what} in float64"))
            report.layers, result.check = _attach_checks(report.layers, rows, run)
            result.check.seconds = time.perf_counter() - started
        if erf is not None:
            result.effective = _effective_field(network, fields, erf_layer, result.input_shape, samples, seed,
                                                device, weights, erf, force, model_name(model_or_spec))
    return result


def _image_trace(recorded: Trace) -> Trace:
    """The Trace, if its first input is an image (floating values); token ids or a mask get one line."""
    if recorded.inputs:
        first = recorded.tensors[recorded.inputs[0]]
        if first.dtype not in ("float32", "float16", "bfloat16", "float64"):
            what = f"{first.name}=" if first.name else ""
            raise InspectlabError(f"rf measures fields in pixels of an image input, and the first input is "
                                  f"{what}{shape_text(first.shape)}:{first.dtype} (token ids or a mask?): give an "
                                  f"image input such as --input 1,3,224,224")
    return recorded


def _with_inputs(report: Report[RfRow], recorded: Trace) -> Report[RfRow]:
    """The report with the names and dtypes of its inputs, where they are more than shapes."""
    details = input_details(recorded)
    if details is not None:
        report.extra["input_details"] = details
    return report


def _autograd_peak(recorded: Trace, empirical: bool, erf: bool, float64: bool = False) -> int:
    """The most the real runs hold besides the model: a copy of it, and every activation of its forward kept for
    the backward plus as much again for the backward's own tensors; float32 (the empirical check: one input),
    float64 for the check's fallback (8 bytes an element where the float32 trace counts 4), a batch of 4 inputs
    for the effective field (its chunk)."""
    memory = estimate_memory(recorded)
    state, activations = memory.param_bytes + memory.buffer_bytes, memory.activation_bytes
    if float64:
        return 2 * (state + 2 * activations)
    return state + max(2 * activations if empirical else 0, 8 * activations if erf else 0)


def _attach_checks(table: list[Any], rows: list[FieldRow], run: CheckRun) -> tuple[list[Any], FieldCheck]:
    """Each table row with its verdict and measurements (`empirical`; for the table `measured`, `check`), and
    the counts."""
    by_name: dict[str, list[EmpiricalRow]] = {}
    for entry in run.rows:
        by_name.setdefault(entry.name, []).append(entry)
    summary = FieldCheck(0, 0, 0, forwards=run.forwards, backwards=run.backwards,
                         float64_backwards=run.float64_backwards)
    checked = []
    for line, row in zip(table, rows, strict=True):
        entries = by_name.get(row.name, [])
        status, notes = row_verdict(row, entries)
        if status == "not checkable":
            summary.unmeasurable += 1
            for note in notes:
                summary.reasons.setdefault(note, []).append(row.name)
        else:
            summary.equal += status == "equal"
            summary.differ += status == "differs"
            if status == "equal":
                for note in notes:
                    summary.unchecked.setdefault(note, []).append(row.name)
        summary.strides_checked += any(s.reason is None for e in entries for s in e.strides)
        checked.append(dataclasses.replace(
            line,
            empirical={"status": status, "notes": notes, "units": [_entry_document(e) for e in entries]},
            measured=_measured_text(entries),
            check={"equal": "✓", "differs": "✗"}.get(status, "–"),
        ))
    summary.measured = summary.equal + summary.differ
    return checked, summary


def _entry_document(entry: EmpiricalRow) -> dict[str, Any]:
    return {"unit": entry.mode, "index": entry.unit, "analytic": entry.analytic, "measured": entry.measured,
            "fits": entry.fits, "match": entry.match, "dtype": entry.dtype,
            "strides": [{"axis": s.axis, "k": s.k, "unit": s.unit, "analytic": plain_number(s.analytic),
                         "measured": plain_number(s.measured), "status": s.status,
                         **({"reason": s.reason} if s.reason else {})} for s in entry.strides]}


def _measured_text(entries: list[EmpiricalRow]) -> str:
    """What the table's `measured` column shows: each unit's field and strides ("?" where not checkable),
    "all" for a global row (every pixel), "none" for a constant one."""
    parts = []
    for entry in entries:
        if not entry.reachable:
            continue
        if entry.mode == "global":
            parts.append("all" if entry.match else "not all")
        elif entry.mode == "constant":
            parts.append("none" if entry.match else "some")
        else:
            strides = {s.axis: s.measured for s in entry.strides if s.reason is None}
            stride = "×".join(_fraction(strides.get(a)) for a in range(len(entry.measured)))
            parts.append(f"{shape_text(entry.size)} / {stride}")
    return "; ".join(dict.fromkeys(parts))


def _fraction(value: Any) -> str:
    return "?" if value is None else str(value)


def _effective_field(network: torch.nn.Module, fields: FieldMap, layer: str | None, shape: tuple[int, ...],
                     samples: int, seed: int, device: str, weights: str | None, path: str, force: bool,
                     model: str) -> EffectiveFieldResult:
    row = _erf_row(field_rows(fields), layer, model)
    measured = effective_field(network, fields, row, shape, samples, seed, device)
    title = (f"{model} · {row.name} unit ({measured.unit[0]}, {measured.unit[1]}) · ERF over {samples} random "
             f"inputs ({'loaded' if weights else 'random-init'} weights)")
    png = erf_png(measured.heat, measured.center, measured.box, measured.radius50, measured.radius90, title)
    write_files([(path, png)], force)
    return EffectiveFieldResult(
        layer=row.name, unit=list(measured.unit), samples=samples, radius50=measured.radius50,
        radius90=measured.radius90, center=list(measured.center), analytic_rf=list(row.field.size or ()),
        path=path)


def _erf_row(candidates: list[FieldRow], layer: str | None, model: str) -> FieldRow:
    """The row --erf-layer names, else the last module output that keeps a per-position field on both axes."""
    if layer is not None:
        named = [r for r in candidates if r.name == layer]
        if not named:
            raise InspectlabError(f"--erf-layer {layer!r} is not a module output of {model}")
        return named[0]
    spatial = [r for r in candidates if sum(a.table is not None for a in r.field.axes) == 2]
    if not spatial:
        raise InspectlabError("--erf: no module output keeps a per-position field")
    return max(spatial, key=lambda r: r.tensor)
