"""The public Python API: what the CLI calls, and what users call from their own code."""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from torch import nn

from inspectlab.analysis.conventions import CONVENTIONS, DESCRIPTIONS, UNITS, convention_total
from inspectlab.analysis.flops import count_flops
from inspectlab.analysis.params import TreeNode, module_tree
from inspectlab.analysis.report import Report
from inspectlab.analysis.summary import summarize
from inspectlab.inputs import Shape, example_inputs, torch_dtype
from inspectlab.models import registry
from inspectlab.tracing.recorder import NeedsRealRun, record
from inspectlab.tracing.records import Trace

InputSize = Sequence[int] | Sequence[Sequence[int]]
_F = TypeVar("_F", bound=Callable[..., Any])


def _gc_paused(function: _F) -> _F:
    """Run without Python's cyclic garbage collector: building and tracing a model allocate ~10^5 short-lived
    objects (freed by reference counting), and the collections they trigger took ~20% of a ResNet-50
    summary. The collector is re-enabled on the way out (if it was on), also when the call raises."""

    @functools.wraps(function)
    def paused(*args: Any, **kwargs: Any) -> Any:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return paused  # type: ignore[return-value]


def build_model(spec: str, args: Mapping[str, Any] | None = None, device: str = "meta") -> nn.Module:
    """Build a zoo model, `tv:NAME` or `file.py:factory` on `device` (meta allocates no weights)."""
    return registry.build_model(spec, args, device)


def list_models() -> list[dict[str, Any]]:
    """One row per zoo model: name, family, params (counted on the meta device), default input, description,
    aliases."""
    return registry.zoo_rows()


def tree(model_or_spec: nn.Module | str, depth: int | None = None,
         args: Mapping[str, Any] | None = None) -> list[TreeNode]:
    """The module hierarchy from `children()`, with own and total params per node."""
    model = resolve_model(model_or_spec, args)
    return module_tree(model, depth)


def resolve_model(model_or_spec: nn.Module | str, args: Mapping[str, Any] | None = None,
                  device: str = "meta") -> nn.Module:
    """A user's module as it is, or the model a spec names, built on `device`."""
    if isinstance(model_or_spec, nn.Module):
        return model_or_spec
    return build_model(model_or_spec, args, device)


def input_shapes(model_or_spec: nn.Module | str, input_size: InputSize | None) -> list[Shape]:
    """Normalise one shape or a list of shapes; default: the zoo entry's input (else 1x3x224x224)."""
    if input_size is None:
        spec = model_or_spec if isinstance(model_or_spec, str) else ""
        return [registry.default_input(spec) if spec else registry.IMAGENET]
    if input_size and isinstance(input_size[0], int):
        return [tuple(input_size)]  # type: ignore[arg-type]
    return [tuple(s) for s in input_size]  # type: ignore[union-attr]


@_gc_paused
def trace(model_or_spec: nn.Module | str, input_size: InputSize | None = None, *,
          input_data: Sequence[Any] | None = None, args: Mapping[str, Any] | None = None,
          device: str = "meta", dtype: str = "float32", backward: bool = False) -> Trace:
    """Record one pass of the model (the Trace of DESIGN.md): module tree, calls, ops and tensors.

    Runs on the meta device by default, so its cost does not depend on the input size; a model whose
    forward needs real values falls back to a real run on the CPU, and the Trace's notes say so.
    The user's model is never modified.
    """
    model = resolve_model(model_or_spec, args, device)
    data = list(input_data) if input_data is not None else None
    shapes = [tuple(t.shape) for t in data] if data is not None else input_shapes(model_or_spec, input_size)
    try:
        inputs = _on_device(data, device) if data is not None else example_inputs(shapes, dtype, device)
        return record(model, inputs, device=device, backward=backward, dtype=torch_dtype(dtype))
    except NeedsRealRun as reason:
        real_device = "cpu" if device == "meta" else device
        if isinstance(model_or_spec, str):
            model = build_model(model_or_spec, args, real_device)
        else:
            real_device = next((p.device.type for p in model.parameters()), "cpu")
        inputs = _on_device(data, real_device) if data is not None else example_inputs(shapes, dtype, real_device)
        result = record(model, inputs, device=real_device, backward=backward, dtype=torch_dtype(dtype))
        result.notes.append(f"the forward cannot run on the meta device ({reason}); ran on {real_device} instead")
        return result


