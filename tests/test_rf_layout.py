"""Receptive fields through layout ops (issue 14 §1, §3): NHWC blocks, tokens, windows, and the invariants
the walk checks on every op. Each field is proven against autograd support, every unit of every axis for
the small models (`assert_every_unit`), the rows of torchvision's and timm's ConvNeXt through
`runtime.empirical_rf.check_fields`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_receptive_field import analyse, assert_every_unit, positive, support
from torch import nn
from toy_models import ConvNeXtBlock

from inspectlab import api
from inspectlab.analysis import receptive_field as rf_module
from inspectlab.analysis.receptive_field import FieldMap, FieldRow, field_rows, receptive_fields
from inspectlab.analysis.rf_checks import coarsest_stride, extent_problem, growth_problem, merge_problem
from inspectlab.analysis.rf_fields import AxisField, FieldInfo, identity_table
from inspectlab.analysis.rf_layout import reshape_pieces
from inspectlab.runtime.empirical_rf import check_fields

torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------------
# models


class Tokens(nn.Module):
    """Patch embedding, tokens from flatten(2).transpose(1, 2), a LayerNorm and Linear over channels, back to
    a grid with transpose + reshape, then a 3×3 conv: the tokens keep their grid positions."""

    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.embed = nn.Conv2d(2, channels, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(channels)
        self.fc = nn.Linear(channels, channels)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.embed(x)
        n, c, h, w = y.shape
        tokens = self.fc(self.norm(y.flatten(2).transpose(1, 2)))
        return self.conv(tokens.transpose(1, 2).reshape(n, c, h, w) + y)


def partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """Swin's window partition: (N, H, W, C) -> (N·H/w·W/w, w·w, C)."""
    n, h, w, c = x.shape
    x = x.view(n, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def merge(windows: torch.Tensor, window: int, n: int, h: int, w: int) -> torch.Tensor:
    """Swin's window merge, the inverse of `partition`."""
    x = windows.view(n, h // window, w // window, window, window, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h, w, -1)


class Windows(nn.Module):
    """A conv, NHWC, window partition, LayerNorm + Linear per window token, window merge, NCHW, a conv, a
    residual: each pixel keeps its field through the windows."""

    def __init__(self, channels: int = 4, window: int = 4, attend: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, channels, 3, padding=1)
        self.norm = nn.LayerNorm(channels)
        self.fc = nn.Linear(channels, channels)
        self.attention = nn.MultiheadAttention(channels, 1, batch_first=True) if attend else None
        self.out = nn.Conv2d(channels, channels, 5, padding=2)
        self.window = window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        n, _, h, w = y.shape
        windows = self.fc(self.norm(partition(y.permute(0, 2, 3, 1), self.window)))
        if self.attention is not None:
            windows = self.attention(windows, windows, windows, need_weights=False)[0]
        z = merge(windows, self.window, n, h, w).permute(0, 3, 1, 2)
        return self.out(z) + y


class TokenMixer(nn.Module):
    """MLP-Mixer's token mixing: a Linear over the token dim mixes every position (global)."""

    def __init__(self, tokens: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.mix = nn.Linear(tokens, tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        mixed = self.mix(y.flatten(2))  # (N, C, H·W) -> Linear over H·W
        return mixed.view(y.shape) + y


class Edit(nn.Module):
    def __init__(self, edit: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.edit = edit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.edit(self.conv(x))


class PerPixelProduct(nn.Module):
    """A bmm whose batch is the positions (N·H·W small products of channels): pointwise in space."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        n, c, h, w = y.shape
        rows = y.permute(0, 2, 3, 1).reshape(-1, 1, c)
        return torch.bmm(rows, rows.transpose(1, 2)).view(n, h, w, 1).permute(0, 3, 1, 2) + y


def conv1d_over_tokens(y: torch.Tensor) -> torch.Tensor:
    return F.conv1d(y.flatten(2), torch.ones(4, 4, 3), padding=1)  # neighbours across row ends: not followed


def uneven_view(y: torch.Tensor) -> torch.Tensor:
    return y.flatten(2).view(1, 4, 4, 9) * 2  # 6×6 positions as 4×9: rows split unevenly


# ------------------------------------------------------------------------------------------------
# §1: the walk follows the axes


def test_convnext_block_with_and_without_residual() -> None:
    """Was 1×1 with the residual (the NHWC Linear folded the axes, and the add dropped the folded side)."""
    for residual in (True, False):
        fields = assert_every_unit(ConvNeXtBlock(residual=residual), (1, 4, 12, 12))
        info = fields.of(fields.trace.outputs[0])
        assert info.size == (7, 7) and info.stride == (1, 1) and not info.is_global and not info.unknown
        assert not fields.notes


def test_a_batch_of_per_pixel_products_is_pointwise() -> None:
    fields = assert_every_unit(PerPixelProduct(), (1, 2, 6, 7))
    info = fields.of(fields.trace.outputs[0])
    assert info.size == (3, 3) and not info.is_global


def test_two_convnext_blocks_add_up() -> None:
    fields = assert_every_unit(nn.Sequential(ConvNeXtBlock(), ConvNeXtBlock()), (1, 4, 16, 16))
    assert fields.of(fields.trace.outputs[0]).size == (13, 13)


def test_tokens_keep_their_grid_positions() -> None:
    fields = assert_every_unit(Tokens(), (1, 2, 12, 12))
    info = fields.of(fields.trace.outputs[0])
    assert info.size == (7, 7) and info.stride == (2, 2)  # 3×3 at stride 2, then 3×3: 3 + 2·2


@pytest.mark.parametrize("model,module,shape", [
    (Tokens(), "fc", (2, 2, 10, 12)),  # (N, H·W, C) tokens
    (ConvNeXtBlock(), "fc1", (2, 4, 6, 5)),  # (N, H, W, 4C) NHWC
    (Windows(), "fc", (2, 2, 8, 12)),  # (N·H/4·W/4, 4·4, C) windows
])
def test_every_token_unit_matches_autograd(model: nn.Module, module: str, shape: tuple[int, ...]) -> None:
    """Inside the NHWC / token / window part itself: each unit (h, w) of a module output whose image axes are
    spread over several dims, located with FieldInfo.positions, depends on exactly its analytic field."""
    model = positive(model)
    fields, _ = analyse(model, shape)
    (row,) = [r for r in field_rows(fields) if r.name == module]
    assert all(a.pieces for a in row.field.axes) == (not isinstance(model, ConvNeXtBlock))
    kept: list[torch.Tensor] = []
    getattr(model, module).register_forward_hook(lambda m, i, o: kept.append(o))
    x = torch.ones(shape, dtype=torch.float64, requires_grad=True)
    model(x)
    (y,) = kept
    dims = fields.spatial_dims
    units = [a.units for a in row.field.axes]
    assert units == [shape[d] // (2 if isinstance(model, Tokens) else 1) for d in dims]
    for h in range(units[0]):
        for w in range(units[1]):
            where = row.field.positions([h, w], y.shape)
            mask = torch.ones(y.shape, dtype=torch.bool)
            for dim, indices in where.items():
                along = torch.zeros(y.shape[dim], dtype=torch.bool)
                along[torch.as_tensor(indices)] = True
                mask &= along.view([-1 if d == dim else 1 for d in range(y.dim())])
            grad = torch.autograd.grad(y[mask].sum(), x, retain_graph=True)[0]
            expected = [support(grad, d) for d in dims]
            got = [(int(lo), int(hi)) for lo, hi in row.field.unit([h, w], actual=True)]  # type: ignore[misc]
            assert got == expected, (h, w)


@pytest.mark.parametrize("shape", [(1, 2, 8, 8), (1, 2, 8, 12), (2, 2, 12, 8)])
def test_window_partition_and_merge_keep_each_pixels_field(shape: tuple[int, ...]) -> None:
    fields = assert_every_unit(Windows(), shape)
    assert fields.of(fields.trace.outputs[0]).size == (7, 7)


def test_a_linear_over_tokens_is_global_with_the_local_field_beside() -> None:
    model = TokenMixer(tokens=64)
    fields, out = analyse(model, (1, 2, 8, 8))
    info = fields.of(out)
    assert info.is_global and info.size == (3, 3) and not info.unknown
    positive(model)
    x = torch.ones((1, 2, 8, 8), dtype=torch.float64, requires_grad=True)
    grad = torch.autograd.grad(model(x)[0, :, 0, 0].sum(), x)[0]
    assert support(grad, 2) == (0, 7) and support(grad, 3) == (0, 7)


@pytest.mark.parametrize("model,op", [
    (Edit(conv1d_over_tokens), "aten.convolution"),
    (Edit(uneven_view), "aten.view"),
])
def test_positions_the_walk_cannot_follow_are_unknown_from_there_on(model: nn.Module, op: str) -> None:
    fields, out = analyse(model, (1, 2, 6, 6) if isinstance(model, Edit) else (1, 2, 8, 8))
    info = fields.of(out)
    assert info.unknown and op in info.unknown and info.size is None and info.stride is None
    assert [n.kind for n in fields.notes] == ["no-rule"] and op in fields.notes[0].text


def test_reshape_pieces() -> None:
    # (N, H, W, C) = (2, 6, 4, 3) -> (N·H·W, C): H and W become pieces of dim 0
    assert reshape_pieces(((1, 1, 6),), (2, 6, 4, 3), (48, 3)) == ((0, 4, 6),)
    assert reshape_pieces(((2, 1, 4),), (2, 6, 4, 3), (48, 3)) == ((0, 1, 4),)
    # window partition of H = 6 by 2: (N, 3, 2, W, C)
    assert reshape_pieces(((1, 1, 6),), (2, 6, 4, 3), (2, 3, 2, 4, 3)) == ((1, 1, 3), (2, 1, 2))


# ------------------------------------------------------------------------------------------------
# §3: the invariants


def _axis(n: int, jump: int = 1, size: int = 1) -> AxisField:
    table = identity_table(n)
    table[[0, 2, 4]] -= (size - 1) // 2
    table[[1, 3, 5]] += size // 2
    return AxisField(2, Fraction(jump), table)


def test_extent_invariant() -> None:
    assert extent_problem(FieldInfo((_axis(56, 4, 35),)), (224,)) is None
    assert extent_problem(FieldInfo((_axis(1, 32, 32),)), (1,)) is None  # a 1-px input, five stride-2 convs
    assert extent_problem(FieldInfo((_axis(4, 1, 13),)), (16,)) is None  # two unpadded 7×7 at 16 px
    assert "stride 4 × 224 units" in (extent_problem(FieldInfo((_axis(224, 4, 9),)), (224,)) or "")
    assert "stride 4 × 7 units" in (extent_problem(FieldInfo((_axis(7, 4, 11),)), (224,)) or "")


def test_growth_and_merge_invariants() -> None:
    small, large = FieldInfo((_axis(8, 1, 1),)), FieldInfo((_axis(8, 1, 7),))
    assert growth_problem([large], small) and growth_problem([small], large) is None
    assert merge_problem([small, large], small) and merge_problem([small, large], large) is None
    folded_global = FieldInfo((large.axes[0].folded(None),), is_global=True)
    assert merge_problem([small, folded_global], small) is None  # a global input's local field counts for nothing


class SelectAndAdd(nn.Module):
    """A row of a 7×7 conv's output broadcast onto a 1×1 conv's: the selected row has no per-unit field, so
    the merge cannot be per unit; the walk says so rather than printing the 1×1 side's field."""

    def __init__(self) -> None:
        super().__init__()
        self.big = nn.Conv2d(2, 2, 7, padding=3)
        self.small = nn.Conv2d(2, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.small(x) + self.big(x).select(2, 3).unsqueeze(2)


def test_a_merge_smaller_than_an_input_is_inconsistent() -> None:
    fields, out = analyse(SelectAndAdd(), (1, 2, 8, 8))
    info = fields.of(out)
    assert info.unknown and info.unknown.startswith("inconsistent: aten.add") and info.size is None
    assert [n.kind for n in fields.notes] == ["inconsistent"]


def _buggy(edit: Callable[[FieldInfo], FieldInfo], packet: str = "aten.convolution") -> Callable[..., Any]:
    """rule_for with a bug planted in one rule: its results pass through `edit` (on the 2nd call)."""
    real = rf_module.rule_for
    calls = {"n": 0}

    def rule_for(op: Any) -> Any:
        rule = real(op)
        if op.packet != packet or rule is None:
            return rule

        def wrong(walk: Any, op: Any) -> list[FieldInfo]:
            results = rule(walk, op)
            calls["n"] += 1
            return [edit(r) for r in results] if calls["n"] == 2 else results

        return wrong

    return rule_for


def _jump_times_4(info: FieldInfo) -> FieldInfo:
    return FieldInfo(tuple(AxisField(a.dim, a.jump * 4, a.table) for a in info.axes), info.is_global)


def _identity(info: FieldInfo) -> FieldInfo:
    return FieldInfo(tuple(AxisField(a.dim, a.jump, identity_table(a.units)) for a in info.axes), info.is_global)


@pytest.mark.parametrize("edit,text", [(_jump_times_4, "stride 4 × 16 units"), (_identity, "smaller than every")])
def test_a_rule_breaking_an_invariant_gives_unknown_not_a_number(monkeypatch: pytest.MonkeyPatch,
                                                                 edit: Callable[[FieldInfo], FieldInfo],
                                                                 text: str) -> None:
    monkeypatch.setattr(rf_module, "rule_for", _buggy(edit))
    model = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1))
    fields, out = analyse(model, (1, 2, 16, 16))
    rows = {r.name: r for r in field_rows(fields)}
    assert rows["0"].field.size == (3, 3)
    for name in ("1", "2", "(root)"):
        assert rows[name].field.unknown and "inconsistent" in rows[name].field.unknown and text in rows[name].notes[0]
        assert rows[name].report_row().rf is None and rows[name].report_row().stride is None
    assert [n.kind for n in fields.notes] == ["inconsistent"]


def assert_consistent(fields: FieldMap) -> None:
    """No tensor's field breaks an invariant (the walk checked growth and merges op by op: no note)."""
    assert not [n for n in fields.notes if n.kind == "inconsistent"], fields.notes
    coarsest = coarsest_stride(list(fields.values()), Fraction(1))
    for info in fields.values():
        assert info.unknown or extent_problem(info, fields.input_size, coarsest) is None


@pytest.mark.parametrize("spec,size", [
    ("resnet18", 224), ("unet", 256), ("hrnetv2_w18", 224), ("deeplabv3plus_mobilenet_v3_large", 256),
    ("matting_mobilenetv3", 256), ("tv:convnext_tiny", 224), ("tv:swin_t", 224), ("tv:vit_b_16", 224),
    ("tv:maxvit_t", 224), ("tv:efficientnet_b0", 224), ("tv:regnet_y_400mf", 224), ("timm:convnext_atto", 224),
])
def test_no_field_breaks_an_invariant(spec: str, size: int) -> None:
    assert_consistent(receptive_fields(api.trace(spec, (1, 3, size, size))))


@pytest.mark.parametrize("spec", ["resnet18", "hrnetv2_w18", "matting_mobilenetv3", "lraspp_mobilenet_v3_large"])
def test_no_field_breaks_an_invariant_at_odd_and_tiny_sizes(spec: str) -> None:
    """A 1-px input (one unit at stride 32, resized back up), odd sizes (ceil mode, uneven resizes)."""
    for size in (1, 17, 97, 333):
        assert_consistent(receptive_fields(api.trace(spec, (1, 3, size, size))))


# ------------------------------------------------------------------------------------------------
# coverage against autograd support


def assert_rows_proven(spec: str, shape: tuple[int, ...], depth: int | None, units: Sequence[str] = ("centre",),
                       ) -> tuple[FieldMap, dict[str, FieldRow], dict[str, list[Any]]]:
    """Every row equals its autograd support at `units` (a global row: covers the whole input), or is unknown
    with a reason; no field breaks an invariant."""
    fields = receptive_fields(api.trace(spec, shape))
    assert_consistent(fields)
    rows = field_rows(fields, depth=depth)
    checks = check_fields(api.build_model(spec, None, "cpu"), fields, rows, shape, units=tuple(units))
    by_row: dict[str, list[Any]] = {}
    for check in checks:
        by_row.setdefault(check.name, []).append(check)
    for row in rows:
        if row.field.unknown:
            assert row.notes and row.report_row().rf is None, row.name
            continue
        assert by_row.get(row.name) and all(c.match for c in by_row[row.name]), (row.name, by_row.get(row.name))
    return fields, {r.name: r for r in rows}, by_row


def test_torchvision_convnext_tiny_small() -> None:
    _, rows, checks = assert_rows_proven("tv:convnext_tiny", (1, 3, 96, 96), 2, ("first", "centre", "last"))
    assert rows["features.1"].field.size == (76, 76) and checks["features.1"][1].size == [76, 76]
    assert rows["features.3"].field.size == (224, 224) and rows["features.7"].field.stride == (32, 32)
    # AdaptiveAvgPool2d(1) on a channels-last map: mean, then as_strided_ (issue 14 §2): global, local field beside
    assert rows["avgpool"].field.is_global and rows["avgpool"].field.size == (1688, 1688)
    assert rows["(root)"].field.is_global and not rows["(root)"].field.unknown


def test_torchvision_convnext_tiny_224() -> None:
    """The issue's numbers: the gradient support is 76 px at features.1 and 220 px at features.3 (its 224 px
    field, clipped to the image) at 224²."""
    _, rows, checks = assert_rows_proven("tv:convnext_tiny", (1, 3, 224, 224), 2)
    measured = {name: checks[name][0].size for name in ("features.1", "features.3", "features.5", "features.7")}
    assert measured == {"features.1": [76, 76], "features.3": [220, 220], "features.5": [224, 224],
                        "features.7": [224, 224]}
    assert [rows[f"features.{i}"].field.size[0] for i in (1, 3, 5, 7)] == [76, 224, 1096, 1688]  # type: ignore[index]


def test_timm_convnext_atto() -> None:
    fields, rows, _ = assert_rows_proven("timm:convnext_atto", (1, 3, 96, 96), None, ("first", "centre", "last"))
    assert rows["stages.0"].field.size == (52, 52) and rows["head"].field.is_global
    assert not fields.notes


def test_walk_stays_numpy_only_per_axis() -> None:
    """The tokens of a 64×64 map keep one table per image axis (64 units), not one per token."""
    fields, out = analyse(Tokens(), (1, 2, 128, 128))
    tokens = [info for info in fields.values() if any(a.pieces for a in info.axes)]
    assert tokens and all(a.units == 64 for info in tokens for a in info.axes)
    assert all(isinstance(a.per_unit, np.ndarray) and a.table is None for info in tokens for a in info.axes)
