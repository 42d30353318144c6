"""memory: will it fit? The peak of one inference forward (`no_grad`) or of one steady-state training step,
from meta traces only, and the largest batch (or square input) that fits a budget (docs/memory.md).

Inference reads the Trace every command records (`workflows.trace`), so its peak is the summary's "estimated
peak inference memory"; training records one step (`tracing.train_step`). Both count the CPU kernels' own
buffers of this process (`analysis.memory_kernels`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from inspectlab.analysis.memory import estimate_memory, timeline_of
from inspectlab.analysis.memory_budget import Fit, fit_lines, granularity, largest_fitting
from inspectlab.analysis.memory_kernels import KernelContext
from inspectlab.analysis.memory_rows import inference_rows
from inspectlab.analysis.memory_timeline import Moment, Timeline
from inspectlab.analysis.memory_train import TrainingMemory, training_memory
from inspectlab.analysis.report import Report
from inspectlab.core.errors import InspectlabError
from inspectlab.core.naming import select
from inspectlab.core.shapes import InputSize, InputSpec, compute_dtype
from inspectlab.tracing.build import paused_gc
from inspectlab.tracing.inputs import example_call
from inspectlab.tracing.recorder import NeedsRealRun
from inspectlab.tracing.records import Trace
from inspectlab.tracing.train_step import OPTIMIZERS, record_step
from inspectlab.workflows.guard import hands_off
from inspectlab.workflows.models import ModelOrSpec, build, input_specs, model_name
from inspectlab.workflows.trace import trace

AMP = {"fp16": torch.float16, "bf16": torch.bfloat16}
SOLVES = ("batch", "size")


@dataclass
class MemoryReport(Report[Any]):
    """The memory report: rows (per module), totals (the JSON `totals`), extra; and, outside the JSON, the
    timeline of the estimated run (one moment per op) and where its phases start."""

    moments: list[Moment] = field(default_factory=list, repr=False)
    phase_starts: dict[str, int] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class _Estimate:
    """One traced configuration: its peak and timeline (and the whole training result, for --train)."""

    peak: int
    timeline: Timeline
    trace: Trace
    training: TrainingMemory | None = None


def memory(model_or_spec: ModelOrSpec, input_size: InputSize | None = None, *, train: bool = False,
           optimizer: str = "adamw", amp: str | None = None, grad_checkpoint: Sequence[str] | None = None,
           loss: str | None = None, budget: int | None = None, solve: str = "batch", depth: int = 2,
           args: Mapping[str, Any] | None = None) -> MemoryReport:
    """The peak memory of one inference forward, or with `train` of one steady-state step, by category, with the
    op and module where it happens; with `budget` (bytes), the largest batch (`solve="size"`: square input side)
    whose peak fits."""
    _check_options(train, optimizer, amp, grad_checkpoint, solve, budget)
    owned = isinstance(model_or_spec, str)
    module = build(model_or_spec, args, "meta").module if owned else model_or_spec
    specs = input_specs(model_or_spec, input_size, args)
    checkpoint = _checkpointed(module, grad_checkpoint) if grad_checkpoint else []
    context = KernelContext.of_this_process()
    started = time.perf_counter()

    def estimate(shapes: Sequence[InputSpec]) -> _Estimate:
        if not train:
            recorded = trace(module, list(shapes), args=args)
            line = timeline_of(recorded, context)
            return _Estimate(line.peak.bytes, line, recorded)
        step = _record_step(module, shapes, owned, optimizer, loss, amp, checkpoint)
        result = training_memory(step, context, depth)
        return _Estimate(result.peak_bytes, result.timeline, step.trace, result)

    main = estimate(specs)
    seconds = time.perf_counter() - started
    report = _report(model_or_spec, specs, main, train, depth, context)
    report.extra.update(optimizer=optimizer if train else None, amp=amp, grad_checkpoint=checkpoint,
                        estimate_seconds=round(seconds, 3))
    if budget is not None:
        found = _solve(estimate, specs, main, budget, solve)
        report.totals["max_batch" if solve == "batch" else "max_size"] = found.pop("answer")
        report.extra["budget"] = found
    return report


def _check_options(train: bool, optimizer: str, amp: str | None, grad_checkpoint: Sequence[str] | None,
                   solve: str, budget: int | None) -> None:
    if optimizer not in OPTIMIZERS:
        raise InspectlabError(f"unknown optimizer {optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
    if amp is not None and amp not in AMP:
        raise InspectlabError(f"unknown --amp {amp!r}: choose fp16 or bf16")
    if solve not in SOLVES:
        raise InspectlabError(f"unknown --solve {solve!r}: choose batch or size")
    if not train and (amp is not None or grad_checkpoint):
        raise InspectlabError("--amp and --grad-checkpoint describe a training step: add --train")
    if budget is not None and budget <= 0:
        raise InspectlabError("--budget must be a positive size, such as 24GiB")


def _checkpointed(module: Any, patterns: Sequence[str]) -> list[str]:
    """The modules that --grad-checkpoint names, the outermost of nested matches only (the model itself never)."""
    names = [name for name, _ in module.named_modules() if name]
    chosen = select(list(patterns), names, option="--grad-checkpoint")
    return [name for name in chosen if not any(name.startswith(other + ".") for other in chosen)]


def _record_step(module: Any, specs: Sequence[InputSpec], owned: bool, optimizer: str, loss: str | None,
                 amp: str | None, checkpoint: Sequence[str]) -> Any:
    call = example_call(specs, compute_dtype(specs), "meta")
    try:
        with hands_off(module, real=False, train=True, owned=owned), paused_gc():
            return record_step(module, call.args, call.kwargs, optimizer=optimizer, loss=loss,
                               autocast=AMP[amp] if amp else None, checkpoint=checkpoint)
    except NeedsRealRun as reason:
        raise InspectlabError(f"--train: the step cannot run on the meta device ({reason})") from None


def _report(model_or_spec: ModelOrSpec, specs: Sequence[InputSpec], main: _Estimate, train: bool, depth: int,
            context: KernelContext) -> MemoryReport:
    inputs = [list(spec.shape) for spec in specs]
    recorded = main.trace
    peak = main.timeline.peak
    unmodelled = main.training.unmodelled if main.training is not None else {
        reason: [_call_label(recorded, i) for i in ops] for reason, ops in main.timeline.unmodelled.items()}
    extra: dict[str, Any] = {"mode": "train" if train else "inference", "at_peak": peak.by_category,
                             "unmodelled": unmodelled, "kernels": {"threads": context.threads, "block": context.block},
                             "notes": list(recorded.notes)}
    if main.training is not None:
        result = main.training
        totals = {"params_bytes": result.params_bytes, "grads_bytes": result.grads_bytes,
                  "optimizer_bytes": result.optimizer_bytes, "activations_bytes": result.activations_bytes,
                  "peak_bytes": result.peak_bytes, "peak_phase": result.peak_phase, "peak_op": result.peak_op}
        extra.update(peak_module=result.peak_module, buffer_bytes=result.buffer_bytes, input_bytes=result.input_bytes,
                     weight_copy_bytes=result.weight_copy_bytes)
        return MemoryReport(model=model_name(model_or_spec), inputs=inputs, layers=list(result.rows), totals=totals,
                            extra=extra, moments=result.timeline.moments, phase_starts=result.phase_starts)
    estimate = estimate_memory(recorded, context)
    op = recorded.ops[peak.op]
    totals = {"params_bytes": estimate.param_bytes, "buffers_bytes": estimate.buffer_bytes,
              "inputs_bytes": estimate.input_bytes, "peak_bytes": peak.bytes, "peak_op": op.name}
    extra.update(peak_module=_call_label(recorded, peak.op))
    return MemoryReport(model=model_name(model_or_spec), inputs=inputs,
                        layers=inference_rows(recorded, main.timeline, depth), totals=totals, extra=extra,
                        moments=main.timeline.moments, phase_starts={"forward": 0})


def _call_label(recorded: Trace, index: int) -> str:
    op = recorded.ops[index]
    return recorded.calls[op.module_call].label if op.module_call is not None else op.name


def _solve(estimate: Any, specs: Sequence[InputSpec], main: _Estimate, budget: int, solve: str) -> dict[str, Any]:
    """The largest batch (or square side) whose peak fits `budget`: an affine fit of every moment of the
    timeline from two traces (the given input's and twice its batch or side), confirmed by traces at the
    answer and the next value: 4 traces. When the confirmation disagrees (a kernel changed its path between
    the sizes fitted), the fit is redone from the two confirming traces, which lie on either side of the
    answer, and its answer confirmed in turn (6 traces at most)."""
    if solve == "batch":
        points, step, resize = (specs[0].shape[0], 2 * specs[0].shape[0]), 1, _with_batch
        value_of = float
    else:
        side = _side(specs)
        points, step, resize = (side, 2 * side), granularity(side), _with_side
        value_of = lambda s: float(s * s)  # noqa: E731  (memory is affine in the pixels)
    estimates = {points[0]: main}

    def traced(value: int) -> _Estimate:
        if value not in estimates:
            estimates[value] = estimate(resize(specs, value))
        return estimates[value]

    def solved(low: int, high: int) -> tuple[int, Fit]:
        first, second = traced(low), traced(high)
        fit = fit_lines([m.bytes for m in first.timeline.moments], [m.bytes for m in second.timeline.moments],
                        value_of(low), value_of(high), first.peak, second.peak)
        return largest_fitting(fit, budget, step, value_of), fit

    def holds(value: int) -> bool:
        return (value < step or traced(value).peak <= budget) and traced(value + step).peak > budget

    answer, fit = solved(*points)
    confirmed = holds(answer)
    if not confirmed and answer >= step:
        answer, fit = solved(answer, answer + step)
        confirmed = holds(answer)
    checked = {value: traced(value).peak for value in (answer, answer + step) if value >= step}
    return {"budget_bytes": budget, "solve": solve, "answer": answer, "step": step,
            "estimates": {str(value): peak for value, peak in checked.items()}, "confirmed": confirmed,
            "fit": fit.kind, "traces": len(estimates)}


def _side(specs: Sequence[InputSpec]) -> int:
    image = next((spec for spec in specs if len(spec.shape) >= 3), None)
    if image is None or image.shape[-1] != image.shape[-2]:
        raise InspectlabError("--solve size needs a square image input (..., H, W with H == W)")
    return image.shape[-1]


def _with_batch(specs: Sequence[InputSpec], batch: int) -> list[InputSpec]:
    return [spec.resized((batch, *spec.shape[1:])) for spec in specs]


def _with_side(specs: Sequence[InputSpec], side: int) -> list[InputSpec]:
    return [spec.resized((*spec.shape[:-2], side, side)) if len(spec.shape) >= 3 else spec for spec in specs]