@_gc_paused
def summary(model_or_spec: nn.Module | str, input_size: InputSize | None = None, *,
            input_data: Sequence[Any] | None = None, args: Mapping[str, Any] | None = None, depth: int = 2,
            device: str = "meta", dtype: str = "float32", backward: bool = False,
            receptive_field: bool = False) -> Report:
    """Params, MACs/FLOPs, shapes and memory per module call (down to `depth`) and in total;
    `receptive_field` adds each row's receptive field and stride."""
    recorded = trace(model_or_spec, input_size, input_data=input_data, args=args, device=device, dtype=dtype,
                     backward=backward)
    return summarize(recorded, _model_name(model_or_spec), depth=depth, backward=backward,
                     receptive_field=receptive_field)


@_gc_paused
def flops(model_or_spec: nn.Module | str, input_size: InputSize | None = None, *,
          input_data: Sequence[Any] | None = None, args: Mapping[str, Any] | None = None,
          backward: bool = False, compare: bool = False) -> Report:
    """Totals under every counting convention, the category breakdown, and (compare) each peer's own number."""
    recorded = trace(model_or_spec, input_size, input_data=input_data, args=args, backward=backward)
    count = count_flops(recorded)
    peers: dict[str, Any] = {}
    if compare:
        from inspectlab.runtime.peers import peer_totals

        real_model = resolve_model(model_or_spec, args, device="cpu")
        inputs = _on_device(input_data, "cpu") if input_data is not None else example_inputs(
            [tuple(s) for s in recorded.shapes(recorded.inputs)], "float32", "cpu")
        peers = peer_totals(real_model, inputs, backward)
    rows = []
    for name in CONVENTIONS:
        if backward and name in ("fvcore", "torchinfo"):
            continue
        rows.append({"convention": name, "unit": UNITS[name], "total": convention_total(count, name, backward),
                     "peer": peers.get(name), "counts": DESCRIPTIONS[name]})
    for row in rows:
        row["match"] = (row["peer"] == row["total"]) if isinstance(row["peer"], int) else None
    report = summarize(recorded, _model_name(model_or_spec), depth=0, backward=backward, count=count)
    report.layers = rows
    return report


def _model_name(model_or_spec: nn.Module | str) -> str:
    return model_or_spec if isinstance(model_or_spec, str) else type(model_or_spec).__name__


def _on_device(tensors: list[Any], device: str) -> list[Any]:
    import torch

    def move(value: Any) -> Any:
        if not isinstance(value, torch.Tensor):
            return value
        return torch.empty_like(value, device="meta") if device == "meta" else value.to(device)

    return [move(t) for t in tensors]


def latency(model_or_spec: nn.Module | str, input_size: InputSize | None = None, *,
            args: Mapping[str, Any] | None = None, **options: Any) -> Any:
    """Time the forward pass (docs/latency.md): a LatencyReport with statistics, throughput and memory per
    batch size. Options: batches, device, dtype, precision ("cast"/"autocast"), warmup, iters, min_time,
    channels_last, compile, threads, cudnn_benchmark, cuda_graph, per_layer, depth, force, progress; see
    `inspectlab.runtime.latency.measure`."""
    from inspectlab.runtime.latency import measure

    return measure(model_or_spec, input_size, args=args, **options)


def graph(model_or_spec: nn.Module | str, input_size: InputSize | None = None, *, depth: int = 2,
          input_data: Sequence[Any] | None = None, args: Mapping[str, Any] | None = None,
          rankdir: str = "TB", collapse_repeats: bool = True, show: str | Sequence[str] = "params") -> Any:
    """The architecture as a `graphviz.Digraph` (docs/graphs.md): module calls at `depth`, the functional ops
    that carry structure (add, cat, mul, interpolate), tensors as shape-labelled edges, runs of identical
    blocks collapsed to ×k. `show` adds labels: shapes (on every edge, not only where new), params, flops (MACs),
    rf (receptive field of each node's output)."""
    from inspectlab.analysis.graph import build_graph, parse_show
    from inspectlab.render.graphviz_render import to_digraph

    chosen = parse_show(show)
    recorded = trace(model_or_spec, input_size, input_data=input_data, args=args)
    drawn = build_graph(recorded, depth, collapse_repeats, receptive_field="rf" in chosen)
    shapes = ", ".join("×".join(map(str, s)) for s in recorded.shapes(recorded.inputs))
    title = f"{_model_name(model_or_spec)} · input {shapes} · depth {depth}"
    return to_digraph(drawn, chosen, rankdir, title)


