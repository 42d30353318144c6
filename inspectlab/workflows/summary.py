"""summary, flops and tree: the Trace's per-layer table and totals, the counting conventions beside the
peers' own numbers, and the module hierarchy.

summary and flops record one Trace the same way, so that they give the same totals for the same
command, also for a model whose forward needs values (detection: the number of boxes that survive NMS depends
on the weights and the input): a model built from a spec on the CPU is initialised from the CPU generator
seeded with SEED (`seeded_builds`; the process's generator is left as it was), and its random input is seeded too.
`flops --compare` runs the peers on a model built the same way, with the same input."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from inspectlab.analysis.conventions import ConventionRow, convention_rows, pruning_masks
from inspectlab.analysis.conventions_extra import extra_rows
from inspectlab.analysis.flops import count_flops
from inspectlab.analysis.memory import estimate_memory
from inspectlab.analysis.params import TreeNode, module_tree
from inspectlab.analysis.report import Report
from inspectlab.analysis.summary import LayerRow, summarize
from inspectlab.core.shapes import InputSize
from inspectlab.runtime.memory import check_fits
from inspectlab.runtime.peers import peer_totals
from inspectlab.runtime.peers_extra import extra_peer_totals
from inspectlab.tracing.build import has_lazy, materialised
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
    with seeded_builds():
        recorded = trace(model_or_spec, input_size, input_data=input_data, args=args, device=device, dtype=dtype,
                         backward=backward, train=train, weights=weights, strict=strict)
    return summarize(recorded, model_name(model_or_spec), depth=depth, backward=backward,
                     receptive_field=receptive_field)


def flops(model_or_spec: ModelOrSpec, input_size: InputSize | None = None, *,
          input_data: Any = None, args: Mapping[str, Any] | None = None,
          backward: bool = False, compare: bool = False, weights: str | None = None,
          strict: bool = True) -> Report[ConventionRow]:
    """Totals under every counting convention, the category breakdown, and (compare) each peer's own number
    from a real CPU run of the peer libraries, on the user's module, or on the spec's model built as the trace
    built it, with the same input tensors (a forward that depends on values then counts the same thing
    everywhere)."""
    with seeded_builds():
        recorded = trace(model_or_spec, input_size, input_data=input_data, args=args, backward=backward,
                         weights=weights, strict=strict)
    count = count_flops(recorded)
    peers: dict[str, Any] = {}
    pruned = pruning_masks(model_or_spec) if isinstance(model_or_spec, nn.Module) else {}
    if compare:
        with seeded_builds():
            built = resolve(model_or_spec, args, "cpu", weights, strict)
        inputs = on_device(as_call(input_data), "cpu") if input_data is not None else example_call(
            input_specs(model_or_spec, input_size, args), "float32", "cpu", seed=SEED)
        module, owned = built.module, isinstance(model_or_spec, str)
        if has_lazy(module):  # the peers run on a copy its first forward materialised, as the trace did
            module, owned = materialised(module, inputs.args, inputs.kwargs, "cpu"), True
        pruned = pruning_masks(module)
        check_fits(estimate_memory(recorded).peak_bytes, torch.device("cpu"), f"{model_name(model_or_spec)}'s peers")
        with hands_off(module, real=True, owned=owned):
            call_inputs = positional(module, inputs, "flops --compare")
            peers = peer_totals(module, call_inputs, backward)
            peers.update(extra_peer_totals(module, call_inputs, backward))  # ptflops, thop where installed
    totals = summarize(recorded, model_name(model_or_spec), depth=0, backward=backward, count=count)
    rows = convention_rows(count, backward, peers, pruned) + extra_rows(count, backward, peers)
    return Report(model=totals.model, inputs=totals.inputs, layers=rows,
                  totals=totals.totals, extra=totals.extra)


@contextlib.contextmanager
def seeded_builds() -> Iterator[None]:
    """Models built inside on the CPU are initialised from the CPU generator seeded with SEED; the generator is
    left as it was (and no CUDA generator is touched). A build on the meta device draws nothing."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(SEED)
        yield


def tree(model_or_spec: ModelOrSpec, depth: int | None = None, args: Mapping[str, Any] | None = None
         ) -> list[TreeNode]:
    """The module hierarchy from `children()`, with own and total params per node."""
    return module_tree(resolve(model_or_spec, args).module, depth)
