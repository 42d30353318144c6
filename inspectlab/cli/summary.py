"""`inspectlab summary` and `inspectlab flops`: the Trace's per-layer table and the counting conventions."""

from __future__ import annotations

from typing import Annotated, Any

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
from inspectlab.core.naming import leaf_label
from inspectlab.core.shapes import inputs_text
from inspectlab.render.columns import SUMMARY_COLUMNS, summary_columns
from inspectlab.render.formats import Column, human_bytes, human_count

BackwardOption = Annotated[bool, typer.Option("--backward", help="Also count the backward pass of sum(outputs).")]

DEFAULT_COLUMNS = "name,type,input_shapes,output_shapes,params,macs,other_flops,output_bytes,macs_pct"


def _totals_text(report: Any) -> str:

    t = report.totals
    lines = [
        f"Params: {t['params']:,} (trainable {t['trainable_params']:,}, non-trainable {t['non_trainable_params']:,})"
        f" · {human_bytes(t['param_bytes'])}",
        f"MACs: {t['macs']:,} ({human_count(t['macs'])}) · FLOPs: {t['flops']:,} ({human_count(t['flops'])})"
        f" · other FLOPs: {t['other_flops']:,} ({human_count(t['other_flops'])})",
        f"Input: {human_bytes(t['input_bytes'])} · activations (all outputs): {human_bytes(t['activation_bytes'])}"
        f" · estimated peak inference memory: {human_bytes(t['peak_bytes'])}",
    ]
    if report.extra.get("uncounted_ops"):
        lines.append("Uncounted ops (no formula): " + ", ".join(
            f"{name} ×{n}" for name, n in report.extra["uncounted_ops"].items()))
    lines.extend(f"Note: {note}" for note in report.extra.get("notes", []))
    return "\n".join(lines)


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
    rows = [{**row, "label": "  " * (row["depth"] - 1) + leaf_label(row["name"])} for row in report.layers]
    emit(fmt.value, rows, chosen,
         title=f"{model} · input {_shapes_text(report)}",
         document=report.to_dict(), output=output, force=force, footer=_totals_text(report),
         csv_keys=list(report.layers[0]) if report.layers else None)


@command("flops")
def flops_command(
    model: ModelArg,
    inputs: InputOption = None,
    inputs_file: InputFileOption = None,
    compare: Annotated[bool, typer.Option("--compare", help="Also run fvcore, torchinfo and FlopCounterMode "
                                          "themselves (a real CPU run) and print their own totals.")] = False,
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
    rows = [{**r, "total_h": human_count(r["total"]),
             "peer_h": "" if r["peer"] is None else (r["peer"] if isinstance(r["peer"], str) else f"{r['peer']:,}"),
             "match_h": {True: "✓", False: "✗", None: ""}[r["match"]]} for r in report.layers]
    columns = [Column("convention", "convention"), Column("unit", "unit"),
               Column("total", "total", lambda v: f"{v:,}", numeric=True), Column("total_h", "≈", numeric=True)]
    if compare:
        columns += [Column("peer_h", "peer's own number", numeric=True), Column("match_h", "same")]
    columns.append(Column("counts", "what it counts"))
    if fmt.value == "table":
        columns.pop()
    emit(fmt.value, rows, columns, title=f"{model} · input {_shapes_text(report)}"
         + (" · forward + backward" if backward else ""), document=report.to_dict(), output=output,
         force=force, footer=_breakdown_text(report))


def _breakdown_text(report: Any) -> str:

    lines = ["What each convention counts:"]
    lines += [f"  {row['convention']:<11}{row['counts']}" for row in report.layers]
    lines.append("Breakdown by category (inspectlab convention):")
    for category, t in report.extra["breakdown"].items():
        macs, other = human_count(t["macs"]), human_count(t["other_flops"])
        lines.append(f"  {category:<12} MACs {macs:>9}   other FLOPs {other:>9}")
    if report.extra.get("uncounted_ops"):
        lines.append("Uncounted ops: " + ", ".join(f"{k} ×{v}" for k, v in report.extra["uncounted_ops"].items()))
    return "\n".join(lines)


def _shapes_text(report: Any) -> str:
    """"1×3×224×224 + 1×1×224×224", or with names and dtypes "input_ids=1×128:int64 + ..."."""
    return inputs_text(report.extra.get("input_details"), report.inputs)
