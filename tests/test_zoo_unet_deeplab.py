"""UNet and DeepLabV3/V3+: parameter counts (spec, hand formulas, torchvision), torchvision state_dict
compatibility of deeplabv3_resnet50, and output shapes at even and odd input sizes."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import segmentation as tv_seg

from inspectlab.models.deeplab import deeplabv3, deeplabv3plus
from inspectlab.models.unet import unet

BACKBONES = ["resnet50", "resnet101", "mobilenet_v3_large", "hrnetv2_w32", "hrnetv2_w48"]


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta_count(builder, *args, **kwargs) -> int:
    with torch.device("meta"):
        return _count(builder(*args, **kwargs))


# --- UNet ---------------------------------------------------------------------------------------------


def _double_conv(cin: int, cout: int, mid: int | None = None) -> int:
    """Two bias-free 3x3 convs, each followed by a BatchNorm (weight and bias)."""
    mid = mid or cout
    return 9 * cin * mid + 2 * mid + 9 * mid * cout + 2 * cout


def _unet_formula(in_ch: int, classes: int, c: int, bilinear: bool) -> int:
    f = 2 if bilinear else 1
    total = _double_conv(in_ch, c)  # input stage
    total += sum(_double_conv(c * 2**i, c * 2 ** (i + 1)) for i in range(3))  # down1..3
    total += _double_conv(8 * c, 16 * c // f)  # down4
    for cin, cout in ((16 * c, 8 * c // f), (8 * c, 4 * c // f), (4 * c, 2 * c // f), (2 * c, c)):
        if bilinear:
            total += _double_conv(cin, cout, cin // 2)
        else:
            total += cin * (cin // 2) * 4 + cin // 2  # 2x2 transposed conv with bias
            total += _double_conv(cin, cout)
    return total + c * classes + classes  # 1x1 output conv with bias


@pytest.mark.parametrize(("bilinear", "expected"), [(True, 17_263_042), (False, 31_037_698)])
def test_unet_param_counts(bilinear: bool, expected: int) -> None:
    assert _meta_count(unet, bilinear=bilinear) == expected
    assert _unet_formula(3, 2, 64, bilinear) == expected


@pytest.mark.parametrize("bilinear", [True, False])
def test_unet_formula_other_config(bilinear: bool) -> None:
    assert _meta_count(unet, 1, 5, 16, bilinear) == _unet_formula(1, 5, 16, bilinear)


@pytest.mark.parametrize("bilinear", [True, False])
@pytest.mark.parametrize("size", [(64, 64), (97, 131)])
def test_unet_forward_shape(bilinear: bool, size: tuple[int, int]) -> None:
    model = unet(num_classes=3, base_c=8, bilinear=bilinear).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert set(out) == {"out"}
    assert out["out"].shape == (2, 3, *size)


# --- DeepLab: parameter counts ------------------------------------------------------------------------

# V3+ head minus V3 head, 21 classes, 256-channel low-level features: the 48-channel 1x1 projection
# (conv + BN) plus the 304->256 3x3 conv, minus V3's 256->256 3x3 conv (BN and classifier are shared).
V3PLUS_EXTRA_256 = 256 * 48 + 2 * 48 + 9 * 304 * 256 - 9 * 256 * 256
V3PLUS_EXTRA_24 = 24 * 48 + 2 * 48 + 9 * 304 * 256 - 9 * 256 * 256  # MobileNetV3's 24-channel feature

SPEC_COUNTS = [
    (deeplabv3, "resnet50", 39_638_869),
    (deeplabv3plus, "resnet50", 39_761_845),
    (deeplabv3plus, "resnet101", 58_753_973),
    (deeplabv3plus, "hrnetv2_w32", 33_918_517),
    (deeplabv3plus, "hrnetv2_w48", 71_719_861),
    # not in the spec: derived from the spec counts with the head difference above
    (deeplabv3, "resnet101", 58_753_973 - V3PLUS_EXTRA_256),
    (deeplabv3, "hrnetv2_w32", 33_918_517 - V3PLUS_EXTRA_256),
    (deeplabv3, "hrnetv2_w48", 71_719_861 - V3PLUS_EXTRA_256),
]


@pytest.mark.parametrize(("builder", "backbone", "expected"), SPEC_COUNTS)
def test_deeplab_param_counts(builder, backbone: str, expected: int) -> None:
    assert _meta_count(builder, backbone) == expected


@pytest.mark.parametrize("output_stride", [8, 16])
def test_output_stride_keeps_param_count(output_stride: int) -> None:
    assert _meta_count(deeplabv3, "resnet50", output_stride=output_stride) == 39_638_869


@pytest.mark.parametrize(
    ("backbone", "tv_builder"),
    [("resnet50", tv_seg.deeplabv3_resnet50), ("resnet101", tv_seg.deeplabv3_resnet101),
     ("mobilenet_v3_large", tv_seg.deeplabv3_mobilenet_v3_large)],
)
def test_deeplab_counts_match_torchvision(backbone: str, tv_builder) -> None:
    reference = _meta_count(tv_builder, weights=None, weights_backbone=None, aux_loss=False)
    assert _meta_count(deeplabv3, backbone) == reference
    extra = V3PLUS_EXTRA_24 if backbone == "mobilenet_v3_large" else V3PLUS_EXTRA_256
    assert _meta_count(deeplabv3plus, backbone) == reference + extra


def test_deeplabv3_resnet50_loads_torchvision_state_dict() -> None:
    torch.manual_seed(0)
    reference = tv_seg.deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=False)
    for module in reference.modules():  # non-trivial BN statistics, so that eval mode tests them too
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    ours = deeplabv3("resnet50")
    assert list(ours.state_dict()) == list(reference.state_dict())
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        expected = reference.eval()(x)["out"]
        got = ours.eval()(x)["out"]
    assert got.shape == (1, 21, 65, 65)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


# --- DeepLab: forward shapes and arguments ------------------------------------------------------------


@pytest.mark.parametrize("backbone", BACKBONES)
def test_deeplab_forward_shapes(backbone: str) -> None:
    torch.manual_seed(0)
    for builder in (deeplabv3, deeplabv3plus):
        model = builder(backbone, num_classes=5).eval()
        with torch.no_grad():
            for size in ((64, 64), (97, 131)):
                out = model(torch.randn(1, 3, *size))
                assert set(out) == {"out"}
                assert out["out"].shape == (1, 5, *size)


def test_deeplab_odd_size_resnet_os16() -> None:
    model = deeplabv3plus("resnet50", num_classes=3, output_stride=16).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 75, 53))["out"].shape == (1, 3, 75, 53)


def test_deeplab_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="resnet50.*hrnetv2_w48"):
        deeplabv3("vgg16")
    with pytest.raises(ValueError, match="output_stride"):
        deeplabv3plus("resnet50", output_stride=32)


def test_resnet_backbone_has_no_classifier() -> None:
    with torch.device("meta"):
        model = deeplabv3plus("resnet50")
    assert not any(name.startswith(("backbone.fc", "backbone.avgpool")) for name, _ in model.named_modules())
