"""Robust Video Matting network: param counts, shapes (4-D, 5-D, odd sizes), recurrence, refiner path."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision

from inspectlab.models.matting import DeepGuidedFilterRefiner, FastGuidedFilterRefiner, matting_network

# (H, W) -> state shapes: channels are half the decoder channels at strides 2, 4, 8 and half LR-ASPP's at 16.
STATE_CHANNELS = {"mobilenetv3": (16, 20, 40, 64), "resnet50": (16, 32, 64, 128)}


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def state_shapes(variant: str, batch: int, height: int, width: int) -> list[tuple[int, ...]]:
    """Hand-computed: each stride-2 stage rounds up (conv padding, ceil-mode pooling)."""
    return [
        (batch, c, math.ceil(height / 2**k), math.ceil(width / 2**k))
        for k, c in enumerate(STATE_CHANNELS[variant], start=1)
    ]


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return matting_network("mobilenetv3").eval()


@pytest.mark.parametrize(("variant", "expected"), [("mobilenetv3", 3_748_633), ("resnet50", 26_890_461)])
def test_param_counts(variant: str, expected: int) -> None:
    with torch.device("meta"):
        net = matting_network(variant)
    assert count(net) == expected


def test_encoders_are_torchvision_feature_extractors() -> None:
    """Encoder params equal torchvision's backbone without its classifier (nothing unused kept)."""
    with torch.device("meta"):
        mobile = matting_network("mobilenetv3").backbone
        resnet = matting_network("resnet50").backbone
        tv_mobile = torchvision.models.mobilenet_v3_large(weights=None, dilated=True)
        tv_resnet = torchvision.models.resnet50(weights=None)
    assert count(mobile) == count(tv_mobile.features)
    assert count(resnet) == count(tv_resnet) - count(tv_resnet.fc)


