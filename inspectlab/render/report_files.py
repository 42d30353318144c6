"""Comparison and sweep reports as files: csv, json, Markdown with its PNG plots beside it, and one
self-contained HTML page (plots inline as base64 PNG, styles inline, no script, no external reference)."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspectlab.analysis.report import SCHEMA_VERSION
from inspectlab.core.conventions import convention_key
from inspectlab.core.errors import InspectlabError
from inspectlab.core.version import __version__
from inspectlab.render import plots
from inspectlab.render.columns import (
    CATALOGUE,
    COMPARE_STAGES_TABLE,
    COMPARE_TABLE,
    STAGE_COLUMN,
    SWEEP_TABLE,
    input_text,
    stage_columns,
    table_columns,
)
from inspectlab.render.formats import Column, cell, rows_to_csv, rows_to_markdown, to_json

SUFFIXES = {".csv": "csv", ".json": "json", ".md": "markdown", ".markdown": "markdown", ".html": "html",
            ".htm": "html"}
Rows = Sequence[Mapping[str, Any]]


def report_format(path: str | Path) -> str:
    """csv, json, markdown or html, from the file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise InspectlabError(f"cannot tell the format of {path}: use .md, .html, .csv or .json")
    return SUFFIXES[suffix]


# table columns -------------------------------------------------------------------------------------------------
DEFINITIONS = {
    "MACs": "multiply-accumulates of conv/matmul/attention (FLOPs = 2 × MACs)",
    "other FLOPs": "bias, normalisation, activations, pooling, interpolation, elementwise ops (docs/counting.md)",
    "activations": "bytes of every tensor the forward creates",
    "peak mem": "estimated peak inference memory: parameters + buffers + inputs + peak live activations",
    "out stride": "coarsest effective stride of any feature map (input pixels per feature-map step), maps pooled to a "
                  "fixed grid aside",
    "RF (px)": "receptive field of the model's output, in input pixels (largest over H and W, local paths)",
    "global": "some path sees the whole input (global pooling, attention)",
    "p50 / p90": "median and 90th percentile of timed forwards",
    "MACs/out px": "MACs per output position: N·H·W of the first output (N for a classifier)",
}
STAGE_DEFINITIONS = {
    "params, MACs": "the whole model's",
    "sN ch / MACs / RF": "the stage at stride N (docs/stages.md): channels of its feature map, MACs of everything "
                         "computed up to it, its receptive field in input pixels (largest over H and W)",
}


def definitions(rows: Rows) -> dict[str, str]:
    """What the columns of a comparison mean (those of a `--stages` table when its rows have stages)."""
    return STAGE_DEFINITIONS if has_stages(rows) else DEFINITIONS


def has_stages(rows: Rows) -> bool:
    return any(STAGE_COLUMN.match(key) for row in rows[:1] for key in row)


def report_columns(rows: Rows, kind: str, extra: Sequence[str] = ()) -> list[Column]:
    """The table's columns: those of COMPARE_TABLE or SWEEP_TABLE (plus `extra` keys) with a value somewhere; a
    comparison with stages (`compare --stages`): the model, its params and MACs, then each stride's columns."""
    if kind == "compare" and has_stages(rows):
        columns = [*table_columns(COMPARE_STAGES_TABLE), *stage_columns(rows), CATALOGUE["error"]]
        return [c for c in columns if any(row.get(c.key) is not None for row in rows)]
    order = list(COMPARE_TABLE if kind == "compare" else SWEEP_TABLE)
    for key in extra:
        order.insert(order.index("other_flops") + 1, key)
    return [c for c in table_columns(order) if any(row.get(c.key) is not None for row in rows)]


def convention_keys(rows: Rows) -> list[str]:
    known = {column.key for column in CATALOGUE.values()}
    return [k for k in (rows[0] if rows else {})
            if k.endswith(("_macs", "_flops")) and k not in known and not STAGE_COLUMN.match(k)]


# plots ---------------------------------------------------------------------------------------------------------
@dataclass
class Plot:
    """One plot of a report: a file-name slug, a title, a caption and its PNG."""

    slug: str
    title: str
    caption: str
    png: bytes


_CAPTIONS = {
    "macs-params": "Each bubble is a model: parameters against MACs (log scales), bubble area proportional to {what}.",
    "latency": "Median (bar) and 90th percentile (whisker) of the timed forwards.",
    "rf-stride": "Receptive field of the output against the coarsest feature-map stride (log scales). A star: some "
                 "path also sees the whole input. Dashed: the input side.",
    "sweep": "Log-log against the pixels H·W; dotted lines: the fitted power laws, whose exponents the legends give.",
}


