"""Timed runs of a model: warm-up, one clock reading per iteration, statistics, peak memory, conditions.

Method: every forward runs under `torch.inference_mode()` (and `torch.autocast` for `precision="autocast"`).
After `warmup` untimed iterations each iteration is timed on its own: `time.perf_counter_ns` around the call on
the CPU; on CUDA a pair of CUDA events around the call, then a synchronize, so each sample is one isolated
forward (launch gaps included). Optionally the forward is captured once as a CUDA graph and replayed.

Memory: on CUDA the peak allocated and reserved bytes of the caching allocator during the timed iterations
(peak stats reset just before them). On the CPU the increase of the process's peak resident set size (VmHWM,
reset through /proc/self/clear_refs) over the resident size once the model and inputs exist, across warm-up
and timed iterations; where VmHWM cannot be reset the lifetime peak (`ru_maxrss`) is used and says so.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from inspectlab.core.display import Displayable
from inspectlab.core.errors import InspectlabError
from inspectlab.runtime.device_peaks import device_name as _name_of_device
from inspectlab.runtime.memory import RssProbe
from inspectlab.tracing.inputs import DTYPES

Progress = Callable[[str, float], None]  # (what is running, fraction done in [0, 1])

MIN_ITERATIONS = 10  # with --min-time, never fewer timed iterations than this
DEFAULT_MIN_TIME = 2.0  # seconds of timed iterations when neither iters nor min_time is given
PRECISIONS = ("cast", "autocast")


@dataclass(frozen=True)
class LatencyStats:
    """Statistics of the per-iteration times (milliseconds); std is the sample standard deviation."""

    iterations: int
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    throughput: float  # samples (batch elements) per second: batch / mean


@dataclass(frozen=True)
class MemoryUse:
    """Measured peak memory of a run beside the Trace's estimate (bytes)."""

    peak_bytes: int | None  # CUDA: peak allocated (everything live); CPU: peak RSS increase over the baseline
    reserved_bytes: int | None  # CUDA only: peak reserved by the caching allocator
    method: str
    estimated_peak_bytes: int | None  # Trace: parameters + buffers + inputs + peak live activations
    estimated_activation_bytes: int | None  # Trace: peak live activations, inputs excluded


@dataclass(frozen=True)
class RunConditions:
    """What a latency number depends on, reported with it."""

    model: str
    device: str
    device_name: str
    torch_version: str
    threads: int
    dtype: str
    precision: str  # "cast", "autocast", or "none" for float32
    memory_format: str
    compile: str | None  # torch.compile backend, None when eager
    cuda_graph: bool
    cudnn_benchmark: bool | None  # None on the CPU
    timer: str
    warmup: int
    iters: int | None
    min_time: float | None


@dataclass
class BatchResult:
    """One batch size of a sweep: its statistics, memory, raw samples and optional per-layer breakdown."""

    batch: int
    input_shapes: list[list[int]]
    stats: LatencyStats
    memory: MemoryUse
    samples_ns: list[int]
    per_layer: Any = None  # inspectlab.runtime.per_layer.PerLayerResult


@dataclass
class LatencyReport(Displayable):
    """The result of `measure`: the run's conditions and one result per batch size."""

    conditions: RunConditions
    results: list[BatchResult]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# statistics -------------------------------------------------------------------------------------
def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of sorted values, linear between closest ranks (numpy's default)."""
    if not ordered:
        raise ValueError("percentile of no values")
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(samples_ns: Sequence[int], batch: int = 1) -> LatencyStats:
    """Mean, sample std, min, max, p50/p90/p99 (ms) and throughput of per-iteration times in nanoseconds."""
    if not samples_ns:
        raise ValueError("no timed iterations")
    ms = sorted(s / 1e6 for s in samples_ns)
    count = len(ms)
    mean = math.fsum(ms) / count
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in ms) / (count - 1)) if count > 1 else 0.0
    return LatencyStats(
        iterations=count, mean_ms=mean, std_ms=std, min_ms=ms[0], max_ms=ms[-1],
        p50_ms=percentile(ms, 50), p90_ms=percentile(ms, 90), p99_ms=percentile(ms, 99),
        throughput=batch * 1e3 / mean if mean > 0 else math.inf,
    )


# clocks and the timed loop ---------------------------------------------------------------------
class Clock:
    """Times one iteration: perf_counter_ns on the CPU; CUDA events then a synchronize on CUDA."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.device = device
        if self.cuda:
            self._begin = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)
        self._t0 = 0

    @property
    def name(self) -> str:
        return "CUDA events + synchronize per iteration" if self.cuda else "time.perf_counter_ns per iteration"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def start(self) -> None:
        if self.cuda:
            self._begin.record()
        else:
            self._t0 = time.perf_counter_ns()

    def stop(self) -> int:
        """Nanoseconds since `start` (on CUDA: GPU time between the two events)."""
        if self.cuda:
            self._end.record()
            self._end.synchronize()
            return round(self._begin.elapsed_time(self._end) * 1e6)
        return time.perf_counter_ns() - self._t0


def timed_loop(step: Callable[[], Any], clock: Clock, *, warmup: int, iters: int | None = None,
               min_time: float | None = None, progress: Progress | None = None, label: str = "",
               before_timing: Callable[[], None] | None = None,
               after_sample: Callable[[], None] | None = None) -> list[int]:
    """Run `step` `warmup` times untimed, then time it `iters` times, or for at least `min_time` seconds
    (and at least MIN_ITERATIONS times). Returns the per-iteration times in nanoseconds."""
    if iters is None and min_time is None:
        min_time = DEFAULT_MIN_TIME
    for done in range(warmup):
        step()
        if progress:
            progress(f"{label} warm-up", (done + 1) / warmup)
    clock.sync()
    if before_timing:
        before_timing()
    samples: list[int] = []
    began = time.perf_counter()
    while True:
        clock.start()
        step()
        samples.append(clock.stop())
        if after_sample:
            after_sample()
        elapsed = time.perf_counter() - began
        if iters is not None:
            fraction = len(samples) / iters
        else:
            assert min_time is not None
            fraction = min(elapsed / min_time, len(samples) / MIN_ITERATIONS) if min_time > 0 else 1.0
        if progress:
            progress(f"{label} timing", min(fraction, 1.0))
        if fraction >= 1.0:
            return samples


# model and inputs -------------------------------------------------------------------------------
def model_dtype(model: nn.Module) -> str:
    """The name of the model's first floating-point parameter dtype (float32 when it has none)."""
    for tensor in model.parameters():
        if tensor.is_floating_point():
            name = str(tensor.dtype).removeprefix("torch.")
            return name if name in DTYPES else "float32"
    return "float32"


