"""A property test of the receptive-field walk (issue 14 §5): random small networks mixing convolutions (dilated,
strided, grouped), pooling, NHWC blocks (permute -> Linear -> permute), residual adds, concatenation, resizes by
size and by non-integer scale, roll and a patch embedding with a class token; every module output's analytic
field, at the first, middle and last unit of each axis, equals its autograd support on a float64 copy with
positive weights (so nothing cancels), no field breaks an invariant, and no row is unknown.

Under CI the examples are the same every run (tests/conftest.py's "ci" profile)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_receptive_field import clipped, positive, support
from torch import nn

from inspectlab import api
from inspectlab.analysis.receptive_field import FieldInfo, field_rows, receptive_fields
from inspectlab.core.errors import InspectlabError

torch.set_num_threads(1)
CHANNELS = 4

# ------------------------------------------------------------------------------------------------
# the blocks


class Conv(nn.Module):
    def __init__(self, kernel: int, stride: int, dilation: int, padding: int, groups: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(CHANNELS, CHANNELS, kernel, stride, padding, dilation, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Pool(nn.Module):
    """Average pooling (max pooling has the same windows; its gradient reaches only the maximum)."""

    def __init__(self, kernel: int, stride: int, padding: int, ceil: bool) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(kernel, stride, padding, ceil_mode=ceil)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


class Channels(nn.Module):
    """ConvNeXt's NHWC MLP: permute, Linear, GELU, Linear, permute back."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(CHANNELS, 2 * CHANNELS), nn.Linear(2 * CHANNELS, CHANNELS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x.permute(0, 2, 3, 1)))).permute(0, 3, 1, 2)


