"""`inspectlab stages`: the feature pyramid of a backbone, one row per stride (docs/stages.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from inspectlab import api
from inspectlab.cli.common import (
    ArgsOption,
    ExportFormat,
    ForceOption,
    InputOption,
    ModelArg,
    NonStrictOption,
    OutputOption,
    WeightsOption,
    command,
    emit,
    input_sizes,
    parse_args,
)
from inspectlab.core.io import check_writable
from inspectlab.render.columns import STAGES_TABLE, table_columns
from inspectlab.render.texts import input_title, stages_footer


@command("stages")
def stages_command(
    model: ModelArg,
    inputs: InputOption = None,
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="Output format.")] = ExportFormat.table,
    output: OutputOption = None,
    force: ForceOption = False,
    args: ArgsOption = None,
    weights: WeightsOption = None,
    non_strict: NonStrictOption = False,
) -> None:
    """The feature pyramid of a backbone: at each stride, the stage's module, channels, output shape, receptive
    field, and the MACs and params of everything up to it."""
    if output:
        check_writable(output, force)
    report = api.stages(model, input_sizes(inputs), args=parse_args(args), weights=weights, strict=not non_strict)
    emit(fmt.value, report.layers, table_columns(STAGES_TABLE), title=f"{model} · stages · input "
         f"{input_title(report)}", document=report.to_dict(), output=output, force=force, footer=stages_footer(report),
         csv_keys=list(report.layers[0]) if report.layers else None)
