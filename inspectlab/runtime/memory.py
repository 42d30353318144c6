"""Memory of real runs: the device's free memory, the check before a run, and the CPU's peak-RSS probe."""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import sys

import torch

from inspectlab.core.errors import InspectlabError
from inspectlab.render.formats import human_bytes


def _proc_status_bytes(key: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_bytes() -> int | None:
    """The process's resident set size now (VmRSS; None where /proc/self/status is missing)."""
    return _proc_status_bytes("VmRSS")


def peak_rss_bytes() -> int:
    """The process's lifetime peak resident set size (getrusage's ru_maxrss: kB on Linux, bytes on macOS)."""
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
        current = rss_bytes()
        self.baseline = current if self.resettable and current is not None else peak_rss_bytes()

    def stop(self) -> tuple[int, str]:
        if self.resettable:
            peak = _proc_status_bytes("VmHWM") or peak_rss_bytes()
            return max(0, peak - self.baseline), "CPU peak RSS increase (VmHWM reset via /proc/self/clear_refs)"
        return (max(0, peak_rss_bytes() - self.baseline),
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
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(needed: int, device: torch.device, what: str, already_there: int = 0) -> None:
    """Refuse (InspectlabError) when `needed` bytes exceed the device's free memory (+ `already_there`)."""
    free = free_memory(device)
    if free is None:
        return
    if needed > free + already_there:
        raise InspectlabError(
            f"{what} needs about {human_bytes(needed)} (estimated peak) but {device} has "
            f"{human_bytes(free + already_there)} free; use --force to run anyway, or try a smaller --input or "
            "--device meta"
        )
