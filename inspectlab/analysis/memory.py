"""Inference memory from the Trace: parameter, buffer and input bytes, activations, and the peak of a forward
under `no_grad` from tensor lifetimes and the CPU kernels' own buffers (docs/memory.md).

Model: every forward op that creates a new storage (not a view, not an in-place version) allocates it when it
runs, and the storage is released after the last op that reads any tensor using it; inputs are live from the
start and the model's outputs to the end. While an op runs, its kernel may hold buffers of its own (oneDNN's
blocked copies, a column buffer: `memory_kernels`); given a `KernelContext` (default: this process's CPU)
they count too. The estimated peak inference memory is the largest sum over the forward of parameters,
buffers, inputs, live activations and the running op's workspace: `timeline_of(trace).peak`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inspectlab.analysis.memory_kernels import KernelContext
from inspectlab.analysis.memory_layout import Layouts
from inspectlab.analysis.memory_timeline import BEFORE, WORKSPACE, Lifetime, Timeline, kernel_of, timeline
from inspectlab.tracing.records import Trace

CPU = "cpu"  # the default target: this process's CPU kernels


@dataclass(frozen=True)
class MemoryEstimate:
    param_bytes: int
    buffer_bytes: int
    input_bytes: int
    activation_bytes: int  # every activation storage created by the forward, summed
    peak_activation_bytes: int  # at the peak: everything but parameters and buffers (inputs, activations, workspace)
    peak_op: int | None  # the op at which the peak is reached
    workspace_bytes: int = 0  # the running kernel's own buffers at the peak
    unmodelled: dict[str, list[int]] = field(default_factory=dict)  # kernel buffers not modelled -> op indices

    @property
    def peak_bytes(self) -> int:
        return self.param_bytes + self.buffer_bytes + self.peak_activation_bytes


def forward_lifetimes(trace: Trace) -> list[Lifetime]:
    """Every storage of a forward: parameters, buffers, constants and inputs live throughout, activations from
    their producer to their last reader, the model's outputs to the end."""
    forward = [op for op in trace.ops if op.phase == "forward"]
    end = forward[-1].index if forward else 0
    last: dict[int, int] = {}
    for tensor in trace.tensors.values():
        uses = [c for c in tensor.consumers if c <= end]
        if tensor.producer is not None and tensor.producer <= end:
            uses.append(tensor.producer)
        if uses:
            last[tensor.storage] = max(last.get(tensor.storage, BEFORE), *uses)
    for tensor_id in (*trace.outputs, *trace.inputs):
        last[trace.tensors[tensor_id].storage] = end
    lifetimes = []
    for tensor in trace.tensors.values():
        if tensor.storage != tensor.id:
            continue
        if tensor.kind in ("param", "buffer", "input", "constant"):
            lifetimes.append(Lifetime(tensor.id, tensor.bytes, tensor.kind, BEFORE, end))
        elif tensor.producer is not None and tensor.producer <= end:
            lifetimes.append(Lifetime(tensor.id, tensor.bytes, "activation", tensor.producer,
                                      last.get(tensor.id, tensor.producer)))
    return lifetimes


def timeline_of(trace: Trace, kernels: KernelContext | None | str = CPU) -> Timeline:
    """The forward's memory timeline: one moment per forward op (`kernels`: the CPU kernels' context, CPU for
    this process's, None for tensors only)."""
    context = KernelContext.of_this_process() if kernels == CPU else kernels
    assert context is None or isinstance(context, KernelContext)
    layouts = Layouts(trace) if context is not None else None
    forward = [op for op in trace.ops if op.phase == "forward"]
    return timeline(trace, forward, forward_lifetimes(trace), lambda op: kernel_of(op, trace, context, layouts))


def estimate_memory(trace: Trace, kernels: KernelContext | None | str = CPU) -> MemoryEstimate:
    """Bytes of parameters, buffers, inputs and activations, and the forward's peak (`kernels`: as in
    `timeline_of`)."""
    line = timeline_of(trace, kernels)
    params, buffers = _bytes_of(trace, "param"), _bytes_of(trace, "buffer")
    peak = line.peak
    return MemoryEstimate(
        param_bytes=params,
        buffer_bytes=buffers,
        input_bytes=_bytes_of(trace, "input"),
        activation_bytes=sum(t.bytes for t in trace.tensors.values() if t.kind == "activation" and t.storage == t.id
                             and t.producer is not None and trace.ops[t.producer].phase == "forward"),
        peak_activation_bytes=max(peak.bytes - params - buffers, 0),
        peak_op=peak.op if peak.op >= 0 else None,
        workspace_bytes=peak.by_category.get(WORKSPACE, 0),
        unmodelled=line.unmodelled,
    )


def _bytes_of(trace: Trace, kind: str) -> int:
    return sum(t.bytes for t in trace.tensors.values() if t.kind == kind and t.storage == t.id)


def peak_memory(trace: Trace) -> int:
    """Estimated peak inference memory in bytes (parameters + buffers + peak live activations + workspace)."""
    return estimate_memory(trace).peak_bytes
