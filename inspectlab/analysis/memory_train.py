"""Training memory from the Trace of one steady-state step (`tracing.train_step.StepTrace`): bytes by
category, the peak with its phase and op, and the bytes each module saves for backward (docs/memory.md).

Lifetimes over the step (from the model's first op to the end of `zero_grad`):
- parameters, buffers, inputs and the optimizer state (made by the warm-up step) are live throughout;
- a parameter's gradient from the backward op that makes it to `zero_grad(set_to_none=True)`;
- an activation autograd saved for backward from its producer to the last backward op that reads it (to
  the end of backward if none reads it: autograd frees it with the graph);
- the model's outputs and the loss to the end of the step (the caller's variables hold them);
- under autocast, the low-precision copies of the parameters (autocast's cast cache; the convolutions save
  them for backward) are a category of their own, "weight copy", not activations;
- every other storage (the forward's temporaries, the gradients flowing through backward, the optimizer's
  temporaries) from its producer to its last reader.
While an op runs, its CPU kernel's own buffers count too (`memory_kernels`), as "workspace".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inspectlab.analysis.memory_kernels import KernelContext
from inspectlab.analysis.memory_layout import Layouts
from inspectlab.analysis.memory_timeline import BEFORE, Lifetime, Moment, Timeline, kernel_of, timeline
from inspectlab.analysis.report import Row
from inspectlab.core.naming import ROOT, depth_of
from inspectlab.tracing.records import OpRecord
from inspectlab.tracing.train_step import MODEL, StepTrace

PHASES = ("forward", "backward", "optimizer")
CATEGORIES = ("parameter", "buffer", "input", "gradient", "optimizer", "weight copy", "activation", "temporary",
              "workspace")
CASTS = ("aten._to_copy", "aten.to", "aten._autocast_to_reduced_precision", "aten.clone")
_PREFIX = MODEL + "."


@dataclass(eq=False)
class SavedRow(Row):
    """One module: the bytes of activations it saves for backward (distinct storages, each counted in the
    first module that saved it, its subtree included) and its trainable parameters' bytes."""

    name: str
    type: str
    depth: int
    saved_bytes: int
    saved_tensors: int
    param_bytes: int
    share: float  # of all saved activation bytes


@dataclass(frozen=True)
class TrainingMemory:
    params_bytes: int  # trainable and frozen parameters
    grads_bytes: int
    optimizer_bytes: int
    activations_bytes: int  # distinct activation storages saved for backward
    buffer_bytes: int
    input_bytes: int
    weight_copy_bytes: int  # autocast's low-precision copies of the parameters
    peak: Moment
    peak_phase: str
    peak_op: str  # "aten.convolution_backward.default"
    peak_module: str | None
    timeline: Timeline
    phase_starts: dict[str, int]  # phase -> the op index it starts at
    rows: list[SavedRow] = field(default_factory=list)
    unmodelled: dict[str, list[str]] = field(default_factory=dict)  # what a kernel rule cannot size -> modules

    @property
    def peak_bytes(self) -> int:
        return self.peak.bytes


def step_lifetimes(step: StepTrace) -> list[Lifetime]:
    """Every storage of the step, with its category and lifetime (see the module docstring)."""
    trace = step.trace
    window = step.ops_of("model", "zero")
    first, end = window.start, window.stop - 1
    backward_end = step.parts["backward"].end_op - 1
    state = {trace.tensors[t].storage for t in step.state}
    grads = {trace.tensors[g].storage for g in step.grads if g is not None}
    saved = {trace.tensors[t].storage for t, _ in step.saved}
    held = {trace.tensors[t].storage for t in (*trace.outputs, *step.parts["loss"].outputs)}
    copies = weight_copies(step)
    last: dict[int, int] = {}
    for tensor in trace.tensors.values():
        uses = [c for c in tensor.consumers if first <= c <= end]
        if tensor.producer is not None and first <= tensor.producer <= end:
            uses.append(tensor.producer)
        if uses:
            last[tensor.storage] = max(last.get(tensor.storage, BEFORE), *uses)
    lifetimes = []
    for tensor in trace.tensors.values():
        if tensor.storage != tensor.id:
            continue
        produced = tensor.producer is not None and first <= tensor.producer <= end
        if tensor.kind in ("param", "buffer", "input", "constant") or tensor.id in state:
            category = {"param": "parameter", "constant": "buffer"}.get(tensor.kind, tensor.kind)
            lifetimes.append(Lifetime(tensor.id, tensor.bytes, "optimizer" if tensor.id in state else category,
                                      BEFORE, end))
        elif produced and tensor.producer is not None:
            start = tensor.producer
            if tensor.id in grads:
                category, stop = "gradient", end
            elif tensor.id in held:
                category, stop = "temporary", end
            elif tensor.id in saved:
                category, stop = "weight copy" if tensor.id in copies else "activation", max(
                    last.get(tensor.id, start), start)
                if stop < step.parts["backward"].first_op:
                    stop = backward_end  # saved but read by no backward op: freed with the graph
            else:
                category, stop = "weight copy" if tensor.id in copies else "temporary", last.get(tensor.id, start)
            lifetimes.append(Lifetime(tensor.id, tensor.bytes, category, start, stop))
    return lifetimes


