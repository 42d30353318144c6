"""`inspectlab stages`: the feature pyramid of a backbone, one row per stride (docs/stages.md)."""

from __future__ import annotations

from typing import Annotated, Any

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
from inspectlab.core.shapes import inputs_text
from inspectlab.render.columns import STAGES_TABLE, table_columns
from inspectlab.render.formats import human_count


def _footer(report: Any) -> str:
    t = report.totals
    if report.extra.get("method") == "feature_info":
        how = "Stages: the model's own feature_info (timm features_only)."
    else:
        how = (f"Stages: the last module output at each stride of the encoder, module depth "
               f"{report.extra.get('depth')} (docs/stages.md).")
    lines = [how, f"Whole model: {t['params']:,} params · MACs {t['macs']:,} ({human_count(t['macs'])}) · "
                  f"{t['stages']} stages, the coarsest at stride {t['output_stride']:g}"]
    lines.extend(f"Note: {note}" for note in report.extra.get("notes", []))
    return "\n".join(lines)


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
    shapes = inputs_text(report.extra.get("input_details"), report.inputs)
    emit(fmt.value, report.layers, table_columns(STAGES_TABLE), title=f"{model} · stages · input {shapes}",
         document=report.to_dict(), output=output, force=force, footer=_footer(report),
         csv_keys=list(report.layers[0]) if report.layers else None)
