"""Receptive fields: the analysis against autograd (an independent reference built here) and hand formulas.

Per-op tests build small *linear* models with positive weights: the gradient of one output unit is then
nonzero exactly on the input pixels it depends on, and is compared with the analytic field of every unit
(clipped to the image). Zoo and torchvision models go through `runtime.empirical_rf`, itself checked
here against the same reference.
"""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

from inspectlab import api
from inspectlab.analysis.receptive_field import FieldMap, call_field, field_rows, receptive_fields
from inspectlab.analysis.rf_interpolate import _fma, interpolation_mode, interpolation_taps
from inspectlab.analysis.rf_tables import PackedTable
from inspectlab.core.checkpoints import load_into as load_weights
from inspectlab.runtime.effective_rf import mass_radius
from inspectlab.runtime.empirical_rf import check_fields, linear_positive_copy

torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------------
# reference: autograd on a linear positive model


def positive(model: nn.Module, seed: int = 0) -> nn.Module:
    """Positive random weights (no cancellation), float64, eval."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand(p.shape, generator=generator, dtype=p.dtype) + 0.5)
    return model.double().eval()


def support(grad: torch.Tensor, dim: int) -> tuple[int, int] | None:
    line = grad.abs().amax(dim=[d for d in range(grad.dim()) if d != dim])
    hits = torch.nonzero(line > 0).flatten()
    return (int(hits[0]), int(hits[-1])) if hits.numel() else None


def analyse(model: nn.Module, shape: tuple[int, ...]) -> tuple[FieldMap, int]:
    traced = api.trace(model, shape)
    return receptive_fields(traced), traced.outputs[0]


def clipped(span: tuple[float, float] | None, extent: int) -> tuple[int, int] | None:
    if span is None or span[1] < 0 or span[0] > extent - 1:
        return None
    return max(math.ceil(span[0]), 0), min(math.floor(span[1]), extent - 1)


def assert_every_unit(model: nn.Module, shape: tuple[int, ...], output: int = 0) -> FieldMap:
    """Every unit's analytic field (each axis, clipped) equals the autograd support of that unit."""
    model = positive(model)
    fields, _ = analyse(model, shape)
    out_id = fields.trace.outputs[output]
    info = fields.of(out_id)
    x = torch.ones(shape, dtype=torch.float64, requires_grad=True)
    y = model(x)
    y = y[output] if isinstance(y, (tuple, list)) else y
    dims = fields.spatial_dims
    assert [a.dim for a in info.axes] == [y.dim() - len(dims) + k for k in range(len(dims))]
    sizes = [y.shape[a.dim] for a in info.axes]
    if not all(any(math.isfinite(v) for v in a.table[4]) for a in info.axes):
        # no output unit reads an input pixel (every tap lands in the padding): autograd must agree
        grad = torch.autograd.grad(y.sum(), x, allow_unused=True)[0]
        assert grad is None or not grad.abs().sum(), "the analysis says no unit reads the input"
        return fields
    middle = [_middle(a.table[4]) for a in info.axes]  # a unit that depends on something, near the centre
    for k in range(len(info.axes)):
        for unit in range(sizes[k]):
            index = list(middle)
            index[k] = unit
            grad = torch.autograd.grad(y[(0, slice(None), *index)].sum(), x, retain_graph=True)[0]
            expected = support(grad, dims[k])
            spans = info.unit(index, actual=True)
            got = None if None in spans else (int(spans[k][0]), int(spans[k][1]))
            assert got is None or clipped(info.unit(index)[k], shape[dims[k]]) is not None
            assert got == expected, f"axis {k} unit {unit}: analytic {got} != autograd {expected}"
    return fields


def _middle(first_pixels: object) -> int:
    units = [i for i, v in enumerate(first_pixels) if math.isfinite(v)]  # type: ignore[call-overload, arg-type]
    return min(units, key=lambda i: abs(i - (len(first_pixels) - 1) / 2))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# anchors and hand formulas


def chain(layers: list[tuple[int, int, int]], r: float = 1, j: float = 1) -> tuple[float, float]:
    """r' = r + (k-1)·d·j, j' = j·s over (kernel, stride, dilation) layers."""
    for k, s, d in layers:
        r, j = r + (k - 1) * d * j, j * s
    return r, j


