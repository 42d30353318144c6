"""The reference of the memory estimate: PyTorch's own memory profiler on a real CPU run.

`torch.profiler.profile(profile_memory=True, record_shapes=True, with_stack=True)` records every allocation
and release of the run; `prof._memory_profile()` gives them a category (PARAMETER, GRADIENT,
OPTIMIZER_STATE, ACTIVATION, TEMPORARY, INPUT, AUTOGRAD_DETAIL, or none: an allocation made inside a kernel
that no tensor of the run owns). Tensors that exist before the run (parameters, optimizer state) are in the
timeline from its start. The peak is the largest sum of live bytes over that timeline.

`profile_ops` runs a recording pass (a Trace made on the CPU) with each dispatched op wrapped in its own
profiler label, so that every allocation is attributed to the op of the Trace that made it: the op-by-op
check of the per-kernel workspace rules.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from inspectlab.tracing.records import Trace
from inspectlab.tracing.train_step import make_optimizer, training_loss

_LABEL = "inspectlab.op#"


@dataclass(frozen=True)
class ProfiledMemory:
    """What the profiler measured over one run (bytes)."""

    peak_bytes: int  # the largest sum of live bytes over the timeline, pre-existing tensors included
    at_peak: dict[str, int]  # bytes per category at that moment ("unknown": allocations no tensor owns)
    most: dict[str, int]  # the most bytes each category held at any moment
    seconds: float  # the profiled run's wall time (profiler overhead included)
    peak_ops: list[str] = field(default_factory=list)  # the ops running at the peak, outermost first ("aten::div")
    timeline: list[tuple[int, dict[str, int]]] = field(default_factory=list, repr=False)  # (ns, bytes by category)


def profile_memory(run: Callable[[], Any]) -> ProfiledMemory:
    """Run `run()` once under the memory profiler and read its categorised timeline (CPU allocations)."""
    from torch.profiler import profile
    from torch.profiler._memory_profiler import Action, TensorKey

    start = time.perf_counter()
    with profile(profile_memory=True, record_shapes=True, with_stack=True) as prof:
        run()
    seconds = time.perf_counter() - start
    memory = prof._memory_profile()
    categories = memory._categories
    live: dict[str, int] = {}
    total, peak, at_peak, most, points, peak_time = 0, -1, {}, {}, [], -1

    def change(key: Any, version: int, delta: int) -> None:
        category = categories.get(key, version) if isinstance(key, TensorKey) else None
        name = category.name.lower() if category is not None else "unknown"
        live[name] = live.get(name, 0) + delta
        most[name] = max(most.get(name, 0), live[name])

    for when, action, (key, version), size in memory.timeline:
        if key.device.type != "cpu":
            continue
        if action in (Action.PREEXISTING, Action.CREATE):
            change(key, version, size)
            total += size
        elif action == Action.INCREMENT_VERSION:
            change(key, version, -size)
            change(key, version + 1, size)
        elif action == Action.DESTROY:
            change(key, version, -size)
            total -= size
        if total > peak:
            peak, at_peak, peak_time = total, {k: v for k, v in live.items() if v}, when
        points.append((when, dict(live)))
    return ProfiledMemory(peak_bytes=max(peak, 0), at_peak=at_peak, most={k: v for k, v in most.items() if v},
                          seconds=seconds, timeline=points, peak_ops=_running_at(memory, peak_time))


def _running_at(memory: Any, when: int) -> list[str]:
    """The names of the ops whose span holds the time `when`, outermost first."""
    from torch._C._profiler import _EventType

    spans = [(e.start_time_ns, -e.end_time_ns, e.name) for e in memory._op_tree.sorted_nodes
             if e.typed[0] == _EventType.TorchOp and e.start_time_ns <= when <= e.end_time_ns]
    return [name for _, _, name in sorted(spans)]


def training_step(model: torch.nn.Module, args: Sequence[Any], optimizer: str, loss: str | None = None,
                  autocast: torch.dtype | None = None) -> Callable[[], None]:
    """One steady-state step of `model` on `args`, as the estimate models it: forward, the loss
    (`train_step.training_loss`), backward, `optimizer.step()`, `zero_grad(set_to_none=True)`, the optimizer
    state already there: made here first by a warm-up update from zero gradients (as the estimate's warm-up
    does); call the result to run the step. `autocast`: the forward runs under
    `torch.autocast("cpu", dtype=autocast)`."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(optimizer, params)
    with torch.no_grad():  # the warm-up: one update from zero gradients makes the optimizer state
        for param in params:
            param.grad = torch.zeros_like(param)
    opt.step()
    opt.zero_grad(set_to_none=True)

    def step() -> None:
        with torch.autocast("cpu", dtype=autocast, enabled=autocast is not None):
            output = model(*args)
        total = training_loss(output, loss)
        total.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    model.train()
    return step


class _Labels(TorchDispatchMode):
    """Wraps each dispatched op in a profiler label carrying its index (the Trace's op index)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        index = self.count
        self.count += 1
        with torch.profiler.record_function(f"{_LABEL}{index}"):
            return func(*args, **(kwargs or {}))


def profile_ops(record: Callable[[], Trace]) -> tuple[Trace, dict[int, list[int]]]:
    """Run `record()` (a recording pass on the CPU) under the memory profiler, and return its Trace with the
    allocations (+bytes) and releases (-bytes) made inside each of its ops, in order."""
    from torch._C._profiler import _EventType
    from torch.profiler import profile

    with profile(profile_memory=True, record_shapes=True, with_stack=True) as prof, _Labels():
        trace = record()
    events = prof._memory_profile()._op_tree.sorted_nodes
    labels = sorted((e.start_time_ns, e.end_time_ns, int(e.name[len(_LABEL):])) for e in events
                    if e.name.startswith(_LABEL))
    starts = [label[0] for label in labels]
    made: dict[int, list[int]] = {}
    for event in events:
        if event.typed[0] != _EventType.Allocation:
            continue
        at = bisect.bisect_right(starts, event.start_time_ns) - 1
        if at >= 0 and labels[at][0] <= event.start_time_ns <= labels[at][1]:
            made.setdefault(labels[at][2], []).append(event.typed[1].alloc_size)
    return trace, made
