"""latency: the Trace of each batch (memory estimate, refusal when it won't fit, per-layer FLOPs and bytes),
then timed forwards of the prepared model (docs/latency.md; the method is in `inspectlab.runtime.latency`)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch

from inspectlab.analysis.memory import estimate_memory
from inspectlab.analysis.params import count_params
from inspectlab.core.errors import InspectlabError
from inspectlab.core.shapes import InputSize, batched, compute_dtype
from inspectlab.runtime.latency import (
    DEFAULT_MIN_TIME,
    BatchResult,
    Clock,
    LatencyReport,
    MemoryUse,
    Progress,
    RunConditions,
    device_name,
    model_dtype,
    prepare_model,
    run_settings,
    summarize,
    timed_forward,
    validate,
)
from inspectlab.runtime.memory import check_fits
from inspectlab.runtime.per_layer import per_layer_breakdown
from inspectlab.tracing.inputs import CallInputs, as_call, example_call, on_device, positional, torch_dtype
from inspectlab.workflows.guard import hands_off
from inspectlab.workflows.models import ModelOrSpec, input_specs, model_name, resolve
from inspectlab.workflows.trace import trace


def _target(device: str) -> torch.device:
    try:
        target = torch.device(device)
    except RuntimeError:
        raise InspectlabError(f"--device {device}: latency runs on cpu or cuda") from None
    if target.type == "cuda" and target.index is None and torch.cuda.is_available():
        target = torch.device("cuda", torch.cuda.current_device())
    return target


def latency(model_or_spec: ModelOrSpec, input_size: InputSize | None = None, *,
            args: Mapping[str, Any] | None = None, batches: Sequence[int] | None = None, device: str = "cpu",
            dtype: str = "float32", precision: str = "cast", warmup: int = 5, iters: int | None = None,
            min_time: float | None = None, channels_last: bool = False, compile: bool | str = False,
            threads: int | None = None, cudnn_benchmark: bool = True, cuda_graph: bool = False,
            per_layer: bool = False, depth: int = 1, force: bool = False,
            progress: Progress | None = None, weights: str | None = None, strict: bool = True,
            input_data: Any = None) -> LatencyReport:
    """Time a model's forward for each batch size: statistics, throughput and memory beside the Trace's
    estimate; a run whose estimated peak exceeds the device's free memory is refused unless `force`.
    `input_size`: shapes or input specs (`--batch` replaces the first dimension of each); `input_data`: the
    inputs themselves, timed as they are (cast to `dtype` with `precision="cast"`)."""
    target = _target(device)
    backend = ("inductor" if compile is True else compile) or None
    validate(target, precision, iters, min_time, warmup, cuda_graph, backend, per_layer, batches, threads)
    data = as_call(input_data) if input_data is not None else None
    if data is not None and batches:
        raise InspectlabError("--batch resizes made-up inputs; the inputs of a file are timed as they are")
    specs = input_specs(model_or_spec, input_size, args) if data is None else []
    kind = torch_dtype(compute_dtype(specs, dtype))  # `--input 1,3,224,224:float16`: as --dtype float16
    dtype_name = str(kind).removeprefix("torch.")
    mode = precision if kind != torch.float32 else "none"
    cast_to = kind if mode == "cast" else None
    notes: list[str] = []

    # the Trace (meta device) of each batch: memory estimate, fit check, per-layer FLOPs and bytes
    shapes = [s.shape for s in specs] if data is None else [tuple(t.shape) for t in data.tensors()]
    sizes = list(batches) if batches else [shapes[0][0] if shapes and shapes[0] else 1]
    owned = isinstance(model_or_spec, str)
    trace_dtype = "float32" if owned else model_dtype(model_or_spec)
    scale = kind.itemsize / torch_dtype(trace_dtype).itemsize if cast_to else 1.0
    specs_of = {size: batched(specs, size if batches else None) for size in sizes}
    traced = {size: [replace(s, dtype=None) if s.floating else s for s in specs_of[size]] for size in sizes}
    traces = {size: trace(model_or_spec, traced[size] if data is None else None, input_data=data, args=args,
                          dtype=trace_dtype, weights=weights, strict=strict) for size in sizes}
    estimates = {size: estimate_memory(traces[size]) for size in sizes}
    label = model_name(model_or_spec)
    if not force:
        already = 0 if owned else count_params(model_or_spec, device=target).state_bytes
        for size in sizes:
            check_fits(round(estimates[size].peak_bytes * scale), target, f"{label} at batch {size}", already)
    if mode == "autocast":
        notes.append("under autocast the memory estimate and per-layer bytes are those of the float32 trace")

    built = resolve(model_or_spec, args, str(target), weights, strict)
    notes.extend(built.notes)
    model = prepare_model(built.module, target, cast_to, channels_last, notes, owned=owned)
    runnable: Any = torch.compile(model, backend=backend) if backend else model
    input_dtype = dtype_name if cast_to is not None else trace_dtype
    clock = Clock(target)
    results = []
    copied = owned or model is not built.module
    with hands_off(model, real=True, owned=copied, copies=False), \
            run_settings(threads, cudnn_benchmark if target.type == "cuda" else None):
        conditions = RunConditions(
            model=label, device=str(target), device_name=device_name(target), torch_version=torch.__version__,
            threads=torch.get_num_threads(), dtype=dtype_name, precision=mode,
            memory_format="channels_last" if channels_last else "contiguous", compile=backend,
            cuda_graph=cuda_graph, cudnn_benchmark=torch.backends.cudnn.benchmark if target.type == "cuda" else None,
            timer=clock.name + (" (CUDA graph replay)" if cuda_graph else ""), warmup=warmup, iters=iters,
            min_time=min_time if iters is not None or min_time is not None else DEFAULT_MIN_TIME,
        )
        amp = (lambda: torch.autocast(target.type, dtype=kind, cache_enabled=not cuda_graph)) if mode == "autocast" \
            else contextlib.nullcontext
        for size in sizes:
            call = example_call(specs_of[size], input_dtype, str(target), channels_last=channels_last) \
                if data is None else _prepared(data, str(target), cast_to, channels_last)
            estimate = estimates[size]
            with torch.inference_mode(), amp():
                samples, peak, reserved, method = timed_forward(
                    lambda call=call: runnable(*call.args, **call.kwargs), clock, warmup=warmup, iters=iters,
                    min_time=min_time, cuda_graph=cuda_graph, progress=progress, label=f"batch {size}")
                breakdown = per_layer_breakdown(
                    model, positional(model, call, "latency --per-layer"), traces[size], depth=depth, clock=clock,
                    compute_dtype=kind,
                    warmup=min(warmup, 3), iters=iters, min_time=min_time, bytes_scale=scale, progress=progress,
                    label=f"batch {size} per-layer",
                ) if per_layer else None
            memory = MemoryUse(
                peak_bytes=peak, reserved_bytes=reserved, method=method,
                estimated_peak_bytes=round(estimate.peak_bytes * scale),
                estimated_activation_bytes=round((estimate.peak_activation_bytes - estimate.input_bytes) * scale),
            )
            shown = [list(s.shape) for s in specs_of[size]] if data is None else [list(s) for s in shapes]
            results.append(BatchResult(size, shown, summarize(samples, size), memory, samples, breakdown))
            del call
    return LatencyReport(conditions, results, notes + [n for n in traces[sizes[0]].notes if n not in notes])


def _prepared(data: CallInputs, device: str, cast_to: torch.dtype | None, channels_last: bool) -> CallInputs:
    """The user's inputs on the device, floating tensors cast to `cast_to`, 4-d ones NHWC with `channels_last`."""
    from torch.utils._pytree import tree_map

    def prepare(value: Any) -> Any:
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            return value
        if cast_to is not None:
            value = value.to(cast_to)
        return value.contiguous(memory_format=torch.channels_last) if channels_last and value.dim() == 4 else value

    moved = on_device(data, device)
    return CallInputs(list(tree_map(prepare, moved.args)), dict(tree_map(prepare, moved.kwargs)))
