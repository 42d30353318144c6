"""UNet (Ronneberger, Fischer and Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation",
MICCAI 2015), with BatchNorm and "same" padding so that the output has the input's size.

Layout: an input DoubleConv, four Down stages (2x2 max-pool then DoubleConv), four Up stages (upsample,
concatenate the skip, DoubleConv) and a 1x1 output conv. With ``bilinear=True`` the upsampling has no
parameters and the deepest stage and each Up halve their output channels (the "factor 2" variant); with
``bilinear=False`` a 2x2 transposed conv upsamples and halves the channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import DoubleConv


class Down(nn.Sequential):
    """2x2 max-pool then DoubleConv: halves the resolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))


class Up(nn.Module):
    """Upsample by 2, pad to the skip's size, concatenate [skip, upsampled], DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int, bilinear: bool = True) -> None:
        super().__init__()
        if bilinear:
            self.up: nn.Module = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = DoubleConv(in_channels, out_channels, in_channels // 2)
        else:
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        dh = skip.shape[-2] - x.shape[-2]
        dw = skip.shape[-1] - x.shape[-1]
        x = F.pad(x, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """Encoder-decoder with skip connections; ``forward`` returns ``{"out": logits}`` at the input size."""

    def __init__(
        self, in_channels: int = 3, num_classes: int = 2, base_c: int = 64, bilinear: bool = True
    ) -> None:
        super().__init__()
        factor = 2 if bilinear else 1
        c = base_c
        self.in_conv = DoubleConv(in_channels, c)
        self.down1 = Down(c, 2 * c)
        self.down2 = Down(2 * c, 4 * c)
        self.down3 = Down(4 * c, 8 * c)
        self.down4 = Down(8 * c, 16 * c // factor)
        self.up1 = Up(16 * c, 8 * c // factor, bilinear)
        self.up2 = Up(8 * c, 4 * c // factor, bilinear)
        self.up3 = Up(4 * c, 2 * c // factor, bilinear)
        self.up4 = Up(2 * c, c, bilinear)
        self.out_conv = nn.Conv2d(c, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x1 = self.in_conv(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x = self.down4(x4)
        x = self.up1(x, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return {"out": self.out_conv(x)}


def unet(in_channels: int = 3, num_classes: int = 2, base_c: int = 64, bilinear: bool = True) -> UNet:
    """UNet (Ronneberger et al., MICCAI 2015) with BatchNorm; bilinear or transposed-conv upsampling."""
    return UNet(in_channels, num_classes, base_c, bilinear)
