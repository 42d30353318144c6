"""Reproducible numbers and bounded memory (issue 13 §2, §3): a real run's input is seeded, the peers run on the
same instance and inputs as inspectlab, a count that depends on values says so, and every path that runs a
model for real estimates its peak from the meta trace first and refuses, in one line, what would not fit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inspectlab import api
from inspectlab.core.errors import InspectlabError
from inspectlab.runtime import memory as memory_module

SHAPE = (1, 3, 16, 16)


class Branchy(nn.Module):
    """Runs a second, costlier conv only when the first one's output is positive on average: its MACs depend
    on the input's values."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Conv2d(3, 4, 3, padding=1)
        self.costly = nn.Conv2d(4, 4, 5, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.first(x)
        return self.costly(y) if float(y.mean()) > 0 else y


class Picks(nn.Module):
    """Keeps the positive entries (nonzero): the output's size depends on the values."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[x > 0]


def test_a_real_run_fallback_gives_the_same_numbers_every_time():
    for seed in range(3):
        torch.manual_seed(seed)
        model = Branchy()
        assert len({api.summary(model, SHAPE).totals["macs"] for _ in range(3)}) == 1
    assert any("seeded random input" in n for n in api.trace(model, SHAPE).notes)


def test_flops_compare_runs_the_peers_on_the_same_model_and_input():
    for seed in range(4):  # whichever branch the seeded input takes, the torch row matches its peer
        torch.manual_seed(seed)
        report = api.flops(Branchy(), SHAPE, compare=True)
        torch_row = next(row for row in report.layers if row["convention"] == "torch")
        assert torch_row["match"] is True, torch_row


def test_value_dependent_counts_say_so():
    notes = api.trace(Picks(), (2, 8)).notes
    assert any("depend on the input's values (aten.index)" in n for n in notes), notes


@pytest.fixture()
def tiny_memory(monkeypatch):
    monkeypatch.setattr(memory_module, "free_memory", lambda device: 1000)


@pytest.mark.parametrize("run", [
    lambda: api.summary("lenet5", device="cpu"),
    lambda: api.flops("lenet5", compare=True),
    lambda: api.dump("lenet5", layers=["conv1"]),
    lambda: api.dump("lenet5", layers=["conv1"], out="never.safetensors", stats_only=True),
    lambda: api.rf("lenet5", empirical=True),
    lambda: api.rf("lenet5", erf="never.png"),
    lambda: api.latency("lenet5", iters=1, warmup=0),
    lambda: api.summary(Branchy(), SHAPE),  # the real-run fallback: no meta trace, a lower bound
], ids=["summary-cpu", "flops-compare", "dump", "dump-stats-only", "rf-empirical", "rf-erf", "latency",
        "fallback"])
def test_every_real_run_is_refused_when_it_cannot_fit(tiny_memory, run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InspectlabError, match=r"needs about .* but cpu has .* free; .*--device meta"):
        run()
    assert list(tmp_path.iterdir()) == []


def test_compare_and_sweep_latency_refuse_per_row(tiny_memory):
    frame = api.compare(["lenet5"], latency=True, iters=1, warmup=0)
    assert "needs about" in frame.loc[0, "error"] and frame.loc[0, "macs"] > 0
    frame = api.sweep("lenet5", [32], latency=True, iters=1, warmup=0)
    assert "needs about" in frame.loc[0, "error"]


def test_a_big_meta_summary_needs_no_memory(tiny_memory):
    assert api.summary("unet", (1, 3, 4096, 4096), depth=0).totals["macs"] > 0
