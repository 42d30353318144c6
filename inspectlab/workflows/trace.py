"""The Trace of a model: built on the meta device, recorded in one pass, with the one fallback to a real
run (a forward that needs values), always recorded as a note. Every pass goes through `hands_off`: the user's
module is left as it was, and a real run's input is seeded, so the same call gives the same numbers."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from inspectlab.analysis.memory import estimate_memory
from inspectlab.analysis.params import count_params
from inspectlab.core.errors import InspectlabError, first_line
from inspectlab.core.shapes import InputSize, InputSpec, compute_dtype
from inspectlab.runtime.memory import check_fits
from inspectlab.tracing.build import has_lazy, lazy_modules, materialised, paused_gc, script_on_meta
from inspectlab.tracing.failures import NeedsRealRun
from inspectlab.tracing.inputs import (
    CallInputs,
    as_call,
    example_call,
    input_dtype,
    named_tensors,
    on_device,
    torch_dtype,
)
from inspectlab.tracing.recorder import is_script, record
from inspectlab.workflows.guard import hands_off
from inspectlab.workflows.models import ModelOrSpec, build, input_specs, model_name, resolve

if TYPE_CHECKING:
    from inspectlab.tracing.records import Trace

SEED = 0  # the seed of every random input of a real run
# Ops whose result depends on the input's values: a trace holding one counts what this input made happen.
VALUE_DEPENDENT = ("aten.nonzero", "aten._local_scalar_dense", "aten.masked_select", "aten.unique",
                   "aten._unique2", "aten.unique_dim", "aten.unique_consecutive", "aten.argwhere",
                   "aten.index_put_", "aten.masked_scatter")


def trace(model_or_spec: ModelOrSpec, input_size: InputSize | None = None, *,
          input_data: Any = None, args: Mapping[str, Any] | None = None,
          device: str = "meta", dtype: str = "float32", backward: bool = False, train: bool = False,
          force: bool = False, weights: str | None = None, strict: bool = True) -> Trace:
    """Record one pass of the model (the Trace of DESIGN.md): module tree, calls, ops and tensors.

    Runs on the meta device by default, so its cost does not depend on the input size; a model whose
    forward needs real values falls back to a real run on the CPU, and the Trace's notes say so. Every pass
    runs in eval mode unless `train`. A real run is refused (unless `force`) when its estimated peak does
    not fit the device's free memory. `weights`: a state_dict file loaded into a spec's model.

    `input_size`: shapes or input specs (`core.shapes.InputSpec`: a dtype, a keyword name), made up as
    `tracing.inputs.example_call` says; `input_data`: the user's own values (`tracing.inputs.as_call`: a tensor,
    a list of positional arguments, a dict of keyword arguments, with any nesting and non-tensor values), their
    tensors moved to the pass's device and everything else passed as it is.
    """
    owned = isinstance(model_or_spec, str)
    if not owned:
        resolve(model_or_spec, weights=weights)  # refuses weights for a user's module
    built = build(model_or_spec, args, "meta", weights, strict) if owned else None
    model = built.module if built is not None else model_or_spec
    notes = list(built.notes) if built is not None else []
    data = as_call(input_data) if input_data is not None else None
    specs = input_specs(model_or_spec, input_size, args) if data is None else []
    dtype = compute_dtype(specs, dtype)
    try:
        meta = _record(model, data, specs, "meta", dtype, backward, train, owned)
    except NeedsRealRun as reason:
        meta, real_reason = None, reason
    if device == "meta" and meta is not None:
        meta.notes[:0] = notes
        return _noted(meta)
    # a real run: on `device`, or on the CPU (the device of a user's module) when the meta pass cannot run
    real_device = device if device != "meta" else "cpu"
    if not owned:
        real_device = next((p.device.type for p in model.parameters()), real_device) if device == "meta" else device
    needed = _estimate(meta, model, data, specs, dtype)
    if not force:
        check_fits(needed, torch.device(real_device), f"{model_name(model_or_spec)} on {real_device}",
                   0 if owned or has_lazy(model) else count_params(model, device=real_device).state_bytes)
    if owned:
        rebuilt = build(model_or_spec, args, real_device, weights, strict)
        model, notes = rebuilt.module, list(rebuilt.notes)
    result = _record(model, data, specs, real_device, dtype, backward, train, owned)
    if meta is None:
        given = "the given input" if data is not None else "a seeded random input" + (
            "" if all(s.floating for s in specs) else " (integers and bools: zeros)")
        result.notes.append(f"the forward cannot run on the meta device ({first_line(str(real_reason))}); ran on "
                            f"{real_device} instead, with {given}")
    result.notes[:0] = notes
    return _noted(result)


def _record(model: nn.Module, data: CallInputs | None, specs: Sequence[InputSpec], device: str, dtype: str,
            backward: bool, train: bool, owned: bool) -> Trace:
    """One recorded pass on `device`. A ScriptModule is recorded as a whole, on meta as a copy loaded there; a
    model with lazy modules is recorded as a copy that its first forward materialised (the model is unchanged)."""
    call = on_device(data, device) if data is not None else example_call(
        specs, dtype, device, seed=None if device == "meta" else SEED)
    notes = _script_notes(model)
    if device == "meta" and is_script(model) and not all(t.is_meta for t in (*model.parameters(), *model.buffers())):
        model, owned = _script_copy(model), True
    if has_lazy(model):
        kinds = ", ".join(lazy_modules(model))
        model, owned = materialised(model, call.args, call.kwargs, device), True
        notes.append(f"lazy modules ({kinds}) were materialised by a first forward of a copy of the model on {device} "
                     "(the model itself is left uninitialised): parameters count from the shapes it created")
    with hands_off(model, real=device != "meta", train=train, owned=owned), paused_gc():
        recorded = record(model, call.args, call.kwargs, device=device, backward=backward, dtype=torch_dtype(dtype))
    recorded.notes.extend(notes)
    return _named(recorded, call)


def _script_copy(model: nn.Module) -> nn.Module:
    copy = script_on_meta(model)
    if copy is None:
        raise NeedsRealRun("this ScriptModule cannot be copied onto the meta device (torch.jit.save refused it)")
    return copy


def _script_notes(model: nn.Module) -> list[str]:
    """What a pass over TorchScript cannot see (per-layer rows: no hooks); a frozen one is refused."""
    scripted = {name: module for name, module in model.named_modules() if is_script(module)}
    outermost = {name: module for name, module in scripted.items()
                 if name and not any(name.startswith(f"{other}.") for other in scripted if other)}
    if "" in scripted:
        notes = ["hooks are not supported on ScriptModules: the model is analysed as a whole (its totals in one row, "
                 "no per-layer rows)"]
        outermost = {"": model}
    elif outermost:
        notes = [f"hooks are not supported on ScriptModules: {', '.join(outermost)} has no row of its own (its ops "
                 "count in the totals and in the rows of the modules that call it)"]
    else:
        return []
    for name, module in outermost.items():
        if not hasattr(module, "training"):
            raise InspectlabError(f"{name or 'the model'} is a frozen ScriptModule (torch.jit.freeze): its parameters "
                                  "are folded into constants and it has no training flag, so it cannot be counted; "
                                  "give the ScriptModule before it is frozen")
    return notes


def _named(recorded: Trace, call: CallInputs) -> Trace:
    """Name each input tensor of the Trace as it was given: a keyword argument by its keyword, a tensor inside
    a structure by its path ("[0]['a']"); a top-level positional tensor stays unnamed."""
    for tensor_id, (name, _) in zip(recorded.inputs, named_tensors(call), strict=False):
        info = recorded.tensors[tensor_id]
        if name is not None and info.name is None:
            info.name = name
    return recorded


def _noted(result: Trace) -> Trace:
    """Add one note when the counts depend on the input's values: an op of VALUE_DEPENDENT, or indexing by a
    boolean mask (`x[x > 0]`, whose size is the number of True entries)."""
    found = sorted({op.packet for op in result.ops if op.packet in VALUE_DEPENDENT or (
        op.packet in ("aten.index", "aten.index_put", "aten.index_put_")
        and any(result.tensors[t].dtype == "bool" for t in op.inputs[1:]))})
    if found:
        result.notes.append(f"the counts depend on the input's values ({', '.join(found)}): another input may "
                            f"give other numbers")
    return result


def _estimate(meta: Trace | None, model: nn.Module, data: CallInputs | None, specs: Sequence[InputSpec],
              dtype: str) -> int:
    """The peak of a real run: the meta trace's estimate, else (no meta trace) a lower bound: the model's
    parameters and buffers and the inputs."""
    if meta is not None:
        return estimate_memory(meta).peak_bytes
    counts = count_params(model) if not has_lazy(model) else None  # lazy: the lower bound leaves them out
    if data is not None:
        inputs = sum(t.numel() * t.element_size() for t in data.tensors())
    else:
        inputs = sum((input_dtype(s.dtype) if s.dtype else torch_dtype(dtype)).itemsize * math.prod(s.shape)
                     for s in specs)
    return (counts.state_bytes if counts is not None else 0) + inputs
