"""Dumping the 16 bottleneck outputs of ResNet-50 at 224² to safetensors, beside a plain forward + torch.save.

- baseline: forward hooks that keep a reference to each bottleneck output (no copy: nothing modifies these
  tensors in place afterwards, so the references hold the right values), a forward under `torch.no_grad`,
  then `torch.save` of the 16 tensors;
- capture: `inspectlab.capture` (a copy of each output at the moment it is produced) under `torch.no_grad`,
  then `cap.save` to safetensors with its JSON manifest (statistics of every tensor);
- dump: `inspectlab.api.dump` end to end: the meta-device trace (size estimate, receptive fields) first, the
  capture, the safetensors file and the manifest.

The sides run in interleaved rounds (a change of machine load hits all alike); each figure is the median
over rounds. Target (issue 7): capture / baseline <= 1.5.

    python benchmarks/bench_dump.py [--threads 1] [--rounds 7] [--batch 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from inspectlab import api
from inspectlab.runtime.capture import capture, select_modules

LAYERS = ["layer?.?"]  # ResNet-50: 3 + 4 + 6 + 3 = 16 Bottleneck blocks
TARGET = 1.5


def timed(function: Callable[[], None]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=1)
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    torch.manual_seed(0)
    model = api.build_model("resnet50", device="cpu")
    shape = (options.batch, 3, 224, 224)
    x = torch.randn(shape)
    blocks = select_modules(model, LAYERS)
    assert len(blocks) == 16, list(blocks)
    folder = Path(tempfile.mkdtemp(prefix="bench_dump_"))

    def baseline() -> None:
        kept: dict[str, torch.Tensor] = {}
        handles = [module.register_forward_hook(lambda m, a, out, name=name: kept.__setitem__(name, out))
                   for name, module in blocks.items()]
        try:
            with torch.no_grad():
                model(x)
        finally:
            for handle in handles:
                handle.remove()
        torch.save(kept, folder / "baseline.pt")

    def ours() -> None:
        with torch.no_grad(), capture(model, LAYERS) as cap:
            model(x)
        cap.save(str(folder / "feats.safetensors"), force=True)

    def end_to_end() -> None:
        api.dump(model, [shape], layers=LAYERS, out=str(folder / "dump.safetensors"), force=True)

    for function in (baseline, ours, end_to_end):  # warm-up: first-call costs (allocator, imports, dispatch)
        function()
    times: dict[str, list[float]] = {"baseline": [], "capture": [], "dump": []}
    for _ in range(options.rounds):
        times["baseline"].append(timed(baseline))
        times["capture"].append(timed(ours))
        times["dump"].append(timed(end_to_end))
    median = {name: statistics.median(values) for name, values in times.items()}
    size = (folder / "feats.safetensors").stat().st_size
    print(f"torch {torch.__version__}, {options.threads} thread(s), input {'x'.join(map(str, shape))}, "
          f"16 bottleneck outputs = {size / 2**20:.1f} MiB, median of {options.rounds} rounds")
    print(f"{'side':<44} {'median':>10} {'min':>10} {'ratio':>7}")
    labels = {"baseline": "forward + torch.save (references)", "capture": "capture + cap.save (safetensors+manifest)",
              "dump": "api.dump (trace, rf, capture, write)"}
    for name, label in labels.items():
        ratio = median[name] / median["baseline"]
        print(f"{label:<44} {median[name] * 1e3:>7.1f} ms {min(times[name]) * 1e3:>7.1f} ms {ratio:>7.3f}")
    ratio = median["capture"] / median["baseline"]
    print(f"capture / baseline = {ratio:.3f} (target <= {TARGET}): {'ok' if ratio <= TARGET else 'ABOVE TARGET'}")


if __name__ == "__main__":
    main()
