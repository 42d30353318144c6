"""compare and sweep: one row per model (or per input size). Each model is traced once on the meta device:
its summary totals, its FLOPs under a counting convention and the receptive field of its final feature map
come from that one Trace; latency, when asked, is a timed run (`inspectlab.workflows.latency`). A model or
size that fails gets a row with its error, and the others still run.

Model specs may carry builder arguments: `deeplabv3plus_resnet50:output_stride=16,num_classes=19`
(`inspectlab.core.arguments.parse_model`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from inspectlab.analysis.compare import (
    COMPARE_KEYS,
    FITTED_KEYS,
    INT_KEYS,
    SWEEP_KEYS,
    final_field,
    fit_exponent,
    output_pixels,
    sized,
)
from inspectlab.analysis.conventions import convention_total
from inspectlab.analysis.flops import count_flops
from inspectlab.analysis.stages import integral_keys, wide_columns, wide_keys
from inspectlab.analysis.summary import summarize
from inspectlab.core.arguments import ModelChoice, as_choice
from inspectlab.core.conventions import convention_key
from inspectlab.core.errors import InspectlabError, describe_error
from inspectlab.core.shapes import InputSpec, Shape, as_specs, simplest
from inspectlab.render.frames import to_frame
from inspectlab.tracing.train_step import OPTIMIZERS
from inspectlab.workflows.latency import latency
from inspectlab.workflows.memory import memory
from inspectlab.workflows.models import input_specs
from inspectlab.workflows.stages import stages_of
from inspectlab.workflows.trace import trace

if TYPE_CHECKING:
    import pandas as pd

Progress = Callable[[str, float], None]  # (what is running, fraction done in [0, 1])


def static_columns(choice: ModelChoice, shapes: Sequence[Shape] | None, convention: str = "inspectlab",
                   with_field: bool = True, stages: bool = False) -> dict[str, Any]:
    """Totals of api.summary, the convention's total, the final feature map's field and the ratios; `stages`:
    the feature pyramid's columns per stride (`analysis.stages.wide_columns`), from the same trace."""
    recorded = trace(choice.model, list(shapes) if shapes else None, args=choice.args, weights=choice.weights)
    count = count_flops(recorded)
    totals = summarize(recorded, choice.label, depth=0, count=count).totals
    row: dict[str, Any] = {key: totals[key] for key in (
        "params", "trainable_params", "macs", "flops", "other_flops", "param_bytes", "activation_bytes", "peak_bytes")}
    row["input"] = [list(s) for s in recorded.shapes(recorded.inputs)]
    root = next(call for call in recorded.calls if call.parent is None)
    output = list(recorded.tensors[root.outputs[0]].shape) if root.outputs else None
    row["output_shape"] = output
    if convention != "inspectlab":
        row[convention_key(convention)] = convention_total(count, convention)
    if with_field:
        row.update(final_field(recorded))
    row["macs_per_param"] = row["macs"] / row["params"] if row["params"] else None
    row["macs_per_output_pixel"] = row["macs"] / output_pixels(output) if output is not None else None
    notes = [n for n in (row.get("notes"), *recorded.notes) if n]
    if stages:
        try:
            row.update(wide_columns(stages_of(recorded, choice.model, choice.args, choice.label, count).layers))
        except InspectlabError as exc:  # the row keeps its other columns and says why it has no stages
            notes.append(f"stages: {exc}")
    row["notes"] = "; ".join(notes) or None
    return row