def resnet_chain(blocks: list[int], bottleneck: bool) -> list[tuple[float, float]]:
    """Main path of torchvision ResNets (stride on the first 3x3 of a stage): field and stride per stage."""
    r, j = chain([(7, 2, 1), (3, 2, 1)])
    stages = []
    for stage, count in enumerate(blocks):
        for block in range(count):
            stride = 2 if stage > 0 and block == 0 else 1
            convs = [(3, stride, 1)] if bottleneck else [(3, stride, 1), (3, 1, 1)]
            r, j = chain(convs, r, j)
        stages.append((r, j))
    return stages


def test_resnet50_anchors() -> None:
    report = api.receptive_field("tv:resnet50", (1, 3, 224, 224), layers="layer?")
    got = {row["name"]: (row["rf"], row["stride"], row["rf_min"]) for row in report.layers}
    assert got == {
        "layer1": ([35, 35], [4, 4], [11, 11]), "layer2": ([91, 91], [8, 8], [11, 11]),
        "layer3": ([267, 267], [16, 16], [11, 11]), "layer4": ([427, 427], [32, 32], [11, 11]),
    }  # rf_min: the shortcuts' 1x1 convs add nothing to conv1 + maxpool = 7 + 2·2
    assert report.totals["global"] is True and report.totals["rf"] == [427, 427]


@pytest.mark.parametrize("spec,blocks,bottleneck", [
    ("tv:resnet18", [2, 2, 2, 2], False), ("resnet34", [3, 4, 6, 3], False), ("resnet101", [3, 4, 23, 3], True),
    ("resnet152", [3, 8, 36, 3], True),
])
def test_resnets_follow_the_chain_formula(spec: str, blocks: list[int], bottleneck: bool) -> None:
    rows = {r["name"]: r for r in api.receptive_field(spec, (1, 3, 64, 64), depth=1).layers}
    for stage, (r, j) in enumerate(resnet_chain(blocks, bottleneck), start=1):
        assert rows[f"layer{stage}"]["rf"] == [r, r] and rows[f"layer{stage}"]["stride"] == [j, j]


def test_vgg16_is_212() -> None:
    layers = []
    for convs in (2, 2, 3, 3, 3):
        layers += [(3, 1, 1)] * convs + [(2, 2, 1)]
    r, j = chain(layers)
    rows = {row["name"]: row for row in api.receptive_field("tv:vgg16", (1, 3, 224, 224), depth=1).layers}
    assert r == 212 and rows["features"]["rf"] == [212, 212] and rows["features"]["stride"] == [j, j] == [32, 32]


def test_unet_min_and_max_paths() -> None:
    rows = {r["name"]: r for r in api.receptive_field("unet", (1, 3, 256, 256), depth=1).layers}
    # shortest path: in_conv (two 3x3: 5 px) -> skip -> up4's two 3x3 (+4) -> 1x1
    assert rows["out_conv"]["rf_min"] == [9, 9]
    # the encoder is a plain chain: maxpool 2x2 then two 3x3 per stage
    r, j = 5, 1
    for stage in range(1, 5):
        r, j = chain([(2, 2, 1), (3, 1, 1), (3, 1, 1)], r, j)
        assert rows[f"down{stage}"]["rf"] == [r, r] and rows[f"down{stage}"]["stride"] == [j, j]
    assert rows["out_conv"]["rf"][0] > rows["down4"]["rf"][0]  # the long path through the bottleneck


# ------------------------------------------------------------------------------------------------
# every op rule against autograd, at every unit


class Seq(nn.Sequential):
    """Layers in a row."""


