"""The public Python API: what the CLI calls, and what users call from their own code.

Thin and typed: each function names its options and its result, and hands the work to `inspectlab.workflows`.
The user's model is never modified.

Importing this module does not import torch (torch takes seconds to import): `import inspectlab`, `inspectlab
--help` and `inspectlab list` (with the zoo's counts cached) stay fast. So each function imports the workflow
it calls, inside the function; only torch-free modules are imported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspectlab.core.shapes import InputSize, InputSpec, Shape, parse_sizes
from inspectlab.workflows import display as _display  # noqa: F401  (results show themselves in notebooks)
from inspectlab.workflows import models as _models

if TYPE_CHECKING:
    import graphviz
    import pandas as pd
    from torch import nn

    from inspectlab.analysis.conventions import ConventionRow
    from inspectlab.analysis.params import TreeNode
    from inspectlab.analysis.receptive_field import RfRow
    from inspectlab.analysis.report import Report
    from inspectlab.analysis.stages import StageRow
    from inspectlab.analysis.summary import LayerRow
    from inspectlab.runtime.capture import Capture
    from inspectlab.runtime.latency import LatencyReport, Progress
    from inspectlab.tracing.inputs import CallInputs
    from inspectlab.tracing.records import Trace
    from inspectlab.workflows.dump import DumpResult
    from inspectlab.workflows.explore import ExplorerPage
    from inspectlab.workflows.memory import MemoryReport
    from inspectlab.workflows.receptive_field import FieldResult
    from inspectlab.workflows.report import MergedReport

__all__ = ["InputSpec", "build_model", "capture", "compare", "dump", "explore", "flops", "graph", "input_shapes",
           "input_specs", "latency", "list_models", "load_inputs", "memory", "model_names", "receptive_field", "report",
           "resolve_model", "rf", "stages", "summary", "sweep", "trace", "tree", "write_reports"]

# Inputs (docs/models.md, "Inputs"): `input_size` is one shape (1, 3, 224, 224), one `InputSpec` (a shape with a
# dtype and a keyword name: InputSpec((1, 128), "int64", "input_ids")), or a list of them; unnamed inputs are
# positional, in order, named ones keyword arguments; floats are random (shape-only on meta), integers and bools
# zeros. `input_data` is the inputs themselves: a tensor (one positional argument), a list or tuple (positional
# arguments), a dict (keyword arguments; wrap a dict in a list to pass it as one positional argument), nested as
# deep as the forward wants, with non-tensor values (strings, None, namedtuples) passed as they are.
InputData = Any


def build_model(spec: str, args: Mapping[str, Any] | None = None, device: str = "meta") -> nn.Module:
    """Build a zoo model, `tv:NAME` or `file.py:factory` on `device` (meta allocates no weights), in eval mode."""
    return _models.build_model(spec, args, device)


def resolve_model(model_or_spec: nn.Module | str, args: Mapping[str, Any] | None = None,
                  device: str = "meta") -> nn.Module:
    """A user's module as it is, or the model a spec names, built on `device`."""
    return _models.resolve(model_or_spec, args, device).module


def input_shapes(model_or_spec: nn.Module | str, input_size: InputSize | None,
                 args: Mapping[str, Any] | None = None) -> list[Shape]:
    """One shape or a list of shapes as a list; default: the spec's own input (else 1x3x224x224)."""
    return _models.input_shapes(model_or_spec, input_size, args)


def input_specs(model_or_spec: nn.Module | str, input_size: InputSize | None,
                args: Mapping[str, Any] | None = None) -> list[InputSpec]:
    """The inputs a call makes up, as input specs (shape, dtype, keyword name); default: the spec's own input
    (an hf model's named main input, `args` being its config), else 1x3x224x224."""
    return _models.input_specs(model_or_spec, input_size, args)


def load_inputs(path: str) -> CallInputs:
    """The inputs saved in a file (`--input-file`, read with `torch.load(weights_only=True)`): a tensor, a tuple
    or list (positional arguments) or a dict (keyword arguments); pass the result as `input_data=`."""
    return _models.read_inputs(path)


