"""MobileNetV3-Large/Small and Lite R-ASPP (Howard et al., "Searching for MobileNetV3", ICCV 2019).

State_dict keys and shapes are those of torchvision's ``mobilenet_v3_large``, ``mobilenet_v3_small`` and
``lraspp_mobilenet_v3_large``, and the BatchNorm settings match too (eps 1e-3, momentum 0.01 in the
backbone), so torchvision state_dicts load and give the same outputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from inspectlab.models.blocks import ActivationFactory, ConvBNAct, SqueezeExcitation


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` without going more than 10% below it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class Bneck(NamedTuple):
    """One inverted-residual ("bneck") row of the paper's tables 1 and 2."""

    kernel: int
    expanded: int
    out: int
    use_se: bool
    hard_swish: bool  # False: ReLU
    stride: int


# Table 1 of the paper (MobileNetV3-Large), last conv 960 -> classifier hidden 1280.
_LARGE = [Bneck(*row) for row in (
    (3, 16, 16, False, False, 1),
    (3, 64, 24, False, False, 2),
    (3, 72, 24, False, False, 1),
    (5, 72, 40, True, False, 2),
    (5, 120, 40, True, False, 1),
    (5, 120, 40, True, False, 1),
    (3, 240, 80, False, True, 2),
    (3, 200, 80, False, True, 1),
    (3, 184, 80, False, True, 1),
    (3, 184, 80, False, True, 1),
    (3, 480, 112, True, True, 1),
    (3, 672, 112, True, True, 1),
    (5, 672, 160, True, True, 2),
    (5, 960, 160, True, True, 1),
    (5, 960, 160, True, True, 1),
)]

# Table 2 of the paper (MobileNetV3-Small), last conv 576 -> classifier hidden 1024.
_SMALL = [Bneck(*row) for row in (
    (3, 16, 16, True, False, 2),
    (3, 72, 24, False, False, 2),
    (3, 88, 24, False, False, 1),
    (5, 96, 40, True, True, 2),
    (5, 240, 40, True, True, 1),
    (5, 240, 40, True, True, 1),
    (5, 120, 48, True, True, 1),
    (5, 144, 48, True, True, 1),
    (5, 288, 96, True, True, 2),
    (5, 576, 96, True, True, 1),
    (5, 576, 96, True, True, 1),
)]


