"""What the explorer page (render/explorer.py, docs/explore.md) knows, as plain data for its script: everything a
user can select, with the facts its side panel shows, the layer table's rows, and per depth level which element of
that level's drawing holds each selectable thing.

Formatting only: every number comes from an analysis of the one Trace (the summary's rows and totals, the
receptive-field rows, the graph's nodes and their op costs) or from the per-layer timing, never recomputed here.
Selectable things are keyed: a module call by its label (`layer3.0`, `relu#1`), a run of repeated blocks by
`run:` and its first member's label, a functional op by `op:` and its index, an input or output by its node id
(`in0`, `out0`), the model by `(root)`, an uncalled container by `module:` and its name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from inspectlab.analysis.costs import op_cost
from inspectlab.analysis.graph import Graph, GraphNode
from inspectlab.analysis.params import count_params_of_node
from inspectlab.analysis.receptive_field import FieldRow, call_field, field_columns
from inspectlab.analysis.report import Report
from inspectlab.analysis.rf_fields import FieldMap
from inspectlab.analysis.summary import LayerRow, window_of
from inspectlab.core.naming import depth_of
from inspectlab.core.shapes import shape_text
from inspectlab.render.columns import kernel_text
from inspectlab.render.formats import human_bytes, human_count
from inspectlab.tracing.records import ModuleCall, Trace

ROOT = "(root)"
_WINDOWS_LISTED = 6  # a block with more convolution/pooling windows than this lists them by kind, with counts


@dataclass
class Level:
    """One depth level of the page: the graph drawn at that depth, its frame keys in drawing order
    (`cluster_k` is frames[k]), and each node's and frame's box in the SVG's user units (x, y, width, height)."""

    depth: int
    graph: Graph
    frames: list[str]
    boxes: dict[str, list[float]]


Facts = list[list[str]]


def _count(value: int | None, unit: str = "") -> str:
    if value is None:
        return "unknown"
    text = f"{value:,}{unit}"
    return f"{text} ({human_count(value)})" if abs(value) >= 1000 else text


def _bytes(value: int | None) -> str:
    if value is None:
        return "unknown"
    return f"{human_bytes(value)} ({value:,} B)" if abs(value) >= 1024 else f"{value:,} B"


def _axes(values: Sequence[Any] | None) -> str:
    """[4, 4] -> "4"; [4, 8] -> "4×8"."""
    if not values:
        return "unknown"
    return shape_text(values[:1] if len(set(values)) == 1 else list(values))


