"""Results of several machines (or conditions) in one report (docs/report.md): `latency`, `compare` and `sweep`
JSON documents merged into one table with one column group per machine/condition, and that table as a
self-contained HTML page, Markdown with PNG plots beside it, CSV (one line per measurement) or JSON.

A document's conditions are what its timing says about itself (`latency`: `conditions`; `compare`/`sweep`:
`latency`): device, device name, torch version, threads, dtype, precision, memory format, compile, CUDA graph,
cudnn.benchmark. Documents with the same conditions share a column group unless they time the same thing (same
model, same input): then each keeps its own, named after its file. A group's label names only what differs
between the groups ("2 threads"); the legend lists everything, with the timing method and the files.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inspectlab.analysis.report import SCHEMA_VERSION
from inspectlab.core.errors import InspectlabError
from inspectlab.core.shapes import shape_text
from inspectlab.core.version import __version__
from inspectlab.render import plots
from inspectlab.render.formats import Column, human_count, rows_to_csv, rows_to_markdown, to_json
from inspectlab.render.report_files import _STYLE, Plot

GROUP_FIELDS = ("device", "device_name", "torch_version", "threads", "dtype", "precision", "memory_format", "compile",
                "cuda_graph", "cudnn_benchmark")
METHOD_FIELDS = ("timer", "warmup", "iters", "min_time", "load_average", "cpus")
FORMATS = {".html": "html", ".htm": "html", ".md": "markdown", ".markdown": "markdown", ".csv": "csv",
           ".json": "json"}


@dataclass
class Group:
    """One column group: the conditions its documents share (GROUP_FIELDS), a short label, and each file's own
    conditions (the timing method may differ between them)."""

    label: str
    conditions: dict[str, Any]
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def sources(self) -> list[str]:
        return list(self.runs)


@dataclass
class Timing:
    p50_ms: float
    p90_ms: float | None
    source: str


@dataclass
class MergedRow:
    """One thing timed (a model at an input): its static numbers where a document gives them, and its timing
    per group index."""

    model: str
    input: str
    kind: str  # latency, compare or sweep: the first document that had it
    params: int | None = None
    macs: int | None = None
    pixels: int | None = None  # a sweep's H·W
    times: dict[int, Timing] = field(default_factory=dict)


@dataclass
class MergedReport:
    """The merged comparison; `written`: the files a call wrote."""

    groups: list[Group]
    rows: list[MergedRow]
    notes: list[str]
    title: str
    written: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, "kind": "report", "title": self.title,
                "groups": [{**asdict(g), "sources": g.sources} for g in self.groups],
                "rows": [{**{k: v for k, v in asdict(r).items() if k != "times"},
                          "times": {self.groups[g].label: asdict(t) for g, t in sorted(r.times.items())}}
                         for r in self.rows], "notes": self.notes}

    def to_dataframe(self) -> Any:
        """One line per measurement (model, input, group, p50/p90 ms, source)."""
        import pandas as pd

        return pd.DataFrame(measurements(self))


def document_kind(path: str, document: Any) -> str:
    """latency, compare or sweep; anything else raises one line naming the file."""
    if isinstance(document, Mapping):
        if document.get("kind") in ("compare", "sweep") and isinstance(document.get("rows"), list):
            return str(document["kind"])
        if isinstance(document.get("conditions"), Mapping) and isinstance(document.get("results"), list):
            return "latency"
    raise InspectlabError(f"{path} is not the JSON of `inspectlab latency`, `compare` or `sweep` (made with "
                          "--format json or -o FILE.json)")


def _measurements(path: str, kind: str, document: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[Any]]:
    """The conditions of a document (None: not timed) and its (model, input, kind, static, p50, p90) items."""
    items: list[tuple[str, str, dict[str, Any], float | None, float | None]] = []
    if kind == "latency":
        conditions = {k: v for k, v in document["conditions"].items() if k != "model"}
        model = str(document["conditions"].get("model", Path(path).stem))
        for result in document["results"]:
            stats = result.get("stats") or {}
            items.append((model, shape_text(result.get("input_shapes")), {}, stats.get("p50_ms"), stats.get("p90_ms")))
        return conditions, items
    conditions = dict(document["latency"]) if isinstance(document.get("latency"), Mapping) else None
    for row in document["rows"]:
        if isinstance(row.get("error"), str) and row["error"]:
            continue
        model = str(row.get("model") or document.get("model"))
        static = {"params": row.get("params"), "macs": row.get("macs"), "pixels": row.get("pixels")}
        items.append((model, shape_text(row.get("input")), static, row.get("latency_p50_ms"),
                      row.get("latency_p90_ms")))
    return conditions, items


def merge(documents: Sequence[tuple[str, Mapping[str, Any]]], title: str | None = None) -> MergedReport:
    """Merge (path, JSON document) pairs into one comparison."""
    groups: list[Group] = []
    keys: list[tuple[Any, ...]] = []
    rows: dict[tuple[str, str], MergedRow] = {}
    notes: list[str] = []
    for path, document in documents:
        kind = document_kind(path, document)
        conditions, items = _measurements(path, kind, document)
        for row in document.get("rows", []) if kind != "latency" else []:
            if isinstance(row.get("error"), str) and row["error"]:
                notes.append(f"{Path(path).name}: {row.get('model') or row.get('size')}: {row['error']}")
        timed = [item for item in items if isinstance(item[3], (int, float))]
        if conditions is None or not timed:
            notes.append(f"{Path(path).name} holds no latency (made without --latency): it gives static numbers only")
        index = None
        if conditions is not None and timed:
            key = tuple(conditions.get(f) for f in GROUP_FIELDS)
            wanted = {(model, shape) for model, shape, *_ in timed}
            index = next((g for g, k in enumerate(keys) if k == key and not any(
                g in rows[item].times for item in wanted if item in rows)), None)
            if index is None:
                groups.append(Group("", {f: conditions.get(f) for f in GROUP_FIELDS}))
                keys.append(key)
                index = len(groups) - 1
            groups[index].runs[path] = conditions
            load, cpus = conditions.get("load_average"), conditions.get("cpus")
            if load is not None and cpus and str(conditions.get("device", "")).startswith("cpu") and load > cpus + 1:
                notes.append(f"{Path(path).name}: the 1-minute load average reached {load:g} on {cpus} CPUs while "
                             "timing: other processes competed for the CPU, so these latencies are not reliable")
        for model, shape, static, p50, p90 in items:
            row = rows.setdefault((model, shape), MergedRow(model, shape, kind))
            for name in ("params", "macs", "pixels"):
                if getattr(row, name) is None and static.get(name) is not None:
                    setattr(row, name, static[name])
            if index is not None and isinstance(p50, (int, float)):
                row.times[index] = Timing(float(p50), float(p90) if isinstance(p90, (int, float)) else None, path)
    if not groups:
        raise InspectlabError("no file holds latency: make them with `inspectlab latency`, or `compare`/`sweep` "
                              "with --latency")
    _label(groups, keys)
    return MergedReport(groups, list(rows.values()), notes, title or _title(groups))


def _show(name: str, value: Any) -> str:
    if name == "threads":
        return f"{value} thread{'s' if value != 1 else ''}"
    if name == "torch_version":
        return f"torch {value}"
    if name == "compile":
        return f"compile={value}" if value else "eager"
    if name == "cuda_graph":
        return "CUDA graph" if value else "no CUDA graph"
    if name == "cudnn_benchmark":
        return f"cudnn.benchmark={value}"
    return str(value)


def _label(groups: list[Group], keys: list[tuple[Any, ...]]) -> None:
    """Each group's label: the conditions that differ between the groups (device, name, threads, ...); the file
    name where two groups have the same conditions; the device and its name when there is one group."""
    varying = [k for k, name in enumerate(GROUP_FIELDS) if len({key[k] for key in keys}) > 1]
    for group, key in zip(groups, keys, strict=True):
        parts = [_show(GROUP_FIELDS[k], key[k]) for k in varying] or [
            _show("device", key[0]), str(key[1]), _show("threads", key[3])]
        if keys.count(key) > 1:
            parts.append(", ".join(Path(s).stem for s in group.sources))
        group.label = " · ".join(parts)


def _title(groups: list[Group]) -> str:
    return f"Latency on {len(groups)} machine{'s' if len(groups) > 1 else ''}/conditions"


# tables ----------------------------------------------------------------------------------------------------
def measurements(report: MergedReport) -> list[dict[str, Any]]:
    """One dict per (row, group) with a timing: the CSV's lines, with the group's conditions."""
    lines = []
    for row in report.rows:
        for index, timing in sorted(row.times.items()):
            group = report.groups[index]
            lines.append({"model": row.model, "input": row.input, "group": group.label, "p50_ms": timing.p50_ms,
                          "p90_ms": timing.p90_ms, "params": row.params, "macs": row.macs,
                          **{name: group.runs[timing.source].get(name) for name in GROUP_FIELDS + METHOD_FIELDS},
                          "source": timing.source})
    return lines


def _speedup(row: MergedRow, index: int) -> str:
    """The first group's p50 over this group's: ×2.1 is 2.1 times faster than the first group."""
    base, this = row.times.get(0), row.times.get(index)
    if base is None or this is None or this.p50_ms <= 0:
        return ""
    return f"×{base.p50_ms / this.p50_ms:.2f}"


def _cells(report: MergedReport, row: MergedRow) -> list[str]:
    cells = [row.model, row.input, human_count(row.params) if row.params else "", human_count(row.macs) if row.macs
             else ""]
    for index in range(len(report.groups)):
        timing = row.times.get(index)
        cells += [f"{timing.p50_ms:.4g}" if timing else "—",
                  f"{timing.p90_ms:.4g}" if timing and timing.p90_ms is not None else ""]
        if index:
            cells.append(_speedup(row, index))
    return cells


def legend(report: MergedReport) -> list[list[str]]:
    rows = []
    for group in report.groups:
        c = group.conditions
        rows.append([group.label, f"{c.get('device')} ({c.get('device_name')})", f"torch {c.get('torch_version')}",
                     f"{_show('threads', c.get('threads'))}, {c.get('dtype')}, precision {c.get('precision')}, "
                     f"{c.get('memory_format')}, {_show('compile', c.get('compile'))}"
                     + (", CUDA graph" if c.get("cuda_graph") else ""),
                     "; ".join(dict.fromkeys(_method(run) for run in group.runs.values())),
                     ", ".join(Path(s).name for s in group.sources)])
    return rows


def _method(c: Mapping[str, Any]) -> str:
    """How one file timed: "2 warm-up, 50 iterations, time.perf_counter_ns per iteration (load 0.6 on 2 CPUs)"."""
    load = f" (load {c['load_average']:g} on {c['cpus']} CPUs)" if c.get("load_average") is not None else ""
    return (f"{c.get('warmup')} warm-up, " + (f"{c['iters']} iterations" if c.get("iters") else
                                              f"≥ {c.get('min_time')} s") + f", {c.get('timer')}{load}")


LEGEND = ["group", "device", "torch", "settings", "timing", "files"]
STATIC = ["model", "input", "params", "MACs"]


def _intro(report: MergedReport, command: str | None) -> list[str]:
    lines = [f"{len(report.rows)} models/inputs timed under {len(report.groups)} conditions. p50/p90: median and "
             "90th percentile of the timed forwards, in ms; ×N: the first group's p50 over this group's (above 1: "
             "faster than the first group)."]
    if command:
        lines.insert(0, f"Made with `{command}` (inspectlab {__version__}).")
    return lines


def flat_table(report: MergedReport) -> tuple[list[str], list[list[str]]]:
    """The latency table with one header line: each group's columns named "p50 ms (label)" and so on."""
    header = list(STATIC)
    for index, group in enumerate(report.groups):
        header += [f"p50 ms ({group.label})", f"p90 ms ({group.label})"] + ([f"vs first ({group.label})"]
                                                                            if index else [])
    return header, [_cells(report, row) for row in report.rows]


