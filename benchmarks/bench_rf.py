"""The analytic receptive field of `unet` at 512² and at 16384²: time and memory (issue 13, section 3).

Goal: rf at 16384² within 1.2× of its time and memory at 512², i.e. nothing in the walk grows with the
input's pixels (before issue 13, 16384² took 21 s and 5.2 GB: interpolation supports were (n_out, n_in) tables).

What is measured: `inspectlab.api.receptive_field("unet", (1, 3, side, side))`, the whole analytic rf (the
model built and traced on the meta device, the walk, the report), nothing rendered. Each side runs in fresh
subprocesses, interleaved (512, 16384, 512, ...), one torch thread:

- memory: the process's peak RSS (getrusage's ru_maxrss, after all its calls) minus its RSS (VmRSS) once
  torch, numpy, inspectlab.api and the rf workflow are imported: what the calls added to the interpreter
  (the zoo module, the meta trace, the walk);
- time: CPU time (process_time; the steadier figure on a shared machine) and wall time of each call. The
  first call in a process is the one `inspectlab rf` makes: "cold" (it also pays one-time imports and
  registrations: about 0.3 s). The next calls ("warm", median) show the walk's own cost more sharply.

The goal is judged as the issue states it, on what a fresh process does: the cold call's CPU time and the
memory. The warm ratio is printed beside them. Exit status 1 when a judged ratio exceeds --limit.

    python benchmarks/bench_rf.py [--rounds 3] [--warm 5] [--sides 512,16384] [--limit 1.2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

MODEL = "unet"


def _mib(value: int | None) -> float:
    if value is None:
        raise RuntimeError("no VmRSS in /proc/self/status")
    return value / 2**20


def worker(side: int, warm: int) -> dict[str, Any]:
    """In a fresh process: one cold and `warm` warm calls at side²; times, baseline and peak RSS."""
    import numpy  # noqa: F401  (part of the baseline)
    import torch

    import inspectlab
    import inspectlab.workflows.receptive_field  # noqa: F401  (what api.receptive_field imports on first use)
    from inspectlab import api
    from inspectlab.runtime.memory import peak_rss_bytes, rss_bytes

    torch.set_num_threads(1)
    baseline = _mib(rss_bytes())
    shape = (1, 3, side, side)
    walls, cpus = [], []
    for _ in range(1 + warm):
        start, start_cpu = time.perf_counter(), time.process_time()
        report = api.receptive_field(MODEL, shape)
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
        totals = report.totals
        del report
    return {"side": side, "baseline_mb": baseline, "peak_mb": _mib(peak_rss_bytes()), "wall": walls, "cpu": cpus,
            "rf": totals.get("rf"), "package": os.path.dirname(inspectlab.__file__), "torch": torch.__version__}


def measure(side: int, warm: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--worker", str(side), "--warm", str(warm)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per side (interleaved)")
    parser.add_argument("--warm", type=int, default=5, help="warm calls per process, after the cold one")
    parser.add_argument("--sides", default="512,16384", help="the small side, then the large one")
    parser.add_argument("--limit", type=float, default=1.2, help="largest ratio allowed")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.warm)))
        return 0

    small, large = (int(s) for s in args.sides.split(","))
    runs: dict[int, list[dict[str, Any]]] = {small: [], large: []}
    for _ in range(args.rounds):
        for side in (small, large):
            runs[side].append(measure(side, args.warm))

    def figures(side: int) -> dict[str, float]:
        done = runs[side]
        warm = [(w, c) for r in done for w, c in zip(r["wall"][1:], r["cpu"][1:], strict=True)]
        return {
            "cold_cpu": statistics.median(r["cpu"][0] for r in done),
            "cold_wall": statistics.median(r["wall"][0] for r in done),
            "warm_cpu": statistics.median(c for _, c in warm) if warm else float("nan"),
            "warm_wall": statistics.median(w for w, _ in warm) if warm else float("nan"),
            "memory": statistics.median(r["peak_mb"] - r["baseline_mb"] for r in done),
            "baseline": statistics.median(r["baseline_mb"] for r in done),
        }

    a, b = figures(small), figures(large)
    first = runs[small][0]
    print(f"{MODEL}: api.receptive_field, {args.rounds} fresh processes per side, each 1 cold + {args.warm} warm "
          f"calls; medians; 1 torch thread, torch {first['torch']}, {os.cpu_count()} CPUs; {first['package']}")
    print("| input | cold: CPU | cold: wall | warm: CPU | warm: wall | peak RSS above baseline | baseline |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for side, f in ((small, a), (large, b)):
        print(f"| 1×3×{side}×{side} | {f['cold_cpu'] * 1e3:.0f} ms | {f['cold_wall'] * 1e3:.0f} ms | "
              f"{f['warm_cpu'] * 1e3:.1f} ms | {f['warm_wall'] * 1e3:.1f} ms | {f['memory']:+.1f} MB | "
              f"{f['baseline']:.0f} MB |")
    if runs[small][0]["rf"] != runs[large][0]["rf"]:
        print(f"note: the model output's rf differs: {runs[small][0]['rf']} vs {runs[large][0]['rf']}")
    ratios = [("time, cold call (CPU)", b["cold_cpu"] / a["cold_cpu"], True),
              ("memory (peak RSS above baseline)", b["memory"] / a["memory"], True),
              ("time, cold call (wall)", b["cold_wall"] / a["cold_wall"], False),
              ("time, warm calls (CPU)", b["warm_cpu"] / a["warm_cpu"], False)]
    failed = False
    for name, ratio, judged in ratios:
        verdict = ""
        if judged:
            failed |= not ratio <= args.limit
            verdict = f"  (goal ≤ {args.limit}: {'met' if ratio <= args.limit else 'NOT met'})"
        print(f"{large}² / {small}², {name}: {ratio:.2f}{verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
