"""`inspectlab.summary` beside `torchinfo.summary`: time and peak memory (issue 3, section 6).

(a) torchvision resnet50 at 224²: inspectlab (every column, depth 10: all layers) vs torchinfo (every
    column, depth 10) — goal: inspectlab ≤ 0.5 × torchinfo's time.
(b) deeplabv3plus_resnet50 at 1024²: both tools, time and peak RSS — goal: ≤ 1/20 of torchinfo's time
    and ≤ 300 MB above the process's import baseline.
(c) the same model at 2048² and 4096², inspectlab alone: the time must not grow with the input size.

Each measurement runs in a fresh subprocess: the baseline is its RSS after importing torch,
torchvision, torchinfo and inspectlab; its peak is the process's maximum RSS (getrusage). The first
call in a process (cold: one-time imports, lazy registrations) is reported apart from the median of
the warm calls. Wall and CPU time (process_time) are both shown: with one thread both sides are
single-threaded, and CPU time is the steadier figure on a shared machine. inspectlab is given the
model's name, as the CLI is (it builds the model on the meta device, inside the timed call);
torchinfo is given the same model built on the CPU beforehand (the build is not timed, its weights
count in its memory). In (a) inspectlab is also timed on that CPU module itself. Nothing is
rendered on either side: both calls compute every column.

    python benchmarks/bench_summary.py [--threads 1] [--rounds 3] [--warm 5] [--warm-big 2]
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

RESNET = "tv:resnet50"
DEEPLAB = "deeplabv3plus_resnet50"
TORCHINFO_COLUMNS = ("input_size", "output_size", "num_params", "params_percent", "kernel_size", "mult_adds",
                     "trainable")
DEPTH = 10


def _mib(value: int | None) -> float:
    if value is None:
        raise RuntimeError("no VmRSS in /proc/self/status")
    return value / 2**20


def worker(tool: str, spec: str, side: int, calls: int, threads: int) -> dict[str, Any]:
    """Run in a fresh process: `calls` calls of one tool on one model; times, baseline and peak RSS."""
    import torch
    import torchinfo
    import torchvision  # noqa: F401  (part of the baseline: tv: specs import it)

    import inspectlab
    from inspectlab import api
    from inspectlab.runtime.memory import peak_rss_bytes, rss_bytes

    torch.set_num_threads(threads)
    baseline = _mib(rss_bytes())
    shape = (1, 3, side, side)
    if tool == "inspectlab":
        def call() -> Any:
            return inspectlab.summary(spec, shape, depth=DEPTH)
    else:
        model = api.build_model(spec, device="cpu")  # not timed: torchinfo needs a real model
        if tool == "inspectlab-module":
            def call() -> Any:
                return inspectlab.summary(model, shape, depth=DEPTH)
        else:
            def call() -> Any:
                return torchinfo.summary(model, shape, depth=DEPTH, col_names=TORCHINFO_COLUMNS, device="cpu",
                                         verbose=0)
    times, cpu = [], []
    for _ in range(calls):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = call()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        del result
    return {"tool": tool, "spec": spec, "side": side, "cold_s": times[0], "warm_s": times[1:], "warm_cpu_s": cpu[1:],
            "baseline_mb": baseline, "peak_above_mb": _mib(peak_rss_bytes()) - baseline}


def measure(tool: str, spec: str, side: int, calls: int, threads: int) -> dict[str, Any]:
    command = [sys.executable, os.path.abspath(__file__), "--worker", tool, spec, str(side), str(calls),
               "--threads", str(threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{tool} on {spec} at {side}² failed:\n{done.stderr[-2000:]}")
    return _with_medians(json.loads(done.stdout.strip().splitlines()[-1]))


def _with_medians(row: dict[str, Any]) -> dict[str, Any]:
    row["warm_median_s"] = statistics.median(row["warm_s"])
    row["warm_cpu_median_s"] = statistics.median(row["warm_cpu_s"])
    row["warm_cpu_min_s"] = min(row["warm_cpu_s"])
    return row


def merge(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Several fresh processes of one tool: median cold call, median of all warm calls, largest peak."""
    return _with_medians({
        **rows[0], "cold_s": statistics.median(row["cold_s"] for row in rows),
        "warm_s": [t for row in rows for t in row["warm_s"]],
        "warm_cpu_s": [t for row in rows for t in row["warm_cpu_s"]],
        "peak_above_mb": max(row["peak_above_mb"] for row in rows),
    })