def text_rows(header: Sequence[str], body: Sequence[Sequence[str]], text_columns: int = 2
              ) -> tuple[list[dict[str, str]], list[Column]]:
    """Text cells as rows and Columns for the table renderers; the first `text_columns` left-aligned."""
    columns = [Column(str(k), name, numeric=k >= text_columns) for k, name in enumerate(header)]
    return [{str(k): cell for k, cell in enumerate(line)} for line in body], columns


def render_markdown(report: MergedReport, images: Sequence[tuple[str, Plot]], command: str | None = None) -> str:
    parts = [f"# {report.title}", "", *_intro(report, command), "", "## Groups", "",
             rows_to_markdown(*text_rows(LEGEND, legend(report), len(LEGEND))), "## Latency", "",
             rows_to_markdown(*text_rows(*flat_table(report)))]
    for name, plot in images:
        parts += [f"## {plot.title}", "", f"![{plot.title}]({name})", "", f"*{plot.caption}*", ""]
    if report.notes:
        parts += ["## Notes", "", *(f"- {note}" for note in report.notes), ""]
    return "\n".join(parts).rstrip() + "\n"


def render_html(report: MergedReport, figures: Sequence[Plot], command: str | None = None) -> str:
    """One self-contained page: styles inline, plots as data: URIs, no script, no external reference."""
    escape = html.escape
    groups = report.groups
    head_top = "".join(f'<th rowspan="2">{escape(h)}</th>' for h in STATIC) + "".join(
        f'<th colspan="{3 if k else 2}" class="group">{escape(g.label)}</th>' for k, g in enumerate(groups))
    head_low = "".join('<th class="num">p50 ms</th><th class="num">p90 ms</th>' + (
        '<th class="num">vs first</th>' if k else "") for k in range(len(groups)))
    number = ' class="num"'
    body = "".join("<tr>" + "".join(f"<td{'' if k < 2 else number}>{escape(c)}</td>"
                                    for k, c in enumerate(_cells(report, row))) + "</tr>\n" for row in report.rows)
    legend_body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in line) + "</tr>" for line in legend(report))
    parts = [f"<h1>{escape(report.title)}</h1>", *(f'<p class="context">{escape(line)}</p>'
                                                  for line in _intro(report, command)),
             "<h2>Groups</h2>", '<div class="scroll"><table><thead><tr>' + "".join(
                 f"<th>{h}</th>" for h in LEGEND) + f"</tr></thead><tbody>{legend_body}</tbody></table></div>",
             "<h2>Latency</h2>", f'<div class="scroll"><table class="merged"><thead><tr>{head_top}</tr><tr>'
             f"{head_low}</tr></thead><tbody>\n{body}</tbody></table></div>"]
    for plot in figures:
        data = base64.b64encode(plot.png).decode("ascii")
        parts.append(f"<h2>{escape(plot.title)}</h2><figure><img alt=\"{escape(plot.title)}\" "
                     f'src="data:image/png;base64,{data}"><figcaption>{escape(plot.caption)}</figcaption></figure>')
    if report.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{escape(n)}</li>" for n in report.notes) + "</ul>")
    style = _STYLE + "th.group { text-align: center; border-left: 2px solid #ccc; }\n"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(report.title)}</title>'
            f"<style>{style}</style></head>\n<body>\n" + "\n".join(parts) + "\n</body></html>\n")


