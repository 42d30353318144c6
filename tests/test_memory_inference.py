"""`memory` (inference, the default): the peak of one forward under no_grad from the Trace's tensor lifetimes
and the CPU kernels' own buffers, against PyTorch's memory profiler on a real CPU forward; by hand on a small
network; and the one home of the number: `summary`'s "estimated peak inference memory" is the same."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inspectlab import api
from inspectlab.analysis.memory import estimate_memory
from inspectlab.analysis.memory_kernels import KernelContext
from inspectlab.runtime.memory_profile import profile_memory

pytestmark = pytest.mark.skipif(KernelContext.of_this_process().block is None,
                                reason="oneDNN's block is known for AVX-512 and AVX2 only")


@pytest.mark.skipif(KernelContext.of_this_process().block != 16,
                    reason="measured with AVX-512: with AVX2 oneDNN runs every dilated ASPP branch as a gemm "
                           "convolution, whose im2col buffer is not modelled (the report names those ops)")
def test_deeplab_inference_peak_matches_the_profiler() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the threads the kernel rules were measured with
    try:
        report = api.memory("deeplabv3plus_resnet50", (1, 3, 256, 256))
        model = api.build_model("deeplabv3plus_resnet50", device="cpu").eval()
        x = torch.randn(1, 3, 256, 256)
        with torch.no_grad():
            measured = profile_memory(lambda: model(x))
    finally:
        torch.set_num_threads(threads)
    assert abs(report.totals["peak_bytes"] / measured.peak_bytes - 1) <= 0.05, (report.totals, measured.peak_bytes)
    assert report.totals["params_bytes"] == measured.at_peak["parameter"]
    # the kernels' buffers at the peak: what the profiler calls "unknown" (oneDNN's copies of an ASPP branch)
    assert report.extra["at_peak"]["workspace"] == measured.at_peak["unknown"]
    # the branch whose padding (its dilation, 18) exceeds the 16×16 map runs oneDNN's gemm: named, not sized
    (ops,) = report.extra["unmodelled"].values()
    assert ops == ["classifier.aspp.convs.3.0"]


def test_summary_shows_the_same_peak() -> None:
    for model, shape in (("resnet18", (1, 3, 96, 96)), ("unet", (1, 3, 64, 64))):
        summary = api.summary(model, shape, depth=0)
        assert summary.totals["peak_bytes"] == api.memory(model, shape).totals["peak_bytes"]


def test_peak_by_hand_with_the_native_column_buffer() -> None:
    """Batch 1, 3×3 kernels, 192 input elements: PyTorch picks the native convolution, which unfolds its input
    into a column buffer of C_in·3·3·H·W floats while it runs."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(inplace=True),
                          nn.Conv2d(8, 8, 3, padding=1, bias=False))
    estimate = estimate_memory(api.trace(model, (1, 3, 8, 8)), KernelContext(threads=2, block=16))
    params = (8 * 3 * 9 + 8 * 8 * 9) * 4
    image, feature, columns = 3 * 64 * 4, 8 * 64 * 4, 8 * 9 * 64 * 4
    # at the second convolution: the input, the first output, the second's columns and its output
    assert estimate.peak_bytes == params + image + feature + columns + feature
    assert estimate.workspace_bytes == columns
    tensors_only = estimate_memory(api.trace(model, (1, 3, 8, 8)), None)
    assert tensors_only.peak_bytes == params + image + 2 * feature


def test_rows_name_where_the_peak_is() -> None:
    report = api.memory("resnet18", (1, 3, 64, 64), depth=1)
    root, *children = report.layers
    assert root.name == "(root)" and root.peak_bytes == report.totals["peak_bytes"]
    assert max(row.peak_bytes for row in children) == report.totals["peak_bytes"]
    assert report.extra["peak_module"].startswith("layer")
