"""Calls for modules whose `forward` never ran but whose children did.

A model may use a submodule through another method (`self.backbone.forward_features(x)`, a timm
idiom our DeepLab and matting networks use too): its forward hooks never fire, yet its children run.
Such a module gets one *implicit* call spanning its descendants' calls, so that it still has a row,
a cost and a place in the graph. Its inputs are the tensors its span reads from before it, its
outputs the tensors its span produces that are read after it (or returned by the model).
"""

from __future__ import annotations

from inspectlab.tracing.records import ModuleCall, ModuleNode, OpRecord, TensorInfo


def add_implicit_calls(calls: list[ModuleCall], ops: list[OpRecord], tensors: dict[int, TensorInfo],
                       modules: dict[str, ModuleNode], model_outputs: list[int]) -> list[ModuleCall]:
    """Return the calls with implicit ones inserted (renumbered; ops' module_call updated in place)."""
    called = {call.name for call in calls}
    implicit: list[tuple[float, ModuleCall]] = []
    for name, node in modules.items():
        if name in called or not name:
            continue
        descendants = [c for c in calls if c.name.startswith(name + ".")]
        if not descendants:
            continue
        first, end = min(c.first_op for c in descendants), max(c.end_op for c in descendants)
        opener = min(descendants, key=lambda c: c.index)
        call = ModuleCall(index=-1, name=name, type=node.type, depth=node.depth, call=0, parent=opener.parent,
                          inputs=_span_inputs(ops, tensors, first, end),
                          outputs=_span_outputs(ops, tensors, first, end, model_outputs),
                          first_op=first, end_op=end, implicit=True)
        position = min(c.index for c in descendants) - 0.5 + node.depth * 1e-3
        implicit.append((position, call))
    if not implicit:
        return calls
    ordered = sorted([(float(c.index), c) for c in calls] + implicit, key=lambda item: item[0])
    renumber = {c.index: new for new, (_, c) in enumerate(ordered) if not c.implicit}
    result = [c for _, c in ordered]
    for new, call in enumerate(result):
        call.parent = renumber[call.parent] if call.parent is not None else None
        call.index = new
    spans = [c for c in result if c.implicit]
    for call in result:
        call.parent = _deepest_parent(call, result, spans)
    for op in ops:
        if op.module_call is not None:
            op.module_call = renumber[op.module_call]
    return result


def _deepest_parent(call: ModuleCall, calls: list[ModuleCall], spans: list[ModuleCall]) -> int | None:
    """The current parent, or a deeper implicit call whose module is an ancestor and whose span holds it."""
    best = calls[call.parent] if call.parent is not None else None
    for span in spans:
        holds = span.first_op <= call.first_op and call.end_op <= span.end_op
        if holds and call.name.startswith(span.name + ".") and (best is None or span.depth > best.depth):
            best = span
    return best.index if best is not None else None


def _span_inputs(ops: list[OpRecord], tensors: dict[int, TensorInfo], first: int, end: int) -> list[int]:
    read: dict[int, None] = {}
    for op in ops[first:end]:
        for tensor_id in op.inputs:
            tensor = tensors[tensor_id]
            from_outside = tensor.producer is None or tensor.producer < first
            if from_outside and tensor.kind in ("input", "activation"):
                read.setdefault(tensor_id)
    return list(read)


def _span_outputs(ops: list[OpRecord], tensors: dict[int, TensorInfo], first: int, end: int,
                  model_outputs: list[int]) -> list[int]:
    produced: list[int] = []
    for op in ops[first:end]:
        for tensor_id in op.outputs:
            tensor = tensors[tensor_id]
            if any(c >= end for c in tensor.consumers) or tensor_id in model_outputs:
                produced.append(tensor_id)
    return produced
