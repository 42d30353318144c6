"""`rf MODEL --empirical` beside one float32 forward + backward of the same model, in the same run.

- fwd+bwd: the model (eval, float32) on a batch of ones that requires grad, the sum of its outputs' sums
  backpropagated to the input;
- check: `inspectlab rf MODEL --input SHAPE --empirical` end to end, as a fresh process (import, trace,
  analysis, the model built, the check, the table printed), its wall time;
- with `--old-tree PATH`, the same command run from another checkout of inspectlab (PYTHONPATH=PATH), e.g.
  the commit before the check's rewrite.

The sides run in interleaved rounds (a change of machine load hits all alike); each figure is the median over
rounds. Issue 14's goal: at most one backward per measured row, float32 where that is exact.

    python benchmarks/bench_rf_empirical.py [--model unet] [--input 1,3,512,512] [--rounds 1] [--old-tree PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import torch
from torch.utils._pytree import tree_flatten

from inspectlab import api


def forward_backward(model: torch.nn.Module, shape: tuple[int, ...]) -> float:
    x = torch.ones(shape, requires_grad=True)
    start = time.perf_counter()
    outputs, _ = tree_flatten(model(x))
    sum(t.sum() for t in outputs if isinstance(t, torch.Tensor)).backward()
    return time.perf_counter() - start


def command(model: str, shape: str, tree: str | None) -> tuple[float, str]:
    env = dict(os.environ, **({"PYTHONPATH": tree} if tree else {}))
    code = "import sys; from inspectlab.cli import app; sys.argv = ['inspectlab'] + sys.argv[1:]; app()"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, "rf", model, "--input", shape, "--empirical"], env=env,
                          capture_output=True, text=True, cwd=tree or None)
    elapsed = time.perf_counter() - start
    lines = (done.stdout + done.stderr).strip().splitlines()
    return elapsed, next((line for line in reversed(lines) if line.startswith("Empirical check")), lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="unet")
    parser.add_argument("--input", default="1,3,512,512")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--old-tree", default=None, help="another checkout to time the same command from")
    options = parser.parse_args()
    shape = tuple(int(v) for v in options.input.split(","))
    model = api.build_model(options.model, None, "cpu").eval()
    times: dict[str, list[float]] = {"fwd+bwd": [], "check": [], "old check": []}
    summary = {}
    for _ in range(options.rounds):
        times["fwd+bwd"].append(forward_backward(model, shape))
        seconds, summary["check"] = command(options.model, options.input, None)
        times["check"].append(seconds)
        if options.old_tree:
            seconds, summary["old check"] = command(options.model, options.input, options.old_tree)
            times["old check"].append(seconds)
        times["fwd+bwd"].append(forward_backward(model, shape))
    base = statistics.median(times["fwd+bwd"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.1f}; {options.model} at {options.input}, {options.rounds} round(s)")
    print(f"one float32 forward+backward: {base:.2f} s")
    for side in ("check", "old check"):
        if times[side]:
            median = statistics.median(times[side])
            print(f"{side}: {median:.1f} s = {median / base:.1f}x the forward+backward; {summary[side]}")


if __name__ == "__main__":
    main()
