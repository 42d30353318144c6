"""The CPU kernels' own buffers (analysis/memory_kernels.py, memory_conv.py, memory_ops.py) against PyTorch's
memory profiler, op by op: every op of a recording pass on the CPU is wrapped in its own profiler label
(`runtime.memory_profile.profile_ops`), so each allocation inside it is known, and the rule's steps must give
the same top (the most bytes the op holds at once) and the same net bytes. Ops whose buffers a rule cannot
size are named (`Kernel.unmodelled`); the only other residual allowed is the 0-d tensor (<= 16 bytes) a kernel
makes of a Python number.

Also the stride inference the rules rely on (analysis/memory_layout.py), against the real tensors' strides.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from inspectlab import api
from inspectlab.analysis.memory_kernels import KernelContext
from inspectlab.analysis.memory_layout import Layouts
from inspectlab.analysis.memory_timeline import kernel_of
from inspectlab.runtime.memory_profile import profile_ops
from inspectlab.tracing.recorder import record

pytestmark = pytest.mark.skipif(KernelContext.of_this_process().block is None,
                                reason="oneDNN's block is known for AVX-512 and AVX2 only")
SCALAR = 16  # the 0-d tensor of a Python number operand (and a 0-d loss): not compared


@contextlib.contextmanager
def one_thread() -> Iterator[KernelContext]:
    """One intra-op thread: oneDNN then never splits a weight gradient's reduction across threads (a buffer
    whose use its cost model decides, docs/memory.md), so every buffer the rules know is exactly there."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield KernelContext.of_this_process()
    finally:
        torch.set_num_threads(threads)


def _top_and_net(sizes: list[int]) -> tuple[int, int]:
    running = top = 0
    for size in sizes:
        running += size
        top = max(top, running)
    return top, running


def _residuals(model: nn.Module, shape: tuple[int, ...], train: bool) -> tuple[list[tuple], list[tuple]]:
    """(modelled ops whose top or net differs from the profiler's, unmodelled ops with their residual)."""
    model.train(train)
    x = torch.randn(shape)
    with torch.set_grad_enabled(train), one_thread() as context:
        record(model, [x], device="cpu", backward=train)  # warm: oneDNN's first-call caches
        trace, made = profile_ops(lambda: record(model, [x], device="cpu", backward=train))
    layouts = Layouts(trace)
    wrong, unmodelled = [], []
    for op in trace.ops:
        real = [size for size in made.get(op.index, []) if abs(size) > SCALAR]
        kernel = kernel_of(op, trace, context, layouts)
        estimate = _top_and_net([step.bytes for step in kernel.steps if abs(step.bytes) > SCALAR])
        measured = _top_and_net(real)
        if kernel.unmodelled:
            unmodelled.append((op.name, measured[0] - estimate[0], kernel.unmodelled))
        elif estimate != measured:
            wrong.append((op.index, op.phase, op.name, estimate, measured, real))
    return wrong, unmodelled


CONVOLUTIONS = [  # (batch, C_in, C_out, kernel, stride, groups, dilation, side, bias)
    (2, 3, 64, 7, 2, 1, 1, 32, False),  # oneDNN "first convolution": no source reorder
    (2, 64, 64, 3, 1, 1, 1, 16, False),  # source, weights and destination reordered
    (2, 64, 21, 1, 1, 1, 1, 16, True),  # channels padded to the block, the bias too
    (2, 21, 40, 3, 1, 1, 1, 16, True),
    (2, 64, 128, 1, 2, 1, 1, 16, False),  # strided 1×1: the unit-stride buffer (threads × C_in × H_out × W_out)
    (2, 72, 72, 3, 1, 72, 1, 16, False),  # depthwise, 72 channels padded to the block
    (2, 64, 64, 3, 1, 1, 2, 16, False),  # dilated
    (1, 8, 8, 3, 1, 1, 1, 8, True),  # batch 1, few elements: the native kernel and its column buffer
    (1, 64, 64, 1, 1, 1, 1, 4, False),  # the native 1×1 product: no column buffer
]