def model_names() -> list[str]:
    """The zoo's model names and aliases (no torch import, no counting: what MODEL completes from)."""
    return _models.model_names()


def list_models() -> list[dict[str, Any]]:
    """One row per zoo model: name, family, params (counted on the meta device), default input, description,
    aliases."""
    return _models.zoo_rows()


def capture(model: nn.Module, layers: Sequence[str] | None = None, *, types: Sequence[str] | None = None,
            grads: bool = False, keep: bool = True) -> Capture:
    """Keep copies of selected modules' outputs (docs/dump.md): `with capture(model, ["layer1"]) as cap:
    model(x)`, then `cap["layer1"]`, `cap["layer1.0.relu#2"]`, `cap.grad(...)` (after `cap.backward(obj)`),
    `cap.save("feats.safetensors")`."""
    from inspectlab.runtime.capture import Capture

    return Capture(model, layers, types=types, grads=grads, keep=keep)


def dump(model_or_spec: nn.Module | str, input_size: InputSize | None = None, *,
         images: Sequence[str] | None = None, layers: Sequence[str] | None = None,
         types: Sequence[str] | None = None, grads: bool = False, target: int | None = None, out: str | None = None,
         png: str | None = None, stats_only: bool = False, force: bool = False, max_bytes: int | None = None,
         mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
         args: Mapping[str, Any] | None = None, device: str = "cpu", top_k: int = 16, seed: int = 0,
         train: bool = False, weights: str | None = None, strict: bool = True,
         input_data: InputData = None) -> DumpResult:
    """Capture selected outputs (and gradients) for one input and write them with a JSON manifest
    (docs/dump.md); the forward runs in eval mode unless `train`."""
    from inspectlab.workflows.dump import dump as run_dump

    return run_dump(model_or_spec, input_size, images=images, layers=layers, types=types, grads=grads, target=target,
                    out=out, png=png, stats_only=stats_only, force=force, max_bytes=max_bytes, mean=mean, std=std,
                    args=args, device=device, top_k=top_k, seed=seed, train=train, weights=weights, strict=strict,
                    input_data=input_data)


def compare(models: Sequence[nn.Module | str | Any], input_size: InputSize | None = None, *, latency: bool = False,
            device: str = "cpu", convention: str = "inspectlab", warmup: int = 5, iters: int | None = None,
            min_time: float | None = None, threads: int | None = None, progress: Progress | None = None,
            weights: Mapping[str, str] | None = None, stages: bool = False,
            train_optimizer: str | None = None) -> pd.DataFrame:
    """One row per model as a pandas DataFrame (docs/compare.md): params, MACs, FLOPs, other FLOPs, activation
    and peak memory, output stride, receptive field of the output (+ global flag), latency p50/p90 (`latency`,
    on `device`, with warmup/iters/min_time/threads as in `latency`), MACs per param and per output pixel, and
    `error` for a model that failed. Specs may carry builder arguments: "deeplabv3plus_resnet50:output_stride=16".
    `stages` adds each model's feature pyramid (docs/stages.md) as columns per stride: s4_name, s4_channels,
    s4_macs (MACs up to that stage), s4_rf (its receptive field, largest over H and W), s8_..., from the same trace.
    `train_optimizer` ("sgd", "momentum", "adam", "adamw") adds `train_peak_bytes`: the peak of one training step
    at this batch (docs/memory.md)."""
    from inspectlab.workflows.compare import compare_models

    timing = _timing(latency, device, warmup, iters, min_time, threads)
    return compare_models(models, input_size, convention=convention, timing=timing, progress=progress,
                          weights=weights, stages=stages, train_optimizer=train_optimizer)


