"""HRNetV2 zoo models: parameter counts from the spec, output shapes at odd sizes, head by formula."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inspectlab.models.hrnet import HRNet, hrnetv2_w18, hrnetv2_w32, hrnetv2_w48


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta(builder, **kwargs) -> HRNet:
    with torch.device("meta"):
        return builder(**kwargs)


def _stride2(n: int) -> int:
    """Output size of a 3x3 conv, stride 2, padding 1: floor((n + 2 - 3) / 2) + 1."""
    return (n + 2 - 3) // 2 + 1


def _stride4(n: int) -> int:
    return _stride2(_stride2(n))


@pytest.mark.parametrize(
    ("builder", "features_only", "expected"),
    [
        (hrnetv2_w32, False, 37_044_376),
        (hrnetv2_w48, False, 76_976_080),
        (hrnetv2_w32, True, 29_305_536),
        (hrnetv2_w48, True, 65_325_120),
    ],
)
def test_param_counts_match_spec(builder, features_only: bool, expected: int) -> None:
    assert _params(_meta(builder, features_only=features_only)) == expected


@pytest.mark.parametrize(
    ("builder", "head"),
    [
        # 1x1 conv 15C -> 15C/4 (no bias) + BN (weight, bias) + linear over the 8x8 pooled map (with bias).
        (hrnetv2_w32, 480 * 120 + 2 * 120 + 120 * 64 * 1000 + 1000),
        (hrnetv2_w48, 720 * 180 + 2 * 180 + 180 * 64 * 1000 + 1000),
    ],
)
def test_classification_head_by_formula(builder, head: int) -> None:
    full = _params(_meta(builder))
    features = _params(_meta(builder, features_only=True))
    assert full - features == head


def test_num_classes_changes_only_the_linear_layer() -> None:
    diff = _params(_meta(hrnetv2_w32)) - _params(_meta(hrnetv2_w32, num_classes=10))
    assert diff == (1000 - 10) * (120 * 64 + 1)


@pytest.mark.parametrize(("builder", "width"), [(hrnetv2_w18, 18), (hrnetv2_w32, 32), (hrnetv2_w48, 48)])
def test_concatenated_channels_are_15c(builder, width: int) -> None:
    model = _meta(builder, features_only=True)
    assert model.out_channels == 15 * width
    with torch.device("meta"):
        out = model.forward_features(torch.empty(1, 3, 97, 131))
    assert out["out"].shape == (1, 15 * width, _stride4(97), _stride4(131))
    assert out["low"].shape == (1, 256, _stride4(97), _stride4(131))


@pytest.fixture(scope="module")
def w18_features() -> HRNet:
    torch.manual_seed(0)
    return hrnetv2_w18(features_only=True).eval()


@pytest.fixture(scope="module")
def w18_classifier() -> HRNet:
    torch.manual_seed(0)
    return hrnetv2_w18(num_classes=7).eval()


SIZES = [(64, 64), (97, 131), (33, 45)]


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_w18_feature_shapes(w18_features: HRNet, height: int, width: int) -> None:
    x = torch.randn(1, 3, height, width)
    with torch.no_grad():
        feats = w18_features.forward_features(x)
        out = w18_features(x)
    size = (_stride4(height), _stride4(width))
    assert feats["low"].shape == (1, 256, *size)
    assert feats["out"].shape == (1, 15 * 18, *size)
    assert out.shape == (1, 15 * 18, *size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_w18_classifier_shapes(w18_classifier: HRNet, height: int, width: int) -> None:
    with torch.no_grad():
        logits = w18_classifier(torch.randn(2, 3, height, width))
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()


def test_fusion_paths_structure() -> None:
    """From a higher resolution: stride-2 3x3 convs, ReLU between them only; from a lower one: 1x1 + BN."""
    model = _meta(hrnetv2_w18, features_only=True)
    fuse = model.stage4[-1].fuse_layers
    down = fuse[3][0]  # branch 0 (18 ch, stride 4) into branch 3 (144 ch, stride 32)
    convs = [m for m in down.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (18, 18, (3, 3), (2, 2)),
        (18, 18, (3, 3), (2, 2)),
        (18, 144, (3, 3), (2, 2)),
    ]
    assert sum(isinstance(m, nn.ReLU) for m in down.modules()) == 2
    assert not isinstance(list(down.modules())[-1], nn.ReLU)
    up = [m for m in fuse[0][3].modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.ReLU))]
    assert [type(m) for m in up] == [nn.Conv2d, nn.BatchNorm2d]
    assert (up[0].in_channels, up[0].out_channels, up[0].kernel_size) == (144, 18, (1, 1))