def training_memory(step: StepTrace, kernels: KernelContext | None, depth: int = 2) -> TrainingMemory:
    """The step's memory: totals by category, the timeline and its peak, the per-module saved bytes."""
    trace = step.trace
    layouts = Layouts(trace) if kernels is not None else None
    window = [trace.ops[i] for i in step.ops_of("model", "zero")]
    lifetimes = step_lifetimes(step)
    line = timeline(trace, window, lifetimes, lambda op: kernel_of(op, trace, kernels, layouts))
    starts = {"forward": step.parts["model"].first_op, "backward": step.parts["backward"].first_op,
              "optimizer": step.parts["step"].first_op}
    peak_op = trace.ops[line.peak.op]
    by_storage = {lifetime.storage: lifetime for lifetime in lifetimes}
    grads = {trace.tensors[g].storage for g in step.grads if g is not None}
    saved = _first_savers(step)
    return TrainingMemory(
        params_bytes=sum(t.bytes for t in trace.tensors.values() if t.kind == "param" and t.storage == t.id),
        grads_bytes=sum(by_storage[s].bytes for s in grads if s in by_storage),
        optimizer_bytes=sum(lt.bytes for lt in lifetimes if lt.category == "optimizer"),
        activations_bytes=sum(trace.tensors[s].bytes for s in saved),
        buffer_bytes=sum(lt.bytes for lt in lifetimes if lt.category == "buffer"),
        input_bytes=sum(lt.bytes for lt in lifetimes if lt.category == "input"),
        weight_copy_bytes=sum(lt.bytes for lt in lifetimes if lt.category == "weight copy"),
        peak=line.peak, peak_phase=_phase(line.peak.op, starts), peak_op=peak_op.name,
        peak_module=module_of(peak_op, step, saved), timeline=line, phase_starts=starts,
        rows=saved_rows(step, saved, depth),
        unmodelled={reason: [module_of(trace.ops[i], step, saved) or trace.ops[i].name for i in ops]
                    for reason, ops in line.unmodelled.items()},
    )


def _phase(index: int, starts: dict[str, int]) -> str:
    return max((name for name in PHASES if starts[name] <= index), key=lambda name: starts[name], default="forward")


def weight_copies(step: StepTrace) -> set[int]:
    """The storages the forward makes by casting a parameter (autocast's low-precision weights)."""
    trace = step.trace
    params = {t.id for t in trace.tensors.values() if t.kind == "param"}
    forward = step.ops_of("model")
    return {trace.tensors[out].storage for i in forward for op in (trace.ops[i],) if op.packet in CASTS
            and any(trace.tensors[t].storage in params for t in op.inputs) for out in op.outputs}


def _first_savers(step: StepTrace) -> dict[int, str]:
    """Each saved activation storage -> the module that saved it first (parameters, inputs and weight copies
    excluded)."""
    trace = step.trace
    copies = weight_copies(step)
    savers: dict[int, str] = {}
    for tensor_id, module in step.saved:
        storage = trace.tensors[tensor_id].storage
        if trace.tensors[storage].kind == "activation" and storage not in savers and storage not in copies:
            savers[storage] = module
    return savers


def module_of(op: OpRecord, step: StepTrace, saved: dict[int, str]) -> str | None:
    """The model's module an op works for: the forward's innermost module call; for a backward op, the owner of
    a parameter it reads (a convolution's weight), else the module that saved a tensor it reads; for an
    optimizer op, the owner of the parameter whose state, gradient or values it (or what made its inputs)
    reads."""
    trace = step.trace
    if op.module_call is not None:
        name = trace.calls[op.module_call].label
        if name.startswith(_PREFIX):
            return name[len(_PREFIX):]
    owners = {t: name for name, node in trace.modules.items() for t in node.param_ids.values()}
    params = {trace.tensors[g].storage: p for p, g in zip(step.params, step.grads, strict=True) if g is not None}
    params.update({trace.tensors[s].storage: p for s, p in step.state_owner.items()})
    frontier, seen = list(op.inputs), set()
    for _ in range(4):  # the op's inputs, then what made them (an optimizer's temporaries come from its state)
        following = []
        for tensor_id in frontier:
            storage = trace.tensors[tensor_id].storage
            if storage in seen:
                continue
            seen.add(storage)
            owner = owners.get(params.get(storage, storage))
            if owner is not None and owner.startswith(_PREFIX):
                return owner[len(_PREFIX):]
        for tensor_id in frontier:
            storage = trace.tensors[tensor_id].storage
            if storage in saved:
                return saved[storage] or None
            producer = trace.tensors[tensor_id].producer
            if producer is not None:
                following.extend(trace.ops[producer].inputs)
        frontier = following
    return None


def saved_rows(step: StepTrace, saved: dict[int, str], depth: int) -> list[SavedRow]:
    """One row per module of the model down to `depth`, in tree order (the model itself first), with its
    subtree's saved bytes."""
    trace = step.trace
    total = sum(trace.tensors[s].bytes for s in saved) or 1
    rows = []
    for name, node in trace.modules.items():
        if not (name == MODEL or name.startswith(_PREFIX)) or depth_of(name) - 1 > depth:
            continue
        own = name[len(_PREFIX):] if name != MODEL else ""
        inside = [s for s, module in saved.items() if not own or module == own or module.startswith(own + ".")]
        params = sum(trace.tensors[t].bytes for n, other in trace.modules.items()
                     if n == name or n.startswith(name + ".") for t in other.param_ids.values()
                     if trace.tensors[t].requires_grad)
        saved_bytes = sum(trace.tensors[s].bytes for s in inside)
        rows.append(SavedRow(name=own or ROOT, type=node.type, depth=depth_of(own), saved_bytes=saved_bytes,
                             saved_tensors=len(inside), param_bytes=params, share=saved_bytes / total))
    return rows
