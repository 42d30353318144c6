"""Memory from the Trace: parameter bytes, activation bytes and the peak from tensor lifetimes.

Model: every forward op that creates a new storage (not a view, not an in-place version) allocates
its output's bytes when it runs; a storage is freed after the last op that reads any tensor using it.
Inputs are live from the start and the model's outputs until the end. The estimated peak inference
memory is parameters + buffers + the largest sum of live activation (and input) storages.
"""

from __future__ import annotations

from dataclasses import dataclass

from inspectlab.tracing.records import Trace


@dataclass(frozen=True)
class MemoryEstimate:
    param_bytes: int
    buffer_bytes: int
    input_bytes: int
    activation_bytes: int  # every activation storage created by the forward, summed
    peak_activation_bytes: int  # the most activation + input bytes live at once
    peak_op: int | None  # the op at which the peak is reached

    @property
    def peak_bytes(self) -> int:
        return self.param_bytes + self.buffer_bytes + self.peak_activation_bytes


def estimate_memory(trace: Trace) -> MemoryEstimate:
    """Bytes of parameters, buffers, inputs and activations, and the forward's peak."""
    forward = [op for op in trace.ops if op.phase == "forward"]
    end = forward[-1].index + 1 if forward else 0
    allocated_at: dict[int, int] = {}
    last_use: dict[int, int] = {}
    size: dict[int, int] = {}
    for tensor in trace.tensors.values():
        if tensor.kind not in ("input", "activation"):
            continue
        if tensor.storage == tensor.id:
            if tensor.kind == "input":
                allocated_at[tensor.id] = 0
            elif tensor.producer is not None and tensor.producer < end:
                allocated_at[tensor.id] = tensor.producer
            else:
                continue
            size[tensor.id] = tensor.bytes
        uses = [c for c in tensor.consumers if c < end]
        if tensor.producer is not None and tensor.producer < end:
            uses.append(tensor.producer)
        if uses:
            last_use[tensor.storage] = max(last_use.get(tensor.storage, 0), *uses)
    for tensor_id in trace.outputs:
        last_use[trace.tensors[tensor_id].storage] = end
    for tensor_id in trace.inputs:
        last_use[trace.tensors[tensor_id].storage] = end

    delta = [0] * (end + 2)
    for storage, start in allocated_at.items():
        delta[start] += size[storage]
        delta[last_use.get(storage, start) + 1] -= size[storage]
    live, peak, peak_op = 0, 0, None
    for index in range(end + 1):
        live += delta[index]
        if live > peak:
            peak, peak_op = live, index
    return MemoryEstimate(
        param_bytes=_bytes_of(trace, "param"),
        buffer_bytes=_bytes_of(trace, "buffer"),
        input_bytes=_bytes_of(trace, "input"),
        activation_bytes=sum(size[s] for s in allocated_at if trace.tensors[s].kind == "activation"),
        peak_activation_bytes=peak,
        peak_op=peak_op,
    )


def _bytes_of(trace: Trace, kind: str) -> int:
    return sum(t.bytes for t in trace.tensors.values() if t.kind == kind and t.storage == t.id)


def peak_memory(trace: Trace) -> int:
    """Estimated peak inference memory in bytes (parameters + buffers + peak live activations)."""
    return estimate_memory(trace).peak_bytes
