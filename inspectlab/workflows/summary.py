"""summary, flops and tree: the Trace's per-layer table and totals, the counting conventions beside the
peers' own numbers, and the module hierarchy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from inspectlab.analysis.conventions import ConventionRow, convention_rows
from inspectlab.analysis.flops import count_flops
from inspectlab.analysis.params import TreeNode, module_tree
from inspectlab.analysis.report import Report
from inspectlab.analysis.summary import LayerRow, summarize
from inspectlab.core.shapes import InputSize
from inspectlab.runtime.peers import peer_totals
from inspectlab.tracing.inputs import example_inputs, on_device
from inspectlab.workflows.models import ModelOrSpec, model_name, resolve
from inspectlab.workflows.trace import trace


def summary(model_or_spec: ModelOrSpec, input_size: InputSize | None = None, *,
            input_data: Sequence[Any] | None = None, args: Mapping[str, Any] | None = None, depth: int = 2,
            device: str = "meta", dtype: str = "float32", backward: bool = False,
            receptive_field: bool = False) -> Report[LayerRow]:
    """Params, MACs/FLOPs, shapes and memory per module call (down to `depth`) and in total;
    `receptive_field` adds each row's receptive field and stride."""
    recorded = trace(model_or_spec, input_size, input_data=input_data, args=args, device=device, dtype=dtype,
                     backward=backward)
    return summarize(recorded, model_name(model_or_spec), depth=depth, backward=backward,
                     receptive_field=receptive_field)


def flops(model_or_spec: ModelOrSpec, input_size: InputSize | None = None, *,
          input_data: Sequence[Any] | None = None, args: Mapping[str, Any] | None = None,
          backward: bool = False, compare: bool = False) -> Report[ConventionRow]:
    """Totals under every counting convention, the category breakdown, and (compare) each peer's own number
    from a real CPU run of the peer libraries."""
    recorded = trace(model_or_spec, input_size, input_data=input_data, args=args, backward=backward)
    count = count_flops(recorded)
    peers: dict[str, Any] = {}
    if compare:
        real_model = resolve(model_or_spec, args, device="cpu").module
        inputs = on_device(input_data, "cpu") if input_data is not None else example_inputs(
            [tuple(s) for s in recorded.shapes(recorded.inputs)], "float32", "cpu")
        peers = peer_totals(real_model, inputs, backward)
    totals = summarize(recorded, model_name(model_or_spec), depth=0, backward=backward, count=count)
    return Report(model=totals.model, inputs=totals.inputs, layers=convention_rows(count, backward, peers),
                  totals=totals.totals, extra=totals.extra)


def tree(model_or_spec: ModelOrSpec, depth: int | None = None, args: Mapping[str, Any] | None = None
         ) -> list[TreeNode]:
    """The module hierarchy from `children()`, with own and total params per node."""
    return module_tree(resolve(model_or_spec, args).module, depth)
