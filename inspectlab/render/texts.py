"""What each report's table shows and the lines under it, for the terminal (cli/) and the notebook views
(render/notebook.py) alike: the summary's labelled rows and totals, the flops conventions and breakdown, the
stages footer, the receptive-field table and its lines. Reports are read by their keys (duck-typed)."""

from __future__ import annotations

from typing import Any

from inspectlab.core.naming import leaf_label
from inspectlab.core.shapes import inputs_text, shape_text
from inspectlab.render.columns import short_shape
from inspectlab.render.formats import KEEP, Column, human_bytes, human_count

NAMES = ("leaf", "full")  # `summary --names`: the leaf name indented by depth, or the full qualified name


def input_title(report: Any) -> str:
    """"1×3×224×224 + 1×1×224×224", or with names and dtypes "input_ids=1×128:int64 + ..."."""
    return inputs_text(report.extra.get("input_details"), report.inputs)


# summary --------------------------------------------------------------------------------------------------------
def summary_rows(report: Any, names: str = "leaf") -> list[dict[str, Any]]:
    """The summary's rows with the "label" its first column shows: the leaf name indented by depth ("leaf"), or
    the full qualified name ("full")."""
    if names not in NAMES:
        raise ValueError(f"names must be one of {', '.join(NAMES)}, not {names!r}")
    if names == "full":
        return [{**row, "label": row["name"]} for row in report.layers]
    return [{**row, "label": "  " * (row["depth"] - 1) + leaf_label(row["name"])} for row in report.layers]


def summary_totals(report: Any) -> str:
    """The lines under the summary's table: params, MACs/FLOPs, memory, uncounted ops, notes."""
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


# flops ----------------------------------------------------------------------------------------------------------
def flops_rows(report: Any) -> list[dict[str, Any]]:
    """The conventions' rows with their shown texts: the total in SI units, the peer's number, ✓/✗."""
    return [{**r, "total_h": "" if r["total"] is None else human_count(r["total"]),
             "peer_h": "" if r["peer"] is None else (r["peer"] if isinstance(r["peer"], str) else f"{r['peer']:,}"),
             "match_h": {True: "✓", False: "✗", None: ""}[r["match"]]} for r in report.layers]


def flops_columns(compare: bool, counts: bool = True) -> list[Column]:
    """convention, unit, total, ≈ (+ the peer's own number and whether it is the same), what it counts."""
    columns = [Column("convention", "convention", priority=KEEP), Column("unit", "unit", priority=KEEP),
               Column("total", "total", lambda v: f"{v:,}", numeric=True, priority=KEEP),
               Column("total_h", "≈", numeric=True, priority=60)]
    if compare:
        columns += [Column("peer_h", "peer's own number", numeric=True, priority=KEEP, wraps=True),
                    Column("match_h", "same", priority=KEEP)]
    if counts:
        columns.append(Column("counts", "what it counts", priority=10, wraps=True))
    return columns


def flops_breakdown(report: Any) -> str:
    """The lines under the conventions: what each counts, MACs and other FLOPs per category, uncounted ops."""
    lines = ["What each convention counts:"]
    for row in report.layers:
        lines.append(f"  {row['convention']:<11}{row['counts']}")
        if row.get("differs"):  # what the peer, on the path it runs, leaves out (and why the match still holds)
            lines.append(f"  {'':<11}differs: {row['differs']}")
    lines.append("Breakdown by category (inspectlab convention):")
    for category, t in report.extra["breakdown"].items():
        macs, other = human_count(t["macs"]), human_count(t["other_flops"])
        lines.append(f"  {category:<12} MACs {macs:>9}   other FLOPs {other:>9}")
    if report.extra.get("uncounted_ops"):
        lines.append("Uncounted ops: " + ", ".join(f"{k} ×{v}" for k, v in report.extra["uncounted_ops"].items()))
    return "\n".join(lines)


# stages ---------------------------------------------------------------------------------------------------------
def stages_footer(report: Any) -> str:
    """How the stages were found, the whole model's params and MACs, notes."""
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


# receptive fields -----------------------------------------------------------------------------------------------
def pair(value: Any) -> str:
    """[427, 427] -> "427×427"; unknown -> "?"."""
    return "?" if value is None else shape_text(value)


def rf_columns(empirical: bool) -> list[Column]:
    """The receptive-field table: layer, output shape, rf, rf (shortest path), stride, padding, global (+ the
    empirical check's measured field and verdict)."""
    columns = [
        Column("name", "layer", priority=KEEP, wraps=True),
        Column("output_shape", "output shape", shape_text, priority=40, short=short_shape),
        Column("rf", "rf", pair, numeric=True, priority=KEEP), Column("rf_min", "rf (shortest path)", pair,
                                                                      numeric=True, priority=50),
        Column("stride", "stride", pair, numeric=True, priority=KEEP),
        Column("padding", "padding", pair, numeric=True, priority=45),
        Column("global", "global", lambda g: "yes" if g else "", priority=60),
    ]
    if empirical:
        columns += [Column("measured", "measured rf / stride", str, numeric=True, priority=KEEP),
                    Column("check", "check", priority=KEEP)]
    return columns


def rf_lines(report: Any) -> list[str]:
    """The lines under the receptive-field table: the model output's field, misaligned merges, missing rules."""
    lines = []
    totals = report.totals
    outputs = report.extra.get("outputs", [])
    if len(outputs) > 1 or (outputs and outputs[0].get("rf") is None):  # each output tensor, or why it has none
        lines += [f"Model output {out['name']}: " + (_field_text(out) if out.get("rf") is not None else
                                                      "; ".join(out.get("notes") or ["no field"])) for out in outputs]
    elif totals:
        lines.append("Model output: " + _field_text(totals))
    notes = report.extra.get("notes", [])
    flags = [n for n in notes if n["kind"] == "flag"]
    if flags:
        lines.append(f"Flags: {len(flags)}, e.g. " + "; ".join(f"{n['module']}: {n['text']}" for n in flags[:2]))
    misaligned = [n for n in notes if n["kind"] == "misaligned"]
    if misaligned:
        lines.append(f"Misaligned merges: {len(misaligned)}, e.g. " + "; ".join(
            f"{n['module']}: {n['text']}" for n in misaligned[:3]))
    lines.extend(f"No rule: {n['text']}" for n in notes if n["kind"] == "no-rule")
    lines.extend(f"Inconsistent (a bug; the field is shown as unknown): {n['text']}" for n in notes
                 if n["kind"] == "inconsistent")
    return lines


def _field_text(field: Any) -> str:
    return (f"rf {pair(field['rf'])} (shortest path {pair(field['rf_min'])}), stride {pair(field['stride'])}, "
            f"padding {pair(field['padding'])}" + (", global (some path sees the whole input)" if field["global"]
                                                   else ""))


def field_result_lines(result: Any) -> list[str]:
    """`rf_lines` and what `rf` measured: the empirical check's count, the effective field."""
    lines = rf_lines(result.report)
    check = result.check
    if check is not None:
        lines.extend(check.summary_lines())
    found = result.effective
    if found is not None:
        lines.append(f"Effective field of {found.layer} unit ({found.unit[0]}, {found.unit[1]}): 50% of the mass "
                     f"within {found.radius50:.1f} px, 90% within {found.radius90:.1f} px of its centre; analytic "
                     f"field {pair(found.analytic_rf)} · wrote {found.path}")
    return lines