class Around(nn.Module):
    """A strided conv, a function of its output (the op under test), a 3x3 conv."""

    def __init__(self, edit: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.before = nn.Conv2d(2, 2, 3, 2, 1)
        self.after = nn.Conv2d(2, 2, 3, padding=1)
        self.edit = edit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after(self.edit(self.before(x)))


@pytest.mark.parametrize("layers,shape", [
    ([nn.Conv2d(2, 4, (3, 5), (2, 1), (1, 3), (2, 1), groups=2), nn.Conv2d(4, 2, 1)], (1, 2, 19, 13)),
    ([nn.Conv2d(2, 2, 3, 3, 0, 3), nn.Conv2d(2, 2, 2, 1, 1)], (1, 2, 23, 17)),
    ([nn.Conv2d(2, 2, 3, padding=1), nn.ConvTranspose2d(2, 2, 3, 2, 1, output_padding=1)], (1, 2, 9, 7)),
    ([nn.ConvTranspose2d(2, 2, 4, 2, 1), nn.ConvTranspose2d(2, 2, 2, 2), nn.Conv2d(2, 2, 3, padding=1)],
     (1, 2, 5, 4)),
    ([nn.ConvTranspose2d(2, 2, 3, 3, 2, dilation=2), nn.Conv2d(2, 2, 3, 2)], (1, 2, 6, 5)),
    ([nn.Conv2d(2, 2, 3), nn.AvgPool2d(3, 2, 1, ceil_mode=True), nn.AvgPool2d((2, 3), (2, 1))], (1, 2, 20, 15)),
    ([nn.Conv2d(2, 2, 3, 2), nn.AdaptiveAvgPool2d((5, 3))], (1, 2, 24, 18)),
    ([nn.Conv2d(2, 8, 3, 2, 1), nn.PixelShuffle(2), nn.Conv2d(2, 4, 3), nn.PixelUnshuffle(2)], (1, 2, 16, 12)),
    ([nn.Conv1d(2, 2, 5, 2, 2, 2), nn.Conv1d(2, 2, 3)], (1, 2, 31)),
])
def test_window_ops_match_autograd(layers: list[nn.Module], shape: tuple[int, ...]) -> None:
    assert_every_unit(Seq(*layers), shape)


@pytest.mark.parametrize("resize", [
    lambda x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False),
    lambda x: F.interpolate(x, size=(23, 17), mode="bilinear", align_corners=False),
    lambda x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True),
    lambda x: F.interpolate(x, scale_factor=1.5, mode="nearest"),
    lambda x: F.interpolate(x, size=(19, 13), mode="nearest-exact"),
    lambda x: F.interpolate(x, size=(17, 21), mode="bicubic", align_corners=False),
    lambda x: F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True),
])
def test_interpolation_matches_autograd(resize: Callable[[torch.Tensor], torch.Tensor]) -> None:
    assert_every_unit(Around(resize), (1, 2, 16, 12))


@pytest.mark.parametrize("edit", [
    lambda y: F.pad(y, [1, 2, 3, 0]),
    lambda y: F.pad(y, [-1, 2, 0, -2]),
    lambda y: F.pad(y, [2, 1, 1, 2], mode="reflect"),
    lambda y: F.pad(y, [3, 0, 0, 3], mode="replicate"),
    lambda y: y[:, :, 1::2, ::3],
    lambda y: y.flip(-1)[:, :, 2:-1],
    lambda y: torch.cat([y, y.flip(-2)], dim=-1),
    lambda y: torch.cat([y[:, :1], F.avg_pool2d(y[:, 1:], 3, 1, 1)], dim=1),
    lambda y: y.permute(0, 1, 3, 2).contiguous().transpose(2, 3),
    lambda y: y.unsqueeze(1).flatten(1, 2).view(y.shape),
    lambda y: torch.stack([y, y * 2], 0).sum(0),
    lambda y: torch.chunk(y, 2, dim=-2)[1],
])
def test_index_ops_match_autograd(edit: Callable[[torch.Tensor], torch.Tensor]) -> None:
    assert_every_unit(Around(edit), (1, 2, 20, 14))


