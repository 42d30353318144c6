"""A device's attainable peaks for the roofline: FLOP/s from a large matmul, bytes/s from a large copy.

Measured once per (device name, dtype, threads) and cached as JSON in the cache folder
(`$INSPECTLAB_CACHE_DIR`, else `$XDG_CACHE_HOME/inspectlab`, else `~/.cache/inspectlab`).
The best of a few repeats is kept: these are what this machine attains, not its datasheet numbers.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from inspectlab.core.io import cache_dir, write_atomic

CACHE_FILE = "device_peaks.json"
_REPEATS = 5


@dataclass(frozen=True)
class DevicePeaks:
    """Attained peak compute (FLOP/s) and memory bandwidth (bytes/s, read + write) of one device."""

    device: str  # the device's name, e.g. "NVIDIA H100 80GB HBM3" or the CPU model
    dtype: str
    threads: int | None  # CPU threads the peaks were measured with; None on CUDA
    flops_per_s: float
    bytes_per_s: float
    method: str

    @property
    def ridge(self) -> float:
        """Arithmetic intensity (FLOP/byte) where the roofline turns from memory- to compute-bound."""
        return self.flops_per_s / self.bytes_per_s


def device_name(device: str) -> str:
    """A human name for a torch device: the GPU's name, or the CPU's model name."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_peaks(device: str = "cpu", dtype: torch.dtype = torch.float32, refresh: bool = False) -> DevicePeaks:
    """The device's peaks for `dtype`, from the cache or measured now (and cached)."""
    is_cuda = torch.device(device).type == "cuda"
    threads = None if is_cuda else torch.get_num_threads()
    name = device_name(device)
    dtype_name = str(dtype).removeprefix("torch.")
    key = f"{name}|{dtype_name}" + ("" if is_cuda else f"|threads={threads}")
    path = cache_dir() / CACHE_FILE
    cached = _read_cache(path)
    if key in cached and not refresh:
        return DevicePeaks(**cached[key])
    flops, flops_how = _matmul_peak(device, dtype)
    bandwidth, copy_how = _copy_peak(device)
    peaks = DevicePeaks(name, dtype_name, threads, flops, bandwidth, f"{flops_how}; {copy_how}; best of {_REPEATS}")
    cached[key] = asdict(peaks)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(cached, indent=2), force=True)
    except OSError:
        pass  # a read-only home: measure again next time
    return peaks


def _read_cache(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _best_seconds(device: str, work: object) -> float:
    """The fastest of a few runs of `work()` (after one untimed run), synchronised on CUDA."""
    is_cuda = torch.device(device).type == "cuda"
    work()  # type: ignore[operator]
    best = float("inf")
    for _ in range(_REPEATS):
        if is_cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            work()  # type: ignore[operator]
            end.record()
            end.synchronize()
            seconds = start.elapsed_time(end) / 1e3
        else:
            begin = time.perf_counter()
            work()  # type: ignore[operator]
            seconds = time.perf_counter() - begin
        best = min(best, seconds)
    return best


def _matmul_peak(device: str, dtype: torch.dtype) -> tuple[float, str]:
    size = 8192 if torch.device(device).type == "cuda" else 1024 if torch.get_num_threads() <= 4 else 2048
    with torch.inference_mode():
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        out = torch.empty(size, size, device=device, dtype=dtype)
        seconds = _best_seconds(device, lambda: torch.mm(a, b, out=out))
    return 2 * size**3 / seconds, f"matmul {size}x{size} {str(dtype).removeprefix('torch.')}"


def _copy_peak(device: str) -> tuple[float, str]:
    numel = (128 if torch.device(device).type == "cuda" else 32) * 2**20  # float32: 512 MiB / 128 MiB
    with torch.inference_mode():
        source = torch.ones(numel, device=device)
        target = torch.empty_like(source)
        seconds = _best_seconds(device, lambda: target.copy_(source))
    size = source.numel() * source.element_size()
    return 2 * size / seconds, f"copy of {size // 2**20} MiB (read + write)"
