"""Robust Video Matting: Lin et al., "Robust High-Resolution Video Matting with Temporal Guidance", WACV 2022.

A per-frame encoder (MobileNetV3-Large or ResNet-50, last stage dilated to output stride 16), an LR-ASPP
module on its last feature, a recurrent decoder with a ConvGRU at each of the four coarse scales, a 1x1
projection to foreground residual (3) + alpha (1), and a guided-filter refiner that brings the result
back to full resolution when the network ran on a downsampled copy (``downsample_ratio < 1``).

Inputs may be single frames ``(B, C, H, W)`` or clips ``(B, T, C, H, W)``. Everything except the
ConvGRUs runs on the ``B*T`` frames folded into the batch; the ConvGRUs unfold the time axis and step
through it, so a clip gives exactly what feeding its frames one by one (states fed back) gives.

Module names (backbone.features / backbone.layerN, aspp.aspp1, decoder.decodeN.conv / .gru.ih / .gru.hh,
project_mat.conv, project_seg.conv, refiner.box_filter / refiner.conv) follow the authors' release, so
its state_dict layout is intended to load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ConvBNAct

__all__ = [
    "ConvGRU",
    "DeepGuidedFilterRefiner",
    "FastGuidedFilterRefiner",
    "LRASPP",
    "MattingNetwork",
    "MobileNetV3LargeEncoder",
    "Projection",
    "RecurrentDecoder",
    "ResNet50Encoder",
    "matting_network",
]

Tensor = torch.Tensor
States = tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class _Encoder(nn.Module):
    """Shared part of the encoders: ImageNet normalisation of the 0..1 input (non-persistent buffers)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class MobileNetV3LargeEncoder(_Encoder):
    """MobileNetV3-Large ``features`` (last stage dilated); features at strides 2, 4, 8 and 16."""

    channels = (16, 24, 40, 960)
    taps = (1, 3, 6, 16)  # indices of ``features`` whose outputs are the four features

    def __init__(self) -> None:
        super().__init__()
        from .mobilenetv3 import mobilenet_v3_large

        self.features = mobilenet_v3_large(dilated=True).features  # classifier and pooling dropped

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.normalize(x)
        outputs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                outputs.append(x)
        return outputs


class ResNet50Encoder(_Encoder):
    """ResNet-50 stem and four stages (layer4 dilated); features at strides 2, 4, 8 and 16."""

    channels = (64, 256, 512, 2048)

    def __init__(self) -> None:
        super().__init__()
        from .resnet import resnet50

        net = resnet50(replace_stride_with_dilation=[False, False, True])
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(net, name))  # avgpool and fc dropped

    def forward(self, x: Tensor) -> list[Tensor]:
        f1 = self.relu(self.bn1(self.conv1(self.normalize(x))))
        f2 = self.layer1(self.maxpool(f1))
        f3 = self.layer2(f2)
        f4 = self.layer4(self.layer3(f3))
        return [f1, f2, f3, f4]


