"""inspectlab's latency p50 beside torch.utils.benchmark's median, for three zoo models on the CPU.

Each model is built once; inspectlab (`api.latency`) and `torch.utils.benchmark.Timer` time the same module
on the same input, alternately: inspectlab's progress callback (it runs between timed iterations) lets
Timer time one forward, then runs two untimed forwards, so that on both sides every timed forward is
the third of three back-to-back ones and a change of machine load hits both alike. Timer's single-run
measurements are merged (a median of single forwards, like inspectlab's p50). Timer uses timeit's clock:
its default clock calls `torch.accelerator.is_available()` inside the timed region. A last column is
Timer's usual `blocked_autorange` (a median of block means), measured after.

    python benchmarks/bench_latency.py [--threads 1] [--rounds 3] [--iters 30] [--models resnet18,unet]

--iters is the most per round: a model slower than 2 s / iters gets fewer (at least 5).
"""

from __future__ import annotations

import argparse
import statistics
import time
import timeit

import torch
from torch.utils import benchmark

from inspectlab import api

ROUND_SECONDS = 2.0  # about how long inspectlab's side of one round runs
MODELS = (("resnet18", (1, 3, 224, 224)), ("mobilenet_v3_large", (1, 3, 224, 224)), ("unet", (1, 3, 256, 256)))


def compare(name: str, shape: tuple[int, ...], threads: int, rounds: int, iters: int) -> dict[str, float]:
    model = api.build_model(name, device="cpu")
    x = torch.randn(shape)
    timer = benchmark.Timer("model(x)", globals={"model": model, "x": x}, num_threads=threads,
                            timer=timeit.default_timer, label=name)
    with torch.inference_mode():
        model(x)  # one untimed forward, to size the rounds
        began = time.perf_counter()
        model(x)
        once = time.perf_counter() - began
    iters = max(5, min(iters, round(ROUND_SECONDS / once)))  # a slow model gets fewer iterations per round
    ours, single = [], []
    for _ in range(rounds):
        reference = []

        def interleave(description: str, fraction: float, reference: list = reference) -> None:
            if description.endswith("timing"):
                with torch.inference_mode():
                    reference.append(timer.timeit(1))
                    model(x)
                    model(x)

        report = api.latency(model, list(shape), iters=iters, warmup=3 if once < 0.5 else 1, threads=threads,
                             progress=interleave)
        ours.append(report.results[0].stats.p50_ms)
        single.append(benchmark.Measurement.merge(reference)[0].median * 1e3)
    with torch.inference_mode():
        blocked = timer.blocked_autorange(min_run_time=rounds * iters * once).median * 1e3
    p50, reference_p50 = statistics.median(ours), statistics.median(single)
    return {"iters": iters, "p50": p50, "timer": reference_p50, "ratio": p50 / reference_p50, "blocked": blocked,
            "blocked_ratio": p50 / blocked}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--models", default=",".join(name for name, _ in MODELS), help="a subset, comma-separated")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    print(f"torch {torch.__version__}, {options.threads} thread(s), {options.rounds} rounds")
    print(f"{'model':<20} {'input':<14} {'iters':>5} {'inspectlab p50':>15} {'Timer median':>13} {'ratio':>6} "
          f"{'Timer blocked':>14} {'ratio':>6}")
    for name, shape in MODELS:
        if name not in options.models.split(","):
            continue
        row = compare(name, shape, options.threads, options.rounds, options.iters)
        print(f"{name:<20} {'x'.join(map(str, shape)):<14} {row['iters']:>5} {row['p50']:>12.2f} ms "
              f"{row['timer']:>10.2f} ms {row['ratio']:>6.3f} {row['blocked']:>11.2f} ms {row['blocked_ratio']:>6.3f}",
              flush=True)


if __name__ == "__main__":
    main()
