"""HRNetV2 (Sun et al., CVPR 2019; Wang et al., TPAMI 2020): parallel multi-resolution branches.

The network keeps a stride-4 branch for its whole depth and adds a branch at half the resolution (twice
the channels) at each stage; every module ends by fusing all branches into each other. HRNetV2's
representation upsamples all four branches to the stride-4 size and concatenates them (15*C channels).

Sizes need not be multiples of 32: strided convs round up, and every upsampling targets the exact size
of the branch it feeds.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from inspectlab.models.blocks import BasicBlock, Bottleneck, ConvBNAct, conv1x1

BLOCKS_PER_BRANCH = 4


def _upsample(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize to an exact spatial size (align_corners=False)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def _fuse_layer(channels: Sequence[int], source: int, target: int) -> nn.Module:
    """The path carrying branch `source` into branch `target` before the sum.

    Lower resolution: 1x1 conv + BN (the upsampling happens in forward). Higher resolution: a chain of
    stride-2 3x3 conv + BN, with ReLU between the convs but not after the last one.
    """
    if source == target:
        return nn.Identity()
    if source > target:
        return ConvBNAct(channels[source], channels[target], kernel_size=1, activation=None)
    steps = target - source
    chain = [ConvBNAct(channels[source], channels[source], stride=2) for _ in range(steps - 1)]
    chain.append(ConvBNAct(channels[source], channels[target], stride=2, activation=None))
    return nn.Sequential(*chain)


class HighResolutionModule(nn.Module):
    """BasicBlocks on each branch, then every branch receives the sum of all branches, then ReLU."""

    def __init__(self, channels: Sequence[int], num_blocks: int = BLOCKS_PER_BRANCH) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(c, c) for _ in range(num_blocks)]) for c in channels
        )
        n = len(channels)
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(_fuse_layer(channels, source, target) for source in range(n)) for target in range(n)
        )

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        fused = []
        for target, row in enumerate(self.fuse_layers):
            size = xs[target].shape[-2:]
            total = xs[target]
            for source, layer in enumerate(row):
                if source == target:
                    continue
                y = layer(xs[source])
                total = total + (_upsample(y, size) if source > target else y)
            fused.append(F.relu(total))
        return fused


def _transition(previous: Sequence[int], following: Sequence[int]) -> nn.ModuleList:
    """Adapt branch widths (3x3 conv where they differ) and open new branches (stride-2 3x3 conv).

    A new branch is made from the lowest-resolution branch of the previous stage.
    """
    layers: list[nn.Module] = []
    for i, out_channels in enumerate(following):
        if i >= len(previous):
            layers.append(ConvBNAct(previous[-1], out_channels, stride=2))
        elif previous[i] != out_channels:
            layers.append(ConvBNAct(previous[i], out_channels))
        else:
            layers.append(nn.Identity())
    return nn.ModuleList(layers)


def _stage(num_modules: int, channels: Sequence[int]) -> nn.Sequential:
    """`num_modules` HighResolutionModules in a row (a Sequential passes the list of branches along)."""
    return nn.Sequential(*[HighResolutionModule(channels) for _ in range(num_modules)])


def _apply_transition(transition: nn.ModuleList, xs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Run a transition: branch i reads xs[i], a new branch reads the last previous branch."""
    return [layer(xs[min(i, len(xs) - 1)]) for i, layer in enumerate(transition)]


class HRNet(nn.Module):
    """HRNetV2 with width C: branches of C, 2C, 4C, 8C channels at strides 4, 8, 16, 32.

    `features_only=True` drops the classification head; `forward` then returns the 15*C-channel
    stride-4 representation.
    """

    def __init__(self, width: int, num_classes: int = 1000, features_only: bool = False) -> None:
        super().__init__()
        self.width = width
        self.features_only = features_only
        self.stem = nn.Sequential(ConvBNAct(3, 64, stride=2), ConvBNAct(64, 64, stride=2))
        expanded = 64 * Bottleneck.expansion
        self.layer1 = nn.Sequential(
            Bottleneck(64, 64, downsample=nn.Sequential(conv1x1(64, expanded), nn.BatchNorm2d(expanded))),
            *[Bottleneck(expanded, 64) for _ in range(3)],
        )
        c = [width * 2**b for b in range(4)]
        self.transition1 = _transition([expanded], c[:2])
        self.stage2 = _stage(1, c[:2])
        self.transition2 = _transition(c[:2], c[:3])
        self.stage3 = _stage(4, c[:3])
        self.transition3 = _transition(c[:3], c)
        self.stage4 = _stage(3, c)
        self.out_channels = sum(c)  # 15 * width
        self.head: nn.Sequential | None = None
        if not features_only:
            hidden = self.out_channels // 4
            pooled = 8
            self.head = nn.Sequential(
                ConvBNAct(self.out_channels, hidden, kernel_size=1),
                nn.AdaptiveAvgPool2d(pooled),
                nn.Flatten(1),
                nn.Linear(hidden * pooled * pooled, num_classes),
            )

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"low": layer1 output (256 ch, stride 4), "out": 15*C-channel concatenation (stride 4)}."""
        low = self.layer1(self.stem(x))
        xs = self.stage2(_apply_transition(self.transition1, [low]))
        xs = self.stage3(_apply_transition(self.transition2, xs))
        xs = self.stage4(_apply_transition(self.transition3, xs))
        size = xs[0].shape[-2:]
        out = torch.cat([xs[0], *[_upsample(y, size) for y in xs[1:]]], dim=1)
        return {"low": low, "out": out}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The concatenated representation when features_only, else class logits."""
        out = self.forward_features(x)["out"]
        return out if self.head is None else self.head(out)


def hrnetv2_w18(num_classes: int = 1000, features_only: bool = False) -> HRNet:
    """HRNetV2-W18 (Wang et al., TPAMI 2020, "Deep High-Resolution Representation Learning for Visual
    Recognition"). The classification head's hidden width is 270 // 4 = 67."""
    return HRNet(18, num_classes, features_only)


def hrnetv2_w32(num_classes: int = 1000, features_only: bool = False) -> HRNet:
    """HRNetV2-W32 (Wang et al., TPAMI 2020, "Deep High-Resolution Representation Learning for Visual
    Recognition")."""
    return HRNet(32, num_classes, features_only)


def hrnetv2_w48(num_classes: int = 1000, features_only: bool = False) -> HRNet:
    """HRNetV2-W48 (Wang et al., TPAMI 2020, "Deep High-Resolution Representation Learning for Visual
    Recognition")."""
    return HRNet(48, num_classes, features_only)
