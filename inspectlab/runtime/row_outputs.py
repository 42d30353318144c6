"""Module outputs at runtime: forward hooks keep every module call's output tensors, keyed like the Trace
((name, nth call)), and a field row is matched to its runtime tensor. Shared by the exact-support check
(empirical_rf.py) and the effective field (effective_rf.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from inspectlab.analysis.receptive_field import FieldMap, FieldRow


class _Capture:
    """Forward hooks keeping every module call's output tensors, keyed like the Trace: (name, nth call)."""

    def __init__(self, model: nn.Module) -> None:
        self.outputs: dict[tuple[str, int], list[torch.Tensor]] = {}
        self.handles = []
        counts: dict[str, int] = {}
        for name, module in model.named_modules():
            def hook(module: nn.Module, args: Any, output: Any, name: str = name) -> None:
                count = counts.get(name, 0)
                counts[name] = count + 1
                leaves, _ = tree_flatten(output)
                self.outputs[(name, count)] = [t for t in leaves if isinstance(t, torch.Tensor)]

            self.handles.append(module.register_forward_hook(hook))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def run_with_hooks(model: nn.Module, inputs: Sequence[torch.Tensor], mode: TorchFunctionMode | None = None,
                   ) -> dict[tuple[str, int], list[torch.Tensor]]:
    """Run `model(*inputs)` (inside `mode` when given) and return every module call's output tensors."""
    capture = _Capture(model)
    try:
        if mode is None:
            model(*inputs)
        else:
            with mode:
                model(*inputs)
    finally:
        capture.remove()
    return capture.outputs


def row_tensor(outputs: dict[tuple[str, int], list[torch.Tensor]], fields: FieldMap, row: FieldRow,
               ) -> torch.Tensor | None:
    """The runtime tensor of a row: its call's output, or, for an implicit call (a module used through
    another method, whose hooks never fire), the same tensor returned by a call that did run; None when
    no call returns it (a tensor made by functional code in the parent's forward)."""
    calls = fields.trace.calls
    for call in [calls[row.call], *calls]:
        if getattr(call, "implicit", False) or row.tensor not in call.outputs:
            continue
        tensors = outputs.get((call.name, call.call))
        position = call.outputs.index(row.tensor)
        if tensors is not None and position < len(tensors):
            return tensors[position]
    return None
