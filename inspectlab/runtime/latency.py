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
import ctypes
import math
import resource
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from inspectlab.errors import InspectlabError
from inspectlab.inputs import DTYPES, Shape, example_inputs, torch_dtype

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
class LatencyReport:
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


# memory ------------------------------------------------------------------------------------------
def _proc_status_bytes(key: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _max_rss_bytes() -> int:
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024


class RssProbe:
    """The increase of the process's peak resident set size from `start` to `stop` (CPU memory)."""

    def start(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed heap pages back, for an honest baseline
        try:
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            self.resettable = True
        except OSError:
            self.resettable = False
        current = _proc_status_bytes("VmRSS")
        self.baseline = current if self.resettable and current is not None else _max_rss_bytes()

    def stop(self) -> tuple[int, str]:
        if self.resettable:
            peak = _proc_status_bytes("VmHWM") or _max_rss_bytes()
            return max(0, peak - self.baseline), "CPU peak RSS increase (VmHWM reset via /proc/self/clear_refs)"
        return (max(0, _max_rss_bytes() - self.baseline),
                "CPU peak RSS increase from ru_maxrss (lifetime peak: hides an increase below an earlier peak)")


def free_memory(device: torch.device) -> int | None:
    """Bytes the device can still give: CUDA free + cached-but-unused; CPU MemAvailable. None if unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(needed: int, device: torch.device, what: str, already_there: int = 0) -> None:
    """Refuse (InspectlabError) when `needed` bytes exceed the device's free memory (+ `already_there`)."""
    from inspectlab.render.formats import human_bytes

    free = free_memory(device)
    if free is None:
        return
    if needed > free + already_there:
        raise InspectlabError(
            f"{what} needs about {human_bytes(needed)} (estimated peak) but {device} has "
            f"{human_bytes(free + already_there)} free; use --force to run anyway"
        )


# model and inputs -------------------------------------------------------------------------------
def _model_dtype(model: nn.Module) -> str:
    for tensor in model.parameters():
        if tensor.is_floating_point():
            name = str(tensor.dtype).removeprefix("torch.")
            return name if name in DTYPES else "float32"
    return "float32"


def _bytes_on(model: nn.Module, device: torch.device) -> int:
    tensors = {id(t): t for t in (*model.parameters(), *model.buffers())}.values()
    return sum(t.numel() * t.element_size() for t in tensors if t.device == device)


def prepare_model(model_or_name: nn.Module | str, args: Mapping[str, Any] | None, device: torch.device,
                  cast_to: torch.dtype | None, channels_last: bool, notes: list[str]) -> nn.Module:
    """The model to time, on `device`, in eval mode, cast and/or channels-last. A user's module is copied
    before anything about it changes (it is never modified)."""
    if isinstance(model_or_name, str):
        from inspectlab.models.registry import build_model

        model = build_model(model_or_name, args, str(device))
    else:
        model = model_or_name
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


def batched(shapes: Sequence[Shape], batch: int | None) -> list[Shape]:
    """The input shapes with their first dimension replaced by `batch` (unchanged when None)."""
    return [tuple(shape) if batch is None else (batch, *shape[1:]) for shape in shapes]


def _make_inputs(shapes: Sequence[Shape], dtype: str, device: torch.device, channels_last: bool) -> list[torch.Tensor]:
    inputs = example_inputs(shapes, dtype, str(device))
    if channels_last:
        inputs = [t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in inputs]
    return inputs


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


def _validate(device: torch.device, precision: str, iters: int | None, min_time: float | None, warmup: int,
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
    if min_time is not None and min_time <= 0:
        raise InspectlabError("--min-time must be positive")
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


# the measurement ----------------------------------------------------------------------------------
def measure(model_or_name: nn.Module | str, input_size: Sequence[int] | Sequence[Sequence[int]] | None = None, *,
            args: Mapping[str, Any] | None = None, batches: Sequence[int] | None = None, device: str = "cpu",
            dtype: str = "float32", precision: str = "cast", warmup: int = 5, iters: int | None = None,
            min_time: float | None = None, channels_last: bool = False, compile: bool | str = False,
            threads: int | None = None, cudnn_benchmark: bool = True, cuda_graph: bool = False,
            per_layer: bool = False, depth: int = 1, force: bool = False,
            progress: Progress | None = None) -> LatencyReport:
    """Time a model's forward for each batch size; see the module docstring for the method."""
    from inspectlab import api
    from inspectlab.analysis.memory import estimate_memory

    try:
        target = torch.device(device)
    except RuntimeError:
        raise InspectlabError(f"--device {device}: latency runs on cpu or cuda") from None
    if target.type == "cuda" and target.index is None and torch.cuda.is_available():
        target = torch.device("cuda", torch.cuda.current_device())
    backend = ("inductor" if compile is True else compile) or None
    _validate(target, precision, iters, min_time, warmup, cuda_graph, backend, per_layer, batches, threads)
    kind = torch_dtype(dtype)
    dtype_name = str(kind).removeprefix("torch.")
    low_precision = kind != torch.float32
    mode = precision if low_precision else "none"
    cast_to = kind if mode == "cast" else None
    notes: list[str] = []

    # the Trace (meta device) of each batch: memory estimate, fit check, per-layer FLOPs and bytes
    shapes = api.input_shapes(model_or_name, input_size)
    sizes = list(batches) if batches else [shapes[0][0]]
    trace_dtype = "float32" if isinstance(model_or_name, str) else _model_dtype(model_or_name)
    scale = kind.itemsize / torch_dtype(trace_dtype).itemsize if cast_to else 1.0
    shapes_of = {size: batched(shapes, size if batches else None) for size in sizes}
    traces, estimates = {}, {}
    for size in sizes:
        traces[size] = api.trace(model_or_name, shapes_of[size], args=args, dtype=trace_dtype)
        estimates[size] = estimate_memory(traces[size])
    already = 0 if isinstance(model_or_name, str) else _bytes_on(model_or_name, target)
    label = model_or_name if isinstance(model_or_name, str) else type(model_or_name).__name__
    if not force:
        for size in sizes:
            check_fits(round(estimates[size].peak_bytes * scale), target, f"{label} at batch {size}", already)
    if mode == "autocast":
        notes.append("under autocast the memory estimate and per-layer bytes are those of the float32 trace")

    model = prepare_model(model_or_name, args, target, cast_to, channels_last, notes)
    runnable: Any = torch.compile(model, backend=backend) if backend else model
    input_dtype = dtype_name if cast_to is not None else trace_dtype
    clock = Clock(target)
    results = []
    with run_settings(threads, cudnn_benchmark if target.type == "cuda" else None):
        conditions = RunConditions(
            model=label, device=str(target), device_name=_device_name(target), torch_version=torch.__version__,
            threads=torch.get_num_threads(), dtype=dtype_name, precision=mode,
            memory_format="channels_last" if channels_last else "contiguous", compile=backend,
            cuda_graph=cuda_graph, cudnn_benchmark=torch.backends.cudnn.benchmark if target.type == "cuda" else None,
            timer=clock.name + (" (CUDA graph replay)" if cuda_graph else ""), warmup=warmup, iters=iters,
            min_time=min_time if iters is not None or min_time is not None else DEFAULT_MIN_TIME,
        )
        amp = (lambda: torch.autocast(target.type, dtype=kind, cache_enabled=not cuda_graph)) if mode == "autocast" \
            else contextlib.nullcontext
        for size in sizes:
            inputs = _make_inputs(shapes_of[size], input_dtype, target, channels_last)
            estimate = estimates[size]
            with torch.inference_mode(), amp():
                probe = RssProbe() if target.type == "cpu" else None
                if probe:
                    probe.start()

                def forward(inputs: list[torch.Tensor] = inputs) -> Any:
                    return runnable(*inputs)

                step = _graph_replay(forward, target) if cuda_graph else forward
                samples = timed_loop(step, clock, warmup=warmup, iters=iters, min_time=min_time, progress=progress,
                                     label=f"batch {size}",
                                     before_timing=(lambda: torch.cuda.reset_peak_memory_stats(target))
                                     if target.type == "cuda" else None)
                if probe:
                    peak, method = probe.stop()
                    reserved = None
                else:
                    peak = torch.cuda.max_memory_allocated(target)
                    reserved = torch.cuda.max_memory_reserved(target)
                    method = "CUDA peak allocated / reserved during the timed iterations (peak stats reset first)"
                stats = summarize(samples, size)
                breakdown = None
                if per_layer:
                    from inspectlab.runtime.per_layer import per_layer_breakdown

                    breakdown = per_layer_breakdown(
                        model, inputs, traces[size], depth=depth, clock=clock, compute_dtype=kind,
                        warmup=min(warmup, 3), iters=iters, min_time=min_time,
                        bytes_scale=scale, progress=progress, label=f"batch {size} per-layer",
                    )
            memory = MemoryUse(
                peak_bytes=peak, reserved_bytes=reserved, method=method,
                estimated_peak_bytes=round(estimate.peak_bytes * scale),
                estimated_activation_bytes=round((estimate.peak_activation_bytes - estimate.input_bytes) * scale),
            )
            results.append(BatchResult(size, [list(s) for s in shapes_of[size]], stats, memory, samples, breakdown))
            del inputs
    return LatencyReport(conditions, results, notes)


def _device_name(device: torch.device) -> str:
    from inspectlab.runtime.device_peaks import device_name

    return device_name(str(device))
