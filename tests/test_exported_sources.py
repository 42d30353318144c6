"""Saved models as model specs (issue 15 §1): a `torch.export` file (`model.pt2`) and a TorchScript archive
(`torch.jit.save`) analysed with the totals of the model they were saved from, and every other file (a pickled
whole module, a state_dict, a PT2 archive with pickles in it) refused in one line before any code in it runs.

Every file is made here, in tmp_path, from a tiny model (seconds)."""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path
from unittest import mock

import pytest
import torch
from cli_helpers import assert_one_line_error, run_cli
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from inspectlab import api
from inspectlab.core.errors import InspectlabError
from inspectlab.models import registry

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.* is deprecated, and still loads

SHAPE = (1, 3, 20, 24)


class Block(nn.Module):
    """A residual block whose ReLU is called twice, and a head: the hierarchy the .pt2 must give back."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU()
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn(self.stem(x)))
        x = self.act(self.body(x) + x)
        return self.head(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


class Scaled(nn.Module):
    """A keyword input beside the positional one."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        y = self.conv(x)
        return y * scale if scale is not None else y


def _exported(tmp_path: Path, model: nn.Module, args: tuple, kwargs: dict | None = None, name: str = "m") -> str:
    path = tmp_path / f"{name}.pt2"
    torch.export.save(torch.export.export(model.eval(), args, kwargs), path)
    return str(path)


def _flop_counter_macs(model: nn.Module, *args: torch.Tensor) -> int:
    """torch's own count (convolutions and matrix products: 2 FLOPs per MAC), an independent reference."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(*args)
    return counter.get_total_flops() // 2


def test_a_pt2_has_the_totals_and_the_rows_of_the_model_it_was_exported_from(tmp_path):
    model = Block().eval()
    path = _exported(tmp_path, model, (torch.randn(SHAPE),))
    exported, source = api.summary(path, depth=3), api.summary(model, SHAPE, depth=3)
    assert exported.inputs == [list(SHAPE)]  # its example inputs are the default --input
    assert exported.totals == source.totals
    assert exported.totals["params"] == sum(p.numel() for p in model.parameters())
    assert exported.totals["macs"] == _flop_counter_macs(model, torch.randn(SHAPE))
    assert exported.extra["device"] == "meta" and exported.extra["notes"] == []
    # one row per module call, as the model made them (act twice), each with its class name
    rows = [(r.name, r.type, r.call, r.params, r.macs, r.other_flops, r.output_shapes) for r in exported.layers]
    assert rows == [(r.name, r.type, r.call, r.params, r.macs, r.other_flops, r.output_shapes) for r in source.layers]
    assert ("act#1", "ReLU") in [(r.name, r.type) for r in exported.layers]
    # every counting convention too: the graph calls aten ops (`torch.ops.aten.conv2d.default`), each named as the
    # function the model called (fvcore's counts adaptive_avg_pool2d by that name)
    conventions = [(r.convention, r.total) for r in api.flops(path).layers]
    assert conventions == [(r.convention, r.total) for r in api.flops(model, SHAPE).layers]


def test_a_zoo_resnet18_exported_counts_as_the_zoo_model(tmp_path):
    model = api.build_model("resnet18", device="cpu")
    path = _exported(tmp_path, model, (torch.randn(1, 3, 64, 64),), name="resnet18")
    exported, source = api.summary(path, depth=1), api.summary("resnet18", (1, 3, 64, 64), depth=1)
    assert exported.totals["params"] == source.totals["params"] == 11_689_512
    assert exported.totals["macs"] == source.totals["macs"] == _flop_counter_macs(model, torch.randn(1, 3, 64, 64))
    assert [(r.name, r.type, r.macs) for r in exported.layers] == [(r.name, r.type, r.macs) for r in source.layers]
    assert {r.type for r in api.summary(path, depth=2).layers} >= {"BasicBlock", "Conv2d", "Sequential"}


def test_keyword_example_inputs_are_named_and_a_static_shape_is_checked(tmp_path):
    path = _exported(tmp_path, Scaled(), (torch.randn(1, 3, 8, 8),), {"scale": torch.ones(1, 4, 1, 1)})
    specs = registry.default_input(path)
    assert [(s.shape, s.dtype, s.name) for s in specs] == [((1, 3, 8, 8), None, None), ((1, 4, 1, 1), None, "scale")]
    report = api.summary(path)
    assert report.extra["input_details"][1] == {"name": "scale", "shape": [1, 4, 1, 1], "dtype": "float32"}
    assert report.totals["macs"] == 4 * 6 * 6 * 27
    result = run_cli("summary", path, "--input", "1,3,9,9", "--input", "scale=1,4,1,1")
    assert_one_line_error(result, "to be equal to 8, but got 9")


def test_a_pt2_exported_with_dynamic_shapes_takes_other_sizes(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 2)).eval()
    side = torch.export.Dim("side", min=8, max=512)
    path = tmp_path / "dynamic.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(1, 3, 32, 32),), dynamic_shapes=({2: side, 3: side},)),
                      path)
    assert api.summary(str(path)).inputs == [[1, 3, 32, 32]]
    assert api.summary(str(path), (1, 3, 64, 64)).totals == api.summary(model, (1, 3, 64, 64)).totals


def test_when_unflatten_fails_the_flat_graph_gives_the_totals_and_says_so(tmp_path):
    model = Block().eval()
    path = _exported(tmp_path, model, (torch.randn(SHAPE),))
    with mock.patch("torch.export.unflatten", side_effect=RuntimeError("no hierarchy")):
        report = api.summary(path)
    assert report.totals == api.summary(model, SHAPE).totals
    assert [(r.name, r.type) for r in report.layers] == [("(root)", "Block")]
    assert "analysed as one flat graph" in report.extra["notes"][0] and "no hierarchy" in report.extra["notes"][0]


def test_a_torchscript_file_is_analysed_as_a_whole_on_meta(tmp_path):
    model = Block().eval()
    path = tmp_path / "block.pt"
    torch.jit.save(torch.jit.script(model), path)
    report = api.summary(str(path), SHAPE)
    assert report.totals == api.summary(model, SHAPE).totals
    assert report.extra["device"] == "meta"
    assert [(r.name, r.type) for r in report.layers] == [("(root)", "Block")]
    assert any("hooks are not supported on ScriptModules" in note for note in report.extra["notes"])
    assert registry.default_input(str(path)) == (1, 3, 224, 224)  # a TorchScript archive records no inputs


class ValueBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if bool(y.sum() > 0):
            return y * 2
        return y


def test_a_torchscript_file_whose_forward_needs_values_runs_on_the_cpu(tmp_path):
    path = tmp_path / "branch.ts"
    torch.jit.save(torch.jit.script(ValueBranch()), path)
    report = api.summary(str(path), (1, 3, 8, 8))
    assert report.extra["device"] == "cpu" and report.totals["macs"] == 4 * 6 * 6 * 27
    assert any("cannot run on the meta device" in note for note in report.extra["notes"])


class Trap:
    """Unpickling it in full would create a file: the proof that nothing ran."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