def test_mobilenet_encoder_matches_torchvision(model: torch.nn.Module) -> None:
    """Same weights: our stride-16 feature equals torchvision's dilated features of the normalised image."""
    reference = torchvision.models.mobilenet_v3_large(weights=None, dilated=True).features.eval()
    reference.load_state_dict(model.backbone.features.state_dict())
    x = torch.rand(1, 3, 64, 64)
    normalized = torchvision.transforms.functional.normalize(x, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    with torch.no_grad():
        f1, f2, f3, f4 = model.backbone(x)
        expected = reference(normalized)
    assert [f.shape[1] for f in (f1, f2, f3, f4)] == [16, 24, 40, 960]
    torch.testing.assert_close(f4, expected)


def test_unknown_variant_or_refiner() -> None:
    with pytest.raises(ValueError, match="mobilenetv3.*resnet50"):
        matting_network("vgg16")
    with pytest.raises(ValueError, match="deep_guided_filter"):
        matting_network(refiner="bilateral")


@pytest.mark.parametrize(("height", "width"), [(64, 64), (65, 97)])
def test_forward_4d_shapes_and_state_feedback(model: torch.nn.Module, height: int, width: int) -> None:
    src = torch.rand(2, 3, height, width)
    with torch.no_grad():
        fgr, pha, *states = model(src)
        assert fgr.shape == (2, 3, height, width)
        assert pha.shape == (2, 1, height, width)
        assert [tuple(r.shape) for r in states] == state_shapes("mobilenetv3", 2, height, width)
        assert 0 <= pha.min() and pha.max() <= 1
        # Feeding the states back is accepted and changes the result; zero states are the default.
        again = model(src, *states)
        zeros = model(src, *[torch.zeros_like(r) for r in states])
    assert [tuple(t.shape) for t in again] == [tuple(t.shape) for t in (fgr, pha, *states)]
    assert not torch.equal(again[2], states[0])
    for got, expected in zip(zeros, (fgr, pha, *states), strict=True):
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize(("height", "width"), [(64, 64), (65, 97)])
def test_clip_equals_frame_by_frame(model: torch.nn.Module, height: int, width: int) -> None:
    steps = 3
    clip = torch.rand(2, steps, 3, height, width)
    with torch.no_grad():
        fgr, pha, *states = model(clip)
        frame_states: list[torch.Tensor | None] = [None] * 4
        for t in range(steps):
            fgr_t, pha_t, *frame_states = model(clip[:, t], *frame_states)
            torch.testing.assert_close(fgr[:, t], fgr_t)
            torch.testing.assert_close(pha[:, t], pha_t)
    assert fgr.shape == (2, steps, 3, height, width)
    assert pha.shape == (2, steps, 1, height, width)
    assert [tuple(r.shape) for r in states] == state_shapes("mobilenetv3", 2, height, width)
    for got, expected in zip(states, frame_states, strict=True):
        torch.testing.assert_close(got, expected)


def test_downsample_ratio_refiner_gives_full_resolution(model: torch.nn.Module) -> None:
    clip = torch.rand(1, 2, 3, 65, 97)
    with torch.no_grad():
        fgr, pha, *states = model(clip, downsample_ratio=0.5)
        fgr2, pha2, *_ = model(clip, *states, downsample_ratio=0.5)
    assert fgr.shape == fgr2.shape == (1, 2, 3, 65, 97)
    assert pha.shape == pha2.shape == (1, 2, 1, 65, 97)
    # The network itself ran on floor(65 / 2) x floor(97 / 2) = 32 x 48.
    assert [tuple(r.shape) for r in states] == state_shapes("mobilenetv3", 1, 32, 48)


def test_fast_guided_filter_refiner() -> None:
    torch.manual_seed(0)
    net = matting_network(refiner="fast_guided_filter").eval()
    assert count(net.refiner) == 0
    with torch.no_grad():
        fgr, pha, *_ = net(torch.rand(1, 3, 64, 96), downsample_ratio=0.25)
    assert fgr.shape == (1, 3, 64, 96) and pha.shape == (1, 1, 64, 96)


def test_guided_filter_box_filters_are_3x3_means() -> None:
    x = torch.rand(1, 4, 9, 11)
    deep_box = DeepGuidedFilterRefiner().box_filter  # learnable, initialised to 1/9 (zero padding)
    fast_box = FastGuidedFilterRefiner().box_filter  # mean over the pixels inside the image
    with torch.no_grad():
        torch.testing.assert_close(deep_box(x), F.avg_pool2d(x, 3, 1, 1, count_include_pad=True))
    counts = F.conv2d(torch.ones(1, 1, 9, 11), torch.ones(1, 1, 3, 3), padding=1)
    sums = F.conv2d(x.flatten(0, 1).unsqueeze(1), torch.ones(1, 1, 3, 3), padding=1).view(1, 4, 9, 11)
    torch.testing.assert_close(fast_box(x), sums / counts)


def test_segmentation_pass_shapes(model: torch.nn.Module) -> None:
    with torch.no_grad():
        seg, *states = model(torch.rand(1, 2, 3, 64, 64), segmentation_pass=True)
    assert seg.shape == (1, 2, 1, 64, 64)
    assert [tuple(r.shape) for r in states] == state_shapes("mobilenetv3", 1, 64, 64)


@pytest.mark.parametrize("variant", ["mobilenetv3", "resnet50"])
def test_forward_runs_on_meta_device(variant: str) -> None:
    """No branching on tensor values: the whole recurrent, refined forward runs on meta tensors."""
    with torch.device("meta"):
        net = matting_network(variant).eval()
        clip = torch.empty(1, 2, 3, 65, 97)
        fgr, pha, *states = net(clip, downsample_ratio=0.5)
        fgr, pha, *states = net(clip, *states, downsample_ratio=0.5)
    assert fgr.shape == (1, 2, 3, 65, 97) and pha.shape == (1, 2, 1, 65, 97)
    assert [tuple(r.shape) for r in states] == state_shapes(variant, 1, 32, 48)