class TwoPaths(nn.Module):
    """A short path (one 3x3) and a long one (three 3x3), added."""

    def __init__(self) -> None:
        super().__init__()
        self.short = nn.Conv2d(2, 2, 3, padding=1)
        self.long = nn.Sequential(*[nn.Conv2d(2, 2, 3, padding=1) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.short(x) + self.long(x)


def test_merge_is_the_union_and_keeps_the_shortest_path() -> None:
    fields = assert_every_unit(TwoPaths(), (1, 2, 16, 16))
    info = fields.of(fields.trace.outputs[0])
    assert info.size == (7, 7) and info.size_min == (3, 3)


class Recurrent(nn.Module):
    """A state starting at zero: the product with it carries no field (as in the matting ConvGRU)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = nn.Conv2d(2, 2, 7, padding=3)
        self.value = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = x.new_zeros(x.shape)
        return self.gate(x) * state + self.value(x)


def test_product_with_a_zero_state_has_no_field() -> None:
    fields = assert_every_unit(Recurrent(), (1, 2, 12, 12))
    assert fields.of(fields.trace.outputs[0]).size == (3, 3)


class SE(nn.Module):
    def __init__(self, gate: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.fc = nn.Conv2d(4, 4, 1)
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y * self.fc(F.adaptive_avg_pool2d(y, 1)) if self.gate else y


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 8, 5, padding=2)
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        tokens = y.flatten(2).transpose(1, 2)
        out, _ = self.attention(tokens, tokens, tokens)
        return out.transpose(1, 2).reshape(y.shape) + y


@pytest.mark.parametrize("model,local", [(SE(), 3), (Attention(), 5)])
def test_global_paths_are_flagged_with_the_local_field_beside(model: nn.Module, local: int) -> None:
    fields, out = analyse(model, (1, 2, 10, 10))
    info = fields.of(out)
    assert info.is_global and info.size == (local, local)
    positive(model)
    x = torch.ones((1, 2, 10, 10), dtype=torch.float64, requires_grad=True)
    y = model(x)
    grad = torch.autograd.grad(y[0, :, 0, 0].sum(), x)[0]
    assert support(grad, 2) == (0, 9) and support(grad, 3) == (0, 9)  # a corner unit sees every pixel


def test_flatten_then_linear_is_global() -> None:
    rows = {r.name: r.field for r in field_rows(receptive_fields(api.trace("lenet5", (1, 1, 32, 32))))}
    assert not rows["flatten"].is_global and rows["flatten"].size == (16, 16)
    assert rows["fc1"].is_global and rows["fc1"].size == (16, 16)


class Gathers(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = torch.arange(x.shape[-1] - 1, -1, -1, device=x.device)
        return x[:, :, :, index] * 2


def test_an_op_without_rule_is_reported_not_guessed() -> None:
    fields, out = analyse(Gathers(), (1, 2, 8, 8))
    assert fields.of(out).unknown is not None and fields.of(out).size is None
    assert [n.kind for n in fields.notes] == ["no-rule"] and "aten.index" in fields.notes[0].text


class Misaligned(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fine = nn.Conv2d(2, 2, 3, padding=1)
        self.coarse = nn.Conv2d(2, 2, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(self.coarse(x), scale_factor=2, mode="bilinear", align_corners=False)
        return self.fine(x) + up


def test_misaligned_merge_is_noted_with_its_offset() -> None:
    fields, _ = analyse(Misaligned(), (1, 2, 16, 16))
    (note,) = [n for n in fields.notes if n.kind == "misaligned"]
    # coarse unit u is centred on pixel 2u; bilinear output o reads units floor(o/2 - 1/4) and the next:
    # centres 2(m - 1/2) = o - 1 for o = 2m, 2(m + 1/2) = o for o = 2m + 1; median offset -1/2 px
    assert note.offsets == ((0.0, 0.0), (-0.5, -0.5))


@settings(max_examples=25, deadline=None)
@example([("conv", 1, 3, 0, 1), ("conv", 2, 2, 0, 2), ("conv", 2, 1, 1, 2)], 12)  # every tap in the padding
@given(st.lists(st.tuples(st.sampled_from(["conv", "pool", "convT"]), st.integers(1, 4), st.integers(1, 3),
                          st.integers(0, 2), st.integers(1, 2)), min_size=1, max_size=3),
       st.integers(12, 24))
def test_random_stacks_match_autograd(specs: list[tuple[str, int, int, int, int]], size: int) -> None:
    layers: list[nn.Module] = []
    for kind, k, s, p, d in specs:
        p = min(p, (k - 1) * d // 2)
        if kind == "conv":
            layers.append(nn.Conv2d(2, 2, k, s, p, d))
        elif kind == "pool":
            layers.append(nn.AvgPool2d(k, s, min(p, k // 2)))
        else:
            layers.append(nn.ConvTranspose2d(2, 2, k, s, p, dilation=d))
    model = Seq(*layers)
    try:
        model(torch.zeros(1, 2, size, size))
    except RuntimeError:
        return  # the stack shrinks the input to nothing
    assert_every_unit(model, (1, 2, size, size))


# ------------------------------------------------------------------------------------------------
# the empirical module (linear positive copy) against the analysis


def test_linear_copy_leaves_the_model_alone() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU()).train()
    before = [t.clone() for t in model.state_dict().values()]
    copy = linear_positive_copy(model)
    assert model.training and all(torch.equal(a, b) for a, b in zip(before, model.state_dict().values(), strict=True))
    assert not copy.training and torch.all(copy[0].weight == 1 / 9) and torch.all(copy[0].bias == 0)


def test_max_pooling_checked_as_average() -> None:
    model = Seq(nn.Conv2d(2, 2, 3), nn.MaxPool2d(3, 2, 1, dilation=2), nn.MaxPool2d(2, ceil_mode=True))
    fields, _ = analyse(model, (1, 2, 29, 23))
    rows = field_rows(fields)
    checks = check_fields(model, fields, rows, (1, 2, 29, 23), units=("first", "centre", "last"))
    assert checks and all(c.match for c in checks)


class Driven(nn.Module):
    """A ModuleList driven from the parent's forward, with functional code between its calls: its implicit
    row's outputs include a tensor no module call returns."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 5, padding=2)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.convs[0](x) * 2
        return a + self.convs[1](a)


def test_rows_no_hook_can_reach_are_skipped() -> None:
    model = Driven()
    fields, _ = analyse(model, (1, 2, 16, 16))
    checks = check_fields(model, fields, field_rows(fields), (1, 2, 16, 16))
    unreachable = [c for c in checks if not c.reachable]
    assert [c.name for c in unreachable] == ["convs[0]"] and not unreachable[0].match
    assert all(c.match for c in checks if c.reachable) and len(checks) == 5  # root, convs[0], convs[1], convs.0, .1


@pytest.mark.parametrize("spec,size,layers,units,args", [
    ("lenet5", 32, None, ("first", "centre", "last"), {}),
    ("unet", 256, "*", ("centre",), {"base_c": 8}),
    ("unet_transposed", 256, "*", ("centre",), {"base_c": 8}),
    ("tv:resnet18", 256, "layer?", ("first", "last"), {}),
    ("mobilenet_v3_small", 320, "features", ("first", "last"), {}),
    ("tv:mobilenet_v3_large", 608, "*", ("centre",), {}),
])
def test_zoo_models_match_autograd(spec: str, size: int, layers: str | None, units: tuple[str, ...],
                                   args: dict[str, int]) -> None:
    channels = 1 if spec == "lenet5" else 3
    shape = (1, channels, size, size)
    fields = receptive_fields(api.trace(spec, shape, args=args))
    rows = field_rows(fields, depth=1 if layers else None, layers=layers)
    checks = check_fields(api.build_model(spec, args, "cpu"), fields, rows, shape, units=units)
    assert checks and all(c.match for c in checks), [c for c in checks if not c.match]


def test_unet_long_path_measured() -> None:
    """The UNet output's largest field (bilinear, align_corners=True: unevenly placed units) is attained."""
    shape = (1, 3, 256, 256)
    fields = receptive_fields(api.trace("unet", shape, args={"base_c": 8}))
    (row,) = field_rows(fields, layers="out_conv")
    (check,) = check_fields(api.build_model("unet", {"base_c": 8}, "cpu"), fields, [row], shape)
    assert check.match and check.fits and check.size == [row.field.size[0], row.field.size[1]] == [236, 236]


@pytest.mark.slow
def test_resnet50_anchors_measured() -> None:
    shape = (1, 3, 448, 448)
    fields = receptive_fields(api.trace("tv:resnet50", shape))
    rows = field_rows(fields, layers="layer?")
    checks = check_fields(api.build_model("tv:resnet50", None, "cpu"), fields, rows, shape)
    assert [(c.name, c.size, c.fits, c.match) for c in checks] == [
        (f"layer{i}", [r, r], True, True) for i, r in enumerate((35, 91, 267, 427), start=1)]


@pytest.mark.slow
@pytest.mark.parametrize("spec,size,depth,units", [
    ("tv:vgg16", 224, 1, ("centre",)),
    ("mobilenet_v3_large", 608, 2, ("centre",)),
    ("lraspp_mobilenet_v3_large", 704, 1, ("centre",)),
    ("matting_mobilenetv3", 416, 1, ("first", "last")),
    ("hrnetv2_w18", 224, 2, ("first", "centre", "last")),
    ("deeplabv3plus_mobilenet_v3_large", 672, 1, ("first", "last")),
    ("deeplabv3plus_resnet50", 544, 1, ("first", "last")),
])
def test_more_models_match_autograd(spec: str, size: int, depth: int, units: tuple[str, ...]) -> None:
    shape = (1, 3, size, size)
    fields = receptive_fields(api.trace(spec, shape))
    rows = field_rows(fields, depth=depth)
    checks = check_fields(api.build_model(spec, None, "cpu"), fields, rows, shape, units=units)
    assert checks and all(c.match for c in checks), [c for c in checks if not c.match]


def test_hrnet_widths_share_their_geometry() -> None:
    """W18, W32 and W48 differ in channels only: their fields are the same everywhere."""
    tables = []
    for spec in ("hrnetv2_w18", "hrnetv2_w48"):
        fields = receptive_fields(api.trace(spec, (1, 3, 64, 64)))
        tables.append([(r.name, r.as_dict()["rf"], r.as_dict()["padding"]) for r in field_rows(fields, depth=2)])
    assert tables[0] == tables[1]


# ------------------------------------------------------------------------------------------------
# effective receptive field


def test_mass_radius_of_a_point_and_a_ring() -> None:
    heat = torch.zeros(21, 21).numpy()
    heat[10, 10] = 1.0
    assert mass_radius(heat, (10, 10), 0.5) == 0.0
    heat[10, 15] = 3.0  # 75% of the mass at distance 5
    assert mass_radius(heat, (10, 10), 0.5) == 5.0 and mass_radius(heat, (10, 10), 0.2) == 0.0


def test_weights_are_loaded_strictly(tmp_path: object) -> None:
    from pathlib import Path

    from inspectlab.core.errors import InspectlabError

    model = api.build_model("lenet5", None, "cpu")
    path = Path(str(tmp_path)) / "w.pt"
    state = {k: torch.full_like(v, 0.5) for k, v in model.state_dict().items()}
    torch.save({"state_dict": state}, path)
    load_weights(model, str(path))
    assert torch.all(model.conv1.weight == 0.5)
    del state["fc3.bias"]
    torch.save(state, path)
    with pytest.raises(InspectlabError, match="1 missing"):
        load_weights(model, str(path))


def test_call_field_of_the_root_is_the_output_field() -> None:
    fields = receptive_fields(api.trace("tv:resnet18", (1, 3, 64, 64)))
    root = fields.trace.calls[0]
    assert call_field(fields, root) is fields.of(fields.trace.outputs[0])


# ------------------------------------------------------------------------------------------------
# interpolation supports: the closed form (rf_interpolate.py) against torch's own kernel on one-hot inputs

_SCALE_ARGS = {1: ("scales",), 2: ("scales_h", "scales_w"), 3: ("scales_d", "scales_h", "scales_w")}
_RESIZES = [  # (packet, count, has align_corners)
    ("upsample_nearest1d", 1, False), ("_upsample_nearest_exact1d", 1, False), ("upsample_linear1d", 1, True),
    ("upsample_nearest2d", 2, False), ("_upsample_nearest_exact2d", 2, False), ("upsample_bilinear2d", 2, True),
    ("upsample_bicubic2d", 2, True), ("_upsample_bilinear2d_aa", 2, True), ("_upsample_bicubic2d_aa", 2, True),
    ("upsample_nearest3d", 3, False), ("_upsample_nearest_exact3d", 3, False), ("upsample_trilinear3d", 3, True),
]


def torch_support(packet: str, count: int, axis: int, n_in: int, n_out: int, align: bool | None,
                  scale: float | None, units: np.ndarray) -> np.ndarray:
    """(n_out, len(units)) booleans: does output unit o read input unit `units[j]` along `axis`? torch's CPU
    kernel on float64 one-hot inputs (one channel per unit), the other axes resized from 2 units to 2."""
    overload = getattr(torch.ops.aten, packet).default
    one_hot = torch.zeros(len(units), n_in, dtype=torch.float64)
    one_hot[torch.arange(len(units)), torch.as_tensor(units)] = 1.0
    shape = [n_in if d == axis else 1 for d in range(count)]
    one_hot = one_hot.reshape(1, len(units), *shape).expand(
        1, len(units), *[n_in if d == axis else 2 for d in range(count)]).contiguous()
    names = [a.name for a in overload._schema.arguments]
    kwargs = {"align_corners": bool(align)} if "align_corners" in names else {}
    kwargs.update({name: scale if d == axis else None for d, name in enumerate(_SCALE_ARGS[count])})
    out = overload(one_hot, [n_out if d == axis else 2 for d in range(count)], **kwargs)
    return (out[(0, slice(None), *[slice(None) if d == axis else 0 for d in range(count)])] != 0).T.numpy()


def closed_support(packet: str, count: int, n_in: int, n_out: int, align: bool | None, scale: float | None,
                   units: np.ndarray) -> np.ndarray:
    """The same booleans from interpolation_taps."""
    taps, mask = interpolation_taps(interpolation_mode("aten." + packet), count, n_in, n_out, align, scale)
    assert taps.shape == mask.shape and taps.shape[0] == n_out
    assert taps[mask].min(initial=0) >= 0 and taps[mask].max(initial=0) < n_in
    column = np.full(n_in, -1)
    column[units] = np.arange(len(units))
    support = np.zeros((n_out, len(units)), dtype=bool)
    rows = np.broadcast_to(np.arange(n_out)[:, None], taps.shape)
    picked = mask & (column[taps] >= 0)
    support[rows[picked], column[taps[picked]]] = True
    return support


def _resize_cases(seed: int, count: int) -> list[tuple[int, int, float | None]]:
    """Sizes around the kernels' special cases (1, n_out = n_in, 2·n_in, the small-output path at H + W <=
    128) and random sizes with an explicit scale (as F.interpolate(scale_factor=...) passes it)."""
    rng = random.Random(seed)
    cases: list[tuple[int, int, float | None]] = [
        (n_in, n_out, None) for n_in in (1, 2, 3, 5, 8, 13, 31, 64, 127)
        for n_out in (1, 2, 3, 4, 7, 16, 25, 62, 63, 64, 125, 126, 127, 254, 255)]
    # where the last bit of a coordinate or weight decided, in one build or the other
    cases += [(29, 87, 3.0), (297, 109, 0.37), (100, 12, None), (130, 126, None), (10, 6, None), (2, 10, None)]
    for _ in range(80 if count < 3 else 30):
        n_in = rng.randint(1, 260)
        scale = rng.choice([2.0, 0.5, 1.5, 3.0, 1 / 3, 0.37, 2.7, 1.0001, 0.9999, round(rng.uniform(0.1, 5), 4)])
        cases.append((n_in, max(1, math.floor(n_in * scale)), scale))
    return cases


@pytest.mark.parametrize("packet,count,aligns", _RESIZES, ids=[r[0] for r in _RESIZES])
def test_interpolation_support_is_torchs(packet: str, count: int, aligns: bool) -> None:
    """Every output unit's taps of nonzero weight equal those of torch's kernel, over ~200 sizes and scales
    per op: borders, clamped taps, taps of weight 0, float32 rounding in floorf, fused multiply-adds."""
    rng = random.Random(packet)
    for n_in, n_out, scale in _resize_cases(len(packet), count):
        if "_aa" in packet and n_out < n_in / 40:
            continue  # (a very wide filter: slow to probe, nothing new)
        for align in ((False, True) if aligns else (None,)):
            axis = rng.randrange(count)
            units = np.arange(n_in)
            try:
                expected = torch_support(packet, count, axis, n_in, n_out, align, scale, units)
            except RuntimeError:
                continue  # a size torch refuses
            got = closed_support(packet, count, n_in, n_out, align, scale, units)
            differ = np.flatnonzero((got != expected).any(1))
            o = differ[0] if differ.size else None
            assert o is None, (f"{packet} {n_in}->{n_out} align={align} scale={scale}: output {o} reads "
                               f"{np.flatnonzero(got[o])}, torch {np.flatnonzero(expected[o])}")


@pytest.mark.parametrize("packet,n_in,n_out,align,scale", [
    ("upsample_bilinear2d", 8192, 16384, True, 2.0), ("upsample_bilinear2d", 15000, 30000, True, 2.0),
    ("upsample_bilinear2d", 12345, 17777, False, None), ("upsample_bilinear2d", 16384, 5000, False, None),
    ("upsample_nearest2d", 15000, 30000, None, 2.0), ("upsample_nearest2d", 12345, 17777, None, None),
    ("_upsample_nearest_exact2d", 20000, 7400, None, 0.37), ("upsample_bicubic2d", 7001, 21003, True, 3.0),
    ("upsample_bicubic2d", 16384, 30000, False, None), ("_upsample_bilinear2d_aa", 16384, 10000, False, None),
    ("_upsample_bicubic2d_aa", 30000, 29999, True, None), ("upsample_linear1d", 30000, 29999, False, None),
])
def test_interpolation_support_is_torchs_at_large_sizes(packet: str, n_in: int, n_out: int, align: bool | None,
                                                        scale: float | None) -> None:
    """At sizes where float32 rounding and the last bit of the coordinate bite: input units sampled at both
    borders, in the middle and at random, every output unit."""
    rng = random.Random(n_in)
    units = np.unique(np.concatenate([np.arange(24), np.arange(n_in - 24, n_in), n_in // 2 + np.arange(-12, 12),
                                      np.array([rng.randrange(n_in) for _ in range(24)])]))
    count = 1 if "1d" in packet else 2
    expected = torch_support(packet, count, count - 1, n_in, n_out, align, scale, units)
    assert np.array_equal(closed_support(packet, count, n_in, n_out, align, scale, units), expected)


def test_interpolation_support_is_torchs_on_the_portable_build() -> None:
    """The same sweep under torch's portable kernels (ATEN_CPU_CAPABILITY=default: no fused multiply-adds),
    where the last bit of some coordinates differs: the closed form asks torch which arithmetic it does."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    names = ["upsample_linear1d", "upsample_bilinear2d", "upsample_bicubic2d", "_upsample_bicubic2d_aa",
             "_upsample_nearest_exact2d"]
    selected = [f"{__file__}::test_interpolation_support_is_torchs[{name}]" for name in names]
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selected], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]


def test_fused_multiply_add_is_rounded_once() -> None:
    """_fma(a, b, c) is a·b + c rounded once: Python's int division rounds the exact rational correctly."""
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.uniform(0, 4, 3000), 1 / rng.integers(1, 5000, 1000), [0.2, 1 / 3, 2.0, 0.0]])
    b = np.concatenate([rng.integers(0, 40000, a.size - 4) + 0.5, [2.5, 1.5, 3.5, 7.5]])
    for c in (-0.5, 1.0, -3.0):
        fused = _fma(a, b, c)
        exact = [float(Fraction(x) * Fraction(y) + Fraction(c)) for x, y in zip(a.tolist(), b.tolist(), strict=True)]
        assert fused.tolist() == exact
    assert _fma(np.array([0.2]), np.array([2.5]), -0.5)[0] == 2.0 ** -55  # 0.0 when rounded twice