class _Builder:
    """Collects the entities, then the levels' node/frame keys and holders; one instance per page."""

    def __init__(self, trace: Trace, report: Report[LayerRow], fields: FieldMap | None, field_rows: list[FieldRow],
                 rf_unknown: str | None, timing: Mapping[str, Any] | None) -> None:
        self.trace = trace
        self.report = report
        self.fields = fields
        self.rf_unknown = rf_unknown
        self.times: Mapping[str, Mapping[str, float]] = (timing or {}).get("layers", {})
        self.whole: Mapping[str, float] | None = (timing or {}).get("model")
        self.calls = {call.label: call for call in trace.calls}
        self.children: dict[int, list[ModuleCall]] = {}
        for call in trace.calls:
            if call.parent is not None:
                self.children.setdefault(call.parent, []).append(call)
        self.rows = {row.name: row for row in report.layers}
        self.field_of: dict[int, FieldRow] = {}
        for row in field_rows:
            if row.call not in self.field_of or self.field_of[row.call].field.constant:
                self.field_of[row.call] = row
        self.entities: dict[str, dict[str, Any]] = {}
        self.params = count_params_of_node(trace)

    # entities -----------------------------------------------------------------------------------------
    def call_entity(self, call: ModuleCall) -> str:
        key = call.label
        if key in self.entities:
            return key
        row = self.rows.get(key)
        facts: Facts = [["type", call.type], ["name", key]]
        if row is not None:
            facts += self.cost_facts(row.input_shapes, row.output_shapes, row.params, row.trainable_params, row.macs,
                                     row.macs_pct, row.other_flops, row.output_bytes)
        facts += self.field_facts(self.field_of.get(call.index))
        facts += self.kernel_facts(call)
        facts += self.time_facts([call])
        self.entities[key] = {"title": call.type, "name": key, "depth": call.depth, "facts": facts,
                              "expands": call.index in self.children}
        return key

    def run_entity(self, members: list[ModuleCall], name: str) -> str:
        """A run of k identical blocks drawn once (`name`: the graph's, "layer3.1–5")."""
        key = f"run:{members[0].label}"
        if key in self.entities:
            return key
        rows = [self.rows[m.label] for m in members if m.label in self.rows]
        first, last = members[0], members[-1]
        title = f"{first.type} ×{len(members)}"
        facts: Facts = [["type", title], ["name", f"{len(members)} blocks: " + ", ".join(m.label for m in members)]]
        if len(rows) == len(members):
            macs = sum(r.macs for r in rows)
            facts += self.cost_facts(rows[0].input_shapes, rows[-1].output_shapes, sum(r.params for r in rows),
                                     sum(r.trainable_params for r in rows), macs, sum(r.macs_pct for r in rows),
                                     sum(r.other_flops for r in rows), rows[-1].output_bytes)
            facts.insert(2, ["totals", f"of the {len(members)} blocks; output and receptive field: the last's"])
        facts += self.field_facts(self.field_of.get(last.index))
        facts += self.kernel_facts(first, each="of each block")
        facts += self.time_facts(members)
        self.entities[key] = {"title": title, "name": name, "depth": first.depth, "facts": facts,
                              "expands": first.index in self.children, "members": [m.label for m in members]}
        return key

    def op_entity(self, node: GraphNode) -> str:
        op = self.trace.ops[node.ops[0]]
        key = f"op:{op.index}"
        if key in self.entities:
            return key
        inside = self.trace.calls[op.module_call].label if op.module_call is not None else "the model's forward"
        reads = [t for t in op.inputs if self.trace.tensors[t].kind in ("activation", "input")]
        cost = op_cost(op, self.trace)
        out = node.outputs[0] if node.outputs else None
        facts: Facts = [["type", f"{node.type} (functional: {op.packet})"], ["name", f"in {inside}"],
                        ["input", shape_text(self.trace.shapes(reads)) or "—"],
                        ["output", shape_text([list(s) for s in node.shapes]) or "—"],
                        ["params", "0 (a functional op)"],
                        ["MACs", _count(cost.macs) if cost is not None else "unknown, because no cost formula "
                         f"applies to {op.packet}"],
                        ["other FLOPs", _count(cost.other_flops) if cost is not None else "unknown"],
                        ["output memory", _bytes(self.trace.tensors[out].bytes) if out is not None else "—"]]
        if out is not None and self.fields is not None:
            facts += self.rf_texts(field_columns(self.fields.of(out)), [])
        self.entities[key] = {"title": node.type, "name": f"{node.type} ({key})", "depth": None, "facts": facts,
                              "expands": False}
        return key

    def tensor_entity(self, node: GraphNode) -> str:
        if node.id not in self.entities:
            tensor = self.trace.tensors[node.outputs[0]]
            facts = [["type", f"model {node.kind}"], ["name", tensor.name or node.id],
                     ["shape", shape_text(list(tensor.shape))], ["dtype", tensor.dtype],
                     ["memory", _bytes(tensor.bytes)]]
            if node.kind == "output" and self.fields is not None:
                facts += self.rf_texts(field_columns(self.fields.of(tensor.id)), [])
            self.entities[node.id] = {"title": f"{node.kind} {node.id[-1]}", "name": node.id, "depth": None,
                                      "facts": facts, "expands": False}
        return node.id

    def root_entity(self) -> str:
        if ROOT not in self.entities:
            root = next(call for call in self.trace.calls if call.parent is None)
            totals = self.report.totals
            facts: Facts = [["type", root.type], ["name", f"{self.report.model} (the whole model)"],
                            ["input", shape_text(self.report.inputs)],
                            ["output", shape_text(self.trace.shapes(root.outputs)) or "—"],
                            ["params", _count(totals["params"])], ["MACs", _count(totals["macs"])],
                            ["other FLOPs", _count(totals["other_flops"])],
                            ["activations", _bytes(totals["activation_bytes"]) + ": every tensor the forward makes"],
                            ["peak memory", _bytes(totals["peak_bytes"]) + ": estimated, parameters + buffers + "
                             "inputs + peak live activations"]]
            if self.fields is not None:
                facts += self.rf_texts(field_columns(call_field(self.fields, root)), [])
            elif self.rf_unknown:
                facts.append(["receptive field", f"unknown, because {self.rf_unknown}"])
            if self.whole:
                facts.append(["latency", f"p50 {self.whole['p50_ms']:.4g} ms · p90 {self.whole['p90_ms']:.4g} ms · "
                                         f"mean {self.whole['mean_ms']:.4g} ms (the plain forward, no hooks)"])
            self.entities[ROOT] = {"title": root.type, "name": ROOT, "depth": 0, "facts": facts,
                                   "expands": bool(self.children.get(root.index))}
        return ROOT

    def module_entity(self, name: str) -> str:
        key = f"module:{name}"
        if key not in self.entities:
            module = self.trace.modules[name]
            self.entities[key] = {"title": module.type, "name": name, "depth": depth_of(name), "expands": True,
                                  "facts": [["type", module.type], ["name", name],
                                            ["called", "never: a container; its children are drawn inside"],
                                            ["params", _count(self.params.get(name, (None, None))[0])]]}
        return key

    # facts ----------------------------------------------------------------------------------------------
    @staticmethod
    def cost_facts(inputs: list[Any], outputs: list[Any], params: int, trainable: int, macs: int, pct: float,
                   other: int, out_bytes: int) -> Facts:
        kept = "" if trainable == params else f" · {trainable:,} trainable"
        return [["input", shape_text(inputs) or "—"], ["output", shape_text(outputs) or "—"],
                ["params", _count(params) + kept], ["MACs", f"{_count(macs)} · {pct:.2f}% of the model"],
                ["other FLOPs", _count(other)], ["output memory", _bytes(out_bytes)]]

    def field_facts(self, row: FieldRow | None) -> Facts:
        if self.fields is None:
            return [["receptive field", f"unknown, because {self.rf_unknown}"]] if self.rf_unknown else []
        if row is None:
            return [["receptive field", "unknown, because the call has no tensor output"]]
        return self.rf_texts(field_columns(row.field), row.notes)

    @staticmethod
    def rf_texts(columns: Mapping[str, Any], notes: Sequence[str]) -> Facts:
        if columns["rf"] is None:
            reason = notes[0] if notes else "its output does not depend on the input image"
            return [["receptive field", f"unknown, because {reason}" if notes else reason]]
        size = f"{shape_text(columns['rf'])} px"
        facts = [["receptive field", f"global (some path sees the whole input); local paths {size}"
                  if columns["global"] else size]]
        if columns["rf_min"] is not None and columns["rf_min"] != columns["rf"]:
            facts.append(["RF, shortest path", f"{shape_text(columns['rf_min'])} px"])
        return facts + [["stride", f"{_axes(columns['stride'])} px"], ["padding", f"{_axes(columns['padding'])} px"]]

    def kernel_facts(self, call: ModuleCall, each: str = "") -> Facts:
        """Its convolution or pooling window, else those of the leaf modules inside it."""
        own = window_of(self.trace, call)
        label = f"kernel ({each})" if each else "kernel"
        if own is not None:
            return [[label, _window(own)]]
        inner: list[tuple[str, dict[str, Any]]] = []
        stack = list(reversed(self.children.get(call.index, [])))
        while stack:
            child = stack.pop()
            if child.index in self.children:
                stack.extend(reversed(self.children[child.index]))
            elif (window := window_of(self.trace, child)) is not None:
                inner.append((child.label.removeprefix(call.label + ".") if call.label != ROOT else child.label,
                              window))
        if not inner:
            return []
        if len(inner) <= _WINDOWS_LISTED:
            return [[f"kernels ({each})" if each else "kernels", " · ".join(f"{name} {_window(w)}"
                                                                             for name, w in inner)]]
        counts: dict[str, int] = {}
        for _, window in inner:
            counts[kernel_text(window)] = counts.get(kernel_text(window), 0) + 1
        return [[f"kernels ({len(inner)} windows)", ", ".join(f"{text} ×{n}" for text, n in counts.items())]]

    def time_facts(self, calls: list[ModuleCall]) -> Facts:
        if not self.times:
            return []
        timed = [self.times[c.label] for c in calls if c.label in self.times]
        if len(timed) == len(calls):
            mean = sum(t["mean_ms"] for t in timed)
            share = sum(t["share"] for t in timed)
            if len(calls) == 1:
                return [["latency", f"p50 {timed[0]['p50_ms']:.4g} ms · mean {mean:.4g} ms · {share:.1f}% of the "
                                    "hooked forward"]]
            return [["latency", f"mean {mean:.4g} ms: the sum of the {len(calls)} blocks' means · {share:.1f}%"]]
        inner = [self.times[c.label] for c in self.trace.calls if c.label in self.times and self._inside(c, calls)]
        if not inner:
            return [["latency", "not timed (per-layer timing ran at a shallower depth)"]]
        mean = sum(t["mean_ms"] for t in inner)
        return [["latency", f"mean ≥ {mean:.4g} ms: the sum of the means of the {len(inner)} timed modules inside "
                            "(its own code between them is not timed)"]]

    def _inside(self, call: ModuleCall, outer: list[ModuleCall]) -> bool:
        indices = {c.index for c in outer}
        parent = call.parent
        while parent is not None:
            if parent in indices:
                return True
            parent = self.trace.calls[parent].parent
        return False

    # levels ---------------------------------------------------------------------------------------------
    def node_key(self, node: GraphNode) -> str:
        if node.kind in ("input", "output"):
            return self.tensor_entity(node)
        if not node.calls:
            return self.op_entity(node)
        calls = [self.trace.calls[c] for c in node.calls]
        if calls[0].parent is None:
            return self.root_entity()
        return self.run_entity(calls, node.name) if len(calls) > 1 else self.call_entity(calls[0])

    def level(self, level: Level) -> dict[str, Any]:
        """The keys of a level's nodes and frames (registering their entities); `holders` come later."""
        graph = level.graph
        nodes = {node.id: self.node_key(node) for node in graph.nodes}
        frames: dict[str, str] = {}
        spans: dict[int, str] = {}  # call index -> the frame of the run holding it
        for k, key in enumerate(level.frames):
            frame_id, cluster, call = f"cluster_{k}", graph.clusters[key], self.calls.get(key)
            if call is None:
                frames[frame_id] = self.module_entity(cluster.name)
                continue
            members = [call]
            if cluster.repeat > 1 and call.parent is not None:
                siblings = self.children[call.parent]
                start = siblings.index(call)
                members = siblings[start:start + cluster.repeat]
                spans.update((m.index, frame_id) for m in members)
            frames[frame_id] = self.run_entity(members, cluster.name) if len(members) > 1 else self.call_entity(call)
        return {"depth": level.depth, "nodes": nodes, "frames": frames, "boxes": level.boxes, "spans": spans,
                "own": {self.calls[key].index: f"cluster_{k}" for k, key in enumerate(level.frames)
                        if key in self.calls}, "graph": graph}

    def holders(self, drawn: dict[str, Any]) -> dict[str, str]:
        """Entity key -> the id of the node or frame that shows it on this level: its own, that of the run it
        belongs to, else that of its nearest ancestor shown."""
        graph = drawn.pop("graph")
        spans, own = drawn.pop("spans"), drawn.pop("own")
        node_of_call = {c: node.id for node in graph.nodes for c in node.calls}
        node_of_op = {i: node.id for node in graph.nodes for i in node.ops}
        resolved: dict[int, str | None] = {}

        def holder(call: ModuleCall) -> str | None:
            if call.index not in resolved:
                found = node_of_call.get(call.index) or own.get(call.index) or spans.get(call.index)
                if found is None and call.parent is not None:
                    found = holder(self.trace.calls[call.parent])
                resolved[call.index] = found
            return resolved[call.index]

        shown = {key: element for element, key in [*drawn["nodes"].items(), *drawn["frames"].items()]}
        holders: dict[str, str] = {}
        for key, entity in self.entities.items():
            place: str | None = shown.get(key)
            if place is None and key in self.calls:
                place = holder(self.calls[key])
            elif place is None and key.startswith("run:"):
                place = holder(self.calls[entity["members"][0]])
            elif place is None and key.startswith("op:"):
                index = int(key[3:])
                op_call = self.trace.ops[index].module_call
                place = node_of_op.get(index) or (holder(self.trace.calls[op_call]) if op_call is not None else None)
            if place is not None:
                holders[key] = place
        return holders


