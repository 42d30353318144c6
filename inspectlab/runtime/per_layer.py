"""Per-layer latency: forward hooks time each module call at a chosen depth over repeated runs; the Trace
adds each call's FLOPs, bytes and working set, which place it on the device's roofline (`DevicePeaks`: a
compute roof, and a bandwidth roof per working-set size).

Method: a forward pre-hook and a forward hook on every timed module read `time.perf_counter_ns` (CPU) or
record a CUDA event (CUDA; read after the iteration's synchronize). Timed modules are those at `depth`
plus the leaves above it. A call that starts while another timed call is running (a module at the same
depth called from inside a sibling) is counted in the outer one, so timed intervals never overlap and
the shares of the total add up to at most 100%. The overhead of the hooks is measured twice: the cost of
one hook pair on an `nn.Identity` (hooked minus plain call, best of several blocks) times the pairs per
forward, and the observed difference between the p50s of the hooked forward and of a plain forward
timed after each hooked one (hooks detached for it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from inspectlab.analysis.costs import op_cost
from inspectlab.core.naming import depth_of
from inspectlab.runtime.device_peaks import DevicePeaks, device_peaks
from inspectlab.runtime.latency import Clock, Progress, percentile, timed_loop
from inspectlab.tracing.records import OpRecord, Trace


@dataclass(frozen=True)
class LayerTime:
    """One module call: its time over the runs, share of the forward, and its place on the roofline."""

    label: str  # qualified module name, "#k" for its k-th call in a forward
    type: str
    depth: int
    mean_ms: float
    p50_ms: float
    share: float  # percent of the hooked forward's mean time
    flops: int | None  # from the Trace: 2 x MACs + other FLOPs of the ops inside the call
    bytes: int | None  # from the Trace: bytes read + written by those ops (no cache reuse assumed)
    working_set: int | None  # from the Trace: the most bytes one of those ops touches (each tensor once)
    flops_per_s: float | None  # attained: flops / mean time
    intensity: float | None  # FLOP per byte
    bound: str | None  # "memory" or "compute", against the device's ridge point
    roof_fraction: float | None  # attained / the roofline's bound at this intensity and working set


@dataclass(frozen=True)
class PerLayerResult:
    """The breakdown of one batch size, with the cost of measuring it."""

    layers: list[LayerTime]
    depth: int
    runs: int
    total_mean_ms: float  # the hooked forward
    total_p50_ms: float
    unattributed_ms: float  # mean time outside every timed call (functional code, hook overhead)
    plain_p50_ms: float  # the same forward without hooks, timed alternately with the hooked one
    overhead_ms: float  # hooked p50 - plain p50 (observed; includes run-to-run noise)
    hook_pairs: int  # pre/post hook pairs fired per forward
    pair_cost_us: float  # measured cost of one pre/post hook pair (microbenchmark on an Identity module)
    method: str
    peaks: DevicePeaks | None


def timed_modules(model: nn.Module, depth: int) -> dict[nn.Module, str]:
    """The modules timed at `depth`: those at that depth and the leaves above it (nothing is skipped)."""
    chosen: dict[nn.Module, str] = {}
    for name, module in model.named_modules():
        level = depth_of(name)
        if level == depth or (level < depth and next(module.children(), None) is None):
            chosen.setdefault(module, name)
    return chosen


class LayerClock:
    """Hooks that mark the start and end of each timed module call of one forward."""

    def __init__(self, modules: dict[nn.Module, str], cuda: bool) -> None:
        self.names = modules
        self.cuda = cuda
        self.counts: dict[str, int] = {}
        self.open: list[tuple[str, Any] | None] = []  # one entry per running hooked call; None when nested
        self.marks: list[tuple[str, Any, Any]] = []  # (label, start, end) of this forward's timed calls
        self.pairs = 0
        self.timing = False  # a timed call is running

    def _mark(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter_ns()

    def reset(self) -> None:
        self.counts.clear()
        self.open.clear()
        self.marks = []
        self.pairs = 0
        self.timing = False

    def before(self, module: nn.Module, args: Any) -> None:
        name = self.names[module]
        call = self.counts.get(name, 0)
        self.counts[name] = call + 1
        self.pairs += 1
        if self.timing:
            self.open.append(None)
            return
        self.timing = True
        self.open.append((name if call == 0 else f"{name}#{call}", self._mark()))

    def after(self, module: nn.Module, args: Any, output: Any) -> None:
        if not self.open:
            return
        entry = self.open.pop()
        if entry is not None:
            self.marks.append((entry[0], entry[1], self._mark()))
            self.timing = False

    def durations(self) -> list[tuple[str, int]]:
        """(label, nanoseconds) of the last forward's timed calls; on CUDA after its synchronize."""
        if self.cuda:
            return [(label, round(start.elapsed_time(end) * 1e6)) for label, start, end in self.marks]
        return [(label, end - start) for label, start, end in self.marks]