def latency_columns(choice: ModelChoice, shapes: Sequence[Shape], timing: Mapping[str, Any],
                    progress: Progress | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """p50/p90 of a timed run, and the run's conditions."""
    report = latency(choice.model, list(shapes) if shapes else None, args=choice.args, progress=progress,
                     weights=choice.weights, **timing)
    stats = report.results[0].stats
    conditions = asdict(report.conditions)
    conditions.pop("model", None)
    conditions.update(cpu_load())
    return {"latency_p50_ms": stats.p50_ms, "latency_p90_ms": stats.p90_ms}, conditions


def cpu_load() -> dict[str, Any]:
    """The 1-minute load average and the CPU count (empty where the system has no load average): a load
    well above the CPU count while timing means other processes competed with the timed runs."""
    try:
        return {"load_average": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
    except (AttributeError, OSError):
        return {}


# rows, frames, progress ----------------------------------------------------------------------------------------
def _measured_row(row: dict[str, Any], choice: ModelChoice, shapes: Sequence[Shape] | None, convention: str,
                  timing: Mapping[str, Any] | None, with_field: bool, context: dict[str, Any],
                  progress: Progress | None, stages: bool = False) -> dict[str, Any]:
    """Fill a row in place; a failure ends it with its error (static part first, then latency). A user's
    code that raises a BaseException (sys.exit, ...) fails its row only; a Ctrl-C, and a subclass of
    SystemExit (SIGTERM's `Terminated`), still end the run."""
    def own(exc: BaseException) -> bool:  # ours to end the run with
        return isinstance(exc, KeyboardInterrupt) or (isinstance(exc, SystemExit) and type(exc) is not SystemExit)

    try:
        row.update(static_columns(choice, shapes, convention, with_field, stages))
    except BaseException as exc:  # the row says what failed; the other rows go on
        if own(exc):
            raise
        row["error"] = describe_error(exc)
        return row
    if timing is not None:
        try:
            measured, conditions = latency_columns(choice, shapes, timing, progress)  # None: the model's own
            row.update(measured)
            context.setdefault("latency", conditions)
            if conditions.get("load_average", 0) > context["latency"].get("load_average", 0):
                context["latency"]["load_average"] = conditions["load_average"]  # the highest seen
        except BaseException as exc:
            if own(exc):
                raise
            row["error"] = "latency: " + describe_error(exc)
    return row


def _stepper(progress: Progress | None, total: int) -> Callable[[int, str], Progress | None]:
    """For step k of `total`, a callback mapping that step's own fraction into the overall one."""

    def step(index: int, label: str) -> Progress | None:
        if progress is None:
            return None
        progress(label, index / total)
        return lambda what, fraction: progress(f"{label}: {what}", (index + min(max(fraction, 0.0), 1.0)) / total)

    return step


# compare ------------------------------------------------------------------------------------------------------
def compare_models(models: Sequence[Any], input_size: Shape | Sequence[Shape] | None = None, *,
                   convention: str = "inspectlab", timing: Mapping[str, Any] | None = None,
                   progress: Progress | None = None, weights: Mapping[str, str] | None = None,
                   stages: bool = False, train_optimizer: str | None = None) -> pd.DataFrame:
    """One row per model (COMPARE_KEYS, plus `<convention>_<unit>` for another convention). `weights`: a
    state_dict file per model, by its label (as written) or its spec.

    `timing`: None for no latency, else the options of `measure` (device, warmup, iters, min_time, ...).
    `train_optimizer`: also the peak of one training step with that optimizer at this batch (`train_peak_bytes`,
    from `workflows.memory`, meta traces only).
    `attrs`: kind, input, convention, latency conditions (of the first timed model).
    """
    if not models:
        raise InspectlabError("compare needs at least one model")
    if convention != "inspectlab":
        convention_key(convention)  # validates
    if train_optimizer is not None and train_optimizer not in OPTIMIZERS:
        raise InspectlabError(f"unknown optimizer {train_optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
    shapes = _shapes(input_size)
    choices = [_with_weights(as_choice(m), weights or {}) for m in models]
    unknown = set(weights or {}) - {c.label for c in choices} - {c.model for c in choices if isinstance(c.model, str)}
    if unknown:
        raise InspectlabError(f"--weights names no model of this comparison: {', '.join(sorted(unknown))}")
    context: dict[str, Any] = {"kind": "compare", "input": _listed(shapes) if shapes else None,
                               "convention": convention}
    step = _stepper(progress, len(choices))
    rows = []
    for index, choice in enumerate(choices):
        row: dict[str, Any] = {"model": choice.label, "input": _listed(shapes) if shapes else None}
        rows.append(_measured_row(row, choice, shapes, convention, timing, True, context,
                                  step(index, f"{choice.label} ({index + 1}/{len(choices)})"), stages))
        if train_optimizer is not None and "error" not in row:
            _add_train_peak(row, choice, shapes, train_optimizer)
    if progress is not None:
        progress("done", 1.0)
    keys = COMPARE_KEYS if convention == "inspectlab" else (*COMPARE_KEYS[:8], convention_key(convention),
                                                              *COMPARE_KEYS[8:])
    if timing is None:
        keys = tuple(k for k in keys if not k.startswith("latency_"))
    if train_optimizer is not None:
        at = keys.index("peak_bytes") + 1
        keys = (*keys[:at], "train_peak_bytes", *keys[at:])
        context["train_optimizer"] = train_optimizer
    if not stages:
        return to_frame(rows, keys, context, INT_KEYS)
    context["stages"] = True
    added = wide_keys(rows)
    at = keys.index("notes")
    return to_frame(rows, (*keys[:at], *added, *keys[at:]), context, INT_KEYS | set(integral_keys(rows, added)))


def _add_train_peak(row: dict[str, Any], choice: ModelChoice, shapes: Sequence[Shape] | None, optimizer: str) -> None:
    """The training step's peak at this batch; a model that cannot be traced for training says why in its notes."""
    try:
        report = memory(choice.model, list(shapes) if shapes else None, train=True, optimizer=optimizer,
                        args=choice.args)
        row["train_peak_bytes"] = report.totals["peak_bytes"]
    except InspectlabError as exc:
        row["notes"] = "; ".join(n for n in (row.get("notes"), f"training peak: {exc}") if n)


def _with_weights(choice: ModelChoice, weights: Mapping[str, str]) -> ModelChoice:
    path = weights.get(choice.label) or (weights.get(choice.model) if isinstance(choice.model, str) else None)
    return replace(choice, weights=path) if path else choice


def _shapes(input_size: Any) -> list[Any] | None:
    """One shape or a list of shapes (or input specs) as a list; None stays None (each model's default input)."""
    return None if input_size is None else simplest(as_specs(input_size))


def _listed(shapes: Sequence[Any]) -> list[list[int]]:
    return [list(s.shape) if isinstance(s, InputSpec) else list(s) for s in shapes]


def _template(input_size: Any, choice: ModelChoice) -> Any:
    """The input a sweep resizes (a shape, or a named or typed spec); it must hold floats (an image)."""
    spec = as_specs(input_size)[0] if input_size else input_specs(choice.model, None, choice.args)[0]
    if not spec.floating:
        raise InspectlabError(f"sweep resizes the last two dims of an image input, and {spec.text()} is not one "
                              "(token ids or a mask?): give --input N,C,H,W")
    return spec.shape if spec.plain else spec


def sweep_model(model: Any, sizes: Sequence[tuple[int, int]], *, input_size: Shape | None = None,
                args: Mapping[str, Any] | None = None, timing: Mapping[str, Any] | None = None,
                progress: Progress | None = None, weights: str | None = None) -> pd.DataFrame:
    """One row per input size (SWEEP_KEYS); `attrs["exponents"]`: the fitted exponent of each of FITTED_KEYS
    against the pixels (H·W), e.g. MACs ∝ pixels^1 for a fully convolutional network."""
    choice = as_choice(model)
    if args or weights:
        choice = ModelChoice(choice.label, choice.model, {**choice.args, **(args or {})}, weights or choice.weights)
    if not sizes:
        raise InspectlabError("a sweep needs at least one size")
    template = _template(input_size, choice)
    base = template.shape if isinstance(template, InputSpec) else template
    sized(base, 1, 1)  # a template without spatial dims fails here, not once per size
    context: dict[str, Any] = {"kind": "sweep", "model": choice.label, "input": list(base)}
    step = _stepper(progress, len(sizes))
    rows = []
    for index, (height, width) in enumerate(sizes):
        label = f"{height}×{width}"
        shape = sized(base, height, width)
        row: dict[str, Any] = {"size": label, "height": height, "width": width, "pixels": height * width,
                               "input": [list(shape)]}
        shape = template.resized(shape) if isinstance(template, InputSpec) else shape
        _measured_row(row, choice, [shape], "inspectlab", timing, False, context,
                      step(index, f"{choice.label} {label} ({index + 1}/{len(sizes)})"))
        rows.append(row)
    if progress is not None:
        progress("done", 1.0)
    frame_keys = SWEEP_KEYS if timing is not None else tuple(k for k in SWEEP_KEYS if not k.startswith("latency_"))
    kept = [{k: v for k, v in row.items() if k in frame_keys} for row in rows]
    pixels = [row["pixels"] for row in rows]
    context["exponents"] = {key: fit_exponent(pixels, [row.get(key) for row in rows])
                            for key in FITTED_KEYS if key in frame_keys}
    return to_frame(kept, frame_keys, context, INT_KEYS)
