"""Counting conventions of inspectlab, each checked against a hand-computed formula."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from inspectlab import api
from inspectlab.analysis.flops import count_flops
from inspectlab.analysis.memory import estimate_memory
from inspectlab.models.registry import list_entries


def _totals(model: nn.Module, *shapes: tuple[int, ...]):
    return count_flops(api.trace(model, list(shapes), train=model.training))  # the module's own mode


def _out(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@pytest.mark.parametrize("groups", [1, 4, 16])
def test_conv_macs_grouped_dilated_strided(groups: int) -> None:
    conv = nn.Conv2d(16, 32, 3, stride=2, padding=1, dilation=2, groups=groups)
    count = _totals(conv, (2, 16, 17, 19))
    h, w = _out(17, 3, 2, 1, 2), _out(19, 3, 2, 1, 2)
    assert count.total().macs == 2 * 32 * h * w * (16 // groups) * 3 * 3
    assert count.total().flops == 2 * count.total().macs
    assert count.total().other_flops == 2 * 32 * h * w  # the bias add, one per output element


def test_depthwise_and_asymmetric_conv() -> None:
    conv = nn.Conv2d(8, 8, (3, 5), stride=(1, 2), padding=(1, 2), groups=8, bias=False)
    count = _totals(conv, (1, 8, 10, 11))
    assert count.total().macs == 8 * 10 * _out(11, 5, 2, 2) * 1 * 3 * 5
    assert count.total().other_flops == 0


def test_transposed_conv_counts_per_input_element() -> None:
    deconv = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1, bias=False)
    count = _totals(deconv, (3, 8, 5, 7))
    assert count.total().macs == 3 * 5 * 7 * 8 * 4 * 4 * 4


def test_linear_on_3d_input_and_matmuls() -> None:
    assert _totals(nn.Linear(10, 20), (3, 7, 10)).total().macs == 3 * 7 * 10 * 20
    assert _totals(nn.Linear(10, 20), (3, 7, 10)).total().other_flops == 3 * 7 * 20

    class MatMul(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a @ b

    assert _totals(MatMul(), (5, 6, 7), (5, 7, 9)).total().macs == 5 * 6 * 7 * 9
    assert _totals(MatMul(), (6, 7), (7, 9)).total().macs == 6 * 7 * 9


def test_attention_macs() -> None:
    class Attention(nn.Module):
        def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return F.scaled_dot_product_attention(q, k, v)

    b, h, sq, sk, d, dv = 2, 4, 16, 32, 8, 6
    count = _totals(Attention(), (b, h, sq, d), (b, h, sk, d), (b, h, sk, dv))
    assert count.total().macs == b * h * sq * sk * d + b * h * sq * sk * dv


@pytest.mark.parametrize(("module", "shape", "expected"), [
    (nn.ReLU(), (2, 3, 4, 5), 1 * 120),
    (nn.Hardswish(), (2, 3, 4, 5), 5 * 120),
    (nn.Sigmoid(), (2, 3, 4, 5), 4 * 120),
    (nn.BatchNorm2d(3).eval(), (2, 3, 4, 5), 2 * 120),
    (nn.BatchNorm2d(3).train(), (2, 3, 4, 5), 5 * 120 + 1),  # + num_batches_tracked += 1
    (nn.LayerNorm(5), (2, 3, 4, 5), 5 * 120),
    (nn.GroupNorm(1, 3, affine=False), (2, 3, 4, 5), 4 * 120),
    (nn.MaxPool2d(2), (2, 3, 4, 6), 2 * 3 * 2 * 3 * 4),
    (nn.AvgPool2d(3, stride=1), (1, 2, 5, 5), 2 * 3 * 3 * 9),
    (nn.AdaptiveAvgPool2d(1), (2, 3, 4, 5), 120 + 6),
    (nn.Upsample(scale_factor=2, mode="bilinear"), (1, 2, 3, 4), 7 * 2 * 6 * 8),
    (nn.Upsample(scale_factor=2, mode="nearest"), (1, 2, 3, 4), 0),
    (nn.Softmax(dim=1), (2, 3, 4, 5), 5 * 120),
])
def test_other_flops_per_element(module: nn.Module, shape: tuple[int, ...], expected: int) -> None:
    count = _totals(module, shape)
    assert count.total().macs == 0
    assert count.total().other_flops == expected
    assert count.uncounted() == {}


def test_elementwise_and_zero_cost_ops() -> None:
    class Mix(nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            z = torch.cat([x + y, x * y], dim=1)  # 2 elementwise ops of 24 elements, cat costs 0
            return F.pad(z, (1, 1)).view(-1)

    count = _totals(Mix(), (1, 2, 3, 4), (1, 2, 3, 4))
    assert count.total().other_flops == 2 * 24
    assert count.by_category()["elementwise"].other_flops == 48


def test_op_without_formula_is_listed_never_silently_zero() -> None:
    class Sorts(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sort(x, dim=-1).values

    count = _totals(Sorts(), (2, 8))
    assert count.uncounted() == {"aten.sort.default": 1}


@pytest.mark.parametrize("entry", list_entries(), ids=lambda e: e.name)
def test_every_zoo_model_is_fully_counted(entry) -> None:
    size = (1, 1, 32, 32) if entry.name == "lenet5" else (1, 3, 64, 64)
    count = count_flops(api.trace(entry.name, size))
    assert count.uncounted() == {}
    assert count.total().macs > 0


def test_module_macs_partition_the_total() -> None:
    """ResNet-18's forward runs nothing but its children (and a flatten): their MACs add up to the total."""
    report = api.summary("resnet18", (1, 3, 64, 64), depth=1)
    assert sum(row["macs"] for row in report.layers) == report.totals["macs"]


def test_memory_from_lifetimes_by_hand() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(inplace=True),
                          nn.Conv2d(8, 8, 3, padding=1, bias=False))
    memory = estimate_memory(api.trace(model, (1, 3, 8, 8)), None)  # tensors only: no kernel workspace
    input_bytes, feature_bytes = 3 * 64 * 4, 8 * 64 * 4
    assert memory.param_bytes == (8 * 3 * 9 + 8 * 8 * 9) * 4
    assert memory.input_bytes == input_bytes
    # conv1's output (relu works in place on it) and conv2's output are the two allocations
    assert memory.activation_bytes == 2 * feature_bytes
    # at conv2 the input, conv1's output and conv2's output are all live
    assert memory.peak_activation_bytes == input_bytes + 2 * feature_bytes
    assert memory.peak_bytes == memory.param_bytes + input_bytes + 2 * feature_bytes


def test_memory_frees_dead_tensors() -> None:
    """A chain of 4 convs: never more than input + two features live at once."""
    model = nn.Sequential(*[nn.Conv2d(4, 4, 1, bias=False) for _ in range(4)])
    memory = estimate_memory(api.trace(model, (1, 4, 8, 8)))
    size = 4 * 64 * 4
    assert memory.activation_bytes == 4 * size
    assert memory.peak_activation_bytes == 3 * size