def hook_pair_cost_ns(cuda: bool, calls: int = 500, blocks: int = 5) -> float:
    """Nanoseconds one pre/post hook pair adds to a module call (best block of hooked minus plain calls)."""
    module = nn.Identity()
    probe = torch.zeros(1, device="cuda" if cuda else "cpu")

    def best_block() -> float:
        best = float("inf")
        for _ in range(blocks):
            begin = time.perf_counter_ns()
            for _ in range(calls):
                module(probe)
            best = min(best, (time.perf_counter_ns() - begin) / calls)
        return best

    plain = best_block()
    layer_clock = LayerClock({module: "probe"}, cuda)
    handles = [module.register_forward_pre_hook(layer_clock.before), module.register_forward_hook(layer_clock.after)]
    try:
        hooked = best_block()
    finally:
        for handle in handles:
            handle.remove()
    return max(0.0, hooked - plain)


def op_bytes(op: OpRecord, trace: Trace) -> int:
    """Bytes an op reads and writes, assuming no cache reuse; a pure view moves nothing."""
    written = [trace.tensors[t] for t in op.outputs]
    if written and not op.inplace and all(t.alias_of is not None for t in written):
        return 0
    return sum(trace.tensors[t].bytes for t in op.inputs) + sum(t.bytes for t in written)


def call_costs(trace: Trace) -> dict[str, tuple[int, int]]:
    """Per module call label: (FLOPs = 2 x MACs + other FLOPs, bytes read + written) of its forward ops."""
    costs = {}
    for call in trace.calls:
        flops = moved = 0
        for index in call.op_range():
            op = trace.ops[index]
            if op.phase != "forward":
                continue
            cost = op_cost(op, trace)
            if cost is not None:
                flops += 2 * cost.macs + cost.other_flops
            moved += op_bytes(op, trace)
        costs[call.label] = (flops, moved)
    return costs


def working_sets(trace: Trace) -> dict[str, int]:
    """Per module call label: the most bytes one of its forward ops touches, each storage once (an in-place op
    reads and writes the same bytes). The op before has just written what an op reads, so this is what a cache
    must hold for the call to run from it."""
    sets = {}
    for call in trace.calls:
        largest = 0
        for index in call.op_range():
            op = trace.ops[index]
            if op.phase != "forward" or not op_bytes(op, trace):
                continue
            held: dict[int, int] = {}
            for tensor_id in (*op.inputs, *op.outputs):
                tensor = trace.tensors[tensor_id]
                storage = tensor.storage if tensor.storage >= 0 else tensor.id
                held[storage] = max(held.get(storage, 0), tensor.bytes)
            largest = max(largest, sum(held.values()))
        sets[call.label] = largest
    return sets


def roofline(flops: int | None, moved: int | None, seconds: float, peaks: DevicePeaks | None,
             working_set: int | None = None) -> tuple[float | None, float | None, str | None, float | None]:
    """(attained FLOP/s, FLOP/byte, "memory"/"compute" bound, attained / roof) of one call. The roof is
    min(compute roof, intensity x the bandwidth roof of `working_set`; without one, the DRAM bandwidth)."""
    if flops is None or moved is None or seconds <= 0:
        return None, None, None, None
    attained = flops / seconds
    if moved == 0:
        return attained, None, None, None
    intensity = flops / moved
    if peaks is None:
        return attained, intensity, None, None
    bandwidth = peaks.bandwidth(working_set)
    bound = "memory" if intensity * bandwidth < peaks.flops_per_s else "compute"
    roof = min(peaks.flops_per_s, intensity * bandwidth)
    return attained, intensity, bound, attained / roof if roof > 0 else None  # no FLOPs (an embedding): no roof


