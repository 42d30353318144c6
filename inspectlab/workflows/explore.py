"""explore: one self-contained HTML page to browse a model (docs/explore.md): its graph at every depth from 0 to
`depth`, each node's numbers in a side panel, a search box and a sortable layer table.

One Trace feeds every analysis of the page, the same functions the other commands call on theirs: the summary
rows (`analysis.summary.summarize`, as `summary` does), the receptive fields (`analysis.receptive_field`, as
`rf` does), the graph of each level (`analysis.graph.build_graph` drawn by `render.graphviz_render`, as
`graph` does). `latency=True` adds the per-layer timing of `workflows.latency` (a real run).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspectlab.analysis.graph import build_graph
from inspectlab.analysis.receptive_field import field_rows, receptive_fields
from inspectlab.analysis.summary import FLOATING, summarize
from inspectlab.core.errors import InspectlabError
from inspectlab.core.io import check_writable, write_atomic
from inspectlab.core.shapes import InputSize, shape_text
from inspectlab.render.explorer import page_svg, render_page
from inspectlab.render.explorer_data import Level, explorer_data
from inspectlab.render.formats import human_bytes, human_count
from inspectlab.render.graphviz_render import frame_order, render_bytes, require_dot, to_digraph
from inspectlab.runtime.latency import Progress
from inspectlab.tracing.records import Trace
from inspectlab.workflows.latency import latency as measure
from inspectlab.workflows.models import ModelOrSpec, model_name
from inspectlab.workflows.trace import trace

INITIAL_DEPTH = 2  # the level the page opens on (or the deepest, when shallower)


@dataclass
class ExplorerPage:
    """The page (`html`), where it was written (None: not written), and the depth levels it holds."""

    html: str
    path: Path | None
    depths: list[int]
    nodes: int  # boxes and ellipses over all levels


def explore(model_or_spec: ModelOrSpec, input_size: InputSize | None = None, *, output: str | None = None,
            depth: int = 3, input_data: Any = None, args: Mapping[str, Any] | None = None, weights: str | None = None,
            strict: bool = True, latency: bool = False, device: str = "cpu", min_time: float | None = None,
            force: bool = False, progress: Progress | None = None) -> ExplorerPage:
    """The explorer page of a model, written to `output` (all or nothing; an existing file only with `force`).
    `latency` times each module at `depth` on `device` (at least `min_time` seconds per pass)."""
    if depth < 0:
        raise InspectlabError("--depth must be 0 or more")
    if output is not None:
        check_writable(output, force)
    require_dot("svg")
    recorded = trace(model_or_spec, input_size, input_data=input_data, args=args, weights=weights, strict=strict)
    name = model_name(model_or_spec)
    deepest = min(depth, max(call.depth for call in recorded.calls)) if recorded.calls else 0
    levels, svgs = [], []
    for level in range(deepest + 1):
        drawn = build_graph(recorded, level, collapse=True)
        svg, boxes = page_svg(render_bytes(to_digraph(drawn, ("params",)), "svg"))
        levels.append(Level(level, drawn, frame_order(drawn), boxes))
        svgs.append(svg)
    # a ModuleList's children are drawn in its place, one level deeper than the depth (DeepLab's ASPP branches)
    drawn_depth = max([deepest, 1, *(recorded.calls[c].depth for lv in levels for n in lv.graph.nodes
                                     for c in n.calls)])
    report = summarize(recorded, name, depth=drawn_depth)
    fields, rf_unknown = _fields(recorded)
    timing, timed = None, None
    if latency:
        timed = measure(model_or_spec, input_size, args=args, device=device, min_time=min_time, per_layer=True,
                        depth=max(deepest, 1), weights=weights, strict=strict, input_data=input_data,
                        progress=progress)
        breakdown = timed.results[0].per_layer
        stats = timed.results[0].stats
        timing = {"layers": {t.label: {"mean_ms": t.mean_ms, "p50_ms": t.p50_ms, "share": t.share}
                             for t in breakdown.layers},
                  "model": {"p50_ms": stats.p50_ms, "p90_ms": stats.p90_ms, "mean_ms": stats.mean_ms}}
    data = explorer_data(recorded, report, fields, field_rows(fields, drawn_depth) if fields else [], levels,
                         rf_unknown, timing, table_depth=max(deepest, 1))
    summary = _summary(report.totals, report.inputs, deepest, timed)
    notes = list(recorded.notes) + ([f"receptive fields unknown, because {rf_unknown}"] if rf_unknown else [])
    if timed is not None:
        notes += [f"latency: {_conditions(timed.conditions)}", *timed.notes]
    page = render_page(f"{name} · explorer", summary, notes, svgs, data, min(INITIAL_DEPTH, deepest))
    path = write_atomic(output, page, force) if output is not None else None
    return ExplorerPage(page, path, [level.depth for level in levels], sum(len(lv.graph.nodes) for lv in levels))


def _fields(recorded: Trace) -> tuple[Any, str | None]:
    """The receptive fields of the first input's image axes, or None and why they are unknown."""
    if not recorded.inputs:
        return None, "the model has no input tensor"
    first = recorded.tensors[recorded.inputs[0]]
    if first.dtype not in FLOATING:
        return None, f"the first input ({shape_text(list(first.shape))}, {first.dtype}) is no image"
    try:
        return receptive_fields(recorded), None
    except InspectlabError as exc:
        return None, str(exc)


def _summary(totals: Mapping[str, Any], inputs: list[list[int]], deepest: int, timed: Any) -> list[tuple[str, str]]:
    items = [("input", shape_text(inputs)), ("params", human_count(totals["params"])),
             ("MACs", human_count(totals["macs"])), ("other FLOPs", human_count(totals["other_flops"])),
             ("peak memory (est.)", human_bytes(totals["peak_bytes"])), ("depths", f"0–{deepest}")]
    if timed is not None:
        stats = timed.results[0].stats
        items.append(("latency", f"p50 {stats.p50_ms:.4g} ms · p90 {stats.p90_ms:.4g} ms ({timed.conditions.device})"))
    return items


def _conditions(conditions: Any) -> str:
    return (f"{conditions.device} ({conditions.device_name}), {conditions.threads} threads, {conditions.dtype}, "
            f"torch {conditions.torch_version}; per-layer times from forward hooks on the modules at the deepest "
            "level (docs/latency.md)")
