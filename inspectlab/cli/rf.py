"""`inspectlab rf`: receptive field per module output, its autograd check, and the effective field."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from inspectlab.cli.common import ArgsOption, ModelArg, TextFormat, app, emit, guarded, parse_args

UNITS = ("centre", "first", "last")


@app.command("rf")
def rf_command(
    model: ModelArg,
    input_shape: Annotated[str | None, typer.Option(
        "--input", "-i", help="Input shape N,C,H,W (default: the zoo model's default input, else 1,3,224,224). "
        "Fields are in pixels of its last two axes.")] = None,
    depth: Annotated[int, typer.Option("--depth", "-d", min=0, help="Deepest module level shown.")] = 2,
    layers: Annotated[str | None, typer.Option("--layers", help="Glob on module names, e.g. 'layer*'.")] = None,
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
    weights: Annotated[str | None, typer.Option(
        "--weights", help="state_dict file (.pt/.pth loaded with weights_only=True, or .safetensors) for --erf "
        "(default: the random initialisation).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random inputs and initialisation.")] = 0,
    device: Annotated[str, typer.Option("--device", help="Device of --empirical and --erf runs.")] = "cpu",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing --erf file.")] = False,
) -> None:
    """Receptive field of every module output, from the whole dataflow graph: size through all paths and
    through the shortest one, stride, padding, and whether some path sees the whole input."""

    def body() -> None:
        import torch

        from inspectlab import api
        from inspectlab.analysis.receptive_field import field_report, field_rows, receptive_fields
        from inspectlab.errors import InspectlabError
        from inspectlab.inputs import parse_shape
        from inspectlab.render.formats import check_writable

        chosen_units = [u.strip() for u in units.split(",") if u.strip()]
        if not chosen_units or any(u not in UNITS for u in chosen_units):
            raise InspectlabError(f"--units takes a comma-separated subset of {', '.join(UNITS)}, got {units!r}")
        if erf is not None:
            check_writable(erf, force)
        builder_args = parse_args(args)
        recorded = api.trace(model, parse_shape(input_shape) if input_shape else None, args=builder_args)
        fields = receptive_fields(recorded)
        rows = field_rows(fields, depth, layers)
        if layers and not rows:
            raise InspectlabError(f"no module matches --layers {layers!r} at depth ≤ {depth}")
        report = field_report(fields, model, depth, layers)
        shape = recorded.tensors[fields.input_id].shape
        document = report.to_dict()
        lines = _summary_lines(report)
        failures = 0
        network = None
        if empirical or erf:
            torch.manual_seed(seed)
            network = api.resolve_model(model, builder_args, device="cpu")
        if empirical:
            from inspectlab.runtime.empirical_rf import check_fields

            checks = check_fields(network, fields, rows, shape, device, chosen_units)
            failures = _attach_checks(report.layers, checks)
            document = report.to_dict()
            measured = [c for c in checks if c.reachable]
            skipped = len({c.name for c in checks if not c.reachable})
            lines.append(f"Empirical check (autograd on a linear positive copy): {len(measured) - failures}/"
                         f"{len(measured)} measured fields equal the analytic ones"
                         + (f"; {skipped} rows not measurable (no module call returns their tensor)"
                            if skipped else ""))
        if erf:
            document["erf"], line = _effective_field(network, fields, erf_layer, shape, samples, seed, device,
                                                     weights, erf, force, model)
            lines.append(line)
        emit(fmt.value, report.layers, _columns(empirical), title=f"{model} · receptive fields · input "
             f"{'×'.join(map(str, shape))}", document=document, footer="\n".join(lines))
        if fmt.value != "table":
            for line in lines:
                typer.echo(line, err=True)
        if failures:
            typer.echo(f"error: {failures} measured field(s) differ from the analytic ones", err=True)
            raise typer.Exit(1)

    guarded(body)


def _pair(value: Any) -> str:
    if value is None:
        return "?"
    values = [f"{v:g}" if isinstance(v, float) else str(v) for v in value]
    return "×".join(values)


def _columns(empirical: bool) -> list[Any]:
    from inspectlab.render.formats import Column, shape_text

    columns = [
        Column("name", "layer"), Column("output_shape", "output shape", shape_text),
        Column("rf", "rf", _pair, numeric=True), Column("rf_min", "rf (shortest path)", _pair, numeric=True),
        Column("stride", "stride", _pair, numeric=True), Column("padding", "padding", _pair, numeric=True),
        Column("global", "global", lambda g: "yes" if g else "", numeric=False),
    ]
    if empirical:
        columns += [Column("measured", "measured", str, numeric=True), Column("check", "check")]
    return columns


def _attach_checks(rows: list[dict[str, Any]], checks: list[Any]) -> int:
    """Add each row's measurements (JSON: `empirical`; table: `measured`, `check`); return the mismatches."""
    by_name: dict[str, list[Any]] = {}
    for check in checks:
        by_name.setdefault(check.name, []).append(check)
    failures = 0
    for row in rows:
        found = [c for c in by_name.get(row["name"], []) if c.reachable]
        failures += sum(not c.match for c in found)
        row["empirical"] = [{
            "unit": c.mode, "index": c.unit, "analytic": c.analytic, "measured": c.measured, "fits": c.fits,
            "match": c.match,
        } for c in found]
        row["measured"] = " / ".join("all" if c.mode == "global" else _pair(c.size) for c in found)
        row["check"] = ("✓" if all(c.match for c in found) else "✗") if found else ""
    return failures


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
    return lines


def _effective_field(network: Any, fields: Any, layer: str | None, shape: Any, samples: int, seed: int,
                     device: str, weights: str | None, path: str, force: bool, model: str) -> tuple[dict, str]:
    from inspectlab.analysis.receptive_field import field_rows
    from inspectlab.errors import InspectlabError
    from inspectlab.render.erf_plot import save_erf_plot
    from inspectlab.runtime.empirical_rf import effective_field, load_weights

    if weights:
        load_weights(network, weights)
    candidates = field_rows(fields)
    if layer is not None:
        named = [r for r in candidates if r.name == layer]
        if not named:
            raise InspectlabError(f"--erf-layer {layer!r} is not a module output of {model}")
        row = named[0]
    else:
        spatial = [r for r in candidates if sum(a.table is not None for a in r.field.axes) == 2]
        if not spatial:
            raise InspectlabError("--erf: no module output keeps a per-position field")
        row = max(spatial, key=lambda r: r.tensor)
    result = effective_field(network, fields, row, shape, samples, seed, device)
    size = row.field.size or ()
    title = (f"{model} · {row.name} unit ({result.unit[0]}, {result.unit[1]}) · ERF over {samples} random inputs "
             f"({'loaded' if weights else 'random-init'} weights)")
    save_erf_plot(path, result.heat, result.center, result.box, result.radius50, result.radius90, title, force)
    line = (f"Effective field of {row.name} unit ({result.unit[0]}, {result.unit[1]}): 50% of the mass within "
            f"{result.radius50:.1f} px, 90% within {result.radius90:.1f} px of its centre; analytic field "
            f"{_pair(size)} · wrote {path}")
    info = {"layer": row.name, "unit": result.unit, "samples": samples, "radius50": result.radius50,
            "radius90": result.radius90, "center": list(result.center), "analytic_rf": list(size), "path": path}
    return info, line
