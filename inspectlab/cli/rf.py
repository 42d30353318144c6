"""`inspectlab rf`: receptive field per module output, its autograd check, and the effective field."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from inspectlab import api
from inspectlab.cli.common import (
    ArgsOption,
    InputFileOption,
    ModelArg,
    NonStrictOption,
    TextFormat,
    WeightsOption,
    command,
    emit,
    input_file,
    parse_args,
)
from inspectlab.core.shapes import parse_input, shape_text, simplest
from inspectlab.render.texts import field_result_lines, rf_columns


@command("rf")
def rf_command(
    model: ModelArg,
    input_shape: Annotated[str | None, typer.Option(
        "--input", "-i", help="Input shape N,C,H,W, [NAME=]SHAPE[:DTYPE] as elsewhere (default: the model's own "
        "default input, else 1,3,224,224). Fields are in pixels of its last two axes.")] = None,
    inputs_file: InputFileOption = None,
    depth: Annotated[int, typer.Option("--depth", "-d", min=0, help="Deepest module level shown.")] = 2,
    layers: Annotated[str | None, typer.Option(
        "--layers", help="Glob on module names, e.g. 'layer*' (fnmatch: * crosses dots), or re:REGEX; the model "
        "is (root).")] = None,
    fmt: Annotated[TextFormat, typer.Option("--format", "-f", help="Output format.")] = TextFormat.table,
    args: ArgsOption = None,
    empirical: Annotated[bool, typer.Option(
        "--empirical", help="Check every row's field, stride and global flag against autograd support on a "
        "linear, positive copy of the model; rows it cannot check are listed with the reason (exit code 1 if "
        "any differs).")] = False,
    units: Annotated[str, typer.Option(
        "--units", help="Units --empirical measures per row: centre, first, last (comma-separated).")] = "centre",
    erf: Annotated[str | None, typer.Option(
        "--erf", help="Write the effective receptive field heatmap (PNG) of --erf-layer's centre unit here.")] = None,
    erf_layer: Annotated[str | None, typer.Option(
        "--erf-layer", help="Module whose output --erf measures (default: the last one with a spatial output).")
    ] = None,
    samples: Annotated[int, typer.Option("--samples", min=1, help="Random inputs averaged by --erf.")] = 16,
    weights: WeightsOption = None,
    non_strict: NonStrictOption = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random inputs and initialisation.")] = 0,
    device: Annotated[str, typer.Option("--device", help="Device of --empirical and --erf runs.")] = "cpu",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing --erf file, and run --empirical / "
                                        "--erf even where the memory estimate says they won't fit.")] = False,
) -> None:
    """Receptive field of every module output, from the whole dataflow graph: size through all paths and
    through the shortest one, stride, padding, and whether some path sees the whole input."""
    data = input_file(inputs_file, input_shape)
    shape = simplest([parse_input(input_shape)])[0] if input_shape is not None else None  # --input '' is an error
    result = api.rf(model, shape, input_data=data, args=parse_args(args), depth=depth, layers=layers,
                    empirical=empirical,
                    units=[u.strip() for u in units.split(",") if u.strip()], erf=erf, erf_layer=erf_layer,
                    samples=samples, weights=weights, seed=seed, device=device, force=force,
                    strict=not non_strict)
    report = result.report
    document = report.to_dict()
    lines = field_result_lines(result)
    if result.check is not None:
        document["empirical"] = asdict(result.check)
    if result.effective is not None:
        document["erf"] = asdict(result.effective)
    emit(fmt.value, report.layers, rf_columns(empirical), title=f"{model} · receptive fields · input "
         f"{shape_text(result.input_shape)}", document=document, footer="\n".join(lines))
    if fmt.value != "table":
        for line in lines:
            typer.echo(line, err=True)
    if result.check is not None and result.check.differ:
        typer.echo(f"error: {result.check.differ} row(s) differ from their autograd support", err=True)
        raise typer.Exit(1)
