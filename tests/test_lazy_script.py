"""Lazy modules and ScriptModules given to the API (issue 15 §2).

Lazy modules (`nn.LazyLinear`, `nn.LazyConv2d`, `UninitializedParameter`) are counted from the shapes their first
forward creates, on a copy: the user's model stays uninitialised. ScriptModules take no hooks: they are analysed
as a whole, on a copy loaded on the meta device, or by a real run when their forward needs values."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.parameter import is_lazy
from torch.utils.flop_counter import FlopCounterMode

from inspectlab import api
from inspectlab.core.errors import InspectlabError

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.* is deprecated, and still runs

SHAPE = (1, 3, 12, 12)


def lazy_net() -> nn.Sequential:
    return nn.Sequential(nn.LazyConv2d(6, 3), nn.LazyBatchNorm2d(), nn.ReLU(), nn.Flatten(), nn.LazyLinear(4))


def eager_twin() -> nn.Sequential:
    """The same network with every shape written out: what the lazy one becomes after a forward on SHAPE."""
    return nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 10 * 10, 4))


def _flop_counter_macs(model: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() // 2


def _still_lazy(model: nn.Module) -> bool:
    return all(is_lazy(p) for p in model.parameters()) and type(model[-1]).__name__ == "LazyLinear"


def test_lazy_modules_count_from_the_shapes_their_first_forward_creates():
    model, twin = lazy_net(), eager_twin()
    rng = torch.random.get_rng_state()
    report = api.summary(model, SHAPE)
    assert _still_lazy(model) and torch.equal(rng, torch.random.get_rng_state())
    assert report.totals["params"] == sum(p.numel() for p in twin.parameters()) == 168 + 12 + 2_404
    assert report.totals["macs"] == _flop_counter_macs(twin, torch.randn(SHAPE))
    materialised = lazy_net()  # torch's own materialisation, by a forward
    materialised(torch.randn(SHAPE))
    assert report.totals["params"] == sum(p.numel() for p in materialised.parameters())
    assert [(r.name, r.params) for r in report.layers] == [(r.name, r.params) for r in api.summary(twin, SHAPE).layers]
    assert "lazy modules (LazyConv2d, LazyBatchNorm2d, LazyLinear) were materialised" in report.extra["notes"][0]
    assert api.flops(model, SHAPE).totals["macs"] == report.totals["macs"]
    assert _still_lazy(model)


class LazyBranch(nn.Module):
    """Lazy (a lazy buffer too), and its forward reads a value: the meta pass cannot run it, a real run on a copy
    can."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.LazyLinear(3)
        self.norm = nn.LazyBatchNorm1d()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.fc(x))
        return y * 2 if float(y.detach().sum()) > 0 else y


def test_a_lazy_model_whose_forward_needs_values_is_materialised_on_a_cpu_copy():
    model = LazyBranch()
    report = api.summary(model, (2, 5))
    assert report.totals["params"] == 5 * 3 + 3 + 2 * 3 and report.totals["macs"] == 2 * 5 * 3
    assert report.extra["device"] == "cpu"
    assert any("materialised by a first forward of a copy of the model on cpu" in n for n in report.extra["notes"])
    assert is_lazy(model.fc.weight) and is_lazy(model.norm.running_mean) and type(model.fc).__name__ == "LazyLinear"


def test_a_lazy_model_from_a_factory_file(tmp_path):
    (tmp_path / "net.py").write_text(
        "from torch import nn\n\n\ndef build(width=4):\n"
        "    return nn.Sequential(nn.LazyConv2d(width, 3), nn.Flatten(), nn.LazyLinear(2))\n")
    report = api.summary(f"{tmp_path / 'net.py'}:build", (1, 3, 8, 8))
    assert report.totals["params"] == (3 * 9 * 4 + 4) + (4 * 6 * 6 * 2 + 2)


def test_a_lazy_model_that_rejects_its_input_says_so_in_one_line():
    with pytest.raises(InspectlabError, match="first forward, which materialises the lazy modules, failed"):
        api.summary(nn.Sequential(nn.LazyLinear(3), nn.Linear(4, 2)), (1, 5))


def test_a_script_module_is_analysed_as_a_whole_on_a_meta_copy():
    model = eager_twin().eval()
    scripted = torch.jit.script(model)
    before = {k: v.clone() for k, v in scripted.state_dict().items()}
    report = api.summary(scripted, SHAPE)
    eager = api.summary(model, SHAPE)
    assert report.totals == eager.totals
    assert report.extra["device"] == "meta"
    assert [(r.name, r.type) for r in report.layers] == [("(root)", "Sequential")]
    assert report.extra["notes"] == ["hooks are not supported on ScriptModules: the model is analysed as a whole "
                                     "(its totals in one row, no per-layer rows)"]
    assert all(torch.equal(before[k], v) for k, v in scripted.state_dict().items()) and not scripted.training
    traced = torch.jit.trace(model, torch.randn(SHAPE))
    assert api.flops(traced, SHAPE).totals["macs"] == eager.totals["macs"]


def test_a_script_module_tells_the_op_that_rejected_its_input():
    message = r"layer \(root\) \(Sequential\) rejected input 1×3×13×12: .*\[1, 660\] X \[600, 4\]"
    with pytest.raises(InspectlabError, match=message):
        api.summary(torch.jit.script(eager_twin().eval()), (1, 3, 13, 12))


class Wrapped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = torch.jit.script(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()))
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def test_a_script_module_inside_a_module_runs_for_real_and_counts_in_the_totals():
    model = Wrapped().eval()
    report = api.summary(model, SHAPE)
    assert report.totals["macs"] == _flop_counter_macs(model, torch.randn(SHAPE)) == 4 * 10 * 10 * 27 + 2 * 10 * 10 * 4
    assert report.totals["params"] == sum(p.numel() for p in model.parameters())
    assert report.extra["device"] == "cpu"
    assert "backbone has no row of its own" in report.extra["notes"][0]


def test_a_frozen_script_module_and_a_script_module_in_another_dtype_are_refused():
    frozen = torch.jit.freeze(torch.jit.script(eager_twin().eval()))
    with pytest.raises(InspectlabError, match="frozen ScriptModule"):
        api.summary(frozen, SHAPE)
    with pytest.raises(InspectlabError, match=r"its own parameters \(float32 on cpu\)"):
        api.summary(torch.jit.script(eager_twin().eval()), SHAPE, dtype="float16")


def test_flops_compare_counts_a_lazy_model_on_a_materialised_copy_and_real_runs_refuse_it() -> None:
    """The peers run on the copy the trace materialised (each equals its own number); a real run that would be
    the model's first forward (latency, dump, rf --empirical) and `tree` refuse in one line; the model stays lazy."""
    model = nn.Sequential(nn.LazyConv2d(8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))
    report = api.flops(model, (1, 3, 16, 16), compare=True)
    assert all(row.match for row in report.layers if row.convention in ("torch", "fvcore", "torchinfo"))
    for run in (lambda: api.latency(model, (1, 3, 16, 16), iters=2), lambda: api.tree(model),
                lambda: api.rf(model, (1, 3, 16, 16), empirical=True)):
        with pytest.raises(InspectlabError, match="lazy modules"):
            run()
    assert all(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters())
