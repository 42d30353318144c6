"""`inspectlab latency`: timed forwards (statistics, throughput, peak memory), optionally per layer."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from inspectlab import api
from inspectlab.cli.common import (
    ArgsOption,
    DepthOption,
    InputFileOption,
    ModelArg,
    NonStrictOption,
    WeightsOption,
    command,
    emit,
    input_file,
    parse_args,
    progress_bar,
)
from inspectlab.core.shapes import batched, check_size, parse_batches, parse_inputs, shape_text, simplest
from inspectlab.render.formats import Column, human_bytes, human_count, percent

if TYPE_CHECKING:
    from inspectlab.runtime.latency import LatencyReport


class LatencyFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


class DtypeChoice(str, Enum):
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"


class PrecisionChoice(str, Enum):
    cast = "cast"
    autocast = "autocast"


@command("latency")
def latency_command(
    model: ModelArg,
    input_size: Annotated[list[str] | None, typer.Option(
        "--input", "-i", help="Input shape such as 1,3,224,224, [NAME=]SHAPE[:DTYPE] as elsewhere (1,128:int64, "
        "input_ids=1,128:int64); repeat for several inputs.")] = None,
    inputs_file: InputFileOption = None,
    batch: Annotated[str | None, typer.Option(
        "--batch", "-b", help="Batch sizes to sweep, e.g. 1,8,32 (replaces the inputs' first dimension).")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda (cuda:N).")] = "cpu",
    dtype: Annotated[DtypeChoice, typer.Option("--dtype", help="Compute dtype.")] = DtypeChoice.float32,
    precision: Annotated[PrecisionChoice, typer.Option(
        "--precision", help="float16/bfloat16 by casting model and inputs, or by torch.autocast.")
    ] = PrecisionChoice.cast,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed iterations first.")] = 5,
    iters: Annotated[int | None, typer.Option("--iters", "-n", min=1, help="Timed iterations.")] = None,
    min_time: Annotated[float | None, typer.Option(
        "--min-time", help="Time for at least this many seconds (and 10 iterations); default 2 s.")] = None,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="NHWC memory format.")] = False,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the model (inductor).")] = False,
    cuda_graph: Annotated[bool, typer.Option("--cuda-graph", help="Capture once, replay a CUDA graph.")] = False,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="torch intra-op threads.")] = None,
    cudnn_benchmark: Annotated[bool, typer.Option(
        "--cudnn-benchmark/--no-cudnn-benchmark", help="cudnn autotuning (CUDA only).")] = True,
    fmt: Annotated[LatencyFormat, typer.Option("--format", "-f", help="Output format.")] = LatencyFormat.table,
    per_layer: Annotated[bool, typer.Option("--per-layer", help="Time each module at --depth; roofline.")] = False,
    depth: DepthOption = 1,
    force: Annotated[bool, typer.Option("--force", help="Run even when the estimate exceeds free memory.")] = False,
    args: ArgsOption = None,
    weights: WeightsOption = None,
    non_strict: NonStrictOption = False,
) -> None:
    """Time the forward pass: mean, std, min, p50/p90/p99, throughput and peak memory, per batch size."""


    data = input_file(inputs_file, input_size)
    specs = parse_inputs(input_size) if input_size else None
    batches = parse_batches(batch)
    for size in batches or ():
        for spec in batched(specs or [], size):
            check_size(spec.shape, f"--input {shape_text(spec.shape)} (--batch {size})")
    with progress_bar() as progress:
        report = api.latency(
            model, simplest(specs) if specs else None, input_data=data, args=parse_args(args), weights=weights,
            strict=not non_strict, batches=batches, device=device,
            dtype=dtype.value, precision=precision.value, warmup=warmup, iters=iters, min_time=min_time,
            channels_last=channels_last, compile=compile_model, threads=threads,
            cudnn_benchmark=cudnn_benchmark, cuda_graph=cuda_graph, per_layer=per_layer, depth=depth,
            force=force, progress=progress,
        )
    show(report, fmt.value)


def show(report: LatencyReport, fmt: str) -> None:
    """Print the report: tables (+ conditions) on a terminal, the whole report as JSON, or CSV rows."""
    if fmt == "json":
        emit("json", [], [], document=report.to_dict())
        return
    cuda = report.conditions.device.startswith("cuda")
    if fmt == "csv":
        if any(result.per_layer for result in report.results):
            emit("csv", layer_rows(report, totals=False), layer_columns(batch=True))
        else:
            emit("csv", batch_rows(report), batch_columns(cuda, csv=True))
        return
    from rich.console import Console

    emit("table", batch_rows(report), batch_columns(cuda), title=f"latency of {report.conditions.model}",
         footer=conditions_text(report))
    for result in report.results:
        if result.per_layer is not None:
            rows = layer_rows(report, totals=True, only=result.batch)
            emit("table", rows, layer_columns(batch=False), title=f"per layer, batch {result.batch}",
                 footer=per_layer_text(result.per_layer))
    if report.notes:
        Console().print("\n".join(f"note: {note}" for note in report.notes))


def _ms(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _bytes(value: Any) -> str:

    return human_bytes(value) if isinstance(value, int) else ""


def _rate(value: Any, unit: str) -> str:

    return f"{human_count(value)}{unit}" if isinstance(value, (int, float)) else ""


def batch_rows(report: LatencyReport) -> list[dict[str, Any]]:
    rows = []
    for result in report.results:
        memory = result.memory
        rows.append({
            "batch": result.batch, "input": result.input_shapes, **vars(result.stats),
            "measured_bytes": memory.peak_bytes, "reserved_bytes": memory.reserved_bytes,
            "estimated_peak_bytes": memory.estimated_peak_bytes,
            "estimated_activation_bytes": memory.estimated_activation_bytes,
        })
    return rows


def batch_columns(cuda: bool, csv: bool = False) -> list[Any]:

    columns = [
        Column("batch", "batch", numeric=True), Column("input", "input", shape_text),
        *(Column(f"{key}_ms", f"{key} ms", _ms, numeric=True) for key in ("mean", "std", "min", "p50", "p90", "p99")),
        Column("throughput", "samples/s", lambda v: f"{v:,.1f}", numeric=True),
        Column("iterations", "iters", numeric=True),
    ]
    if csv:
        columns.insert(8, Column("max_ms", "max ms", _ms, numeric=True))
    if cuda:
        columns += [Column("measured_bytes", "peak allocated", _bytes, numeric=True),
                    Column("reserved_bytes", "peak reserved", _bytes, numeric=True)]
    else:
        columns += [Column("measured_bytes", "peak RSS increase", _bytes, numeric=True),
                    Column("estimated_activation_bytes", "est. activations", _bytes, numeric=True)]
    columns.append(Column("estimated_peak_bytes", "est. peak (trace)", _bytes, numeric=True))
    return columns


def layer_rows(report: LatencyReport, totals: bool, only: int | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for result in report.results:
        breakdown = result.per_layer
        if breakdown is None or (only is not None and result.batch != only):
            continue
        for layer in breakdown.layers:
            row = {"batch": result.batch, **vars(layer)}
            row["roof_percent"] = None if layer.roof_fraction is None else 100 * layer.roof_fraction
            rows.append(row)
        if totals:
            outside = 100 * breakdown.unattributed_ms / breakdown.total_mean_ms if breakdown.total_mean_ms else None
            rows.append({"label": "(outside timed modules)", "mean_ms": breakdown.unattributed_ms, "share": outside})
            rows.append({"label": "(forward, hooked)", "mean_ms": breakdown.total_mean_ms,
                         "p50_ms": breakdown.total_p50_ms, "share": 100.0})
    return rows


def layer_columns(batch: bool) -> list[Any]:

    columns = [
        Column("label", "module"), Column("type", "type"),
        Column("mean_ms", "mean ms", _ms, numeric=True), Column("p50_ms", "p50 ms", _ms, numeric=True),
        Column("share", "share", percent, numeric=True),
        Column("flops", "FLOPs", human_count, numeric=True), Column("bytes", "bytes", _bytes, numeric=True),
        Column("working_set", "working set", _bytes, numeric=True),
        Column("flops_per_s", "FLOP/s", lambda v: _rate(v, ""), numeric=True),
        Column("intensity", "FLOP/B", lambda v: f"{v:.2f}", numeric=True),
        Column("bound", "bound"), Column("roof_percent", "of roof", percent, numeric=True),
    ]
    return [Column("batch", "batch", numeric=True), *columns] if batch else columns


def conditions_text(report: LatencyReport) -> str:
    c = report.conditions
    parts = [
        f"{c.device} ({c.device_name})", f"torch {c.torch_version}", f"{c.threads} threads", c.dtype,
        f"precision {c.precision}" if c.precision != "none" else "", c.memory_format,
        f"compile={c.compile}" if c.compile else "eager", "CUDA graph" if c.cuda_graph else "",
        f"cudnn.benchmark={c.cudnn_benchmark}" if c.cudnn_benchmark is not None else "",
        f"warm-up {c.warmup}", c.timer,
    ]
    text = "conditions: " + ", ".join(p for p in parts if p)
    if report.results:
        text += f"\nmemory: {report.results[0].memory.method}"
    return text


def per_layer_text(breakdown: Any) -> str:

    pairs_ms = breakdown.pair_cost_us * breakdown.hook_pairs / 1e3
    lines = [
        f"method: {breakdown.method}",
        f"overhead: {breakdown.hook_pairs} hook pairs per forward x {breakdown.pair_cost_us:.1f} µs = "
        f"{pairs_ms:.3f} ms ({_percent_of(pairs_ms, breakdown.plain_p50_ms)} of the plain p50); observed: "
        f"hooked p50 {breakdown.total_p50_ms:.3f} ms vs plain {breakdown.plain_p50_ms:.3f} ms "
        f"({_percent_of(breakdown.overhead_ms, breakdown.plain_p50_ms, signed=True)})",
    ]
    peaks = breakdown.peaks
    if peaks is not None:
        lines.extend(roofline_lines(peaks))
    return "\n".join(lines)


def roofline_lines(peaks: Any) -> list[str]:
    """The roofline's numbers and where each comes from: the compute roof (measured and theoretical peak) and
    the bandwidth roof by working-set size."""
    measured, theoretical = peaks.measured_flops_per_s, peaks.theoretical_flops_per_s
    if not peaks.tiers:  # peaks made by hand: one compute and one bandwidth number
        return [f"roofline: {human_count(peaks.flops_per_s)}FLOP/s, {human_count(peaks.bytes_per_s)}B/s, ridge "
                f"{peaks.ridge:.1f} FLOP/B ({peaks.method})"]
    beaten = measured is not None and theoretical is not None and measured > theoretical
    tiers = ", ".join(f"{human_bytes(tier.working_set)} {human_count(tier.bytes_per_s)}" for tier in peaks.tiers)
    return [
        f"roofline: compute {human_count(peaks.flops_per_s)}FLOP/s, the higher of measured "
        f"{_rate(measured, 'FLOP/s') or 'n/a'} and theoretical {_rate(theoretical, 'FLOP/s') or 'unknown'}",
        f"  measured: {peaks.measured}",
        f"  theoretical: {peaks.theoretical}" + ("; the measured peak beats it: the cores run faster than that "
                                                 "clock" if beaten else ""),
        f"roofline: bandwidth (B/s) by working set: {tiers}; a layer's is the highest from the largest size below "
        f"its working set upward",
        f"  method: {peaks.method}",
        "FLOPs, bytes (every op's reads + writes) and working set (the most one op touches, each tensor once) "
        f"from the Trace; ridge at DRAM bandwidth {peaks.ridge:.1f} FLOP/B",
    ]


def _percent_of(part: float, whole: float, signed: bool = False) -> str:
    if not whole:
        return "n/a"
    return f"{100 * part / whole:+.1f}%" if signed else f"{100 * part / whole:.2f}%"
