"""What a CPU kernel allocates besides its outputs: the registry of per-kernel workspace rules.

A rule gives the kernel's allocations in the order it makes them, as `Step`s of signed bytes: the
allocation of one of the op's outputs (`output=True`), or of a buffer of the kernel's own (a reorder to
oneDNN's blocked layout, a column buffer, a contiguous copy) and its release. Every rule was written from
what PyTorch's memory profiler records inside the kernel (torch 2.x on x86) and is checked against it op
by op (tests/test_memory_kernels.py); docs/memory.md states each in words. The rules register into
`KERNELS` beside their definitions, in memory_conv.py (convolutions) and memory_ops.py (the others).

An op without a rule allocates its outputs and nothing else. Where a rule knows that the kernel makes a
buffer it cannot size (a oneDNN scratchpad that depends on its thread balancing, a CPU whose oneDNN block
is unknown), its `Kernel` says so in `unmodelled`, and the estimate names the op.

Not modelled at all: the 0-d tensor (at most 16 bytes, for the op's duration) a kernel makes of a Python
number operand.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from inspectlab.analysis.memory_layout import Layouts
from inspectlab.core.errors import InspectlabError
from inspectlab.core.op_registry import OpRegistry
from inspectlab.tracing.records import OpRecord, Trace


@dataclass(frozen=True)
class Step:
    bytes: int  # > 0 allocates, < 0 releases an earlier allocation of the kernel
    tensor: int | None = None  # the output tensor this step allocates (None: a buffer of the kernel's own)


@dataclass(frozen=True)
class Kernel:
    """An op's allocations in order, and what in them is not modelled (None: everything is)."""

    steps: list[Step]
    unmodelled: str | None = None


@dataclass(frozen=True)
class KernelContext:
    """What the CPU kernels' choices depend on: intra-op threads, oneDNN's channel block (16 with AVX-512,
    8 with AVX2, None when unknown) and whether oneDNN (mkldnn) is enabled."""

    threads: int
    block: int | None
    mkldnn: bool = True

    @classmethod
    def of_this_process(cls) -> KernelContext:
        """This process's CPU kernels: its CPU capability and intra-op threads, unless $INSPECTLAB_CPU_KERNELS
        names others ("AVX512:2": capability and threads), so that an estimate can be made for another
        machine (the docs' transcripts are made for one, whatever machine runs them)."""
        import torch

        capability, threads = torch.backends.cpu.get_cpu_capability(), torch.get_num_threads()
        pinned = os.environ.get("INSPECTLAB_CPU_KERNELS", "")
        if pinned:
            named, _, count = pinned.partition(":")
            if not count.isdigit() or int(count) < 1 or named.upper() not in ("AVX512", "AVX2", "DEFAULT"):
                raise InspectlabError(f"INSPECTLAB_CPU_KERNELS={pinned!r}: give CAPABILITY:THREADS, such as AVX512:2 "
                                      "(AVX512, AVX2 or DEFAULT)")
            capability, threads = named.upper(), int(count)
        block = 16 if capability.startswith("AVX512") else 8 if capability == "AVX2" else None
        return cls(threads=threads, block=block,
                   mkldnn=torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)


Rule = Callable[[OpRecord, Trace, KernelContext, Layouts], Kernel]
KERNELS: OpRegistry[Rule] = OpRegistry("memory kernels")


def output_steps(op: OpRecord, trace: Trace) -> list[Step]:
    """The allocations of the op's outputs that own their storage, in order (what every op makes)."""
    return [Step(trace.tensors[t].bytes, t) for t in op.outputs
            if trace.tensors[t].storage == t and trace.tensors[t].alias_of is None]


def released(steps: list[Step]) -> list[Step]:
    """`steps`, zero-byte ones dropped."""
    return [step for step in steps if step.bytes]


def buffer_steps(*sizes: int) -> tuple[list[Step], list[Step]]:
    """Allocations of `sizes` in order, and their releases in reverse order."""
    return [Step(size) for size in sizes], [Step(-size) for size in reversed(sizes)]


def tensor_shape(trace: Trace, op: OpRecord, name: str) -> tuple[int, ...] | None:
    tensor_id = op.tensor_args.get(name)
    return trace.tensors[tensor_id].shape if isinstance(tensor_id, int) else None


def tensor_bytes(trace: Trace, op: OpRecord, name: str) -> int:
    tensor_id = op.tensor_args.get(name)
    return trace.tensors[tensor_id].bytes if isinstance(tensor_id, int) else 0
