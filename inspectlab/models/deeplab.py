"""DeepLabV3 (Chen et al. 2017, "Rethinking Atrous Convolution for Semantic Image Segmentation") and
DeepLabV3+ (Chen et al., ECCV 2018, "Encoder-Decoder with Atrous Separable Convolution for Semantic Image
Segmentation") on ResNet-50/101, MobileNetV3-Large and HRNetV2-W32/W48 backbones.

Feature strides and ASPP rates:
- ResNet: ``output_stride`` 8 (layer3 and layer4 dilated, rates 12/24/36) or 16 (layer4 dilated,
  rates 6/12/18).
- MobileNetV3-Large: always stride 16 (``dilated=True``: the last stage is dilated instead of strided),
  rates 6/12/18, whatever ``output_stride`` says (the backbone offers no stride-8 variant). torchvision's
  ``deeplabv3_mobilenet_v3_large`` uses rates 12/24/36 there; the rates change no parameter count.
- HRNetV2: its concatenated features are at stride 4; rates 12/24/36, whatever ``output_stride`` says.

``deeplabv3("resnet50")`` has the key layout of torchvision's ``deeplabv3_resnet50(aux_loss=False)``
(``backbone.*`` without avgpool/fc, ``classifier.0`` = ASPP, ``classifier.1..4`` = conv, BN, ReLU, conv), so
their state_dicts load into each other. ASPP dropout is 0.1 here, 0.5 in torchvision: equal in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ASPP, ConvBNAct
from .hrnet import hrnetv2_w32, hrnetv2_w48
from .mobilenetv3 import mobilenet_v3_large
from .resnet import resnet50, resnet101

ASPP_CHANNELS = 256
LOW_LEVEL_CHANNELS = 48


@dataclass
class _Backbone:
    """A feature extractor and where DeepLab reads it: keys of its ``forward_features`` dict."""

    module: nn.Module
    high_key: str
    high_channels: int
    low_key: str
    low_channels: int
    stride: int


def _resnet(builder: Callable[..., nn.Module], output_stride: int) -> _Backbone:
    net = builder(output_stride=output_stride)
    del net.avgpool, net.fc  # like torchvision's IntermediateLayerGetter: nothing after layer4
    return _Backbone(net, "layer4", 2048, "layer1", 256, output_stride)


def _mobilenet(output_stride: int) -> _Backbone:
    net = mobilenet_v3_large(dilated=True)
    del net.avgpool, net.classifier
    return _Backbone(net, "last", 960, "stride4", 24, 16)


def _hrnet(builder: Callable[..., nn.Module], output_stride: int) -> _Backbone:
    net = builder(features_only=True)
    return _Backbone(net, "out", net.out_channels, "low", 256, 4)


BACKBONES: dict[str, Callable[[int], _Backbone]] = {
    "resnet50": lambda os_: _resnet(resnet50, os_),
    "resnet101": lambda os_: _resnet(resnet101, os_),
    "mobilenet_v3_large": _mobilenet,
    "hrnetv2_w32": lambda os_: _hrnet(hrnetv2_w32, os_),
    "hrnetv2_w48": lambda os_: _hrnet(hrnetv2_w48, os_),
}


def _atrous_rates(stride: int) -> tuple[int, int, int]:
    """ASPP rates for features at ``stride``: 6/12/18 at 16, doubled at 8 and below."""
    return (6, 12, 18) if stride >= 16 else (12, 24, 36)


class DeepLabHead(nn.Sequential):
    """DeepLabV3 head: ASPP, 3x3 conv 256->256, BN, ReLU, 1x1 classifier (torchvision's keys 0..4)."""

    def __init__(self, in_channels: int, num_classes: int, atrous_rates: Sequence[int]) -> None:
        super().__init__(
            ASPP(in_channels, atrous_rates, ASPP_CHANNELS),
            nn.Conv2d(ASPP_CHANNELS, ASPP_CHANNELS, 3, padding=1, bias=False),
            nn.BatchNorm2d(ASPP_CHANNELS),
            nn.ReLU(inplace=True),
            nn.Conv2d(ASPP_CHANNELS, num_classes, 1),
        )


class DeepLabV3PlusHead(nn.Module):
    """DeepLabV3+ decoder: ASPP on the deep features, upsampled onto 48-channel projected low-level
    features, concatenated, one 3x3 conv-BN-ReLU, 1x1 classifier."""

    def __init__(
        self, in_channels: int, low_channels: int, num_classes: int, atrous_rates: Sequence[int]
    ) -> None:
        super().__init__()
        self.aspp = ASPP(in_channels, atrous_rates, ASPP_CHANNELS)
        self.low_project = ConvBNAct(low_channels, LOW_LEVEL_CHANNELS, kernel_size=1)
        self.fuse = ConvBNAct(ASPP_CHANNELS + LOW_LEVEL_CHANNELS, ASPP_CHANNELS, kernel_size=3)
        self.classifier = nn.Conv2d(ASPP_CHANNELS, num_classes, 1)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        low = self.low_project(low)
        high = F.interpolate(self.aspp(high), size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.fuse(torch.cat([high, low], dim=1)))


class DeepLab(nn.Module):
    """Backbone plus a DeepLabV3 or V3+ head; ``forward`` returns ``{"out": logits}`` at the input size.

    ``low_key`` is None for V3 (the head reads the deep features only), else the V3+ low-level feature key.
    """

    def __init__(
        self, backbone: nn.Module, classifier: nn.Module, high_key: str, low_key: str | None = None
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier
        self.high_key = high_key
        self.low_key = low_key

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone.forward_features(x)
        high = features[self.high_key]
        if self.low_key is None:
            out = self.classifier(high)
        else:
            out = self.classifier(high, features[self.low_key])
        return {"out": F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)}


def _backbone(name: str, output_stride: int) -> _Backbone:
    if name not in BACKBONES:
        raise ValueError(f"unknown DeepLab backbone {name!r}; valid: {', '.join(BACKBONES)}")
    if output_stride not in (8, 16):
        raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
    return BACKBONES[name](output_stride)


def deeplabv3(backbone: str = "resnet50", num_classes: int = 21, output_stride: int = 8) -> DeepLab:
    """DeepLabV3 (Chen et al. 2017, "Rethinking Atrous Convolution for Semantic Image Segmentation").

    With ``backbone="resnet50"`` and the default stride 8 it matches torchvision's ``deeplabv3_resnet50``
    without aux head, key for key. See the module docstring for strides and rates per backbone.
    """
    spec = _backbone(backbone, output_stride)
    head = DeepLabHead(spec.high_channels, num_classes, _atrous_rates(spec.stride))
    return DeepLab(spec.module, head, spec.high_key)


def deeplabv3plus(backbone: str = "resnet50", num_classes: int = 21, output_stride: int = 16) -> DeepLab:
    """DeepLabV3+ (Chen et al., ECCV 2018, "Encoder-Decoder with Atrous Separable Convolution").

    Low-level features: ResNet layer1 and HRNet layer1 (256 ch), MobileNetV3's "stride4" feature (24 ch,
    the output of ``features[2]``, the block that first reaches stride 4).
    The decoder uses plain (not separable) 3x3 convolutions.
    """
    spec = _backbone(backbone, output_stride)
    head = DeepLabV3PlusHead(spec.high_channels, spec.low_channels, num_classes, _atrous_rates(spec.stride))
    return DeepLab(spec.module, head, spec.high_key, spec.low_key)
