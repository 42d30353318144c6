"""Receptive-field rules for the ops of transformers and modern heads (issue 14 §2), each proven against autograd
support on a float64 copy with positive weights: class tokens, attention over all tokens and within windows
(Swin's block, MaxViT's grid), softmax, roll, unfold / im2col, grid_sample, adaptive pooling's as_strided_,
resizes between sizes that do not divide (rational strides), in-place writes into views, and the rows of a
model's outputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_receptive_field import Around, analyse, assert_every_unit, positive, support
from test_rf_layout import merge, partition
from torch import nn

from inspectlab import api
from inspectlab.analysis.receptive_field import (
    FieldMap,
    exact_number,
    field_columns,
    field_report,
    field_rows,
    receptive_fields,
)
from inspectlab.analysis.rf_fields import FieldInfo

torch.set_num_threads(1)
# attention scores are scaled down so that no softmax weight underflows to 0 on the positive copy (scores of
# positive weights reach 10^4: exp(-1000) is 0 in float64, and the support would lose the pixels behind it)
SCALE = 1e-4


# ------------------------------------------------------------------------------------------------
# reference helpers


def unit_support(model: nn.Module, x_shape: Sequence[int], pick: Callable[[torch.Tensor], torch.Tensor],
                 dims: Sequence[int], cut: Callable[[nn.Module], None] | None = None) -> list[tuple[int, int] | None]:
    """The pixels (per input axis `dims`) that `pick(model(x))` depends on, on positive float64 weights."""
    x = torch.ones(tuple(x_shape), dtype=torch.float64, requires_grad=True)
    if cut is not None:
        cut(model)
    grad = torch.autograd.grad(pick(model(x)).sum(), x, allow_unused=True)[0]
    if grad is None:
        return [None] * len(dims)
    return [support(grad, d) for d in dims]


def token_units_match(model: nn.Module, fields: FieldMap, tensor: torch.Tensor, info: FieldInfo, x: torch.Tensor,
                      ) -> int:
    """Every unit (h, w) of a tensor whose image axes lie in tokens (FieldInfo.positions) depends on exactly its
    analytic field; returns how many units were checked."""
    units = [a.units for a in info.axes]
    checked = 0
    for h in range(units[0]):
        for w in range(units[1]):
            mask = torch.ones(tensor.shape, dtype=torch.bool)
            for dim, indices in info.positions([h, w], tensor.shape).items():
                along = torch.zeros(tensor.shape[dim], dtype=torch.bool)
                along[torch.as_tensor(indices, dtype=torch.long)] = True
                mask &= along.view([-1 if d == dim else 1 for d in range(tensor.dim())])
            grad = torch.autograd.grad(tensor[mask].sum(), x, retain_graph=True)[0]
            expected = [support(grad, d) for d in fields.spatial_dims]
            got = [(int(lo), int(hi)) for lo, hi in info.unit([h, w], actual=True)]  # type: ignore[misc]
            assert got == expected, (h, w, got, expected)
            checked += 1
    return checked


# ------------------------------------------------------------------------------------------------
# class tokens


class PatchTokens(nn.Module):
    """ViT's front: a patch embedding, tokens, prefix tokens (class, distillation, registers) joined on the token
    dim, a position embedding, a per-token MLP; then the prefix tokens sliced off (or split off), the tokens back
    to a grid and a 3×3 conv."""

    def __init__(self, prefix: int = 1, patch: int = 2, split: bool = False, attend: bool = False) -> None:
        super().__init__()
        self.embed = nn.Conv2d(2, 4, patch, patch)
        self.prefix = nn.Parameter(torch.zeros(1, prefix, 4))
        self.norm = nn.LayerNorm(4)
        self.mlp = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 4))
        self.attention = nn.MultiheadAttention(4, 2, batch_first=True) if attend else None
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.split = split

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        y = self.embed(x).flatten(2).transpose(1, 2)
        y = torch.cat([self.prefix.expand(y.shape[0], -1, -1), y], dim=1)
        y = y + self.mlp(self.norm(y))
        if self.attention is not None:
            y = y + self.attention(y, y, y, need_weights=False)[0]
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = self.embed(x).shape
        y = self.tokens(x)
        count = self.prefix.shape[1]
        patches = torch.split(y, [count, h * w], dim=1)[1] if self.split else y[:, count:]
        return self.conv(patches.transpose(1, 2).reshape(n, 4, h, w))


@pytest.mark.parametrize("prefix,split", [(1, False), (3, True)])
def test_class_token_keeps_the_patch_tokens_fields(prefix: int, split: bool) -> None:
    """cat of the class (and distillation, register) tokens on the token dim, then slicing them off: the patch
    tokens keep their fields, the grid comes back (was: unknown from the cat on)."""
    fields = assert_every_unit(PatchTokens(prefix, split=split), (1, 2, 8, 12))
    info = fields.of(fields.trace.outputs[0])
    assert info.size == (6, 6) and info.stride == (2, 2) and not info.is_global and not fields.notes


def test_every_patch_token_beside_a_class_token_matches_autograd() -> None:
    """Inside the tokens with the class token: each unit's tokens (FieldInfo.positions, the class token left out)
    depend on exactly their analytic field."""
    model = positive(PatchTokens(2))
    fields, _ = analyse(model, (2, 2, 6, 8))
    (row,) = [r for r in field_rows(fields) if r.name == "mlp"]
    assert all(a.slot is not None and a.slot.start == 2 for a in row.field.axes)
    kept: list[torch.Tensor] = []
    model.mlp.register_forward_hook(lambda m, i, o: kept.append(o))
    x = torch.ones((2, 2, 6, 8), dtype=torch.float64, requires_grad=True)
    model(x)
    assert token_units_match(model, fields, kept[0], row.field, x) == 12


class ClassHead(nn.Module):
    """The class token read out, before or after attention."""

    def __init__(self, attend: bool) -> None:
        super().__init__()
        self.body = PatchTokens(1, attend=attend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body.tokens(x)[:, 0]


def test_a_class_token_before_attention_has_no_field() -> None:
    model = ClassHead(attend=False)
    fields, out = analyse(model, (1, 2, 8, 8))
    info = fields.of(out)
    assert info.constant and not info.is_global and not fields.notes
    grad = unit_support(positive(model), (1, 2, 8, 8), lambda y: y, (2, 3))
    assert grad == [None, None]  # autograd: it depends on no pixel


def test_a_class_token_after_attention_is_global_with_the_patch_field_beside() -> None:
    model = ClassHead(attend=True)
    fields, out = analyse(model, (1, 2, 8, 8))
    info = fields.of(out)
    assert info.is_global and info.size == (2, 2) and info.stride == (2, 2) and not info.unknown
    assert unit_support(positive(model), (1, 2, 8, 8), lambda y: y, (2, 3)) == [(0, 7), (0, 7)]


# ------------------------------------------------------------------------------------------------
# attention over all tokens: global, with the local field beside


class TokenAttention(nn.Module):
    """A 5×5 conv, tokens, attention over all of them (three implementations), residual, back to a grid."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 5, padding=2)
        self.qkv = nn.Linear(4, 12)
        self.mha = nn.MultiheadAttention(4, 2, batch_first=True)
        self.kind = kind
        self.cut = False  # detach the keys and values: only the local path (query and residual) is left

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        n, c, h, w = y.shape
        t = y.flatten(2).transpose(1, 2)
        if self.kind == "mha":
            kv = t.detach() if self.cut else t
            a = self.mha(t, kv, kv, need_weights=False)[0]
            a = a.detach() if self.cut else a
        else:
            q, k, v = self.qkv(t).chunk(3, dim=-1)
            if self.cut:
                k, v = k.detach(), v.detach()
            if self.kind == "sdpa":
                a = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1),
                                                   scale=SCALE).squeeze(1)
            else:
                a = torch.softmax(q @ k.transpose(1, 2) * SCALE, dim=-1) @ v
            a = a.detach() if self.cut else a
        return (t + a).transpose(1, 2).reshape(n, c, h, w)