def capture(model: nn.Module, layers: Sequence[str] | None = None, *, types: Sequence[str] | None = None,
            grads: bool = False, keep: bool = True) -> Any:
    """Keep copies of selected modules' outputs (docs/dump.md): `with capture(model, ["layer1"]) as cap:
    model(x)`, then `cap["layer1"]`, `cap["layer1.0.relu#2"]`, `cap.grad(...)` (after `cap.backward(obj)`),
    `cap.save("feats.safetensors")`. See `inspectlab.runtime.capture.Capture`."""
    from inspectlab.runtime.capture import Capture

    return Capture(model, layers, types=types, grads=grads, keep=keep)


def dump(model_or_spec: nn.Module | str, input_size: InputSize | None = None, **options: Any) -> Any:
    """Capture selected outputs (and gradients) for one input and write them with a JSON manifest
    (docs/dump.md): a DumpResult. Options: images, layers, types, grads, target, out, png, stats_only, force,
    max_bytes, mean, std, args, device, top_k, seed; see `inspectlab.runtime.capture.dump`."""
    from inspectlab.runtime.capture import dump as run_dump

    return run_dump(model_or_spec, input_size, **options)


def compare(models: Sequence[nn.Module | str], input_size: InputSize | None = None, *, latency: bool = False,
            device: str = "cpu", convention: str = "inspectlab", progress: Any = None, **latency_options: Any) -> Any:
    """One row per model as a pandas DataFrame (docs/compare.md): params, MACs, FLOPs, other FLOPs, activation
    and peak memory, output stride, receptive field of the output (+ global flag), latency p50/p90 (`latency`,
    on `device`; options such as warmup, iters, min_time go to `inspectlab.runtime.latency.measure`), MACs per
    param and per output pixel, and `error` for a model that failed. Specs may carry builder arguments:
    "deeplabv3plus_resnet50:output_stride=16"."""
    from inspectlab.analysis.compare import compare_models

    timing = {"device": device, **latency_options} if latency else None
    return compare_models(models, input_size, convention=convention, timing=timing, progress=progress)


def sweep(model_or_spec: nn.Module | str, sizes: Sequence[int | tuple[int, int]] | str, *,
          input_size: Sequence[int] | None = None, args: Mapping[str, Any] | None = None, latency: bool = False,
          device: str = "cpu", progress: Any = None, **latency_options: Any) -> Any:
    """MACs, memory (and latency) per input size as a DataFrame (docs/compare.md); `attrs["exponents"]` holds
    each quantity's fitted exponent against the pixels (MACs ∝ pixels^1 for a fully convolutional network).
    Sizes: 224 (square), (512, 1024) (H, W) or "224,512,1024x2048"; `input_size` is the N×C×H×W template."""
    from inspectlab.analysis.compare import parse_sizes, sweep_model

    pairs = parse_sizes(sizes) if isinstance(sizes, str) else [
        (s, s) if isinstance(s, int) else (int(s[0]), int(s[1])) for s in sizes]
    timing = {"device": device, **latency_options} if latency else None
    return sweep_model(model_or_spec, pairs, input_size=tuple(input_size) if input_size else None, args=args,
                       timing=timing, progress=progress)


def receptive_field(model_or_spec: nn.Module | str, input_size: InputSize | None = None, *,
                    args: Mapping[str, Any] | None = None, depth: int | None = None, layers: str | None = None,
                    input_data: Sequence[Any] | None = None) -> Report:
    """Receptive fields on the whole graph (docs/receptive-field.md): one row per module output with rf,
    rf_min (shortest path), stride, padding and the global flag, for the first input's image axes.
    `layers` is a glob on module names. Measured checks: `inspectlab.runtime.empirical_rf`."""
    from inspectlab.analysis.receptive_field import field_report, receptive_fields

    recorded = trace(model_or_spec, input_size, input_data=input_data, args=args)
    return field_report(receptive_fields(recorded), _model_name(model_or_spec), depth, layers)
