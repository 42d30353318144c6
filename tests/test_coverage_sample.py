"""The coverage table's sample (issue 15, section 5): the models of `benchmarks/coverage_check.SAMPLE` (every
source: torchvision, timm, smp, transformers; small models, small inputs) through the same per-model check as
`benchmarks/coverage.py`, which regenerates docs/coverage.md (`make coverage`).

Every analysis must be ✓ (summary; flops against the summary; the torch, fvcore and torchinfo conventions
against FlopCounterMode, fvcore and torchinfo themselves; rf, checked by autograd; graph, drawn by `dot` where
installed), except the ✗ that `SAMPLE_EXPECTED` documents, with its cause and reason. And the runner: a model
that crashes its worker, one that runs past the timeout and one that does not exist each end their own row only.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(file: str, name: str) -> ModuleType:
    """A module of benchmarks/ (not a package), imported by path as a user would run it, under `name` (not
    "coverage": that is coverage.py's package)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))  # coverage.py imports coverage_check; spawned workers find it too
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


coverage_check = _load("coverage_check.py", "coverage_check")


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread, as the table is made (`--threads 1`): on a busy machine more threads only spin."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("entry", coverage_check.SAMPLE, ids=lambda e: e.spec)
def test_sample_model(entry: object, offline: list) -> None:
    source = {"timm": "timm", "smp": "segmentation_models_pytorch", "transformers": "transformers"}.get(entry.source)
    if source is not None:
        pytest.importorskip(source)
    outcomes = coverage_check.check(entry)
    assert [o.analysis for o in outcomes] == list(coverage_check.ANALYSES)
    found = {}
    for outcome in outcomes:
        if outcome.status == "ok":
            continue
        found[outcome.analysis] = (outcome.cause if outcome.status == "fail" else "n/a", outcome.reason)
    expected = {analysis: value for (spec, analysis), value in coverage_check.SAMPLE_EXPECTED.items()
                if spec == entry.spec}
    assert sorted(found) == sorted(expected), (
        f"{entry.spec}: not ✓ {found}; documented in SAMPLE_EXPECTED: {expected} (a fixed bug: remove its line)")
    for analysis, (cause, fragment) in expected.items():
        assert found[analysis][0] == cause and fragment in found[analysis][1], (analysis, found[analysis])
    summary = outcomes[0].detail
    assert summary["params"] > 0 and summary["macs"] > 0
    peers = {o.analysis: o.detail for o in outcomes if o.analysis in coverage_check.PEERS}
    assert all(isinstance(d["peer"], int) and d["peer"] == d["total"] for d in peers.values()), peers


CRASH = '''import os
import time

from torch import nn


class Crash(nn.Module):
    def forward(self, x):
        os._exit(3)


class Sleepy(nn.Module):
    def forward(self, x):
        time.sleep(120)
        return x


def crash():
    return Crash()


def sleepy():
    return Sleepy()
'''


def test_runner_isolates_each_model(tmp_path: Path) -> None:
    """Three models that each fail their own way in two workers' lives: the unknown name is a one-line
    inspectlab error in every analysis, the crash kills its worker (replaced for the next model), the sleeper is
    stopped at the timeout; the table has one row each, with the reason of every ✗."""
    runner = _load("coverage.py", "coverage_runner")
    path = tmp_path / "bad.py"
    path.write_text(CRASH)
    entries = [coverage_check.Entry("torchvision", "tv:resnet_nope", input=[(1, 3, 32, 32)]),
               coverage_check.Entry("torchvision", f"{path}:crash", input=[(1, 3, 8, 8)]),
               coverage_check.Entry("torchvision", f"{path}:sleepy", input=[(1, 3, 8, 8)])]
    results = runner.run(entries, jobs=1, timeout=5, threads=1)
    assert [r.entry.spec for r in results] == [e.spec for e in entries]
    unknown, crashed, slept = results
    assert {o.status for o in unknown.outcomes} == {"fail", "n/a"}
    summary = unknown.of("summary")
    assert summary.cause == "inspectlab" and "unknown torchvision model" in summary.reason
    assert crashed.of("summary").cause == "crash" and "exit code 3" in crashed.of("summary").reason
    assert slept.of("summary").cause == "timeout" and "stopped after 5 s" in slept.of("summary").reason
    assert all(o.status == "n/a" and o.reason == "not run (timeout)" for o in slept.outcomes[1:])
    assert 5 <= slept.seconds < 30
    text = runner.markdown(results, "python benchmarks/coverage.py --test", 60.0)
    assert "| torchvision | 3 | 0/3 |" in text and "**timeout** timeout: stopped after 5 s" in text
    assert "## ✗ by cause" in text and f"`{path}:crash`" in text
    assert text.count("\n| `") == 3  # one row per model