def report_plots(rows: Rows, attrs: Mapping[str, Any], bubble: str | None = None) -> list[Plot]:
    """The plots of a comparison (bubble chart, latency bars, rf vs stride) or of a sweep (log-log)."""
    if attrs.get("kind") == "sweep":
        made = [("sweep", "Scaling with input size", plots.sweep_chart(rows, attrs.get("exponents") or {}))]
    else:
        timed = any(r.get("latency_p50_ms") for r in rows)
        bubble = bubble or ("latency_p50_ms" if timed else "peak_bytes")
        side = max(attrs["input"][0][-2:]) if attrs.get("input") and len(attrs["input"][0]) >= 3 else None
        made = [
            ("macs-params", "MACs vs parameters", plots.macs_params_chart(rows, bubble)),
            ("latency", "Latency", plots.latency_chart(rows)),
            ("rf-stride", "Receptive field vs output stride", plots.rf_stride_chart(rows, side)),
        ]
    what = plots.BUBBLES.get(bubble or "", bubble)
    return [Plot(slug, title, _CAPTIONS[slug].format(what=what), plots.png_bytes(figure))
            for slug, title, figure in made if figure is not None]


# documents -----------------------------------------------------------------------------------------------------
def report_title(attrs: Mapping[str, Any], title: str | None) -> str:
    if title:
        return title
    shape = input_text(attrs.get("input")) if attrs.get("input") else "each model's default input"
    if attrs.get("kind") == "sweep":
        return f"Input-size sweep of {attrs.get('model')} ({shape.rsplit('×', 2)[0]}×H×W)"
    return f"{'Backbone stages' if attrs.get('stages') else 'Model comparison'} · input {shape}"


def context_lines(attrs: Mapping[str, Any], command: str | None) -> list[str]:
    lines = []
    if command:
        lines.append(f"Made with `{command}` (inspectlab {__version__}).")
    lines.append("Counts and memory come from one trace of each model on the meta device (no weights, no "
                 "activations allocated); the receptive field from the same trace.")
    if attrs.get("convention", "inspectlab") != "inspectlab":
        lines.append(f"The column `{convention_key(attrs['convention'])}` is {attrs['convention']}'s own count "
                     "(docs/counting.md); MACs, FLOPs and other FLOPs are inspectlab's.")
    timing = attrs.get("latency")
    if timing:
        lines.append(
            f"Latency: {timing.get('device')} ({timing.get('device_name')}), {timing.get('threads')} threads, "
            f"{timing.get('dtype')}, torch {timing.get('torch_version')}, {timing.get('warmup')} warm-up then "
            + (f"{timing['iters']} timed iterations" if timing.get("iters") else
               f"at least {timing.get('min_time')} s of timed iterations") + f"; {timing.get('timer')}.")
        load, cpus = timing.get("load_average"), timing.get("cpus")
        if load is not None and cpus and str(timing.get("device", "")).startswith("cpu") and load > cpus + 1:
            lines.append(f"Warning: the 1-minute load average reached {load:g} on {cpus} CPUs while timing: other "
                         "processes competed for the CPU, so these latencies are not reliable.")
    return lines