def prepare_model(model: nn.Module, device: torch.device, cast_to: torch.dtype | None, channels_last: bool,
                  notes: list[str], owned: bool) -> nn.Module:
    """The model to time, on `device`, in eval mode, cast and/or channels-last. A module the caller does not
    own (the user's) is copied before anything about it changes: it is never modified."""
    if not owned:
        moves = any(t.device != device for t in (*model.parameters(), *model.buffers()))
        casts = cast_to is not None and any(p.is_floating_point() and p.dtype != cast_to for p in model.parameters())
        if model.training or moves or casts or channels_last:
            model = copy.deepcopy(model)
            notes.append("timed a copy of the model (eval mode, converted); the given module is unchanged")
    model = model.to(device).eval()
    if cast_to is not None:
        model = model.to(cast_to)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _graph_replay(forward: Callable[[], Any], device: torch.device) -> Callable[[], Any]:
    """Capture `forward` once as a CUDA graph (after a warm-up on a side stream); return its replay."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(3):
            forward()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_output = forward()

    def replay() -> Any:
        graph.replay()
        return static_output

    return replay


@contextlib.contextmanager
def run_settings(threads: int | None, cudnn_benchmark: bool | None) -> Iterator[None]:
    """Set torch's intra-op threads and cudnn.benchmark for the run, and restore them afterwards."""
    saved_threads = torch.get_num_threads()
    saved_benchmark = torch.backends.cudnn.benchmark
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        if cudnn_benchmark is not None:
            torch.backends.cudnn.benchmark = cudnn_benchmark
        yield
    finally:
        torch.set_num_threads(saved_threads)
        torch.backends.cudnn.benchmark = saved_benchmark


def validate(device: torch.device, precision: str, iters: int | None, min_time: float | None, warmup: int,
              cuda_graph: bool, compile_backend: str | None, per_layer: bool, batches: Sequence[int] | None,
              threads: int | None) -> None:
    if device.type not in ("cpu", "cuda"):
        raise InspectlabError(f"--device {device.type}: latency runs on cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InspectlabError(f"--device cuda: CUDA is not available (torch {torch.__version__}, no usable GPU)")
    if precision not in PRECISIONS:
        raise InspectlabError(f"unknown precision {precision!r}; choose cast or autocast")
    if iters is not None and min_time is not None:
        raise InspectlabError("give --iters or --min-time, not both")
    if iters is not None and iters < 1:
        raise InspectlabError("--iters must be at least 1")
    day = 86400.0  # a --min-time of more than a day is a typo; nan would time one iteration, inf forever
    if min_time is not None and not 0 < min_time <= day:
        raise InspectlabError(f"--min-time must be a positive number of seconds, at most {day:g} (a day); "
                              f"got {min_time!r}")
    if warmup < 0:
        raise InspectlabError("--warmup must be 0 or more")
    if threads is not None and threads < 1:
        raise InspectlabError("--threads must be at least 1")
    if batches is not None and (not batches or any(b < 1 for b in batches)):
        raise InspectlabError("--batch sizes must be positive integers")
    if cuda_graph and device.type != "cuda":
        raise InspectlabError("--cuda-graph needs --device cuda")
    if cuda_graph and compile_backend:
        raise InspectlabError("--cuda-graph and --compile do not combine (use torch.compile's own CUDA graphs)")
    if per_layer and (cuda_graph or compile_backend):
        raise InspectlabError("--per-layer times eager modules: it does not combine with --compile or --cuda-graph")




def timed_forward(forward: Callable[[], Any], clock: Clock, *, warmup: int, iters: int | None,
                  min_time: float | None, cuda_graph: bool, progress: Progress | None, label: str
                  ) -> tuple[list[int], int, int | None, str]:
    """Time `forward` (run inside the caller's inference/autocast context; captured as a CUDA graph and
    replayed with `cuda_graph`): (samples in ns, peak bytes, reserved bytes or None, how memory was measured)."""
    device = clock.device
    probe = RssProbe() if device.type == "cpu" else None
    if probe:
        probe.start()
    step = _graph_replay(forward, device) if cuda_graph else forward
    samples = timed_loop(step, clock, warmup=warmup, iters=iters, min_time=min_time, progress=progress, label=label,
                         before_timing=(lambda: torch.cuda.reset_peak_memory_stats(device))
                         if device.type == "cuda" else None)
    if probe:
        peak, method = probe.stop()
        return samples, peak, None, method
    return (samples, torch.cuda.max_memory_allocated(device), torch.cuda.max_memory_reserved(device),
            "CUDA peak allocated / reserved during the timed iterations (peak stats reset first)")


def device_name(device: torch.device) -> str:
    """The GPU's or the CPU's name."""
    return _name_of_device(str(device))
