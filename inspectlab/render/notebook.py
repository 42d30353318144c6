"""The notebook and rich views of the result objects (core/display.py explains the hook): a styled HTML table
(a sticky header, numbers right-aligned, the totals below it) for `_repr_html_`, and a table fitted to the
console (render/fit.py) for `__rich__`.

Importing this module registers the views of: `Report` (summary, flops, rf, stages: told apart by their row
class), `LatencyReport`, `Capture` and the rf command's `FieldResult`. The results are read by their attributes
and keys, so render imports none of runtime/ or workflows/."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from inspectlab.core.display import register_view
from inspectlab.core.shapes import shape_text
from inspectlab.render.columns import CATALOGUE, STAGES_TABLE, SUMMARY_DEFAULT, short_shape, table_columns
from inspectlab.render.fit import FittingTable
from inspectlab.render.formats import KEEP, Column, cell, human_bytes
from inspectlab.render.latency_tables import (
    batch_columns,
    batch_rows,
    conditions_text,
    layer_columns,
    layer_rows,
    per_layer_text,
)
from inspectlab.render.texts import (
    field_result_lines,
    flops_breakdown,
    flops_columns,
    flops_rows,
    input_title,
    rf_columns,
    rf_lines,
    stages_footer,
    summary_rows,
    summary_totals,
)

STYLE = """<style>
.inspectlab-view .il-scroll{max-height:32em;overflow:auto;display:inline-block;max-width:100%}
.inspectlab-view table{border-collapse:collapse;font-size:0.9em;margin:0}
.inspectlab-view caption{caption-side:top;text-align:left;font-weight:bold;padding:0 0 .3em 0}
.inspectlab-view thead th{position:sticky;top:0;z-index:1;background:var(--jp-layout-color1,#fff);
 border-bottom:1px solid #888;text-align:left;padding:2px 8px;white-space:nowrap}
.inspectlab-view td{padding:1px 8px;text-align:left;white-space:pre;vertical-align:top}
.inspectlab-view th.num,.inspectlab-view td.num{text-align:right;font-variant-numeric:tabular-nums}
.inspectlab-view tbody tr:nth-child(even){background:rgba(127,127,127,.08)}
.inspectlab-view .il-below{margin:.4em 0 0 0;white-space:pre-wrap;font-size:.85em}
</style>"""


@dataclass(frozen=True)
class Table:
    """One table of a view: its rows and columns, a title, and the lines below it."""

    rows: Sequence[Mapping[str, Any]]
    columns: Sequence[Column]
    title: str = ""
    below: str = ""


def html_table(table: Table) -> str:
    """A table as an HTML fragment: a scrolling box whose header stays on top, numbers right-aligned
    (class "num"), and the lines below it in a <pre>."""
    def kind(column: Column) -> str:
        return ' class="num"' if column.numeric else ""

    head = "".join(f"<th{kind(c)}>{escape(c.header)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td{kind(c)}>{escape(cell(c, row))}</td>" for c in table.columns)
                   + "</tr>\n" for row in table.rows)
    caption = f"<caption>{escape(table.title)}</caption>" if table.title else ""
    below = f'<pre class="il-below">{escape(table.below)}</pre>' if table.below else ""
    return (f'<div class="il-scroll"><table>{caption}<thead><tr>{head}</tr></thead><tbody>\n{body}</tbody>'
            f"</table></div>{below}")


def html_view(tables: Sequence[Table]) -> str:
    """The tables of a view, styled, in one <div class="inspectlab-view">."""
    return f'<div class="inspectlab-view">{STYLE}' + "".join(html_table(t) for t in tables) + "</div>"


def rich_view(tables: Sequence[Table]) -> Any:
    """The tables of a view as one rich renderable, each fitted to the console it is printed on."""
    from rich.console import Group

    return Group(*(FittingTable(t.rows, t.columns, t.title, t.below) for t in tables))


# the views of each result ---------------------------------------------------------------------------------------
def report_tables(report: Any) -> list[Table]:
    """A Report by the class of its rows: a summary, the flops conventions, a receptive-field table or stages."""
    kind = type(report.layers[0]).__name__ if report.layers else ""
    title = f"{report.model} · input {input_title(report)}"
    if kind == "LayerRow":
        columns = [CATALOGUE[name] for name in SUMMARY_DEFAULT]
        columns += [CATALOGUE[name] for name in ("rf", "stride") if "rf" in report.layers[0]]
        return [Table(summary_rows(report), columns, title, summary_totals(report))]
    if kind == "ConventionRow":
        compared = any(row["peer"] is not None for row in report.layers)
        return [Table(flops_rows(report), flops_columns(compared), title, flops_breakdown(report))]
    if kind == "RfRow":
        checked = any("check" in row for row in report.layers)
        return [Table(report.layers, rf_columns(checked), f"{report.model} · receptive fields",
                      "\n".join(rf_lines(report)))]
    if kind == "StageRow":
        return [Table(report.layers, table_columns(STAGES_TABLE), f"{report.model} · stages · input "
                      f"{input_title(report)}", stages_footer(report))]
    keys = list(dict.fromkeys(key for row in report.layers for key in row))
    return [Table(report.layers, [Column(key, key, priority=KEEP if not i else 50) for i, key in enumerate(keys)],
                  title)]


def latency_tables(report: Any) -> list[Table]:
    """The batch sizes' table with the conditions, then one per-layer table per batch size that has one."""
    cuda = report.conditions.device.startswith("cuda")
    notes = "\n".join(f"note: {note}" for note in report.notes)
    tables = [Table(batch_rows(report), batch_columns(cuda), f"latency of {report.conditions.model}",
                    conditions_text(report) + ("\n" + notes if notes else ""))]
    for result in report.results:
        if result.per_layer is not None:
            tables.append(Table(layer_rows(report, totals=True, only=result.batch), layer_columns(batch=False),
                                f"per layer, batch {result.batch}", per_layer_text(result.per_layer)))
    return tables


CAPTURE_COLUMNS = (
    Column("key", "output", priority=KEEP, wraps=True), Column("type", "type", priority=60, wraps=True),
    Column("shape", "shape", shape_text, priority=KEEP, short=short_shape), Column("dtype", "dtype", priority=50),
    Column("bytes", "memory", human_bytes, numeric=True, priority=70), Column("grad", "grad", priority=40),
)


def capture_tables(capture: Any) -> list[Table]:
    """One row per kept output tensor: its key, module type, shape, dtype, memory, and whether it has a grad."""
    rows = [{"key": e.key, "type": e.type, "shape": list(e.shape), "dtype": e.dtype, "bytes": e.bytes,
             "grad": "yes" if e.grad is not None or e.grad_stats else ("waits" if e.wants_grad else "")}
            for e in capture.entries]
    total = sum(row["bytes"] for row in rows)
    selected, called = len(capture.modules), len(capture.called)
    below = (f"{len(rows)} tensors, {human_bytes(total)} " + ("kept" if capture.keep else "seen (statistics only)")
             + f"; {called} of the {selected} selected modules ran")
    return [Table(rows, CAPTURE_COLUMNS, f"capture of {type(capture.model).__name__}", below)]


def field_result_tables(result: Any) -> list[Table]:
    """The rf command's table, with the empirical check's columns when it ran, and its lines."""
    report = result.report
    return [Table(report.layers, rf_columns(result.check is not None),
                  f"{report.model} · receptive fields · input {shape_text(list(result.input_shape))}",
                  "\n".join(field_result_lines(result)))]


_VIEWS = {
    "inspectlab.analysis.report.Report": report_tables,
    "inspectlab.runtime.latency.LatencyReport": latency_tables,
    "inspectlab.runtime.capture.Capture": capture_tables,
    "inspectlab.workflows.receptive_field.FieldResult": field_result_tables,
}
for _name, _tables in _VIEWS.items():
    register_view(_name, lambda obj, tables=_tables: html_view(tables(obj)),
                  lambda obj, tables=_tables: rich_view(tables(obj)))