def _exponent_rows(attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    names = {"macs": "MACs", "other_flops": "other FLOPs", "activation_bytes": "activation memory",
             "peak_bytes": "peak memory", "latency_p50_ms": "latency p50"}
    return [{"quantity": names.get(k, k), "exponent": f"{v:.4f}"}
            for k, v in (attrs.get("exponents") or {}).items() if v is not None]


_EXPONENT_COLUMNS = [Column("quantity", "quantity"), Column("exponent", "fitted exponent b", numeric=True)]
_EXPONENT_TEXT = ("Fitted exponents b of value ∝ pixels^b (least squares of log value against log H·W): "
                  "a fully convolutional network's MACs scale as pixels^1; fixed costs (parameters, a "
                  "classifier head) pull b below 1.")


def issues(rows: Rows) -> tuple[list[str], list[str]]:
    label = "model" if rows and "model" in rows[0] else "size"
    errors = [f"{row[label]}: {row['error']}" for row in rows if row.get("error")]
    notes = [f"{row[label]}: {row['notes']}" for row in rows if row.get("notes")]
    return errors, notes


def render_markdown(rows: Rows, attrs: Mapping[str, Any], images: Sequence[tuple[str, Plot]],
                    title: str | None = None, command: str | None = None) -> str:
    """The Markdown report; `images` are (relative file name, plot) of the PNGs beside it."""
    kind = attrs.get("kind", "compare")
    parts = [f"# {report_title(attrs, title)}", "", *context_lines(attrs, command), ""]
    parts.append(rows_to_markdown(rows, report_columns(rows, kind, convention_keys(rows))))
    if kind == "sweep" and _exponent_rows(attrs):
        parts += [_EXPONENT_TEXT, "", rows_to_markdown(_exponent_rows(attrs), _EXPONENT_COLUMNS)]
    else:
        parts += ["Columns: " + "; ".join(f"**{k}**: {v}" for k, v in definitions(rows).items()) + ".", ""]
    for name, plot in images:
        parts += [f"## {plot.title}", "", f"![{plot.title}]({name})", "", f"*{plot.caption}*", ""]
    errors, notes = issues(rows)
    for heading, items in (("Errors", errors), ("Notes", notes)):
        if items:
            parts += [f"## {heading}", "", *(f"- {item}" for item in items), ""]
    return "\n".join(parts).rstrip() + "\n"


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1320px;
       padding: 0 1.5em; color: #222; line-height: 1.45; }
h1 { font-size: 1.5em; margin-bottom: 0.3em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
p.context { color: #555; font-size: 0.9em; margin: 0.2em 0; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.35em 0.55em; white-space: nowrap; }
td.wrap { white-space: normal; min-width: 16em; max-width: 28em; color: #a40000; }
div.scroll { overflow-x: auto; }
th { background: #f4f4f4; text-align: left; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:hover { background: #fafafa; }
dl { font-size: 0.85em; color: #444; display: grid; grid-template-columns: max-content auto; gap: 0.15em 1em; }
dt { font-weight: 600; } dd { margin: 0; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
ul.errors li { color: #a40000; } code { background: #f4f4f4; padding: 0 0.25em; }
"""


def _html_table(rows: Rows, columns: Sequence[Column]) -> str:
    def klass(column: Column) -> str:
        return ' class="num"' if column.numeric else (' class="wrap"' if column.key == "error" else "")

    head = "".join(f"<th{klass(c)}>{html.escape(c.header)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td{klass(c)}>{html.escape(cell(c, row))}</td>" for c in columns) + "</tr>\n"
                   for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table></div>\n'


def _inline_code(text: str) -> str:
    """Escape, then show `spans` as <code>."""
    pieces = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if k % 2 else p for k, p in enumerate(pieces))


def render_html(rows: Rows, attrs: Mapping[str, Any], plots: Sequence[Plot], title: str | None = None,
                command: str | None = None) -> str:
    """One self-contained page: styles inline, plots as data: URIs, no script, no external reference."""
    kind = attrs.get("kind", "compare")
    heading = report_title(attrs, title)
    parts = [f"<h1>{html.escape(heading)}</h1>"]
    parts += [f'<p class="context">{_inline_code(line)}</p>' for line in context_lines(attrs, command)]
    parts.append(_html_table(rows, report_columns(rows, kind, convention_keys(rows))))
    if kind == "sweep" and _exponent_rows(attrs):
        parts += [f"<p>{html.escape(_EXPONENT_TEXT)}</p>", _html_table(_exponent_rows(attrs), _EXPONENT_COLUMNS)]
    else:
        parts.append("<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>"
                                      for k, v in definitions(rows).items()) + "</dl>")
    for plot in plots:
        parts.append(f"<h2>{html.escape(plot.title)}</h2>")
        data = base64.b64encode(plot.png).decode("ascii")
        parts.append(f'<figure><img alt="{html.escape(plot.title)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{html.escape(plot.caption)}</figcaption></figure>")
    errors, notes = issues(rows)
    for heading_text, items, klass in (("Errors", errors, "errors"), ("Notes", notes, "notes")):
        if items:
            parts.append(f"<h2>{heading_text}</h2><ul class=\"{klass}\">"
                         + "".join(f"<li>{html.escape(item)}</li>" for item in items) + "</ul>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(heading)}</title>'
            f"<style>{_STYLE}</style></head>\n<body>\n" + "\n".join(parts) + "\n</body></html>\n")


def render_csv(rows: Rows) -> str:
    """Every column with exact values (shapes as 1×3×224×224)."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return rows_to_csv(rows, keys)


def render_json(rows: Rows, attrs: Mapping[str, Any]) -> str:
    return to_json({"schema": SCHEMA_VERSION, **attrs, "rows": list(rows)})


# the files of a report ----------------------------------------------------------------------------------------
def plan_reports(rows: Rows, attrs: Mapping[str, Any], paths: Sequence[str | Path], *, bubble: str | None = None,
                 title: str | None = None, command: str | None = None) -> list[tuple[Path, str | bytes]]:
    """(path, content) of every file the reports make, in the format of each path's suffix; a Markdown report
    gets `<stem>-<plot>.png` beside it. Two files with one path raise."""
    formats = [(Path(p), report_format(p)) for p in paths]
    needs_plots = any(fmt in ("markdown", "html") for _, fmt in formats)
    plots = report_plots(rows, attrs, bubble) if needs_plots else []
    planned: list[tuple[Path, str | bytes]] = []
    for path, fmt in formats:
        if fmt == "markdown":
            images = [(f"{path.stem}-{plot.slug}.png", plot) for plot in plots]
            planned += [(path.with_name(name), plot.png) for name, plot in images]
            text = render_markdown(rows, attrs, images, title, command)
        elif fmt == "html":
            text = render_html(rows, attrs, plots, title, command)
        elif fmt == "csv":
            text = render_csv(rows)
        else:
            text = render_json(rows, attrs)
        planned.append((path, text))
    targets = [path for path, _ in planned]
    if len(set(targets)) != len(targets):
        raise InspectlabError("two outputs would write the same file")
    return planned