@pytest.mark.parametrize("kind", ["mha", "sdpa", "manual"])
def test_attention_over_tokens_is_global_with_the_local_field_beside(kind: str) -> None:
    """Global: a corner unit depends on every pixel; beside the flag, the local field: with the attention's
    output cut from the graph, autograd gives exactly it, unit by unit."""
    model = positive(TokenAttention(kind))
    fields, out = analyse(model, (1, 2, 7, 9))
    info = fields.of(out)
    assert info.is_global and info.size == (5, 5) and not info.unknown
    assert unit_support(model, (1, 2, 7, 9), lambda y: y[0, :, 0, 0], (2, 3)) == [(0, 6), (0, 8)]
    packets = {op.packet for op in fields.trace.ops}
    assert kind != "sdpa" or packets & {"aten._safe_softmax", "aten._scaled_dot_product_flash_attention_for_cpu",
                                        "aten._scaled_dot_product_attention_math"}
    model.cut = True
    x = torch.ones((1, 2, 7, 9), dtype=torch.float64, requires_grad=True)
    y = model(x)
    for hh in range(7):
        for ww in range(9):
            grad = torch.autograd.grad(y[0, :, hh, ww].sum(), x, retain_graph=True)[0]
            spans = info.unit([hh, ww], actual=True)
            assert [support(grad, 2), support(grad, 3)] == [(int(a), int(b)) for a, b in spans]  # type: ignore[misc]