def render_csv(report: MergedReport) -> str:
    lines = measurements(report)
    return rows_to_csv(lines, list(lines[0]) if lines else ["model"])


def report_plots(report: MergedReport) -> list[Plot]:
    """Grouped latency bars; for sweeps, latency against pixels per group."""
    labels = [f"{row.model} · {row.input}" for row in report.rows]
    p50 = [[row.times[g].p50_ms if g in row.times else None for g in range(len(report.groups))] for row in report.rows]
    p90 = [[row.times[g].p90_ms if g in row.times else None for g in range(len(report.groups))] for row in report.rows]
    made = [Plot("latency", "Latency per machine/condition", "p50 (dot) and p90 (end of its line) of each model "
                 "and input, one colour per group; log time axis.", plots.png_bytes(plots.grouped_latency_chart(
                     labels, [g.label for g in report.groups], p50, p90)))]
    series: dict[str, list[tuple[float, float, str]]] = {}
    for row in report.rows:
        for index, timing in row.times.items():
            if row.pixels:
                name = f"{row.model} · {report.groups[index].label}"
                series.setdefault(name, []).append((float(row.pixels), timing.p50_ms, row.input))
    series = {name: sorted(points) for name, points in series.items() if len(points) > 1}
    if series:
        made.append(Plot("scaling", "Latency against input size", "p50 against the pixels H·W (log-log), one line "
                         "per model and group.", plots.png_bytes(plots.latency_scaling_chart(series))))
    return made


def report_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InspectlabError(f"cannot tell the format of {path}: use .html, .md, .csv or .json")
    return FORMATS[suffix]


def plan(report: MergedReport, paths: Sequence[str | Path], command: str | None = None
         ) -> list[tuple[Path, str | bytes]]:
    """(path, content) of every file: a Markdown report gets `<stem>-<plot>.png` beside it."""
    formats = [(Path(p), report_format(p)) for p in paths]
    figures = report_plots(report) if any(f in ("html", "markdown") for _, f in formats) else []
    planned: list[tuple[Path, str | bytes]] = []
    for path, fmt in formats:
        if fmt == "markdown":
            images = [(f"{path.stem}-{plot.slug}.png", plot) for plot in figures]
            planned += [(path.with_name(name), plot.png) for name, plot in images]
            planned.append((path, render_markdown(report, images, command)))
        elif fmt == "html":
            planned.append((path, render_html(report, figures, command)))
        elif fmt == "csv":
            planned.append((path, render_csv(report)))
        else:
            planned.append((path, to_json(report.to_dict())))
    targets = [p for p, _ in planned]
    if len(set(targets)) != len(targets):
        raise InspectlabError("two outputs would write the same file")
    return planned
