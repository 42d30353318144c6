"""ResNet-18/34/50/101/152 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016).

Attribute names, state_dict keys and shapes are those of torchvision's ``resnet*`` models, so their
state_dicts load unchanged. Unlike torchvision, BasicBlock networks accept dilation too, and
``output_stride`` is a shorthand for ``replace_stride_with_dilation`` (for DeepLab-style backbones).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from inspectlab.models.blocks import BasicBlock, Bottleneck, conv1x1

_DILATION_FOR_STRIDE = {8: (False, True, True), 16: (False, False, True), 32: (False, False, False)}


def _dilation_flags(
    replace_stride_with_dilation: Sequence[bool] | None, output_stride: int | None
) -> tuple[bool, bool, bool]:
    """Resolve the two ways of asking for dilation into one (layer2, layer3, layer4) triple."""
    if output_stride is not None:
        if replace_stride_with_dilation is not None:
            raise ValueError("give either output_stride or replace_stride_with_dilation, not both")
        if output_stride not in _DILATION_FOR_STRIDE:
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        return _DILATION_FOR_STRIDE[output_stride]
    if replace_stride_with_dilation is None:
        return (False, False, False)
    flags = tuple(bool(flag) for flag in replace_stride_with_dilation)
    if len(flags) != 3:
        raise ValueError(f"replace_stride_with_dilation needs 3 entries, got {len(flags)}")
    return flags[0], flags[1], flags[2]


class ResNet(nn.Module):
    """ResNet: 7x7 stem, max pool, four residual stages, global average pool, linear classifier."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: Sequence[int],
        num_classes: int = 1000,
        replace_stride_with_dilation: Sequence[bool] | None = None,
        output_stride: int | None = None,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        dilate = _dilation_flags(replace_stride_with_dilation, output_stride)
        self.inplanes = 64
        self.dilation = 1
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2, dilate=dilate[0])
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2, dilate=dilate[1])
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2, dilate=dilate[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            # Each residual branch then starts as zero, so every block starts as the identity.
            for module in self.modules():
                if isinstance(module, Bottleneck):
                    nn.init.zeros_(module.bn3.weight)
                elif isinstance(module, BasicBlock):
                    nn.init.zeros_(module.bn2.weight)

    def _make_layer(
        self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int, stride: int = 1,
        dilate: bool = False,
    ) -> nn.Sequential:
        """One stage; with ``dilate`` its stride becomes dilation (applied from its second block on)."""
        first_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        out_planes = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out_planes:
            downsample = nn.Sequential(conv1x1(self.inplanes, out_planes, stride), nn.BatchNorm2d(out_planes))
        stage = [block(self.inplanes, planes, stride, downsample, dilation=first_dilation)]
        self.inplanes = out_planes
        stage += [block(out_planes, planes, dilation=self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Feature maps: "stem" (after the max pool, stride 4), then "layer1" .. "layer4" (strides 4, 8,
        16, 32 unless dilated)."""
        features = {"stem": self.maxpool(self.relu(self.bn1(self.conv1(x))))}
        x = features["stem"]
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
            features[name] = x
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of shape (N, num_classes)."""
        x = self.avgpool(self.forward_features(x)["layer4"])
        return self.fc(torch.flatten(x, 1))


def resnet18(
    num_classes: int = 1000,
    replace_stride_with_dilation: Sequence[bool] | None = None,
    output_stride: int | None = None,
    zero_init_residual: bool = False,
) -> ResNet:
    """ResNet-18 (He et al., CVPR 2016): BasicBlocks [2, 2, 2, 2]."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, replace_stride_with_dilation, output_stride,
                  zero_init_residual)


def resnet34(
    num_classes: int = 1000,
    replace_stride_with_dilation: Sequence[bool] | None = None,
    output_stride: int | None = None,
    zero_init_residual: bool = False,
) -> ResNet:
    """ResNet-34 (He et al., CVPR 2016): BasicBlocks [3, 4, 6, 3]."""
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes, replace_stride_with_dilation, output_stride,
                  zero_init_residual)


def resnet50(
    num_classes: int = 1000,
    replace_stride_with_dilation: Sequence[bool] | None = None,
    output_stride: int | None = None,
    zero_init_residual: bool = False,
) -> ResNet:
    """ResNet-50 (He et al., CVPR 2016): Bottlenecks [3, 4, 6, 3], stride on the 3x3 conv."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, replace_stride_with_dilation, output_stride,
                  zero_init_residual)


def resnet101(
    num_classes: int = 1000,
    replace_stride_with_dilation: Sequence[bool] | None = None,
    output_stride: int | None = None,
    zero_init_residual: bool = False,
) -> ResNet:
    """ResNet-101 (He et al., CVPR 2016): Bottlenecks [3, 4, 23, 3]."""
    return ResNet(Bottleneck, (3, 4, 23, 3), num_classes, replace_stride_with_dilation, output_stride,
                  zero_init_residual)


def resnet152(
    num_classes: int = 1000,
    replace_stride_with_dilation: Sequence[bool] | None = None,
    output_stride: int | None = None,
    zero_init_residual: bool = False,
) -> ResNet:
    """ResNet-152 (He et al., CVPR 2016): Bottlenecks [3, 8, 36, 3]."""
    return ResNet(Bottleneck, (3, 8, 36, 3), num_classes, replace_stride_with_dilation, output_stride,
                  zero_init_residual)
