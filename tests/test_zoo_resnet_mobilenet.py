"""ResNet, MobileNetV3, LR-ASPP and LeNet-5 of the zoo against torchvision and hand formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.segmentation import lraspp_mobilenet_v3_large as tv_lraspp

from inspectlab.models import mobilenetv3, resnet
from inspectlab.models.lenet import lenet5

RESNETS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
MOBILENETS = ["mobilenet_v3_large", "mobilenet_v3_small"]
ODD = (97, 131)


def _ours(name: str):
    return getattr(resnet if name.startswith("resnet") else mobilenetv3, name)


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _shapes(model: nn.Module) -> dict[str, torch.Size]:
    return {k: v.shape for k, v in model.state_dict().items()}


def _ceil_div(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """Spatial size after log2(stride) "same"-padded stride-2 layers: each one maps n to ceil(n / 2)."""
    return tuple(math.ceil(n / stride) for n in size)


def _randomize_bn(model: nn.Module) -> None:
    """Non-trivial BatchNorm statistics and affine params, so eval-mode BN is not near the identity."""
    gen = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=gen) * 0.5 + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)


def _assert_same_outputs(theirs: nn.Module, ours: nn.Module, x: torch.Tensor) -> None:
    _randomize_bn(theirs)
    ours.load_state_dict(theirs.state_dict())  # strict: same keys and shapes
    theirs_bn = {k: (m.eps, m.momentum) for k, m in theirs.named_modules() if isinstance(m, nn.BatchNorm2d)}
    ours_bn = {k: (m.eps, m.momentum) for k, m in ours.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert ours_bn == theirs_bn
    theirs.eval()
    ours.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


# --- parameter counts and state_dict layout -------------------------------------------------------

SPEC_COUNTS = {"resnet50": 25_557_032, "mobilenet_v3_large": 5_483_032, "mobilenet_v3_small": 2_542_856}


@pytest.mark.parametrize("name", RESNETS + MOBILENETS)
def test_params_and_keys_match_torchvision(name: str) -> None:
    with torch.device("meta"):
        ours = _ours(name)()
        theirs = getattr(torchvision.models, name)(weights=None)
    assert _count(ours) == _count(theirs)
    assert list(_shapes(ours).items()) == list(_shapes(theirs).items())
    if name in SPEC_COUNTS:
        assert _count(ours) == SPEC_COUNTS[name]


@pytest.mark.parametrize("num_classes", [10, 1000])
def test_num_classes_matches_torchvision(num_classes: int) -> None:
    with torch.device("meta"):
        for name in ("resnet18", "mobilenet_v3_small"):
            theirs = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
            assert _count(_ours(name)(num_classes=num_classes)) == _count(theirs)


def test_lraspp_params_and_keys_match_torchvision() -> None:
    with torch.device("meta"):
        ours = mobilenetv3.lraspp_mobilenet_v3_large()
        theirs = tv_lraspp(weights=None, weights_backbone=None)
    assert _count(ours) == _count(theirs) == 3_221_538
    assert list(_shapes(ours).items()) == list(_shapes(theirs).items())


def test_lenet5_params_hand_formula() -> None:
    def conv(c_in: int, c_out: int, k: int) -> int:
        return c_out * (c_in * k * k + 1)

    def fc(n_in: int, n_out: int) -> int:
        return n_out * (n_in + 1)

    expected = conv(1, 6, 5) + conv(6, 16, 5) + fc(16 * 5 * 5, 120) + fc(120, 84) + fc(84, 10)
    assert expected == 61_706
    assert _count(lenet5()) == expected
    assert _count(lenet5(num_classes=26)) == expected - fc(84, 10) + fc(84, 26)


# --- identical outputs with torchvision's state_dicts ---------------------------------------------

@pytest.mark.parametrize("output_stride", [32, 8])
def test_resnet50_loads_torchvision_state_dict(output_stride: int) -> None:
    torch.manual_seed(0)
    dilation = {32: None, 8: [False, True, True]}[output_stride]
    theirs = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=dilation)
    _assert_same_outputs(theirs, resnet.resnet50(output_stride=output_stride), torch.randn(1, 3, 64, 64))


@pytest.mark.parametrize("name", MOBILENETS)
@pytest.mark.parametrize("dilated", [False, True])
def test_mobilenet_v3_loads_torchvision_state_dict(name: str, dilated: bool) -> None:
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)(weights=None, dilated=dilated)
    _assert_same_outputs(theirs, _ours(name)(dilated=dilated), torch.randn(1, 3, 64, 64))


def test_lraspp_loads_torchvision_state_dict() -> None:
    torch.manual_seed(0)
    theirs = tv_lraspp(weights=None, weights_backbone=None)
    ours = mobilenetv3.lraspp_mobilenet_v3_large()
    x = torch.randn(1, 3, *ODD)
    _randomize_bn(theirs)
    ours.load_state_dict(theirs.state_dict())
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        out, ref = ours(x), theirs(x)
    assert set(out) == {"out"}
    assert out["out"].shape == (1, 21, *ODD)
    torch.testing.assert_close(out["out"], ref["out"])


# --- output stride, feature maps, forward shapes --------------------------------------------------

@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("size", [(64, 64), ODD])
def test_resnet_output_stride(name: str, output_stride: int, size: tuple[int, int]) -> None:
    model = _ours(name)(output_stride=output_stride).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 3, *size))
    expansion = 1 if name == "resnet18" else 4
    layer_strides = [4, 8, 16, 32]
    for i, stride in enumerate(layer_strides):
        expected_stride = min(stride, output_stride)
        assert feats[f"layer{i + 1}"].shape == (1, 64 * 2**i * expansion, *_ceil_div(size, expected_stride))
    assert feats["stem"].shape == (1, 64, *_ceil_div(size, 4))


def test_resnet_dilation_arguments() -> None:
    with torch.device("meta"):
        a = resnet.resnet50(output_stride=16)
        b = resnet.resnet50(replace_stride_with_dilation=[False, False, True])
    assert [m.dilation for m in a.modules() if isinstance(m, nn.Conv2d)] == [
        m.dilation for m in b.modules() if isinstance(m, nn.Conv2d)
    ]
    with pytest.raises(ValueError):
        resnet.resnet18(output_stride=4)
    with pytest.raises(ValueError):
        resnet.resnet18(output_stride=8, replace_stride_with_dilation=[False, True, True])
    with pytest.raises(ValueError):
        resnet.resnet18(replace_stride_with_dilation=[True, True])


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_zero_init_residual_like_torchvision(name: str) -> None:
    torch.manual_seed(0)
    ours = _ours(name)(zero_init_residual=True)
    theirs = getattr(torchvision.models, name)(weights=None, zero_init_residual=True)

    def zeroed(model: nn.Module) -> set[str]:
        return {k for k, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and not m.weight.any()}

    assert zeroed(ours) == zeroed(theirs) != set()
    assert zeroed(_ours(name)()) == set()


def test_init_scales() -> None:
    torch.manual_seed(0)
    r50 = resnet.resnet50()
    fan_out = 64 * 7 * 7
    assert r50.conv1.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.05)
    mbv3 = mobilenetv3.mobilenet_v3_large()
    assert mbv3.classifier[0].weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert mbv3.classifier[0].bias.abs().sum().item() == 0


# Channels per stride from tables 1 and 2 of Howard et al. 2019 (first block at each stride).
MBV3_CHANNELS = {
    "mobilenet_v3_large": {"stride2": 16, "stride4": 24, "stride8": 40, "stride16": 80, "last": 960},
    "mobilenet_v3_small": {"stride2": 16, "stride4": 16, "stride8": 24, "stride16": 40, "last": 576},
}


@pytest.mark.parametrize("name", MOBILENETS)
@pytest.mark.parametrize("dilated", [False, True])
def test_mobilenet_v3_forward_features(name: str, dilated: bool) -> None:
    model = _ours(name)(dilated=dilated).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 3, *ODD))
    assert list(feats) == list(MBV3_CHANNELS[name])
    for key, channels in MBV3_CHANNELS[name].items():
        stride = (16 if dilated else 32) if key == "last" else int(key.removeprefix("stride"))
        assert feats[key].shape == (1, channels, *_ceil_div(ODD, stride))


@pytest.mark.parametrize("name", RESNETS + MOBILENETS)
@pytest.mark.parametrize("size", [(64, 64), ODD])
def test_classifier_forward_shapes(name: str, size: tuple[int, int]) -> None:
    model = _ours(name)(num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, *size)).shape == (2, 7)


@pytest.mark.parametrize("size", [(64, 64), (33, 47)])
def test_lraspp_forward_shapes(size: tuple[int, int]) -> None:
    model = mobilenetv3.lraspp_mobilenet_v3_large(num_classes=5).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out["out"].shape == (2, 5, *size)


def test_lenet5_forward() -> None:
    model = lenet5().eval()
    with torch.no_grad():
        assert model(torch.randn(3, 1, 32, 32)).shape == (3, 10)
        assert lenet5(num_classes=4)(torch.randn(1, 1, 32, 32)).shape == (1, 4)