def _window(window: Mapping[str, Any]) -> str:
    """kernel_text ("3×3 d12") with the padding: "3×3 d12, padding 12"."""
    return f"{kernel_text(window)}, padding {_axes(window['padding'])}"


TABLE_COLUMNS = [("name", "module", False), ("type", "type", False), ("depth", "depth", True),
                 ("params", "params", True), ("macs", "MACs", True), ("macs_pct", "% MACs", True),
                 ("other_flops", "other FLOPs", True), ("output_bytes", "output memory", True),
                 ("rf", "RF", True), ("stride", "stride", True), ("kernel", "kernel", False)]


def _table(builder: _Builder, timed: bool, depth: int) -> dict[str, Any]:
    """The layer table: the summary's rows down to `depth` and those drawn deeper (a ModuleList's children),
    each cell as [sort value, text]."""
    columns = TABLE_COLUMNS + ([("latency", "latency p50 (ms)", True)] if timed else [])
    rows = []
    for row in builder.report.layers:
        if row.depth > depth and row.name not in builder.entities:
            continue
        call = builder.calls[row.name]
        builder.call_entity(call)
        field = builder.field_of.get(call.index)
        rf = field_columns(field.field) if field is not None else {"rf": None, "stride": None, "global": False}
        side = max((v for v in rf["rf"] or [] if v is not None), default=None)
        time = builder.times.get(row.name)
        values: dict[str, list[Any]] = {
            "name": [row.name, row.name], "type": [row.type, row.type], "depth": [row.depth, str(row.depth)],
            "params": [row.params, f"{row.params:,}"], "macs": [row.macs, f"{row.macs:,}"],
            "macs_pct": [row.macs_pct, f"{row.macs_pct:.2f}"], "other_flops": [row.other_flops, f"{row.other_flops:,}"],
            "output_bytes": [row.output_bytes, human_bytes(row.output_bytes)],
            "rf": [side, ("global " if rf["global"] else "") + (shape_text(rf["rf"]) if rf["rf"] else "")],
            "stride": [max(rf["stride"] or [0]) or None, _axes(rf["stride"]) if rf["stride"] else ""],
            "kernel": [kernel_text(row.kernel) if row.kernel else "", kernel_text(row.kernel) if row.kernel else ""],
            "latency": [time["p50_ms"] if time else None, f"{time['p50_ms']:.4g}" if time else ""],
        }
        rows.append({"key": row.name, "cells": [values[key] for key, _, _ in columns]})
    return {"columns": [{"key": k, "header": h, "numeric": n} for k, h, n in columns], "rows": rows}


def explorer_data(trace: Trace, report: Report[LayerRow], fields: FieldMap | None, field_rows: list[FieldRow],
                  levels: Sequence[Level], rf_unknown: str | None = None,
                  timing: Mapping[str, Any] | None = None, table_depth: int | None = None) -> dict[str, Any]:
    """The page's data: `levels` (per depth: node and frame keys, holders, boxes), `entities` (title, name,
    depth, facts, whether it expands), the layer `table` (the report's rows down to `table_depth`, and those
    drawn), and the deepest level. `timing`: {"layers": {label: {"mean_ms", "p50_ms", "share"}}} of a per-layer
    run, and "model": {"p50_ms", "p90_ms", "mean_ms"} of the plain forward. `report` must reach every call the
    levels draw."""
    builder = _Builder(trace, report, fields, field_rows, rf_unknown, timing)
    drawn = [builder.level(level) for level in levels]  # every level's entities first, then where each is shown
    table = _table(builder, bool(builder.times), levels[-1].depth if table_depth is None else table_depth)
    for level in drawn:
        level["holders"] = builder.holders(level)
    return {"levels": drawn, "entities": builder.entities, "table": table, "deepest": levels[-1].depth}
