"""The columns torchinfo users look for (issue 17 §4): `kernel`, `params_pct`, `trainable`, the full qualified
name (`--names full`, `qualified_name`), each against an independent reference: the module's own attributes,
torch's own parameter counts, the parameters' requires_grad."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch
import torchvision
from torch import nn
from typer.testing import CliRunner

from inspectlab import api
from inspectlab.cli import app
from inspectlab.render.columns import kernel_text

WINDOWED = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.AvgPool2d)


def _pairs(value: int | tuple[int, ...], count: int) -> list[int]:
    return list(value) if isinstance(value, tuple) else [value] * count


def _expected(module: nn.Module) -> dict[str, object]:
    """What the module's own attributes say its window is."""
    size = _pairs(module.kernel_size, 2 if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)) else 1)
    stride = _pairs(module.stride if module.stride is not None else module.kernel_size, len(size))
    dilation = _pairs(getattr(module, "dilation", 1), len(size))
    return {"size": size, "stride": stride, "dilation": dilation, "groups": getattr(module, "groups", 1),
            "transposed": isinstance(module, nn.ConvTranspose2d)}


class Windows(nn.Module):
    """Every kind of window, and a block holding one conv (its kernel shows) or two (none shows)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 64, 3, stride=2, padding=2, dilation=2)
        self.depthwise = nn.Conv2d(64, 64, (3, 5), stride=(2, 1), padding=(1, 2), groups=32)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1, dilation=1)
        self.average = nn.AvgPool2d(2)
        self.up = nn.ConvTranspose2d(64, 16, 4, stride=2, padding=1)
        self.one = nn.Sequential(nn.Conv2d(16, 16, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.two = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1))
        self.temporal = nn.Conv1d(16, 8, 5, stride=3, dilation=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.two(self.one(self.up(self.average(self.pool(self.depthwise(self.stem(x)))))))
        return self.temporal(x.flatten(2))


def test_kernel_is_the_modules_own_window() -> None:
    model = Windows()
    report = api.summary(model, (1, 3, 64, 64), depth=2)
    modules = dict(model.named_modules())
    checked = 0
    for row in report.layers:
        module = modules[row["name"]]
        if isinstance(module, WINDOWED):
            kernel = row["kernel"]
            assert {k: kernel[k] for k in ("size", "stride", "dilation", "groups", "transposed")} == _expected(module)
            checked += 1
    assert checked == 9
    rows = {row["name"]: row for row in report.layers}
    assert kernel_text(rows["stem"]["kernel"]) == "3×3/2 d2" and kernel_text(rows["depthwise"]["kernel"]) == \
        "3×5/2×1 g32"
    assert kernel_text(rows["up"]["kernel"]) == "4×4↑2" and kernel_text(rows["temporal"]["kernel"]) == "5/3 d2"
    assert rows["one"]["kernel"] == rows["one.0"]["kernel"]  # a block with one conv shows it
    assert rows["two"]["kernel"] is None and rows["one.1"]["kernel"] is None  # several, or none


def test_kernel_of_every_torchvision_conv() -> None:
    model = torchvision.models.mobilenet_v3_small()  # depthwise 3×3 and 5×5, strided, pointwise
    report = api.summary(model, (1, 3, 64, 64), depth=10)
    modules = dict(model.named_modules())
    convs = [row for row in report.layers if isinstance(modules[row["name"]], nn.Conv2d)]
    assert len(convs) == sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 52
    for row in convs:
        expected = _expected(modules[row["name"]])
        assert {k: row["kernel"][k] for k in expected} == expected, row["name"]
    assert {row["kernel"]["groups"] for row in convs} > {1}


def test_params_pct_is_a_share_of_torchs_own_count() -> None:
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5))
    rows = api.summary(model, (1, 10), depth=1).layers
    # by hand: 10·20 + 20 = 220 and 20·5 + 5 = 105 of 325
    assert [row["params_pct"] for row in rows] == [pytest.approx(100 * 220 / 325), 0.0, pytest.approx(100 * 105 / 325)]
    resnet = torchvision.models.resnet18()
    total = sum(p.numel() for p in resnet.parameters())
    modules = dict(resnet.named_modules())
    for row in api.summary(resnet, (1, 3, 32, 32), depth=1).layers:
        own = sum(p.numel() for p in modules[row["name"]].parameters())
        assert row["params_pct"] == pytest.approx(100 * own / total)


def test_trainable_follows_requires_grad() -> None:
    model = torchvision.models.resnet18()
    model.conv1.requires_grad_(False)
    model.layer1[0].conv1.requires_grad_(False)  # layer1.0 and layer1 then train partly
    before = [p.requires_grad for p in model.parameters()]
    rows = {row["name"]: row for row in api.summary(model, (1, 3, 32, 32), depth=2).layers}
    assert [p.requires_grad for p in model.parameters()] == before  # the model is left as it was
    modules = dict(model.named_modules())
    for name, row in rows.items():
        flags = {p.requires_grad for p in modules[name].parameters()}
        expected = None if not flags else "yes" if flags == {True} else "no" if flags == {False} else "partial"
        assert row["trainable"] == expected, name
    assert (rows["conv1"]["trainable"], rows["layer1"]["trainable"], rows["layer1.0"]["trainable"],
            rows["layer2"]["trainable"], rows["relu"]["trainable"]) == ("no", "partial", "partial", "yes", None)


def test_columns_and_full_names_on_the_command_line() -> None:
    runner = CliRunner()
    args = ["summary", "tv:resnet18", "--input", "1,3,64,64", "--depth", "3", "--columns",
            "name,qualified_name,kernel,params,params_pct,trainable"]
    leaf = runner.invoke(app, [*args, "--format", "csv"], env={"COLUMNS": None})
    full = runner.invoke(app, [*args, "--format", "markdown", "--names", "full"], env={"COLUMNS": None})
    assert leaf.exit_code == 0 and full.exit_code == 0, leaf.output + full.output
    document = json.loads(runner.invoke(app, [*args[:-2], "--format", "json"]).output)
    rows = {row["name"]: row for row in document["layers"]}
    assert json.loads(next(r for r in csv.DictReader(io.StringIO(leaf.output)) if r["name"] == "layer1.0.conv1")[
        "kernel"])["size"] == [3, 3]
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
             for line in full.output.splitlines()[4:] if line.startswith("|")}
    block = "layer2.0.downsample"  # a conv 1×1/2 (64·128 weights) and its batch norm (2·128): the conv's window
    assert lines[block] == [block, block, "1×1/2", "8,448", f"{rows[block]['params_pct']:.2f}%", "yes"]
    assert rows[block]["params_pct"] == pytest.approx(100 * 8_448 / 11_689_512)
    assert lines["layer1.0.relu#1"][:3] == ["layer1.0.relu#1", "layer1.0.relu#1", ""]
    bad = runner.invoke(app, ["summary", "lenet5", "--names", "short"])
    assert bad.exit_code == 2 and "--names" in bad.output