@pytest.mark.parametrize("train", [False, True], ids=["forward", "backward"])
def test_convolution_rules_match_the_profiler(train: bool) -> None:
    for n, c_in, c_out, k, stride, groups, dilation, side, bias in CONVOLUTIONS:
        # a first convolution makes the one under test see an input that requires grad (grad_input computed)
        model = nn.Sequential(nn.Conv2d(3, c_in, 1), nn.Conv2d(c_in, c_out, k, stride, k // 2 * dilation,
                                                                dilation, groups, bias=bias))
        wrong, unmodelled = _residuals(model, (n, 3, side, side), train)
        assert not wrong, (n, c_in, c_out, k, stride, groups, dilation, side, wrong)
        named = []  # what the rules say they do not size: the ops are named, their residual shown here
        if train and stride > 1 and k == 1:
            named = ["oneDNN's unit-stride scratchpad of a strided 1×1 convolution's input gradient"]
        if train and c_in < 16 and k > 1 and n > 1:  # an input gradient of a first convolution (images need none)
            named = ["oneDNN's buffers of a first convolution's (C_in < 16) input gradient"]
        if train and dilation > 1 and KernelContext.of_this_process().block != 16:
            named = ["oneDNN's buffers of a dilated convolution's weight gradient (AVX2)"]
        assert [reason for _, _, reason in unmodelled] == named, unmodelled
        assert all(residual >= 0 for _, residual, _ in unmodelled), unmodelled  # only ever short


def test_batch_norm_resampling_and_products_match_the_profiler() -> None:
    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 32, 3, padding=1)
            self.norm = nn.BatchNorm2d(32)
            self.fc = nn.Linear(32, 5)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            y = torch.relu(self.norm(self.conv(x)))
            small = nn.functional.interpolate(y, scale_factor=2, mode="bilinear")  # out H + W <= 128: NHWC copies
            large = nn.functional.interpolate(y, size=(96, 96), mode="bilinear")  # separable: index tables
            nearest = nn.functional.interpolate(y, scale_factor=2, mode="nearest")
            parts = torch.cat([small, nearest], 1)[:, 16:48]  # a non-contiguous gradient flows back
            return self.fc(y.mean((2, 3))), parts, large

    for train in (False, True):
        wrong, unmodelled = _residuals(Head(), (2, 3, 24, 24), train)
        assert not wrong and not unmodelled, (train, wrong, unmodelled)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "shape"), [("resnet18", (2, 3, 64, 64)), ("mobilenet_v3_large", (2, 3, 64, 64)),
                                             ("unet", (1, 3, 64, 64))])
def test_every_byte_of_a_zoo_step_is_modelled_or_named(name: str, shape: tuple[int, ...]) -> None:
    """Forward and backward of the zoo models: every op's allocations are the rule's, or the op is named.
    The residuals of the named ones are what the tests show: kernels' buffers the rules do not size."""
    wrong, unmodelled = _residuals(api.build_model(name, device="cpu"), shape, True)
    assert not wrong, wrong
    for op_name, residual, reason in unmodelled:
        assert residual >= 0, (op_name, residual, reason)  # a named op is only ever short, by its own buffers


def test_inferred_strides_are_the_real_ones() -> None:
    class Views(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            a, b = x.split(2, dim=1)
            cl = x.contiguous(memory_format=torch.channels_last)
            return (a, b, x[:, 1:3], x.permute(0, 2, 3, 1), x.transpose(1, 2), x[0], x[:1].expand(3, 4, 8, 8),
                    *x.unbind(1), x.narrow(1, 0, 2), x.flatten(1), x.view(8, -1).t(), x.unsqueeze(0), x.mT,
                    x[:, ::2], cl, cl + 1, x.sum(0, keepdim=True).expand(2, 4, 8, 8))

    x = torch.randn(2, 4, 8, 8)
    real = [t for t in tree_leaves(Views()(x)) if isinstance(t, torch.Tensor)]
    trace = api.trace(Views(), (2, 4, 8, 8))
    layouts = Layouts(trace)
    assert [layouts.strides(t) for t in trace.outputs] == [t.stride() for t in real]
    assert [layouts.contiguous(t) for t in trace.outputs] == [t.is_contiguous() for t in real]


def test_the_kernel_context_can_name_another_machine(monkeypatch) -> None:  # noqa: ANN001
    from inspectlab.analysis.memory_kernels import KernelContext
    from inspectlab.core.errors import InspectlabError

    monkeypatch.setenv("INSPECTLAB_CPU_KERNELS", "AVX2:8")
    assert (KernelContext.of_this_process().threads, KernelContext.of_this_process().block) == (8, 8)
    monkeypatch.setenv("INSPECTLAB_CPU_KERNELS", "avx512:2")
    assert (KernelContext.of_this_process().threads, KernelContext.of_this_process().block) == (2, 16)
    monkeypatch.setenv("INSPECTLAB_CPU_KERNELS", "AVX9:x")
    with pytest.raises(InspectlabError, match="CAPABILITY:THREADS"):
        KernelContext.of_this_process()
