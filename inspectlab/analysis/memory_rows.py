"""The rows of the inference memory table: per module call, the highest memory while it runs (its subtree's
ops), the op's workspace then, and the bytes of the storages the call creates."""

from __future__ import annotations

from dataclasses import dataclass

from inspectlab.analysis.memory_timeline import WORKSPACE, Timeline
from inspectlab.analysis.report import Row
from inspectlab.tracing.records import Trace


@dataclass(eq=False)
class PeakRow(Row):
    """One module call: `peak_bytes`, the most memory live while one of its ops runs (everything: parameters,
    other modules' activations...), at op `peak_op`; `workspace_bytes`, that op's kernel buffers then;
    `created_bytes`, the storages its ops create (views and in-place versions aside)."""

    name: str
    type: str
    depth: int
    peak_bytes: int
    peak_op: str
    workspace_bytes: int
    created_bytes: int


def inference_rows(trace: Trace, line: Timeline, depth: int) -> list[PeakRow]:
    """One row per module call down to `depth`, in call order (the model itself first)."""
    moments = {moment.op: moment for moment in line.moments}
    rows = []
    for call in trace.calls:
        if call.depth > depth:
            continue
        inside = [moments[i] for i in call.op_range() if i in moments]
        if not inside:
            continue
        top = max(inside, key=lambda moment: moment.bytes)
        created = sum(t.bytes for i in call.op_range() for t in map(trace.tensors.get, trace.ops[i].outputs)
                      if t is not None and t.storage == t.id and t.alias_of is None)
        rows.append(PeakRow(name=call.label or "(root)", type=call.type, depth=call.depth, peak_bytes=top.bytes,
                            peak_op=trace.ops[top.op].name, workspace_bytes=top.by_category.get(WORKSPACE, 0),
                            created_bytes=created))
    return rows
