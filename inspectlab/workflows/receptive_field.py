"""Receptive fields: the analytic table from the Trace, its autograd check on a linear positive copy, and
the effective field of one output drawn as a heatmap."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from inspectlab.analysis.memory import estimate_memory
from inspectlab.analysis.receptive_field import FieldMap, FieldRow, RfRow, field_report, field_rows, receptive_fields
from inspectlab.analysis.report import Report
from inspectlab.analysis.summary import input_details
from inspectlab.core.errors import InspectlabError
from inspectlab.core.io import check_writable
from inspectlab.core.shapes import InputSize, shape_text
from inspectlab.render.erf_plot import erf_png
from inspectlab.runtime.effective_rf import effective_field
from inspectlab.runtime.empirical_rf import EmpiricalRow, check_fields
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
    """What the empirical check found: fields measured, how many differ, rows it could not measure."""

    measured: int
    differ: int
    unmeasurable: int


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
class FieldResult:
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
    check_fits(_autograd_peak(recorded), torch.device(device), f"the autograd runs of {model_name(model_or_spec)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = resolve(model_or_spec, args, "cpu", weights, strict).module
    with hands_off(network, real=True, owned=isinstance(model_or_spec, str)):
        if empirical:
            checks = check_fields(network, fields, rows, result.input_shape, device, list(units))
            report.layers, result.check = _attach_checks(report.layers, checks)
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


def _autograd_peak(recorded: Trace) -> int:
    """The most the checks hold: a float64 copy of the model (8 bytes an element where the float32 trace
    counts 4) with every activation of its forward kept for the backward, for a batch of up to 4 inputs (the
    ERF's chunk)."""
    memory = estimate_memory(recorded)
    return 2 * (memory.param_bytes + memory.buffer_bytes + 4 * memory.activation_bytes)


def _attach_checks(rows: list[Any], checks: list[EmpiricalRow]) -> tuple[list[Any], FieldCheck]:
    """Each row with its measurements (`empirical`, and for the table `measured`, `check`)."""
    by_name: dict[str, list[EmpiricalRow]] = {}
    for check in checks:
        by_name.setdefault(check.name, []).append(check)
    checked, differ = [], 0
    for row in rows:
        found = [c for c in by_name.get(row["name"], []) if c.reachable]
        differ += sum(not c.match for c in found)
        checked.append(dataclasses.replace(
            row,
            empirical=[{"unit": c.mode, "index": c.unit, "analytic": c.analytic, "measured": c.measured,
                        "fits": c.fits, "match": c.match} for c in found],
            measured=" / ".join("all" if c.mode == "global" else shape_text(c.size) for c in found),
            check=("✓" if all(c.match for c in found) else "✗") if found else "",
        ))
    measured = sum(c.reachable for c in checks)
    unmeasurable = len({c.name for c in checks if not c.reachable})
    return checked, FieldCheck(measured, differ, unmeasurable)


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