def _line(label: str, row: dict[str, Any], peer: dict[str, Any] | None = None) -> str:
    text = (f"  {label:<27} cold {row['cold_s']:7.3f} s  warm {row['warm_median_s']:7.3f} s "
            f"(CPU {row['warm_cpu_median_s']:7.3f} s, n={len(row['warm_s']):>2})  "
            f"peak RSS +{row['peak_above_mb']:4.0f} MB")
    if peer is not None:
        text += (f"  ratio: cold {row['cold_s'] / peer['cold_s']:.3f}, "
                 f"warm {row['warm_median_s'] / peer['warm_median_s']:.3f} "
                 f"(CPU {row['warm_cpu_median_s'] / peer['warm_cpu_median_s']:.3f})")
    return text


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads on both sides (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per case in (a) and (c), interleaved")
    parser.add_argument("--warm", type=int, default=5, help="warm calls after the cold one, small cases")
    parser.add_argument("--warm-big", type=int, default=2, help="warm calls of torchinfo at 1024²")
    parser.add_argument("--worker", nargs=4, metavar=("TOOL", "SPEC", "SIDE", "CALLS"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        tool, spec, side, calls = options.worker
        print(json.dumps(worker(tool, spec, int(side), int(calls), options.threads)))
        return

    import torch

    print(f"torch {torch.__version__}, {options.threads} thread(s), {os.cpu_count()} CPUs; every measurement in "
          f"a fresh process; cold = its first call, warm = the median of the calls after it")
    print(f"(a) {RESNET} at 224², depth {DEPTH}, every column")
    runs: dict[str, list[dict[str, Any]]] = {"torchinfo": [], "inspectlab": [], "inspectlab-module": []}
    for _ in range(options.rounds):  # interleaved, so that a change of machine load hits every tool
        for tool, rows in runs.items():
            rows.append(measure(tool, RESNET, 224, 1 + options.warm, options.threads))
    info, ours, module = (merge(rows) for rows in runs.values())
    print(_line("torchinfo.summary(module)", info))
    print(_line("inspectlab.summary(name)", ours, info))
    print(_line("inspectlab.summary(module)", module, info))
    ratio_a = ours["warm_median_s"] / info["warm_median_s"]
    cpu_a = ours["warm_cpu_median_s"] / info["warm_cpu_median_s"]
    print(f"  goal ≤ 0.5 × torchinfo (warm, by name): {ratio_a:.3f} → {_verdict(ratio_a <= 0.5)}; "
          f"in CPU time {cpu_a:.3f} → {_verdict(cpu_a <= 0.5)}")

    print(f"(b) {DEEPLAB} at 1024²")
    info_big = measure("torchinfo", DEEPLAB, 1024, 1 + options.warm_big, options.threads)
    ours_big = measure("inspectlab", DEEPLAB, 1024, 1 + options.warm, options.threads)
    print(_line("torchinfo.summary(module)", info_big))
    print(_line("inspectlab.summary(name)", ours_big, info_big))
    ratio_b = ours_big["warm_median_s"] / info_big["warm_median_s"]
    cpu_b = ours_big["warm_cpu_median_s"] / info_big["warm_cpu_median_s"]
    print(f"  goal ≤ 1/20 of torchinfo's time (warm): 1/{1 / ratio_b:.0f} → {_verdict(ratio_b <= 1 / 20)}; "
          f"CPU time 1/{1 / cpu_b:.0f}; cold: 1/{info_big['cold_s'] / ours_big['cold_s']:.0f}")
    print(f"  goal ≤ 300 MB above the import baseline ({ours_big['baseline_mb']:.0f} MB): "
          f"+{ours_big['peak_above_mb']:.0f} MB → {_verdict(ours_big['peak_above_mb'] <= 300)}")

    print(f"(c) {DEEPLAB}, inspectlab alone: time against the input size (fresh processes, interleaved)")
    runs_c: dict[int, list[dict[str, Any]]] = {1024: [], 2048: [], 4096: []}
    for _ in range(options.rounds):  # interleaved, as in (a)
        for side, rows_c in runs_c.items():
            rows_c.append(measure("inspectlab", DEEPLAB, side, 1 + options.warm, options.threads))
    rows = {side: merge(rows_c) for side, rows_c in runs_c.items()}
    for side, row in rows.items():
        growth = row["warm_cpu_median_s"] / rows[1024]["warm_cpu_median_s"]
        growth_min = row["warm_cpu_min_s"] / rows[1024]["warm_cpu_min_s"]
        print(_line(f"{side}²", row) + f"  CPU time × the 1024² one: median {growth:.2f}, "
              f"fastest call {growth_min:.2f}")
    worst = max(row["warm_median_s"] for row in rows.values()) / rows[1024]["warm_median_s"]
    worst_min = max(row["warm_cpu_min_s"] for row in rows.values()) / rows[1024]["warm_cpu_min_s"]
    print(f"  goal: no growth with the input size → largest warm ratio to 1024² is {worst:.2f} (median wall); "
          f"of the fastest calls' CPU time {worst_min:.2f} ({_verdict(worst_min <= 1.15)}: the fastest call is the "
          f"one least disturbed by other processes; 15% allowed for noise)")


if __name__ == "__main__":
    main()