class Residual(nn.Module):
    """x + a 'same' convolution of x (dilated)."""

    def __init__(self, kernel: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(CHANNELS, CHANNELS, kernel, 1, (kernel - 1) // 2 * dilation, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class Concat(nn.Module):
    """cat of x and a 'same' convolution of it, then a 1×1 back to CHANNELS."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(CHANNELS, CHANNELS, kernel, 1, kernel // 2)
        self.fuse = nn.Conv2d(2 * CHANNELS, CHANNELS, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([x, self.conv(x)], dim=1))


class Resize(nn.Module):
    """F.interpolate to a size, or by a (non-integer) scale factor."""

    def __init__(self, size: tuple[int, int] | None, scale: float | None, mode: str, align: bool | None) -> None:
        super().__init__()
        self.size, self.scale, self.mode, self.align = size, scale, mode, align

    def extra_repr(self) -> str:
        return f"size={self.size}, scale={self.scale}, mode={self.mode}, align_corners={self.align}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes = self.size or [math.floor(n * self.scale) for n in x.shape[2:]]  # type: ignore[operator]
        if min(sizes) < 2:  # one unit left: a crop, not a resize (the extent invariant flags it by design)
            return x
        return F.interpolate(x, size=self.size, scale_factor=self.scale, mode=self.mode, align_corners=self.align)


class Roll(nn.Module):
    def __init__(self, shifts: tuple[int, int]) -> None:
        super().__init__()
        self.shifts = shifts

    def extra_repr(self) -> str:
        return f"shifts={self.shifts}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.roll(x, self.shifts, (2, 3))


class ClassToken(nn.Module):
    """A patch embedding, tokens with a class token in front, a per-token Linear, the class token sliced off, back
    to a grid."""

    def __init__(self, patch: int) -> None:
        super().__init__()
        self.embed = nn.Conv2d(CHANNELS, CHANNELS, patch, patch)
        self.token = nn.Parameter(torch.zeros(1, 1, CHANNELS))
        self.fc = nn.Linear(CHANNELS, CHANNELS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.embed(x)
        n, c, h, w = y.shape
        tokens = torch.cat([self.token.expand(n, -1, -1), y.flatten(2).transpose(1, 2)], dim=1)
        tokens = tokens + self.fc(tokens)
        return tokens[:, 1:].transpose(1, 2).reshape(n, c, h, w)


# ------------------------------------------------------------------------------------------------
# strategies


@st.composite
def blocks(draw: Any) -> nn.Module:
    kind = draw(st.sampled_from(["conv", "pool", "channels", "residual", "concat", "resize", "roll", "token"]))
    if kind == "conv":
        kernel, dilation = draw(st.integers(1, 4)), draw(st.integers(1, 2))
        return Conv(kernel, draw(st.integers(1, 2)), dilation, draw(st.integers(0, (kernel - 1) * dilation)),
                    draw(st.sampled_from([1, 2, CHANNELS])))
    if kind == "pool":
        kernel = draw(st.integers(2, 3))
        return Pool(kernel, draw(st.integers(1, 2)), draw(st.integers(0, kernel // 2)), draw(st.booleans()))
    if kind == "channels":
        return Channels()
    if kind == "residual":
        return Residual(draw(st.sampled_from([1, 3, 5])), draw(st.integers(1, 2)))
    if kind == "concat":
        return Concat(draw(st.sampled_from([1, 3])))
    if kind == "resize":
        mode = draw(st.sampled_from(["nearest", "nearest-exact", "bilinear"]))
        align = draw(st.booleans()) if mode == "bilinear" else None
        if draw(st.booleans()):
            return Resize((draw(st.integers(3, 24)), draw(st.integers(3, 24))), None, mode, align)
        return Resize(None, draw(st.sampled_from([0.6, 1.5, 1.7, 2.0, 2.5])), mode, align)
    if kind == "roll":
        return Roll((draw(st.integers(-3, 3)), draw(st.integers(-3, 3))))
    return ClassToken(draw(st.integers(1, 3)))


class Net(nn.Sequential):
    """A stem conv to CHANNELS, then the drawn blocks."""


# ------------------------------------------------------------------------------------------------
# the check


def _units(n: int) -> list[int]:
    return sorted({0, (n - 1) // 2, n - 1})


def _check_row(info: FieldInfo, y: torch.Tensor, x: torch.Tensor, dims: tuple[int, ...], name: str) -> None:
    """The first, middle and last unit of each axis (the other axis at its middle unit) against autograd; the
    unit's elements wherever its axes lie (FieldInfo.positions: NCHW, NHWC, tokens beside a class token)."""
    sizes = [a.units for a in info.axes]
    middle = [(n - 1) // 2 for n in sizes]
    for k in range(len(sizes)):
        for unit in _units(sizes[k]):
            index = list(middle)
            index[k] = unit
            mask = torch.ones(y.shape, dtype=torch.bool)
            for dim, indices in info.positions(index, y.shape).items():
                along = torch.zeros(y.shape[dim], dtype=torch.bool)
                along[torch.as_tensor(indices, dtype=torch.long)] = True
                mask &= along.view([-1 if d == dim else 1 for d in range(y.dim())])
            grad = torch.autograd.grad(y[mask].sum(), x, retain_graph=True)[0]
            spans = info.unit(index, actual=True)
            got = None if None in spans else (int(spans[k][0]), int(spans[k][1]))  # type: ignore[index]
            assert got is None or clipped(info.unit(index)[k], x.shape[dims[k]]) is not None
            assert got == support(grad, dims[k]), (name, k, unit, got, support(grad, dims[k]))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.lists(blocks(), min_size=1, max_size=5), st.integers(9, 20), st.integers(9, 20))
def test_random_networks_match_autograd(layers: list[nn.Module], height: int, width: int) -> None:
    model = Net(nn.Conv2d(2, CHANNELS, 3, padding=1), *layers)
    shape = (1, 2, height, width)
    try:
        traced = api.trace(model, shape)
    except InspectlabError:  # a drawn network that rejects the input (a map smaller than a kernel)
        assume(False)
    assume(all(math.prod(traced.tensors[t].shape[2:]) > 0 for t in traced.outputs))
    fields = receptive_fields(traced)
    assert not [n for n in fields.notes if n.kind in ("inconsistent", "no-rule")], fields.notes
    rows = field_rows(fields)
    assert not any(r.field.unknown or r.field.is_global for r in rows)
    # a map one unit wide made into tokens keeps that axis as a summary (no per-unit table: nothing to index)
    assume(all(a.packed is not None for r in rows for a in r.field.axes))
    model = positive(model)
    kept: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        module.register_forward_hook(lambda m, i, o, name=name or "(root)": kept.__setitem__(name, o))
    x = torch.ones(shape, dtype=torch.float64, requires_grad=True)
    model(x)
    for row in rows:
        if row.field.axes:
            _check_row(row.field, kept[row.name], x, fields.spatial_dims, row.name)