def sweep(model_or_spec: nn.Module | str | Any, sizes: Sequence[int | tuple[int, int]] | str, *,
          input_size: Sequence[int] | InputSpec | None = None, args: Mapping[str, Any] | None = None,
          latency: bool = False,
          device: str = "cpu", warmup: int = 5, iters: int | None = None, min_time: float | None = None,
          threads: int | None = None, progress: Progress | None = None, weights: str | None = None) -> pd.DataFrame:
    """MACs, memory (and latency) per input size as a DataFrame (docs/compare.md); `attrs["exponents"]` holds
    each quantity's fitted exponent against the pixels (MACs ∝ pixels^1 for a fully convolutional network).
    Sizes: 224 (square), (512, 1024) (H, W) or "224,512,1024x2048"; `input_size` is the N×C×H×W template (a
    shape, or a floating InputSpec whose name and dtype every size keeps)."""
    from inspectlab.workflows.compare import sweep_model

    pairs = parse_sizes(sizes) if isinstance(sizes, str) else [
        (s, s) if isinstance(s, int) else (int(s[0]), int(s[1])) for s in sizes]
    template = input_size if isinstance(input_size, InputSpec) or not input_size else tuple(input_size)
    return sweep_model(model_or_spec, pairs, input_size=template,
                       args=args, timing=_timing(latency, device, warmup, iters, min_time, threads), progress=progress,
                       weights=weights)


def _timing(latency: bool, device: str, warmup: int, iters: int | None, min_time: float | None,
            threads: int | None) -> dict[str, Any] | None:
    """The options of `latency` that compare and sweep pass on; None for no timing."""
    if not latency:
        return None
    return {"device": device, "warmup": warmup, "iters": iters, "min_time": min_time, "threads": threads}


def write_reports(rows: Sequence[Mapping[str, Any]], attrs: Mapping[str, Any], paths: Sequence[str | Path], *,
                  force: bool = False, bubble: str | None = None, title: str | None = None,
                  command: str | None = None) -> list[Path]:
    """Write a compare/sweep report (rows and attrs of its frame) in each path's format: .md with its PNGs
    beside it, one self-contained .html, .csv or .json; nothing is written unless every file may be."""
    from inspectlab.workflows.files import write_reports as write

    return write(rows, attrs, paths, force=force, bubble=bubble, title=title, command=command)



def trace(model_or_spec: nn.Module | str, input_size: InputSize | None = None, *,
          input_data: InputData = None, args: Mapping[str, Any] | None = None, device: str = "meta",
          dtype: str = "float32", backward: bool = False, train: bool = False, weights: str | None = None,
          strict: bool = True) -> Trace:
    """Record one pass of the model (the Trace of DESIGN.md): module tree, calls, ops and tensors. On the meta
    device by default (its cost does not depend on the input size); a forward that needs real values runs on
    the CPU instead (with a seeded input), and the Trace's notes say so. The pass runs in eval mode unless
    `train`; the model is left as it was."""
    from inspectlab.workflows.trace import trace as record

    return record(model_or_spec, input_size, input_data=input_data, args=args, device=device, dtype=dtype,
                  backward=backward, train=train, weights=weights, strict=strict)


def summary(model_or_spec: nn.Module | str, input_size: InputSize | None = None, *,
            input_data: InputData = None, args: Mapping[str, Any] | None = None, depth: int = 2,
            device: str = "meta", dtype: str = "float32", backward: bool = False,
            receptive_field: bool = False, train: bool = False, weights: str | None = None,
            strict: bool = True) -> Report[LayerRow]:
    """Params, MACs/FLOPs, shapes and memory per module call (down to `depth`) and in total;
    `receptive_field` adds each row's receptive field and stride. Counted in eval mode unless `train`."""
    from inspectlab.workflows.summary import summary as summarise

    return summarise(model_or_spec, input_size, input_data=input_data, args=args, depth=depth, device=device,
                     dtype=dtype, backward=backward, receptive_field=receptive_field, train=train, weights=weights,
                     strict=strict)


def flops(model_or_spec: nn.Module | str, input_size: InputSize | None = None, *,
          input_data: InputData = None, args: Mapping[str, Any] | None = None,
          backward: bool = False, compare: bool = False, weights: str | None = None,
          strict: bool = True) -> Report[ConventionRow]:
    """Totals under every counting convention, the category breakdown, and (compare) each peer's own number."""
    from inspectlab.workflows.summary import flops as count

    return count(model_or_spec, input_size, input_data=input_data, args=args, backward=backward, compare=compare,
                 weights=weights, strict=strict)