class FusedAttention(nn.Module):
    """nn.MultiheadAttention over all tokens or within windows of 2×2, through its module (math attention:
    bmm, _safe_softmax, bmm) or through the fused op its fast path calls (`_native_multi_head_attention`, which
    has no backward: autograd cannot measure it, the module's path can)."""

    def __init__(self, fused: bool, window: int | None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.mha = nn.MultiheadAttention(4, 2, batch_first=True)
        self.fused, self.window = fused, window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        n, c, h, w = y.shape
        t = partition(y.permute(0, 2, 3, 1), self.window) if self.window else y.flatten(2).transpose(1, 2)
        if self.fused:
            m = self.mha
            a = torch._native_multi_head_attention(t, t, t, 4, 2, m.in_proj_weight, m.in_proj_bias,
                                                   m.out_proj.weight, m.out_proj.bias, None, False)[0]
        else:
            a = self.mha(t, t, t, need_weights=False)[0]
        t = t + a
        z = merge(t, self.window, n, h, w).permute(0, 3, 1, 2) if self.window else t.transpose(1, 2).reshape(y.shape)
        return z


@pytest.mark.parametrize("window", [None, 2])
def test_native_multi_head_attention_reads_what_the_modules_attention_reads(window: int | None) -> None:
    """The fused op gives the same field, unit by unit, as the module's own attention, which autograd proves
    (within windows here; over all tokens in test_attention_over_tokens_is_global_with_the_local_field_beside)."""
    fused, _ = analyse(FusedAttention(True, window), (1, 2, 6, 8))
    assert "aten._native_multi_head_attention" in {op.packet for op in fused.trace.ops}
    plain = assert_every_unit(FusedAttention(False, window), (1, 2, 6, 8)) if window else \
        analyse(FusedAttention(False, window), (1, 2, 6, 8))[0]
    a, b = fused.of(fused.trace.outputs[0]), plain.of(plain.trace.outputs[0])
    assert a.is_global == b.is_global == (window is None) and a.size == b.size
    assert all(np.array_equal(x.table, y.table) for x, y in zip(a.axes, b.axes, strict=True))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# attention within windows: the window's union


class WindowAttention(nn.Module):
    """A 3×3 conv, NHWC, windows (Swin's block partition, or MaxViT's grid: every (H/g)-th pixel), attention
    within each window (scaled dot product or explicit softmax), merged back, a 3×3 conv, a residual; `shift`
    rolls before partitioning and rolls back after (Swin's shifted windows, no mask)."""

    def __init__(self, window: int = 4, grid: bool = False, kind: str = "manual", shift: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.qkv = nn.Linear(4, 12)
        self.out = nn.Conv2d(4, 4, 3, padding=1)
        self.window, self.grid, self.kind, self.shift = window, grid, kind, shift

    def split(self, x: torch.Tensor) -> torch.Tensor:  # (N, H, W, C) -> (N·windows, g·g, C)
        n, h, w, c = x.shape
        g = self.window
        if not self.grid:
            return partition(x, g)
        return x.view(n, g, h // g, g, w // g, c).permute(0, 2, 4, 1, 3, 5).reshape(-1, g * g, c)

    def join(self, windows: torch.Tensor, n: int, h: int, w: int) -> torch.Tensor:
        g = self.window
        if not self.grid:
            return merge(windows, g, n, h, w)
        return windows.view(n, h // g, w // g, g, g, -1).permute(0, 3, 1, 4, 2, 5).reshape(n, h, w, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        n, _, h, w = y.shape
        z = y.permute(0, 2, 3, 1)
        if self.shift:
            z = torch.roll(z, (-self.shift, -self.shift), (1, 2))
        q, k, v = self.qkv(self.split(z)).chunk(3, dim=-1)
        if self.kind == "sdpa":
            a = F.scaled_dot_product_attention(q, k, v, scale=SCALE)
        else:
            a = torch.softmax(q @ k.transpose(1, 2) * SCALE, dim=-1) @ v
        z = self.join(a, n, h, w)
        if self.shift:
            z = torch.roll(z, (self.shift, self.shift), (1, 2))
        return self.out(z.permute(0, 3, 1, 2)) + y


@pytest.mark.parametrize("model,shape,size", [
    (WindowAttention(4), (1, 2, 8, 12), 10),  # 3 px, a window of 4: 6 px; the 3×3 reaches the next window: 10
    (WindowAttention(4, kind="sdpa"), (2, 2, 8, 8), 10),
    (WindowAttention(2, grid=True), (1, 2, 8, 8), 10),  # unit h reads h mod 4 and h mod 4 + 4
    (WindowAttention(4, shift=2), (1, 2, 8, 8), 11),  # a border unit's window wraps to the other side
])
def test_attention_within_windows_reads_its_window(model: nn.Module, shape: tuple[int, ...], size: int) -> None:
    """Not global: each unit reads the units of its window (the block's, or the grid's strided set), exactly."""
    fields = assert_every_unit(model, shape)
    info = fields.of(fields.trace.outputs[0])
    assert not info.is_global and not info.unknown and info.size == (size, size)
    assert bool(info.flags) == bool(getattr(model, "shift", 0))  # the roll wraps: flagged


# ------------------------------------------------------------------------------------------------
# roll, unfold / im2col, grid_sample, as_strided_


@pytest.mark.parametrize("edit", [
    lambda y: torch.roll(y, (2, -3), (2, 3)),
    lambda y: torch.roll(y, 5, 3),
    lambda y: torch.roll(y.permute(0, 2, 3, 1), 1, 1).permute(0, 3, 1, 2),
])
def test_roll_shifts_the_centres_and_is_flagged_when_it_wraps(edit: Callable[[torch.Tensor], torch.Tensor]) -> None:
    fields = assert_every_unit(Around(edit), (1, 2, 16, 14))
    info = fields.of(fields.trace.outputs[0])
    assert info.flags and "wraps around" in info.flags[0] and [n.kind for n in fields.notes] == ["flag"]
    assert field_rows(fields)[0].notes == list(info.flags)


def unfolded(y: torch.Tensor) -> torch.Tensor:
    """F.unfold with a 2×3 kernel, dilation (2, 1), padding (1, 0), stride (2, 1); the taps summed, back to a grid."""
    n, c, h, w = y.shape
    columns = F.unfold(y, (2, 3), dilation=(2, 1), padding=(1, 0), stride=(2, 1))
    return columns.view(n, c, 6, -1).mean(2).view(n, c, (h + 2 - 2 - 1) // 2 + 1, w - 2)


@pytest.mark.parametrize("edit", [
    lambda y: F.unfold(y, 3, padding=1).view(y.shape[0], y.shape[1], 9, *y.shape[2:]).sum(2),
    unfolded,
    lambda y: y.unfold(2, 3, 2).unfold(3, 2, 1).sum((-1, -2)),
])
def test_unfold_is_a_convolution_window(edit: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """F.unfold (im2col) and Tensor.unfold: the windows of a convolution / pooling with that kernel, stride,
    padding and dilation."""
    fields = assert_every_unit(Around(edit), (1, 2, 18, 14))
    assert not fields.notes


class Sampler(nn.Module):
    """grid_sample of the input (`sample_input`) or of a fixed image, at a grid made from the input by a 3×3 conv
    (a spatial transformer) or a fixed grid."""

    def __init__(self, sample_input: bool, learned_grid: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.register_buffer("image", torch.rand(1, 2, 9, 9, generator=torch.Generator().manual_seed(0)))
        self.register_buffer("fixed", torch.zeros(1, 5, 5, 2))
        self.sample_input, self.learned_grid = sample_input, learned_grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = torch.tanh(F.adaptive_avg_pool2d(self.conv(x), 5)).permute(0, 2, 3, 1) if self.learned_grid \
            else self.fixed
        source = x if self.sample_input else self.image.expand(x.shape[0], -1, -1, -1)
        return F.grid_sample(source, grid, align_corners=False)


def test_grid_sample_of_the_input_is_global_with_a_reason() -> None:
    """Where it reads depends on the grid's values: for grids pointing at each corner, a unit depends on that
    corner, so no field short of the whole input holds for every grid."""
    model = Sampler(sample_input=True, learned_grid=False)
    fields, out = analyse(model, (1, 2, 9, 9))
    info = fields.of(out)
    assert info.is_global and info.flags and "data-dependent" in info.flags[0]
    assert [n.kind for n in fields.notes] == ["flag"]
    reached = set()
    for corner in ([-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]):
        model.fixed.copy_(torch.tensor(corner).expand(1, 5, 5, 2))
        spans = unit_support(positive(model), (1, 2, 9, 9), lambda y: y[0, :, 2, 2], (2, 3))
        reached.add((spans[0][0], spans[1][0]))  # type: ignore[index]
    assert reached == {(0, 0), (0, 8), (8, 0), (8, 8)}


def test_grid_sample_of_a_fixed_image_has_the_grids_field() -> None:
    """Sampling a fixed image at a grid made from the input: each unit's field is its grid point's."""
    fields = assert_every_unit(Sampler(sample_input=False, learned_grid=True), (1, 2, 10, 10))
    info = fields.of(fields.trace.outputs[0])
    assert not info.is_global and info.size == (4, 4)  # a 3×3 conv, pooled by 2: 3 + 1


class ChannelsLastPool(nn.Module):
    """AdaptiveAvgPool2d(1) on a channels-last map (recorded on the meta device as mean + as_strided_), as a gate."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).contiguous(memory_format=torch.channels_last)
        return y * self.pool(y)


def test_adaptive_pooling_as_strided_is_the_pool() -> None:
    model = ChannelsLastPool()
    fields, out = analyse(model, (1, 2, 8, 8))
    assert "aten.as_strided_" in {op.packet for op in fields.trace.ops}
    info = fields.of(out)
    assert info.is_global and info.size == (3, 3) and not info.unknown
    assert unit_support(positive(model), (1, 2, 8, 8), lambda y: y[0, :, 0, 0], (2, 3)) == [(0, 7), (0, 7)]


# ------------------------------------------------------------------------------------------------
# resizes between sizes that do not divide: rational strides, whole pixels


class Pyramid(nn.Module):
    """PSPNet's pyramid pooling without its global branch: adaptive pools to 2, 3 and 5 of a 3×3 conv's map,
    1×1 convs, bilinear align_corners=True back up, concatenated with the map, a 3×3 conv (its padding at a
    fractional stride), an upsampling ×1.7."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, 2, 1)
        self.branches = nn.ModuleList(nn.Conv2d(4, 4, 1) for _ in range(3))
        self.fuse = nn.Conv2d(16, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        pooled = [F.interpolate(b(F.adaptive_avg_pool2d(y, s)), y.shape[2:], mode="bilinear", align_corners=True)
                  for b, s in zip(self.branches, (2, 3, 5), strict=True)]
        fused = self.fuse(torch.cat([*pooled, y], dim=1))
        return F.interpolate(fused, scale_factor=1.7, mode="bilinear", align_corners=False)


def test_pyramid_pooling_has_whole_pixel_fields_and_the_maps_stride() -> None:
    fields = assert_every_unit(Pyramid(), (1, 2, 22, 22))
    info = fields.of(fields.trace.outputs[0])
    assert info.stride == (2 * Fraction(10, 17),) * 2  # the map's own stride 2 (not 20/9, 40/63, ...), / 1.7
    assert field_columns(info)["stride"] == ["20/17", "20/17"]
    for axis in info.axes:
        unclipped = axis.table[:4]  # type: ignore[index]
        assert np.array_equal(unclipped[np.isfinite(unclipped)], np.round(unclipped[np.isfinite(unclipped)]))
    assert all(float(v).is_integer() for v in (*info.size, *info.padding))  # type: ignore[misc]
    assert any("strides" in n.text for n in fields.notes if n.kind == "misaligned")


def test_strides_print_as_exact_fractions() -> None:
    assert [exact_number(Fraction(n, d)) for n, d in ((16, 3), (504, 511), (8, 1))] == ["16/3", "72/73", 8]
    assert exact_number(None) is None


# ------------------------------------------------------------------------------------------------
# in-place writes into views


class Batcher(nn.Module):
    """torchvision's detection transform: images copied into a zero batch padded to a multiple of 8, then a
    conv; and a write into part of a map (`x[..., :k] += ...`)."""

    def __init__(self, partial: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.wide = nn.Conv2d(2, 2, 5, padding=2)
        self.partial = partial

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.partial:
            y = self.conv(x)
            y[:, :, 2:8] += self.wide(x)[:, :, 2:8]
            y[..., -7:].zero_()
            return y * 2
        batch = x.new_full((x.shape[0], x.shape[1], 16, 16), 0.0)
        for i in range(x.shape[0]):
            batch[i, :, : x.shape[2], : x.shape[3]].copy_(x[i])
        return self.conv(batch)


@pytest.mark.parametrize("partial", [False, True])
def test_a_write_into_a_view_reaches_its_base(partial: bool) -> None:
    """Was: the base kept the field it had before the write (none, for the batch): every field after it blank,
    with no reason."""
    fields = assert_every_unit(Batcher(partial), (2, 2, 11, 13))
    info = fields.of(fields.trace.outputs[0])
    assert info.size == ((5, 5) if partial else (3, 3)) and not fields.notes
    if partial:  # rows 2..7 see the 5×5, the others the 3×3; the last 7 columns nothing
        assert info.axes[0].table[1][[1, 2, 7, 8]].tolist() == [2, 4, 9, 9]  # type: ignore[index]
        assert not np.isfinite(info.axes[1].table[4][-7:]).any()  # type: ignore[index]


# ------------------------------------------------------------------------------------------------
# the rows of a model's outputs


class Outputs(nn.Module):
    """A dict of tensors (a map, a global vector, a constant, an index), or no tensor at all."""

    def __init__(self, tensors: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.tensors = tensors

    def forward(self, x: torch.Tensor) -> object:
        y = self.conv(x)
        if not self.tensors:
            return {"count": 3}
        return {"map": y, "vector": y.mean((2, 3)), "anchors": torch.ones(4, 4), "label": y.argmax(1)}


def test_every_output_of_the_model_gets_a_row_with_a_field_or_a_reason() -> None:
    fields, _ = analyse(Outputs(True), (1, 2, 8, 8))
    report = field_report(fields, "outputs")
    outputs = {o["name"]: o for o in report.extra["outputs"]}
    assert list(outputs) == ["(root)[0]", "(root)[1]", "(root)[2]", "(root)[3]"]
    assert outputs["(root)[0]"]["rf"] == [3, 3] and not outputs["(root)[0]"]["global"]
    assert outputs["(root)[1]"]["global"] and outputs["(root)[1]"]["rf"] == [3, 3]
    assert outputs["(root)[2]"]["rf"] is None and "does not depend on the input" in outputs["(root)[2]"]["notes"][0]
    assert outputs["(root)[3]"]["rf"] is None and "index" in outputs["(root)[3]"]["notes"][0]
    assert report.totals["rf"] == [3, 3]


def test_a_model_whose_output_holds_no_tensor_gets_a_row_saying_so() -> None:
    fields = receptive_fields(api.trace(Outputs(False), (1, 2, 8, 8)))
    rows = [r for r in field_rows(fields) if r.name == "(root)"]
    assert len(rows) == 1 and rows[0].field.unknown and "holds no tensor" in rows[0].notes[0]
    assert rows[0].report_row().rf is None


def test_pixel_shuffle_is_recorded_as_one_op() -> None:
    """The rules of pixel_shuffle / pixel_unshuffle apply as such: the meta device does not decompose them into
    views and permutes (tests/test_receptive_field.py proves the rules unit by unit)."""
    fields, _ = analyse(nn.Sequential(nn.PixelShuffle(2), nn.PixelUnshuffle(2)), (1, 4, 6, 6))
    assert [op.packet for op in fields.trace.ops] == ["aten.pixel_shuffle", "aten.pixel_unshuffle"]
    info = fields.of(fields.trace.outputs[0])
    assert info.size == (1, 1) and info.stride == (1, 1) and not fields.notes  # r units of one unit, regathered