class TrapNet(nn.Sequential):
    def __init__(self, target: str) -> None:
        super().__init__(nn.Conv2d(3, 4, 3))
        self.target = target

    def __setstate__(self, state):
        Path(state["target"]).touch()  # what loading the pickle would run
        super().__setstate__(state)


def test_a_pickled_whole_module_is_refused_in_one_line_and_nothing_in_it_runs(tmp_path):
    target = tmp_path / "ran"
    path = tmp_path / "whole.pt"
    torch.save(TrapNet(str(target)), path)
    result = run_cli("summary", str(path))
    assert_one_line_error(result, "is a pickled test_exported_sources.TrapNet (torch.save(model))", "would run code")
    assert not target.exists()
    with pytest.raises(InspectlabError, match="pickled"):
        api.summary(str(path))


def test_a_pt2_with_a_pickle_inside_is_refused_and_nothing_in_it_runs(tmp_path):
    target = tmp_path / "ran"
    clean = Path(_exported(tmp_path, Scaled(), (torch.randn(1, 3, 8, 8),)))
    poisoned = tmp_path / "poisoned.pt2"
    with zipfile.ZipFile(clean) as source, zipfile.ZipFile(poisoned, "w") as out:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith("data/sample_inputs/model.pt"):  # torch would retry it with weights_only=False
                data = pickle.dumps(((Trap(str(target)),), {}))
            out.writestr(item, data)
    assert_one_line_error(run_cli("summary", str(poisoned)), "data/sample_inputs/model.pt", "running code")
    assert not target.exists()


def test_files_that_hold_no_model_are_one_line_each(tmp_path):
    state = tmp_path / "weights.pth"
    torch.save(Block().state_dict(), state)
    assert_one_line_error(run_cli("summary", str(state)), "holds a state_dict", "this file as --weights")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    assert_one_line_error(run_cli("flops", str(junk)), "is not a model file inspectlab reads")
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.ones(3), tensor)
    assert_one_line_error(run_cli("summary", str(tensor)), "holds a Tensor, not a model")
    assert_one_line_error(run_cli("summary", str(tmp_path / "missing.pt2")), "no such model file")
    path = _exported(tmp_path, Scaled(), (torch.randn(1, 3, 8, 8),))
    assert_one_line_error(run_cli("summary", path, "--arg", "width=2"), "is a saved model: it takes no --arg")


def test_the_commands_take_a_pt2(tmp_path):
    path = _exported(tmp_path, Block(), (torch.randn(SHAPE),))
    for command in (["summary", path, "--depth", "1"], ["flops", path], ["tree", path], ["rf", path],
                    ["graph", path, "-f", "dot"], ["latency", path, "-n", "1", "--warmup", "0"]):
        result = run_cli(*command)
        assert result.exit_code == 0, (command, result.output)
    assert "BatchNorm2d" in run_cli("summary", path, "--depth", "1").output


def test_loading_a_torchscript_file_does_not_repeat_torch_jit_deprecation_warnings(tmp_path):
    path = tmp_path / "block.pt"
    torch.jit.save(torch.jit.script(Block()), path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        api.summary(str(path), SHAPE)
    assert not [w for w in caught if "torch.jit" in str(w.message)]
