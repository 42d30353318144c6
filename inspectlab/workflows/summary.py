"""summary, flops and tree: the Trace's per-layer table and totals, the counting conventions beside the
peers' own numbers, and the module hierarchy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from inspectlab.analysis.conventions import ConventionRow, convention_rows
from inspectlab.analysis.flops import count_flops
from inspectlab.analysis.memory import estimate_memory
from inspectlab.analysis.params import TreeNode, module_tree
from inspectlab.analysis.report import Report
from inspectlab.analysis.summary import LayerRow, summarize
from inspectlab.core.shapes import InputSize
from inspectlab.runtime.memory import check_fits
from inspectlab.runtime.peers import peer_totals
from inspectlab.tracing.inputs import as_call, example_call, on_device, positional
from inspectlab.workflows.guard import hands_off
from inspectlab.workflows.models import ModelOrSpec, input_specs, model_name, resolve
from inspectlab.workflows.trace import SEED, trace


def summary(model_or_spec: ModelOrSpec, input_size: InputSize | None = None, *,
            input_data: Any = None, args: Mapping[str, Any] | None = None, depth: int = 2,
            device: str = "meta", dtype: str = "float32", backward: bool = False,
            receptive_field: bool = False, train: bool = False, weights: str | None = None,
            strict: bool = True) -> Report[LayerRow]:
    """Params, MACs/FLOPs, shapes and memory per module call (down to `depth`) and in total;
    `receptive_field` adds each row's receptive field and stride."""
    recorded = trace(model_or_spec, input_size, input_data=input_data, args=args, device=device, dtype=dtype,
                     backward=backward, train=train, weights=weights, strict=strict)
    return summarize(recorded, model_name(model_or_spec), depth=depth, backward=backward,
                     receptive_field=receptive_field)


def flops(model_or_spec: ModelOrSpec, input_size: InputSize | None = None, *,
          input_data: Any = None, args: Mapping[str, Any] | None = None,
          backward: bool = False, compare: bool = False, weights: str | None = None,
          strict: bool = True) -> Report[ConventionRow]:
    """Totals under every counting convention, the category breakdown, and (compare) each peer's own number
    from a real CPU run of the peer libraries, on the same model instance and the same input tensors as the
    inspectlab numbers (a forward that depends on values then counts the same thing everywhere)."""
    if not compare:
        recorded = trace(model_or_spec, input_size, input_data=input_data, args=args, backward=backward,
                         weights=weights, strict=strict)
        count = count_flops(recorded)
        peers: dict[str, Any] = {}
    else:
        built = resolve(model_or_spec, args, "cpu", weights, strict)
        inputs = on_device(as_call(input_data), "cpu") if input_data is not None else example_call(
            input_specs(model_or_spec, input_size, args), "float32", "cpu", seed=SEED)
        recorded = trace(built.module, input_data=inputs, backward=backward)
        recorded.notes[:0] = built.notes
        count = count_flops(recorded)
        check_fits(estimate_memory(recorded).peak_bytes, torch.device("cpu"), f"{model_name(model_or_spec)}'s peers")
        with hands_off(built.module, real=True, owned=isinstance(model_or_spec, str)):
            peers = peer_totals(built.module, positional(built.module, inputs, "flops --compare"), backward)
    totals = summarize(recorded, model_name(model_or_spec), depth=0, backward=backward, count=count)
    return Report(model=totals.model, inputs=totals.inputs, layers=convention_rows(count, backward, peers),
                  totals=totals.totals, extra=totals.extra)


def tree(model_or_spec: ModelOrSpec, depth: int | None = None, args: Mapping[str, Any] | None = None
         ) -> list[TreeNode]:
    """The module hierarchy from `children()`, with own and total params per node."""
    return module_tree(resolve(model_or_spec, args).module, depth)
