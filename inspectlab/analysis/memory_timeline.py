"""The memory timeline of a window of a Trace's ops: live bytes by category while each op runs.

Input: the lifetime of every storage (its bytes, category, the op that allocates it, the last op during
which it is live) and, per op, the kernel's allocations in order (`memory_kernels`: the outputs and the
kernel's own buffers). While op i runs, memory is what was allocated before it and is still live, plus the
running sum of its own steps: the op's moment is the largest of those sums. Its outputs count in their own
categories; the kernel's buffers as "workspace". The window's peak is the largest moment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from inspectlab.analysis import memory_conv, memory_ops  # noqa: F401  (register their rules into KERNELS)
from inspectlab.analysis.memory_kernels import KERNELS, Kernel, KernelContext, output_steps
from inspectlab.analysis.memory_layout import Layouts
from inspectlab.tracing.records import OpRecord, Trace

WORKSPACE = "workspace"
BEFORE = -1  # the start of a lifetime that exists before the window's first op


@dataclass(frozen=True)
class Lifetime:
    """One storage: live from the op that allocates it (BEFORE: already there) to the end of `end`."""

    storage: int
    bytes: int
    category: str
    start: int
    end: int


@dataclass(frozen=True)
class Moment:
    """Memory at the top of one op: total bytes and bytes by category."""

    op: int
    bytes: int
    by_category: dict[str, int]


@dataclass(frozen=True)
class Timeline:
    moments: list[Moment]  # one per op of the window, in order
    peak: Moment
    unmodelled: dict[str, list[int]] = field(default_factory=dict)  # what a rule could not size -> op indices


def kernel_of(op: OpRecord, trace: Trace, context: KernelContext | None, layouts: Layouts | None) -> Kernel:
    """The op's allocations on the CPU (its rule's, else its outputs'); outputs only without a context."""
    rule = KERNELS.lookup(op.packet, op.name.rsplit(".", 1)[-1]) if context is not None else None
    if rule is None or context is None or layouts is None:
        return Kernel(output_steps(op, trace))
    return rule(op, trace, context, layouts)


def timeline(trace: Trace, ops: Sequence[OpRecord], lifetimes: Iterable[Lifetime],
             kernels: Callable[[OpRecord], Kernel]) -> Timeline:
    """The moments of `ops` (consecutive ops of `trace`, in order) given every storage's lifetime."""
    if not ops:
        empty = Moment(op=-1, bytes=0, by_category={})
        return Timeline(moments=[], peak=empty)
    first = ops[0].index
    live: dict[str, int] = {}
    arriving: dict[int, list[Lifetime]] = {}
    leaving: dict[int, list[Lifetime]] = {}
    owner: dict[int, Lifetime] = {}
    for lifetime in lifetimes:
        owner[lifetime.storage] = lifetime
        if lifetime.start < first:
            live[lifetime.category] = live.get(lifetime.category, 0) + lifetime.bytes
        else:
            arriving.setdefault(lifetime.start, []).append(lifetime)
        leaving.setdefault(max(lifetime.end, lifetime.start, first - 1), []).append(lifetime)
    for lifetime in leaving.pop(first - 1, []):
        live[lifetime.category] -= lifetime.bytes
    moments, unmodelled = [], {}
    for op in ops:
        kernel = kernels(op)
        if kernel.unmodelled:
            unmodelled.setdefault(kernel.unmodelled, []).append(op.index)
        moment = _top_of(op.index, kernel, live, owner)
        moments.append(moment)
        for lifetime in arriving.get(op.index, []):
            live[lifetime.category] = live.get(lifetime.category, 0) + lifetime.bytes
        for lifetime in leaving.get(op.index, []):
            live[lifetime.category] -= lifetime.bytes
    peak = max(moments, key=lambda m: m.bytes)
    return Timeline(moments=moments, peak=peak, unmodelled=unmodelled)


def _top_of(index: int, kernel: Kernel, live: dict[str, int], owner: dict[int, Lifetime]) -> Moment:
    """The op's moment: live bytes before it plus the largest running sum of its steps."""
    base = sum(live.values())
    running, top, top_at = 0, 0, 0
    for at, step in enumerate(kernel.steps, start=1):
        running += step.bytes
        if running > top:
            top, top_at = running, at
    by_category = {k: v for k, v in live.items() if v}
    outputs = 0
    for step in kernel.steps[:top_at]:
        if step.tensor is not None and step.bytes > 0:
            category = owner[step.tensor].category if step.tensor in owner else "temporary"
            by_category[category] = by_category.get(category, 0) + step.bytes
            outputs += step.bytes
    if top - outputs:
        by_category[WORKSPACE] = top - outputs
    return Moment(op=index, bytes=base + top, by_category=by_category)