def test_packed_tables_give_back_the_same_bits() -> None:
    rng = np.random.default_rng(1)
    n = 5000
    units = np.arange(n, dtype=np.float64)
    tables = [np.stack([units] * 6), np.stack([units - 3, units + 4, units - 1, units + 1, units - 3, units + 4])]
    ragged = tables[1].copy()
    ragged[4, :7] = np.inf
    ragged[5, :7] = -np.inf
    ragged[0, -3:] += 0.1  # not a float32
    ragged[2] = np.floor(units * 0.37)  # dense, whole numbers
    ragged[3, 100] = -0.0
    ragged[1] = rng.normal(size=n) * 1e9
    tables += [ragged, np.zeros((6, 0)), np.full((6, 1), np.inf)]
    for table in tables:
        packed = PackedTable(table)
        back = packed.unpack()
        assert back.shape == table.shape and back.dtype == np.float64
        assert np.array_equal(back.view(np.int64), table.view(np.int64))
        for row, position in [(r, p) for r in range(6) for p in (0, 5, 100, n - 1) if p < table.shape[1]]:
            assert packed.value(row, position) == table[row, position]
    one_path = np.stack([units - 3, units + 4] * 3)  # a plain stack: one path, padding at the borders only
    one_path[4, :3] = 0
    one_path[5, -4:] = n - 1
    assert PackedTable(one_path).nbytes < one_path.nbytes / 5
