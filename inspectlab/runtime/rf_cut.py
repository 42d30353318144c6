"""The cut pass of the empirical check (empirical_rf.py): a global row's local field is the union of the paths
that keep a per-unit field, so the check measures it with every global path detached. The analysis says where:
a module output that is global with no per-unit field left (global pooling, an SE gate, an attention output)
is replaced by a detached copy when its module returns; a tensor that a global path reaches without passing
through such an output (a gate made and applied in one module's own code) cannot have its local field measured.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from inspectlab.analysis.receptive_field import FieldMap
from inspectlab.runtime.rf_probe import tabled


def cut_plan(fields: FieldMap) -> tuple[dict[tuple[str, int], set[int]], set[int]]:
    """The module outputs to detach in the cut pass (global, with no per-unit field left: global pooling, an SE
    gate, attention), by (module name, call), output position; and the tensors a global path still reaches
    after those cuts (their local field cannot be measured)."""
    trace = fields.trace
    cuts: dict[tuple[str, int], set[int]] = {}
    cut_from: dict[int, int] = {}  # tensor -> first op that reads it cut (after its module returned)
    for call in trace.calls:
        if getattr(call, "implicit", False):
            continue
        for position, tensor in enumerate(call.outputs):
            info = fields.of(tensor)
            if info.is_global and not info.unknown and not any(tabled(a) for a in info.axes):
                cuts.setdefault((call.name, call.call), set()).add(position)
                cut_from[tensor] = min(cut_from.get(tensor, call.end_op), call.end_op)
    live, dirty = {fields.input_id}, set()  # depends on the input in the cut pass; through a global path there
    for op in trace.forward_ops():
        read = [t for t in op.inputs if not (t in cut_from and op.index >= cut_from[t])]  # detached ones are constant
        if not any(t in live for t in read):
            continue
        reads_dirty = any(t in dirty for t in read)
        for out in op.outputs:
            info = fields.of(out)
            live.add(out)
            if reads_dirty or (info.is_global and any(not tabled(a) and a.summary().size is not None
                                                      for a in info.axes)):
                dirty.add(out)
    return cuts, dirty


@contextmanager
def cutting(model: nn.Module, cuts: dict[tuple[str, int], set[int]]) -> Iterator[None]:
    """Forward hooks that replace the planned module outputs by detached copies."""
    counts: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        def hook(module: nn.Module, args: Any, output: Any, name: str = name) -> Any:
            count = counts.get(name, 0)
            counts[name] = count + 1
            positions = cuts.get((name, count))
            if not positions:
                return None
            leaves, spec = tree_flatten(output)
            tensors = [i for i, leaf in enumerate(leaves) if isinstance(leaf, torch.Tensor)]
            for k in positions:
                if k < len(tensors):
                    leaves[tensors[k]] = leaves[tensors[k]].detach().clone()
            return tree_unflatten(leaves, spec)

        handles.append(module.register_forward_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