def tree(model_or_spec: nn.Module | str, depth: int | None = None,
         args: Mapping[str, Any] | None = None) -> list[TreeNode]:
    """The module hierarchy from `children()`, with own and total params per node."""
    from inspectlab.workflows.summary import tree as hierarchy

    return hierarchy(model_or_spec, depth, args)


def graph(model_or_spec: nn.Module | str, input_size: InputSize | None = None, *, depth: int = 2,
          input_data: InputData = None, args: Mapping[str, Any] | None = None,
          rankdir: str = "TB", collapse_repeats: bool = True, show: str | Sequence[str] = "params",
          weights: str | None = None, strict: bool = True) -> graphviz.Digraph:
    """The architecture as a `graphviz.Digraph` (docs/graphs.md): module calls at `depth`, the functional ops
    that carry structure (add, cat, mul, interpolate), tensors as shape-labelled edges, runs of identical
    blocks collapsed to ×k. `show` adds labels: shapes (on every edge, not only where new), params, flops (MACs),
    rf (receptive field of each node's output)."""
    from inspectlab.workflows.graph import graph as draw

    return draw(model_or_spec, input_size, depth=depth, input_data=input_data, args=args, rankdir=rankdir,
                collapse_repeats=collapse_repeats, show=show, weights=weights, strict=strict)


def latency(model_or_spec: nn.Module | str, input_size: InputSize | None = None, *,
            args: Mapping[str, Any] | None = None, batches: Sequence[int] | None = None, device: str = "cpu",
            dtype: str = "float32", precision: str = "cast", warmup: int = 5, iters: int | None = None,
            min_time: float | None = None, channels_last: bool = False, compile: bool | str = False,
            threads: int | None = None, cudnn_benchmark: bool = True, cuda_graph: bool = False,
            per_layer: bool = False, depth: int = 1, force: bool = False,
            progress: Progress | None = None, weights: str | None = None, strict: bool = True,
            input_data: InputData = None) -> LatencyReport:
    """Time the forward pass (docs/latency.md): statistics, throughput and memory per batch size, beside the
    Trace's estimate; refused when the estimated peak exceeds the device's free memory, unless `force`.
    `batches` replace the first dimension of each input; `input_data` is timed as it is."""
    from inspectlab.workflows.latency import latency as measure

    return measure(model_or_spec, input_size, args=args, batches=batches, device=device, dtype=dtype,
                   precision=precision, warmup=warmup, iters=iters, min_time=min_time, channels_last=channels_last,
                   compile=compile, threads=threads, cudnn_benchmark=cudnn_benchmark, cuda_graph=cuda_graph,
                   per_layer=per_layer, depth=depth, force=force, progress=progress, weights=weights, strict=strict,
                   input_data=input_data)


def receptive_field(model_or_spec: nn.Module | str, input_size: InputSize | None = None, *,
                    args: Mapping[str, Any] | None = None, depth: int | None = None, layers: str | None = None,
                    input_data: InputData = None, weights: str | None = None,
                    strict: bool = True) -> Report[RfRow]:
    """Receptive fields on the whole graph (docs/receptive-field.md): one row per module output with rf,
    rf_min (shortest path), stride, padding and the global flag, for the first input's image axes.
    `layers` selects module names (a glob, or re:REGEX)."""
    from inspectlab.workflows.receptive_field import receptive_field as fields

    return fields(model_or_spec, input_size, args=args, depth=depth, layers=layers, input_data=input_data,
                  weights=weights, strict=strict)


def stages(model_or_spec: nn.Module | str, input_size: InputSize | None = None, *,
           args: Mapping[str, Any] | None = None, input_data: InputData = None, weights: str | None = None,
           strict: bool = True) -> Report[StageRow]:
    """The feature pyramid of a backbone (docs/stages.md): one row per stride, finest first, with the stage's
    module, stride, channels, output shape, receptive field, and the MACs and parameters of everything computed
    up to it. A timm `features_only` model's stages are its `feature_info`; any other model's are the last
    module output at each stride of its encoder, found from the trace. Raises when no output keeps a stride."""
    from inspectlab.workflows.stages import stages as pyramid

    return pyramid(model_or_spec, input_size, args=args, input_data=input_data, weights=weights, strict=strict)


