"""`inspectlab summary` and `inspectlab flops`: the Trace's per-layer table and the counting conventions."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from inspectlab import api
from inspectlab.cli.common import (
    ArgsOption,
    DepthOption,
    ExportFormat,
    ForceOption,
    InputFileOption,
    InputOption,
    ModelArg,
    NonStrictOption,
    OutputOption,
    WeightsOption,
    command,
    emit,
    input_file,
    input_sizes,
    parse_args,
)
from inspectlab.core.conventions import check_convention
from inspectlab.core.errors import InspectlabError
from inspectlab.core.io import check_writable
from inspectlab.render.columns import SUMMARY_COLUMNS, SUMMARY_DEFAULT, summary_columns
from inspectlab.render.texts import (
    NAMES,
    flops_breakdown,
    flops_columns,
    flops_rows,
    input_title,
    summary_rows,
    summary_totals,
)

BackwardOption = Annotated[bool, typer.Option("--backward", help="Also count the backward pass of sum(outputs).")]
NamesChoice = Enum("NamesChoice", {name: name for name in NAMES}, type=str)  # type: ignore[misc]

DEFAULT_COLUMNS = ",".join(SUMMARY_DEFAULT)


@command("summary")
def summary_command(
    model: ModelArg,
    inputs: InputOption = None,
    inputs_file: InputFileOption = None,
    dtype: Annotated[str, typer.Option("--dtype", help="float32, float16, bfloat16 or float64.")] = "float32",
    device: Annotated[str, typer.Option("--device", help="meta (no compute, any size), cpu or cuda.")] = "meta",
    depth: DepthOption = 2,
    columns: Annotated[str, typer.Option(
        "--columns", show_default=False, help="Comma-separated columns, from: " + ", ".join(SUMMARY_COLUMNS)
        + ". Default: " + DEFAULT_COLUMNS.replace(",", ", ") + ".")] = DEFAULT_COLUMNS,
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="Output format.")] = ExportFormat.table,
    output: OutputOption = None,
    force: ForceOption = False,
    args: ArgsOption = None,
    weights: WeightsOption = None,
    non_strict: NonStrictOption = False,
    backward: BackwardOption = False,
    names: Annotated[NamesChoice, typer.Option(
        "--names", help="The layer column: leaf names indented by depth, or full qualified names.")]
    = NamesChoice.leaf,  # type: ignore[attr-defined]
) -> None:
    """Params, MACs/FLOPs, shapes and memory per layer, and the model's totals."""
    chosen = summary_columns(columns)
    if output:
        check_writable(output, force)
    wants_rf = any(c.key in ("rf", "stride") for c in chosen)
    data = input_file(inputs_file, inputs)
    report = api.summary(model, input_sizes(inputs), input_data=data, args=parse_args(args), weights=weights,
                         strict=not non_strict, depth=depth, device=device,
                         dtype=dtype, backward=backward, receptive_field=wants_rf)
    emit(fmt.value, summary_rows(report, names.value), chosen,
         title=f"{model} · input {input_title(report)}",
         document=report.to_dict(), output=output, force=force, footer=summary_totals(report),
         csv_keys=list(report.layers[0]) if report.layers else None)


@command("flops")
def flops_command(
    model: ModelArg,
    inputs: InputOption = None,
    inputs_file: InputFileOption = None,
    compare: Annotated[bool, typer.Option("--compare", help="Also run fvcore, torchinfo and FlopCounterMode "
                                          "themselves (a real CPU run) and print their own totals; ptflops and thop "
                                          "too where they are installed (inspectlab[peers]).")] = False,
    convention: Annotated[str | None, typer.Option("--convention", help="Print one total only: "
                                                   "inspectlab, torch, fvcore or torchinfo.")] = None,
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="Output format.")] = ExportFormat.table,
    output: OutputOption = None,
    force: ForceOption = False,
    args: ArgsOption = None,
    weights: WeightsOption = None,
    non_strict: NonStrictOption = False,
    backward: BackwardOption = False,
) -> None:
    """Total FLOPs/MACs under each counting convention (inspectlab, torch, fvcore, torchinfo) and why they differ."""
    if convention is not None:
        check_convention(convention)
    if output:
        check_writable(output, force)
    data = input_file(inputs_file, inputs)
    report = api.flops(model, input_sizes(inputs), input_data=data, args=parse_args(args), backward=backward,
                       compare=compare, weights=weights, strict=not non_strict)
    if convention is not None:
        row = next((r for r in report.layers if r["convention"] == convention), None)
        if row is None:
            raise InspectlabError(f"the {convention} convention has no backward count")
        typer.echo(str(row["total"]))
        return
    columns = flops_columns(compare, counts=fmt.value != "table")
    emit(fmt.value, flops_rows(report), columns, title=f"{model} · input {input_title(report)}"
         + (" · forward + backward" if backward else ""), document=report.to_dict(), output=output,
         force=force, footer=flops_breakdown(report))
