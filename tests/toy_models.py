"""Small models several receptive-field tests share."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvNeXtBlock(nn.Module):
    """Issue 14's 11-line toy: 7×7 depthwise conv, permute to NHWC, LayerNorm, Linear, GELU, Linear, permute
    back, residual add (torchvision's CNBlock without the layer scale)."""

    def __init__(self, channels: int = 4, residual: bool = True) -> None:
        super().__init__()
        self.dw = nn.Conv2d(channels, channels, 7, padding=3, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.fc1 = nn.Linear(channels, 4 * channels)
        self.fc2 = nn.Linear(4 * channels, channels)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(F.gelu(self.fc1(self.norm(y)))).permute(0, 3, 1, 2)
        return x + y if self.residual else y