class InvertedResidual(nn.Module):
    """1x1 expand, kxk depthwise, optional SE (hard-sigmoid gate), 1x1 linear projection, residual add."""

    def __init__(self, in_channels: int, cfg: Bneck, dilation: int = 1) -> None:
        super().__init__()
        activation: ActivationFactory = nn.Hardswish if cfg.hard_swish else nn.ReLU
        self.use_res_connect = cfg.stride == 1 and in_channels == cfg.out
        layers: list[nn.Module] = []
        if cfg.expanded != in_channels:
            layers.append(ConvBNAct(in_channels, cfg.expanded, 1, activation=activation))
        depthwise_stride = 1 if dilation > 1 else cfg.stride
        layers.append(ConvBNAct(cfg.expanded, cfg.expanded, cfg.kernel, depthwise_stride, groups=cfg.expanded,
                                dilation=dilation, activation=activation))
        if cfg.use_se:
            squeeze = make_divisible(cfg.expanded // 4, 8)
            layers.append(SqueezeExcitation(cfg.expanded, squeeze, gate=nn.Hardsigmoid))
        layers.append(ConvBNAct(cfg.expanded, cfg.out, 1, activation=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = cfg.out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.use_res_connect else out


def collect_taps(
    layers: Iterable[nn.Module], x: torch.Tensor, taps: Mapping[int, str]
) -> dict[str, torch.Tensor]:
    """Run ``layers`` in order and return {name: output} for the layer indices in ``taps``."""
    outputs: dict[str, torch.Tensor] = {}
    for index, layer in enumerate(layers):
        x = layer(x)
        if index in taps:
            outputs[taps[index]] = x
            if len(outputs) == len(taps):
                break
    return outputs


class TappedSequential(nn.Sequential):
    """The layers of ``layers`` up to the last tapped one (keys "0", "1", ...); returns the tapped outputs.

    Plays the part of torchvision's IntermediateLayerGetter over ``MobileNetV3.features`` (same keys).
    """

    def __init__(self, layers: nn.Sequential, taps: Mapping[int, str]) -> None:
        super().__init__(*list(layers)[: max(taps) + 1])
        self.taps = dict(taps)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return collect_taps(self, x, self.taps)


class MobileNetV3(nn.Module):
    """MobileNetV3: hard-swish stem, inverted residuals, 1x1 conv (6x), pool, two-layer classifier.

    ``feature_taps`` maps indices of ``features`` to the names that ``forward_features`` returns:
    "strideS" is the output of the block where the stride first reaches S (S = 2, 4, 8, 16; the same
    blocks torchvision's segmentation models tap), "last" is the final 1x1 conv (stride 32, or 16 when
    ``dilated``).
    """

    def __init__(self, setting: Sequence[Bneck], last_channel: int, num_classes: int = 1000,
                 dilated: bool = False, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(3, 16, 3, stride=2, activation=nn.Hardswish)]
        taps = {0: "stride2"}
        channels, stride = 16, 2
        for cfg in setting:
            stride *= cfg.stride
            # ``dilated`` keeps the last stage (nominal stride 32) at stride 16 with dilation 2.
            layers.append(InvertedResidual(channels, cfg, dilation=2 if dilated and stride > 16 else 1))
            channels = cfg.out
            if cfg.stride > 1 and stride <= 16:
                taps[len(layers) - 1] = f"stride{stride}"
        layers.append(ConvBNAct(channels, 6 * channels, 1, activation=nn.Hardswish))
        taps[len(layers) - 1] = "last"
        self.features = nn.Sequential(*layers)
        self.feature_taps = taps
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(6 * channels, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_channel, num_classes),
        )

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                module.eps, module.momentum = 1e-3, 0.01
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Feature maps named as in ``feature_taps``; for the large model "stride2" (16 ch), "stride4" (24),
        "stride8" (40), "stride16" (80), "last" (960); for the small one 16, 16, 24, 40 and 576 channels."""
        return collect_taps(self.features, x, self.feature_taps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of shape (N, num_classes)."""
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def mobilenet_v3_large(num_classes: int = 1000, dilated: bool = False) -> MobileNetV3:
    """MobileNetV3-Large (Howard et al., ICCV 2019); ``dilated`` keeps output stride 16."""
    return MobileNetV3(_LARGE, 1280, num_classes, dilated)


def mobilenet_v3_small(num_classes: int = 1000, dilated: bool = False) -> MobileNetV3:
    """MobileNetV3-Small (Howard et al., ICCV 2019); ``dilated`` keeps output stride 16."""
    return MobileNetV3(_SMALL, 1024, num_classes, dilated)


class LRASPPHead(nn.Module):
    """Lite R-ASPP head: 1x1 conv on the deep features gated by a pooled sigmoid branch, upsampled to
    the stride-8 features, each side classified by a 1x1 conv and summed."""

    def __init__(
        self, low_channels: int, high_channels: int, num_classes: int, inter_channels: int = 128
    ) -> None:
        super().__init__()
        self.cbr = ConvBNAct(high_channels, inter_channels, 1)
        self.scale = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(high_channels, inter_channels, 1, bias=False),
            nn.Sigmoid(),
        )
        self.low_classifier = nn.Conv2d(low_channels, num_classes, 1)
        self.high_classifier = nn.Conv2d(inter_channels, num_classes, 1)

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        low, high = features["low"], features["high"]
        x = self.cbr(high) * self.scale(high)
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.low_classifier(low) + self.high_classifier(x)


class LRASPP(nn.Module):
    """Segmentation with a MobileNetV3 backbone and a Lite R-ASPP head; returns {"out": logits} at the
    input size. ``backbone`` keys are torchvision's (``backbone.N`` over the backbone's features)."""

    def __init__(self, backbone: MobileNetV3, num_classes: int, inter_channels: int = 128) -> None:
        super().__init__()
        index = {name: i for i, name in backbone.feature_taps.items()}
        low, high = index["stride8"], index["last"]
        self.backbone = TappedSequential(backbone.features, {low: "low", high: "high"})
        channels = (backbone.features[low].out_channels, backbone.features[high].out_channels)
        self.classifier = LRASPPHead(*channels, num_classes, inter_channels)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.classifier(self.backbone(x))
        return {"out": F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)}


def lraspp_mobilenet_v3_large(num_classes: int = 21) -> LRASPP:
    """Lite R-ASPP on a dilated MobileNetV3-Large (Howard et al., "Searching for MobileNetV3", ICCV 2019)."""
    return LRASPP(mobilenet_v3_large(dilated=True), num_classes)
