"""`inspectlab memory`: will it fit? Peak memory of inference or of one training step, from meta traces
(docs/memory.md)."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated, Any

import typer

from inspectlab import api
from inspectlab.cli.common import (
    ArgsOption,
    DepthOption,
    ExportFormat,
    ForceOption,
    InputOption,
    ModelArg,
    OutputOption,
    command,
    emit,
    input_sizes,
    parse_args,
)
from inspectlab.core.arguments import parse_bytes
from inspectlab.core.io import check_writable, write_atomic
from inspectlab.core.shapes import shape_text
from inspectlab.render.memory_tables import columns_of, footer_lines, html_document, markdown_document, title_of

Optimizer = Enum("Optimizer", {name: name for name in ("sgd", "momentum", "adam", "adamw")}, type=str)  # type: ignore[misc]
Amp = Enum("Amp", {"fp16": "fp16", "bf16": "bf16"}, type=str)  # type: ignore[misc]
Solve = Enum("Solve", {"batch": "batch", "size": "size"}, type=str)  # type: ignore[misc]


@command("memory")
def memory_command(
    model: ModelArg,
    inputs: InputOption = None,
    train: Annotated[bool, typer.Option(
        "--train", help="One steady-state training step instead of inference.")] = False,
    optimizer: Annotated[Optimizer, typer.Option(
        "--optimizer", help="With --train: sgd (no state), momentum (1× the trainable parameters), adam or adamw "
        "(2×).")] = Optimizer.adamw,  # type: ignore[attr-defined]
    amp: Annotated[Amp | None, typer.Option(
        "--amp", help="With --train: the forward under torch.autocast in this dtype.")] = None,
    grad_checkpoint: Annotated[list[str] | None, typer.Option(
        "--grad-checkpoint", metavar="GLOB", help="With --train: activation checkpointing of the modules "
        "matching this glob (repeatable; 're:' for a regular expression).")] = None,
    budget: Annotated[str | None, typer.Option(
        "--budget", help="A memory budget (24GiB, 500MB): the largest batch whose peak fits it.")] = None,
    solve: Annotated[Solve, typer.Option(
        "--solve", help="With --budget: solve for the batch, or for the largest square input side at the given "
        "batch.")] = Solve.batch,  # type: ignore[attr-defined]
    loss: Annotated[str | None, typer.Option(
        "--loss", metavar="NAME", help="With --train: the output the loss sums (a dict key, a tuple index); "
        "default: all.")] = None,
    depth: DepthOption = 2,
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="Output format.")] = ExportFormat.table,
    output: OutputOption = None,
    plot: Annotated[str | None, typer.Option(
        "--plot", metavar="FILE.png", help="Write the memory timeline to this PNG file.")] = None,
    force: ForceOption = False,
    args: ArgsOption = None,
) -> None:
    """Peak memory of one inference forward (default) or of one steady-state training step (--train), by
    category, with the op and module where it happens, from meta traces only; with --budget, the largest batch
    that fits."""
    for path in (output, plot):
        if path:
            check_writable(path, force)
    report = api.memory(model, input_sizes(inputs), train=train, optimizer=optimizer.value,
                        amp=amp.value if amp else None, grad_checkpoint=grad_checkpoint or None, loss=loss,
                        budget=parse_bytes(budget, "--budget") if budget is not None else None, solve=solve.value,
                        depth=depth, args=parse_args(args))
    document = report.to_dict()
    title = title_of(document, " + ".join(shape_text(shape) for shape in report.inputs))
    png = _png(report, title) if plot or fmt.value == "html" else None
    if plot and png is not None:
        write_atomic(plot, png, force)
        typer.echo(f"wrote {plot}", err=True)
    if fmt.value in ("html", "markdown"):
        text = html_document(document, title, png) if fmt.value == "html" else markdown_document(document, title)
        if output is None:
            sys.stdout.write(text)
        else:
            write_atomic(output, text, force)
            typer.echo(f"wrote {output}", err=True)
        return
    emit(fmt.value, report.layers, columns_of(document), title=title, document=document, output=output,
         force=force, footer="\n".join(footer_lines(document)), csv_keys=list(report.layers[0]) if report.layers
         else None)


def _png(report: Any, title: str) -> bytes:
    from inspectlab.render.memory_plot import timeline_png
    from inspectlab.render.memory_tables import plot_points

    peak = report.totals["peak_bytes"]
    top = max(report.moments, key=lambda moment: moment.bytes, default=None)
    return timeline_png(plot_points(report.moments), report.phase_starts, title,
                        (top.op, peak) if top is not None else None)
