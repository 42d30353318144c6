"""CPU workspace rules of the kernels other than convolutions: batch norm, resampling, matrix products
(registered into `memory_kernels.KERNELS`)."""

from __future__ import annotations

from inspectlab.analysis.memory_kernels import (
    KERNELS,
    Kernel,
    KernelContext,
    Step,
    output_steps,
    released,
    tensor_bytes,
    tensor_shape,
)
from inspectlab.analysis.memory_layout import Layouts, is_channels_last
from inspectlab.tracing.records import OpRecord, Trace


@KERNELS.register("aten.native_batch_norm", "aten._native_batch_norm_legit_no_training")
def batch_norm(op: OpRecord, trace: Trace, context: KernelContext, layouts: Layouts) -> Kernel:
    """The CPU kernel computes the per-channel mean and inverse std (float, C each) also in eval mode, where
    it returns empty ones; in training it makes two more pairs of C-sized temporaries in turn (the running
    statistics' update)."""
    out, *stats = output_steps(op, trace)
    shape = tensor_shape(trace, op, "input")
    channel = 4 * (shape[1] if shape is not None and len(shape) > 1 else 1)
    pair = [Step(channel), Step(channel), Step(-channel), Step(-channel)]
    return Kernel([out, *stats, *pair, *pair] if op.args.get("training") else [out, *stats, *pair])


@KERNELS.register("aten.native_batch_norm_backward")
def batch_norm_backward(op: OpRecord, trace: Trace, context: KernelContext, layouts: Layouts) -> Kernel:
    """After its outputs, the CPU kernel makes one temporary the size of the input, and releases it."""
    size = tensor_bytes(trace, op, "input")
    return Kernel([*output_steps(op, trace), Step(size), Step(-size)])


@KERNELS.register("aten.upsample_bilinear2d", "aten.upsample_nearest2d", overloads=("default",))
def upsample(op: OpRecord, trace: Trace, context: KernelContext, layouts: Layouts) -> Kernel:
    """PyTorch's `_use_vectorized_kernel_cond_2d`: the channels-last kernel runs when the input is
    channels-last with C > 3, or when the output's height + width <= 128; it works on channels-last copies
    of the input (unless it is one) and of the output (copied back). Otherwise the separable kernel keeps,
    per output dim and tap, int64 indices and weights (the input's dtype; nearest: indices only)."""
    (out,) = output_steps(op, trace)
    source = op.tensor_args["self"]
    assert isinstance(source, int)
    x = trace.tensors[source]
    shape = trace.tensors[op.outputs[0]].shape
    if (layouts.channels_last(source) and x.shape[1] > 3) or shape[-2] + shape[-1] <= 128:
        copy_in = 0 if layouts.channels_last(source) else x.bytes
        copy_out = 0 if is_channels_last(shape, None) else out.bytes
        return Kernel(released([out, Step(copy_in), Step(copy_out), Step(-copy_out), Step(-copy_in)]))
    bilinear = op.packet == "aten.upsample_bilinear2d"
    tables = []
    for size in shape[-2:]:
        for _ in range(2 if bilinear else 1):
            tables += [8 * size, x.element_size * size] if bilinear else [8 * size]
    return Kernel([out, *(Step(t) for t in tables), *(Step(-t) for t in tables)])


@KERNELS.register("aten.upsample_bilinear2d_backward", "aten.upsample_nearest2d_backward", overloads=("default",))
def upsample_backward(op: OpRecord, trace: Trace, context: KernelContext, layouts: Layouts) -> Kernel:
    """The CPU kernel reads a contiguous copy of a non-contiguous grad_output."""
    grad = op.tensor_args["grad_output"]
    assert isinstance(grad, int)
    size = 0 if layouts.contiguous(grad) else trace.tensors[grad].bytes
    return Kernel(released([*output_steps(op, trace), Step(size), Step(-size)]))


@KERNELS.register("aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm")
def matrix_product(op: OpRecord, trace: Trace, context: KernelContext, layouts: Layouts) -> Kernel:
    """BLAS reads a matrix whose rows or columns are contiguous; another operand (an expanded one: stride
    0) is first copied to a contiguous one, after the output is allocated."""
    names = {"aten.mm": ("self", "mat2"), "aten.bmm": ("self", "mat2"), "aten.addmm": ("mat1", "mat2"),
             "aten.baddbmm": ("batch1", "batch2")}[op.packet]
    copies = [trace.tensors[t].bytes for name in names
              if isinstance(t := op.tensor_args.get(name), int) and not _blas_ready(layouts, trace, t)]
    return Kernel([*output_steps(op, trace), *(Step(c) for c in copies), *(Step(-c) for c in reversed(copies))])


def _blas_ready(layouts: Layouts, trace: Trace, tensor_id: int) -> bool:
    strides = layouts.strides(tensor_id)
    shape = trace.tensors[tensor_id].shape
    if strides is None or len(shape) < 2:
        return True
    rows, cols = shape[-2], shape[-1]
    row_stride, col_stride = strides[-2], strides[-1]
    return ((col_stride == 1 or cols == 1) and row_stride >= max(cols, 1)) or (
        (row_stride == 1 or rows == 1) and col_stride >= max(rows, 1))