def per_layer_breakdown(model: nn.Module, inputs: Sequence[torch.Tensor], trace: Trace | None, *, depth: int,
                        clock: Clock, compute_dtype: torch.dtype = torch.float32, warmup: int = 3,
                        iters: int | None = None, min_time: float | None = None, bytes_scale: float = 1.0,
                        peaks: DevicePeaks | None = None, roofline_peaks: bool = True,
                        progress: Progress | None = None, label: str = "per-layer") -> PerLayerResult:
    """Time each module call at `depth` over repeated forwards (run inside the caller's inference/autocast
    context). Hooks are always removed, also when the forward raises. Without `peaks`, the device's
    peaks are read from the cache or measured, unless `roofline_peaks` is False (no roofline)."""
    layer_clock = LayerClock(timed_modules(model, depth), clock.cuda)
    per_call: dict[str, list[int]] = {}
    runs: list[list[tuple[str, int]]] = []

    def step() -> None:
        layer_clock.reset()
        model(*inputs)

    handles: list[Any] = []

    def attach() -> None:
        for module in layer_clock.names:
            handles.append(module.register_forward_pre_hook(layer_clock.before))
            handles.append(module.register_forward_hook(layer_clock.after))

    def detach() -> None:
        while handles:
            handles.pop().remove()

    plain: list[int] = []

    def after_sample() -> None:
        """Keep the hooked run's layer times, then time one forward without hooks (same conditions)."""
        runs.append(layer_clock.durations())
        detach()
        clock.start()
        model(*inputs)
        plain.append(clock.stop())
        attach()

    try:
        attach()
        totals = timed_loop(step, clock, warmup=warmup, iters=iters, min_time=min_time, progress=progress,
                            label=label, after_sample=after_sample)
    finally:
        detach()
    pairs = layer_clock.pairs
    for durations in runs:
        for name, nanoseconds in durations:
            per_call.setdefault(name, []).append(nanoseconds)

    if peaks is None and roofline_peaks:
        peaks = device_peaks(str(clock.device), compute_dtype)
    costs = call_costs(trace) if trace is not None else {}
    sets = working_sets(trace) if trace is not None else {}
    types = {call.label: (call.type, call.depth) for call in trace.calls} if trace is not None else {}
    count = len(totals)
    total_mean = sum(totals) / count / 1e6
    layers = []
    for name, values in per_call.items():
        mean_ms = sum(values) / count / 1e6  # runs where the call did not happen count as 0
        flops, moved = costs.get(name, (None, None))
        moved = round(moved * bytes_scale) if moved is not None else None
        held = round(sets[name] * bytes_scale) if name in sets else None
        attained, intensity, bound, fraction = roofline(flops, moved, mean_ms / 1e3, peaks, held)
        module_type, module_depth = types.get(name, ("?", depth_of(name)))
        layers.append(LayerTime(
            label=name, type=module_type, depth=module_depth, mean_ms=mean_ms,
            p50_ms=percentile(sorted(v / 1e6 for v in values), 50),
            share=100 * mean_ms / total_mean if total_mean > 0 else math.nan,
            flops=flops, bytes=moved, working_set=held, flops_per_s=attained, intensity=intensity, bound=bound,
            roof_fraction=fraction,
        ))
    total_p50 = percentile(sorted(t / 1e6 for t in totals), 50)
    plain_p50 = percentile(sorted(t / 1e6 for t in plain), 50)
    what = "CUDA events (GPU time between a call's first and last launch)" if clock.cuda else "time.perf_counter_ns"
    return PerLayerResult(
        layers=layers, depth=depth, runs=count, total_mean_ms=total_mean, total_p50_ms=total_p50,
        unattributed_ms=total_mean - sum(layer.mean_ms for layer in layers), plain_p50_ms=plain_p50,
        overhead_ms=total_p50 - plain_p50, hook_pairs=pairs, pair_cost_us=hook_pair_cost_ns(clock.cuda) / 1e3,
        method=f"forward pre/post hooks reading {what}, {count} runs, each followed by one without hooks",
        peaks=peaks,
    )
