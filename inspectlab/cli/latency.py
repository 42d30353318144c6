"""`inspectlab latency`: timed forwards (statistics, throughput, peak memory), optionally per layer."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Annotated

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
from inspectlab.render.latency_tables import (
    batch_columns,
    batch_rows,
    conditions_text,
    layer_columns,
    layer_rows,
    per_layer_text,
)

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
    emit("table", batch_rows(report), batch_columns(cuda), title=f"latency of {report.conditions.model}",
         footer=conditions_text(report))
    for result in report.results:
        if result.per_layer is not None:
            rows = layer_rows(report, totals=True, only=result.batch)
            emit("table", rows, layer_columns(batch=False), title=f"per layer, batch {result.batch}",
                 footer=per_layer_text(result.per_layer))
    if report.notes:
        typer.echo("\n".join(f"note: {note}" for note in report.notes))