def memory(model_or_spec: nn.Module | str, input_size: InputSize | None = None, *, train: bool = False,
           optimizer: str = "adamw", amp: str | None = None, grad_checkpoint: Sequence[str] | None = None,
           loss: str | None = None, budget: int | None = None, solve: str = "batch", depth: int = 2,
           args: Mapping[str, Any] | None = None) -> MemoryReport:
    """What `inspectlab memory` does (docs/memory.md): the peak memory of one inference forward under no_grad,
    or with `train` of one steady-state step (forward, loss, backward, `optimizer` "sgd", "momentum", "adam" or
    "adamw", zero_grad) by category, with its phase, op and module, from meta traces only; the CPU kernels' own
    buffers count. `amp`: "fp16" or "bf16" autocast; `grad_checkpoint`: glob patterns of modules to checkpoint;
    `loss`: the output the loss sums. With `budget` (bytes), the largest batch (`solve="size"`: square input
    side) that fits, in `totals["max_batch"]` (`"max_size"`)."""
    from inspectlab.workflows.memory import memory as estimate

    return estimate(model_or_spec, input_size, train=train, optimizer=optimizer, amp=amp,
                    grad_checkpoint=grad_checkpoint, loss=loss, budget=budget, solve=solve, depth=depth, args=args)


def rf(model_or_spec: nn.Module | str, input_size: InputSize | None = None, *, args: Mapping[str, Any] | None = None,
       depth: int | None = 2, layers: str | None = None, empirical: bool = False, units: Sequence[str] = ("centre",),
       erf: str | None = None, erf_layer: str | None = None, samples: int = 16, weights: str | None = None,
       seed: int = 0, device: str = "cpu", force: bool = False, strict: bool = True,
       input_data: InputData = None) -> FieldResult:
    """What `inspectlab rf` does: the receptive-field table, each row checked against autograd on a linear
    positive copy (`empirical`, at `units`), and the effective field of `erf_layer` drawn to the PNG `erf`
    (`weights`: a state_dict file loaded into a spec's model for every pass)."""
    from inspectlab.workflows.receptive_field import rf as analyse

    return analyse(model_or_spec, input_size, args=args, depth=depth, layers=layers, empirical=empirical,
                   units=units, erf=erf, erf_layer=erf_layer, samples=samples, weights=weights, seed=seed,
                   device=device, force=force, strict=strict, input_data=input_data)


def explore(model_or_spec: nn.Module | str, input_size: InputSize | None = None, *, output: str | None = None,
            depth: int = 3, input_data: InputData = None, args: Mapping[str, Any] | None = None,
            weights: str | None = None, strict: bool = True, latency: bool = False, device: str = "cpu",
            min_time: float | None = None, force: bool = False, progress: Progress | None = None) -> ExplorerPage:
    """One self-contained HTML page to browse the model (docs/explore.md): its graph at every depth from 0 to
    `depth` with pan and zoom, each node's type, shapes, params, MACs, other FLOPs, memory, receptive field and
    kernel in a side panel, a search box, a sortable layer table; `latency` adds each module's time (a real run
    on `device`). Written to `output` when given (an existing file only with `force`); `.html` holds the page."""
    from inspectlab.workflows.explore import explore as page

    return page(model_or_spec, input_size, output=output, depth=depth, input_data=input_data, args=args,
                weights=weights, strict=strict, latency=latency, device=device, min_time=min_time, force=force,
                progress=progress)


def report(sources: Sequence[str | Path], outputs: Sequence[str | Path] = (), *, force: bool = False,
           title: str | None = None, command: str | None = None) -> MergedReport:
    """Merge JSON files of `latency`, `compare --latency` and `sweep --latency` from several machines or conditions
    into one comparison, one column group per machine/condition (docs/report.md); written to each of `outputs`
    by suffix (.html, .md with PNGs beside it, .csv, .json), nothing unless every file may be."""
    from inspectlab.workflows.report import report as merge

    return merge(sources, outputs, force=force, title=title, command=command)
