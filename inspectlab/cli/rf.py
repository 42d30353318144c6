"""`inspectlab rf`: receptive field per module output, its autograd check, and the effective field."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

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
from inspectlab.render.formats import Column


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
        "--empirical", help="Check every row against autograd on a linear, positive copy of the model "
        "(exit code 1 if any differs).")] = False,
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
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing --erf file.")] = False,
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
    lines = _summary_lines(report)
    if result.check is not None:
        check = result.check
        lines.append(f"Empirical check (autograd on a linear positive copy): {check.measured - check.differ}/"
                     f"{check.measured} measured fields equal the analytic ones"
                     + (f"; {check.unmeasurable} rows not measurable (no module call returns their tensor)"
                        if check.unmeasurable else ""))
    if result.effective is not None:
        found = result.effective
        document["erf"] = asdict(found)
        lines.append(f"Effective field of {found.layer} unit ({found.unit[0]}, {found.unit[1]}): 50% of the mass "
                     f"within {found.radius50:.1f} px, 90% within {found.radius90:.1f} px of its centre; analytic "
                     f"field {_pair(found.analytic_rf)} · wrote {found.path}")
    emit(fmt.value, report.layers, _columns(empirical), title=f"{model} · receptive fields · input "
         f"{shape_text(result.input_shape)}", document=document, footer="\n".join(lines))
    if fmt.value != "table":
        for line in lines:
            typer.echo(line, err=True)
    if result.check is not None and result.check.differ:
        typer.echo(f"error: {result.check.differ} measured field(s) differ from the analytic ones", err=True)
        raise typer.Exit(1)


def _pair(value: Any) -> str:
    """[427, 427] -> "427×427"; unknown -> "?"."""
    return "?" if value is None else shape_text(value)


def _columns(empirical: bool) -> list[Any]:

    columns = [
        Column("name", "layer"), Column("output_shape", "output shape", shape_text),
        Column("rf", "rf", _pair, numeric=True), Column("rf_min", "rf (shortest path)", _pair, numeric=True),
        Column("stride", "stride", _pair, numeric=True), Column("padding", "padding", _pair, numeric=True),
        Column("global", "global", lambda g: "yes" if g else "", numeric=False),
    ]
    if empirical:
        columns += [Column("measured", "measured", str, numeric=True), Column("check", "check")]
    return columns


def _summary_lines(report: Any) -> list[str]:
    lines = []
    totals = report.totals
    if totals:
        lines.append(f"Model output: rf {_pair(totals['rf'])} (shortest path {_pair(totals['rf_min'])}), stride "
                     f"{_pair(totals['stride'])}, padding {_pair(totals['padding'])}"
                     + (", global (some path sees the whole input)" if totals["global"] else ""))
    notes = report.extra.get("notes", [])
    misaligned = [n for n in notes if n["kind"] == "misaligned"]
    if misaligned:
        lines.append(f"Misaligned merges: {len(misaligned)}, e.g. " + "; ".join(
            f"{n['module']}: {n['text']}" for n in misaligned[:3]))
    lines.extend(f"No rule: {n['text']}" for n in notes if n["kind"] == "no-rule")
    lines.extend(f"Inconsistent (a bug; the field is shown as unknown): {n['text']}" for n in notes
                 if n["kind"] == "inconsistent")
    return lines