class LRASPP(nn.Module):
    """Lite R-ASPP (Howard et al., MobileNetV3): a 1x1 conv branch gated by a global-pooled sigmoid branch."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.aspp1 = ConvBNAct(in_channels, out_channels, kernel_size=1)
        self.aspp2 = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.aspp1(x) * self.aspp2(x)


class ConvGRU(nn.Module):
    """Convolutional GRU (Ballas et al., 2016). Input ``(B*T, C, H, W)``, state ``(B, C, H, W)``.

    ``steps`` is T: the frames of each clip are consecutive in the folded batch and are processed in
    order, the state of one step feeding the next. Returns every step's state (folded like the input)
    and the last state.
    """

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.channels = channels
        padding = kernel_size // 2
        self.ih = nn.Sequential(
            nn.Conv2d(2 * channels, 2 * channels, kernel_size, padding=padding), nn.Sigmoid()
        )
        self.hh = nn.Sequential(nn.Conv2d(2 * channels, channels, kernel_size, padding=padding), nn.Tanh())

    def step(self, x: Tensor, h: Tensor) -> Tensor:
        """One GRU update: reset gate r, update gate z, candidate c; h' = (1 - z) h + z c."""
        reset, update = self.ih(torch.cat([x, h], dim=1)).split(self.channels, dim=1)
        candidate = self.hh(torch.cat([x, reset * h], dim=1))
        return (1 - update) * h + update * candidate

    def forward(self, x: Tensor, h: Tensor | None, steps: int = 1) -> tuple[Tensor, Tensor]:
        if h is None:
            h = x.new_zeros(x.shape[0] // steps, *x.shape[1:])
        if steps == 1:
            h = self.step(x, h)
            return h, h
        outputs = []
        for frame in x.unflatten(0, (-1, steps)).unbind(1):
            h = self.step(frame, h)
            outputs.append(h)
        return torch.stack(outputs, dim=1).flatten(0, 1), h


class BottleneckBlock(nn.Module):
    """Decoder bottleneck: half of the LR-ASPP channels go through a ConvGRU, half pass unchanged."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.gru = ConvGRU(channels // 2)

    def forward(self, x: Tensor, r: Tensor | None, steps: int) -> tuple[Tensor, Tensor]:
        a, b = x.split(self.channels // 2, dim=1)
        b, r = self.gru(b, r, steps)
        return torch.cat([a, b], dim=1), r


def _upsample_to(x: Tensor, like: Tensor) -> Tensor:
    """Upsample x by 2 (bilinear) and crop it to the spatial size of ``like`` (odd sizes round up)."""
    x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    return x[:, :, : like.shape[2], : like.shape[3]]


class UpsamplingBlock(nn.Module):
    """Decoder stage: upsample, concat skip and downsampled image, conv-BN-ReLU, ConvGRU on half of it."""

    def __init__(self, in_channels: int, skip_channels: int, src_channels: int, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.conv = ConvBNAct(in_channels + skip_channels + src_channels, out_channels)
        self.gru = ConvGRU(out_channels // 2)

    def forward(
        self, x: Tensor, skip: Tensor, src: Tensor, r: Tensor | None, steps: int
    ) -> tuple[Tensor, Tensor]:
        x = self.conv(torch.cat([_upsample_to(x, skip), skip, src], dim=1))
        a, b = x.split(self.out_channels // 2, dim=1)
        b, r = self.gru(b, r, steps)
        return torch.cat([a, b], dim=1), r


class OutputBlock(nn.Module):
    """Last decoder stage at full (network) resolution: upsample, concat image, two conv-BN-ReLU."""

    def __init__(self, in_channels: int, src_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            *ConvBNAct(in_channels + src_channels, out_channels), *ConvBNAct(out_channels, out_channels)
        )

    def forward(self, x: Tensor, src: Tensor) -> Tensor:
        return self.conv(torch.cat([_upsample_to(x, src), src], dim=1))


class Projection(nn.Module):
    """1x1 conv (with bias) from the decoder's last features to the output channels."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class RecurrentDecoder(nn.Module):
    """RVM decoder: bottleneck ConvGRU at 1/16, upsampling blocks at 1/8, 1/4, 1/2, output block at 1/1."""

    def __init__(self, feature_channels: list[int], decoder_channels: list[int]) -> None:
        super().__init__()
        self.avgpool = nn.AvgPool2d(2, 2, count_include_pad=False, ceil_mode=True)
        self.decode4 = BottleneckBlock(feature_channels[3])
        self.decode3 = UpsamplingBlock(feature_channels[3], feature_channels[2], 3, decoder_channels[0])
        self.decode2 = UpsamplingBlock(decoder_channels[0], feature_channels[1], 3, decoder_channels[1])
        self.decode1 = UpsamplingBlock(decoder_channels[1], feature_channels[0], 3, decoder_channels[2])
        self.decode0 = OutputBlock(decoder_channels[2], 3, decoder_channels[3])

    def forward(
        self, s0: Tensor, features: list[Tensor], states: States, steps: int
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        f1, f2, f3, f4 = features
        r1, r2, r3, r4 = states
        s1 = self.avgpool(s0)
        s2 = self.avgpool(s1)
        s3 = self.avgpool(s2)
        x4, r4 = self.decode4(f4, r4, steps)
        x3, r3 = self.decode3(x4, f3, s3, r3, steps)
        x2, r2 = self.decode2(x3, f2, s2, r2, steps)
        x1, r1 = self.decode1(x2, f1, s1, r1, steps)
        return self.decode0(x1, s0), r1, r2, r3, r4


def _local_statistics(box: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Windowed mean of x and y, covariance of x and y, variance of x (the guided filter's statistics)."""
    mean_x, mean_y = box(x), box(y)
    return mean_x, mean_y, box(x * y) - mean_x * mean_y, box(x * x) - mean_x * mean_x


def _with_gray(image: Tensor) -> Tensor:
    """RGB plus its channel mean: the 4-channel guide paired channel by channel with (fgr, alpha)."""
    return torch.cat([image, image.mean(dim=1, keepdim=True)], dim=1)


def _apply_linear_model(a: Tensor, b: Tensor, fine_src: Tensor) -> tuple[Tensor, Tensor]:
    """Upsample the per-pixel linear model y = a x + b to the fine guide x and split y into fgr and alpha."""
    size = fine_src.shape[2:]
    a = F.interpolate(a, size=size, mode="bilinear", align_corners=False)
    b = F.interpolate(b, size=size, mode="bilinear", align_corners=False)
    fgr, pha = (a * _with_gray(fine_src) + b).split([3, 1], dim=1)
    return fgr, pha


class DeepGuidedFilterRefiner(nn.Module):
    """Deep guided filter (Wu et al., CVPR 2018): a learned 3x3 box filter and a 1x1 conv net predict A."""

    def __init__(self, hidden_channels: int = 16) -> None:
        super().__init__()
        self.box_filter = nn.Conv2d(4, 4, 3, padding=1, bias=False, groups=4)
        nn.init.constant_(self.box_filter.weight, 1.0 / 9.0)
        self.conv = nn.Sequential(
            *ConvBNAct(4 * 2 + hidden_channels, hidden_channels, kernel_size=1),
            *ConvBNAct(hidden_channels, hidden_channels, kernel_size=1),
            nn.Conv2d(hidden_channels, 4, 1),
        )

    def forward(
        self, fine_src: Tensor, base_src: Tensor, base_fgr: Tensor, base_pha: Tensor, base_hid: Tensor
    ) -> tuple[Tensor, Tensor]:
        mean_x, mean_y, cov_xy, var_x = _local_statistics(
            self.box_filter, _with_gray(base_src), torch.cat([base_fgr, base_pha], dim=1)
        )
        a = self.conv(torch.cat([cov_xy, var_x, base_hid], dim=1))
        return _apply_linear_model(a, mean_y - a * mean_x, fine_src)


class FastGuidedFilterRefiner(nn.Module):
    """Fast guided filter (Wu et al., CVPR 2018): radius 1, A = cov / (var + eps), no parameters."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.box_filter = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)

    def forward(
        self, fine_src: Tensor, base_src: Tensor, base_fgr: Tensor, base_pha: Tensor, base_hid: Tensor
    ) -> tuple[Tensor, Tensor]:
        mean_x, mean_y, cov_xy, var_x = _local_statistics(
            self.box_filter, _with_gray(base_src), torch.cat([base_fgr, base_pha], dim=1)
        )
        a = cov_xy / (var_x + self.eps)
        return _apply_linear_model(a, mean_y - a * mean_x, fine_src)


_VARIANTS = {
    "mobilenetv3": (MobileNetV3LargeEncoder, 128, [80, 40, 32, 16]),
    "resnet50": (ResNet50Encoder, 256, [128, 64, 32, 16]),
}
_REFINERS = {"deep_guided_filter": DeepGuidedFilterRefiner, "fast_guided_filter": FastGuidedFilterRefiner}


class MattingNetwork(nn.Module):
    """Robust Video Matting network; see the module docstring."""

    def __init__(self, variant: str = "mobilenetv3", refiner: str = "deep_guided_filter") -> None:
        super().__init__()
        if variant not in _VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; valid: {sorted(_VARIANTS)}")
        if refiner not in _REFINERS:
            raise ValueError(f"unknown refiner {refiner!r}; valid: {sorted(_REFINERS)}")
        encoder, aspp_channels, decoder_channels = _VARIANTS[variant]
        self.backbone = encoder()
        self.aspp = LRASPP(encoder.channels[3], aspp_channels)
        self.decoder = RecurrentDecoder([*encoder.channels[:3], aspp_channels], decoder_channels)
        self.project_mat = Projection(decoder_channels[3], 4)
        self.project_seg = Projection(decoder_channels[3], 1)  # segmentation head (training on seg data)
        self.refiner = _REFINERS[refiner]()

    def forward(
        self,
        src: Tensor,
        r1: Tensor | None = None,
        r2: Tensor | None = None,
        r3: Tensor | None = None,
        r4: Tensor | None = None,
        downsample_ratio: float = 1.0,
        *,
        segmentation_pass: bool = False,
    ) -> tuple[Tensor, ...]:
        """Matte ``src`` (values in 0..1). Returns ``(fgr, pha, r1, r2, r3, r4)``.

        fgr and pha have src's layout (4-D or 5-D) with 3 and 1 channels; r1..r4 are the ConvGRU states
        after the last frame, ``(B, C, H/2^k, W/2^k)`` for k = 1..4 (sizes rounded up). With
        ``segmentation_pass`` the paper's segmentation head replaces matting: ``(seg, r1, r2, r3, r4)``
        with ``seg`` the 1-channel logits at the network's resolution.
        """
        clip = src.dim() == 5
        steps = src.shape[1] if clip else 1
        frames = src.flatten(0, 1) if clip else src
        small = frames
        if downsample_ratio != 1:
            small = F.interpolate(
                frames, scale_factor=downsample_ratio, mode="bilinear", align_corners=False,
                recompute_scale_factor=False,
            )
        features = self.backbone(small)
        features[3] = self.aspp(features[3])
        hid, r1, r2, r3, r4 = self.decoder(small, features, (r1, r2, r3, r4), steps)
        if segmentation_pass:
            seg = self.project_seg(hid)
            return (seg.unflatten(0, (-1, steps)) if clip else seg), r1, r2, r3, r4
        fgr_residual, pha = self.project_mat(hid).split([3, 1], dim=1)
        if downsample_ratio != 1:
            fgr_residual, pha = self.refiner(frames, small, fgr_residual, pha, hid)
        fgr = (fgr_residual + frames).clamp(0.0, 1.0)
        pha = pha.clamp(0.0, 1.0)
        if clip:
            fgr, pha = fgr.unflatten(0, (-1, steps)), pha.unflatten(0, (-1, steps))
        return fgr, pha, r1, r2, r3, r4


def matting_network(variant: str = "mobilenetv3", refiner: str = "deep_guided_filter") -> MattingNetwork:
    """Robust Video Matting (Lin et al., WACV 2022) with a "mobilenetv3" or "resnet50" encoder.

    ``refiner`` is "deep_guided_filter" (the paper's) or "fast_guided_filter" (parameter-free).
    """
    return MattingNetwork(variant, refiner)
