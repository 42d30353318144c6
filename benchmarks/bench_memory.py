"""Training-step memory of zoo models at small sizes: inspectlab's estimate beside PyTorch's MemTracker
(`torch.distributed._tools.mem_tracker`, private, on FakeTensorMode) and the measurement of PyTorch's memory
profiler on a real CPU step, with the time each took (docs/benchmarks.md, "Training memory").

- inspectlab: `api.memory(..., train=True)`: meta traces of one steady-state step, CPU kernel buffers counted;
- MemTracker: the same step (warm-up step first, so the optimizer state exists) on fake CPU tensors under
  `FakeTensorMode`, its "peak" snapshot (tensor storages only: the kernels' own buffers are not tensors);
- profiler: one real CPU step after a warm-up update (`runtime.memory_profile.training_step`) and one real
  step (oneDNN makes its kernels in the first), the largest sum of live bytes of `prof._memory_profile()`'s
  timeline; the time is the profiled step's (with the profiler's own analysis), and "one step" the same step
  without the profiler.

    python benchmarks/bench_memory.py [--threads 2] [--models resnet18,unet] [--optimizer adamw]
    python benchmarks/bench_memory.py --speed   # the estimate alone at DeepLabV3+ 8×3×1024² and 4096²
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from inspectlab import api
from inspectlab.runtime.memory_profile import profile_memory, training_step
from inspectlab.tracing.train_step import make_optimizer, training_loss

CASES = {  # model -> a small training input
    "resnet18": (2, 3, 128, 128),
    "mobilenet_v3_large": (4, 3, 160, 160),
    "unet": (1, 3, 128, 128),
    "hrnetv2_w18": (2, 3, 128, 128),
    "deeplabv3plus_resnet50": (2, 3, 256, 256),
}
MiB = 2**20


def timed(function: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def memtracker_peak(name: str, shape: tuple[int, ...], optimizer: str) -> int:
    """MemTracker's peak of one step after a warm-up step, everything fake (no memory allocated)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker

    with FakeTensorMode():
        model = api.build_model(name, device="cpu").train()
        x = torch.randn(shape)
        opt = make_optimizer(optimizer, [p for p in model.parameters() if p.requires_grad])

        def step() -> None:
            training_loss(model(x)).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        step()  # the warm-up: the optimizer state
        tracker = MemTracker()
        tracker.track_external(model, opt, x)
        with tracker:
            step()
        peaks = tracker.get_tracker_snapshot("peak")
    return max(snapshot["Total"] for snapshot in peaks.values())


def compare(names: list[str], optimizer: str) -> None:
    print("| model, input | inspectlab | MemTracker | profiler (real CPU step) | inspectlab / profiler | "
          "MemTracker / profiler | time: inspectlab | MemTracker | profiled step | one step |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        shape = CASES[name]
        report, ours = timed(partial(api.memory, name, shape, train=True, optimizer=optimizer))
        theirs, tracker_time = timed(partial(memtracker_peak, name, shape, optimizer))
        torch.manual_seed(0)
        model = api.build_model(name, device="cpu")
        step = training_step(model, [torch.randn(shape)], optimizer)
        step()  # the first real step makes oneDNN's kernels: out of the timings
        _, one_step = timed(step)
        measured, profiled = timed(partial(profile_memory, step))
        peak = report.totals["peak_bytes"]
        print(f"| {name} {'×'.join(map(str, shape))} | {peak / MiB:.1f} MiB | {theirs / MiB:.1f} MiB | "
              f"{measured.peak_bytes / MiB:.1f} MiB | {peak / measured.peak_bytes:.3f} | "
              f"{theirs / measured.peak_bytes:.3f} | {ours:.2f} s | {tracker_time:.2f} s | {profiled:.2f} s | "
              f"{one_step:.2f} s |")


def speed(optimizer: str) -> None:
    print("| input | estimate (wall) | peak |")
    print("|---|---:|---:|")
    for side in (1024, 4096):
        shape = (8, 3, side, side)
        report, seconds = timed(partial(api.memory, "deeplabv3plus_resnet50", shape, train=True, optimizer=optimizer))
        print(f"| {'×'.join(map(str, shape))} | {seconds:.2f} s | {report.totals['peak_bytes'] / 2**30:.2f} GiB |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default=",".join(CASES))
    parser.add_argument("--optimizer", default="adamw")
    parser.add_argument("--speed", action="store_true")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    api.memory("lenet5", train=True)  # imports and first-call costs out of the timings
    if options.speed:
        speed(options.optimizer)
    else:
        compare(options.models.split(","), options.optimizer)


if __name__ == "__main__":
    main()
