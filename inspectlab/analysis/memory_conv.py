"""CPU workspace rules of the 2-d convolutions, forward and backward (registered into `memory_kernels.KERNELS`).

Which kernel runs is PyTorch's choice (`ConvParams::use_mkldnn` in aten/src/ATen/native/Convolution.cpp):
oneDNN for float32 unless a 1×1 kernel, batch 1 and few elements make the native kernel faster; bfloat16
and float16 always. The native ("slow") kernel unfolds the input into a column buffer of
N·(C_in/groups)·k_h·k_w·H_out·W_out elements (none for a plain 1×1 product).

oneDNN, given plain NCHW tensors, works on copies in its blocked layout, channels padded to the block (16
with AVX-512, 8 with AVX2): the forward reorders the source (not for a "first convolution": groups 1,
C_in < 16 and a kernel larger than 1×1) and the weights, computes into a blocked destination, and copies
that into the output; a bias whose length is not a multiple of the block is padded into a buffer (+128
bytes). A strided 1×1
convolution first reduces its source to unit stride in a per-thread buffer (threads·C_in·H_out·W_out +
128 bytes). The backward first makes a non-contiguous grad_output contiguous (the gradient of a sum is an expanded
one), reorders grad_output and the weights for the input's gradient, and the source and grad_output again
for the weights' gradient, computed blocked and copied out. With more than one thread, oneDNN may also
split a weight gradient's reduction across threads, in a buffer its cost model decides on: not modelled
(at most about (threads - 1) × the blocked weights; `reduction_bound`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from math import prod

from inspectlab.analysis.memory_kernels import (
    KERNELS,
    Kernel,
    KernelContext,
    Step,
    output_steps,
    released,
    tensor_shape,
)
from inspectlab.analysis.memory_layout import Layouts
from inspectlab.tracing.records import OpRecord, Trace

# the largest left padding measured to stay on oneDNN's direct kernel (and at most the output width), per block:
# AVX-512 (block 16) up to 24, AVX2 (block 8) up to 3; beyond, its gemm convolution runs
JIT_PADDING = {16: 24, 8: 3}


@dataclass(frozen=True)
class Conv:
    """A 2-d convolution's geometry (input N×C_in×H×W, weight C_out×C_in/groups×k_h×k_w)."""

    n: int
    c_in: int
    c_out: int
    groups: int
    kernel: tuple[int, ...]
    spatial: tuple[int, ...]
    out_spatial: tuple[int, ...]
    strided: bool
    dilated: bool
    padding: int
    esize: int
    dtype: str

    @property
    def first_conv(self) -> bool:
        """oneDNN's "first convolution": it reads a plain NCHW source (no reorder) for few input channels (its
        1×1 kernel does not: it reorders them, padded)."""
        return self.groups == 1 and self.c_in < 16 and not all(k == 1 for k in self.kernel)

    @property
    def pointwise_strided(self) -> bool:
        """A strided 1×1 convolution: oneDNN reduces the source to unit stride first ("rtus")."""
        return all(k == 1 for k in self.kernel) and self.strided and self.padding == 0 and self.groups == 1

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.c_in == self.c_out


def conv_of(trace: Trace, op: OpRecord, output_shape: tuple[int, ...]) -> Conv | None:
    """The geometry of a 2-d, not transposed convolution op; None for any other."""
    x, w = tensor_shape(trace, op, "input"), tensor_shape(trace, op, "weight")
    if x is None or w is None or len(x) != 4 or op.args.get("transposed"):
        return None
    weight = op.tensor_args["weight"]
    assert isinstance(weight, int)
    return Conv(n=x[0], c_in=x[1], c_out=w[0], groups=int(op.args.get("groups") or 1), kernel=tuple(w[2:]),
                spatial=tuple(x[2:]), out_spatial=tuple(output_shape[2:]),
                strided=any(s != 1 for s in op.args.get("stride") or [1]),
                dilated=any(d != 1 for d in op.args.get("dilation") or [1]),
                padding=max(op.args.get("padding") or [0]), esize=trace.tensors[weight].element_size,
                dtype=trace.tensors[weight].dtype)


def uses_mkldnn(conv: Conv, context: KernelContext) -> bool:
    """PyTorch's `ConvParams::use_mkldnn` for dense CPU tensors."""
    if not context.mkldnn or conv.dtype not in ("float32", "bfloat16", "float16"):
        return False
    if conv.dtype != "float32":
        return True
    one_by_one = all(k == 1 for k in conv.kernel)
    threads_pay = conv.strided or conv.dilated or conv.n >= 16 or not one_by_one or context.threads > 1
    big_enough = (conv.groups > 1 or all(k > 3 for k in conv.kernel) or conv.n > 1
                  or conv.n * conv.c_in * prod(conv.spatial) > 20480)
    return threads_pay and big_enough


def _pad(channels: int, block: int) -> int:
    return -(-channels // block) * block


@dataclass(frozen=True)
class Blocked:
    """Bytes of oneDNN's blocked copies of one convolution."""

    source: int
    weight: int
    destination: int
    rtus: int  # the unit-stride source of a strided 1×1 convolution (all threads)
    bias: int  # a bias padded to the block (0 when its length is a multiple of it)


def blocked(conv: Conv, context: KernelContext) -> Blocked | None:
    """The sizes of oneDNN's copies; None where they are not known (block unknown, groups other than 1 or
    depthwise)."""
    block = context.block
    if block is None or not (conv.groups == 1 or conv.depthwise):
        return None
    e, k = conv.esize, prod(conv.kernel)
    c_in, c_out = _pad(conv.c_in, block), _pad(conv.c_out, block)
    if conv.depthwise:
        weight = c_out * k * e
    else:
        weight = c_out * (conv.c_in if conv.first_conv else c_in) * k * e
    rtus = context.threads * c_in * prod(conv.out_spatial) * e + 128 if conv.pointwise_strided else 0
    return Blocked(source=0 if conv.first_conv else conv.n * c_in * prod(conv.spatial) * e, weight=weight,
                   destination=conv.n * c_out * prod(conv.out_spatial) * e, rtus=rtus,
                   bias=0 if conv.c_out % block == 0 else c_out * e + 128)


def _jit_fits(conv: Conv, block: int | None) -> bool:
    """oneDNN's direct kernel takes a left padding up to its register block of output columns; a wider one
    (measured: a dilated ASPP branch) falls back to its gemm convolution, whose im2col chunk depends on its
    cache blocking."""
    return conv.padding <= min(conv.out_spatial[-1], JIT_PADDING.get(block or 0, 0))


def _columns(conv: Conv) -> int:
    """The native kernel's column buffer (none for a plain 1×1 product)."""
    if all(k == 1 for k in conv.kernel) and not conv.strided and conv.padding == 0:
        return 0
    return conv.n * (conv.c_in // conv.groups) * prod(conv.kernel) * prod(conv.out_spatial) * conv.esize


def _outputs_only(op: OpRecord, trace: Trace, why: str) -> Kernel:
    return Kernel(output_steps(op, trace), why)


@KERNELS.register("aten.convolution")
def convolution(op: OpRecord, trace: Trace, context: KernelContext, layouts: Layouts) -> Kernel:
    (out,) = output_steps(op, trace)
    conv = conv_of(trace, op, trace.tensors[op.outputs[0]].shape)
    source = op.tensor_args.get("input")
    if conv is None or not isinstance(source, int):
        return _outputs_only(op, trace, "a transposed or not 2-d convolution's buffers")
    if not layouts.contiguous(source):
        return _outputs_only(op, trace, "the buffers of a convolution of a non-contiguous (channels-last) input")
    if not uses_mkldnn(conv, context):
        if conv.dilated:
            return _outputs_only(op, trace, "the native dilated convolution's buffers")
        columns = _columns(conv)
        return Kernel(released([Step(columns), out, Step(-columns)]))
    sizes = blocked(conv, context)
    if sizes is None:
        return _outputs_only(op, trace, "oneDNN's blocked copies for this CPU or grouping")
    if not _jit_fits(conv, context.block):
        return _outputs_only(op, trace, "oneDNN's gemm convolution (a padding wider than its direct kernel "
                                        "takes): its im2col buffer")
    bias = sizes.bias if op.tensor_args.get("bias") is not None else 0
    return Kernel(released([
        Step(bias), Step(sizes.rtus), Step(sizes.source), Step(sizes.weight), Step(sizes.destination),
        Step(-sizes.weight), Step(-sizes.source), Step(-sizes.rtus), Step(-bias), out, Step(-sizes.destination)]))


@KERNELS.register("aten.convolution_backward")
def convolution_backward(op: OpRecord, trace: Trace, context: KernelContext, layouts: Layouts) -> Kernel:
    grad_output = op.tensor_args.get("grad_output")
    conv = conv_of(trace, op, trace.tensors[grad_output].shape) if isinstance(grad_output, int) else None
    if conv is None or not isinstance(grad_output, int):
        return _outputs_only(op, trace, "a transposed or not 2-d convolution's buffers")
    outputs = iter(output_steps(op, trace))
    mask = op.args.get("output_mask") or [True, True, True]
    copy = 0 if layouts.contiguous(grad_output) else trace.tensors[grad_output].bytes  # made contiguous first
    if not uses_mkldnn(conv, context):
        return _native_backward(op, trace, conv, copy)
    sizes = blocked(conv, context)
    if sizes is None or not _jit_fits(conv, context.block):
        return _outputs_only(op, trace, "oneDNN's backward buffers for this CPU, grouping or padding")
    if context.block != 16 and conv.dilated and (mask[1] or mask[2]):  # measured on AVX2: a gemm-like kernel
        return _outputs_only(op, trace, "oneDNN's buffers of a dilated convolution's weight gradient (AVX2)")
    if mask[0] and conv.first_conv:
        return _outputs_only(op, trace, "oneDNN's buffers of a first convolution's (C_in < 16) input gradient")
    steps: list[Step] = [Step(copy)]
    unmodelled = []
    if mask[0]:
        source = sizes.source or conv.n * conv.c_in * prod(conv.spatial) * conv.esize
        steps += [Step(sizes.destination), Step(sizes.weight), Step(source), Step(-sizes.weight),
                  Step(-sizes.destination), next(outputs)]
        if conv.pointwise_strided:  # a copy of the gradient after it, and a scratchpad not modelled
            steps += [Step(source), Step(-source)]
            unmodelled.append("oneDNN's unit-stride scratchpad of a strided 1×1 convolution's input gradient")
        steps.append(Step(-source))
    if mask[1] or mask[2]:
        weight, missing = _weight_gradient(conv, sizes, outputs, mask)
        steps += weight
        if missing:
            unmodelled.append(missing)
    steps.append(Step(-copy))
    return Kernel(released(steps), "; ".join(unmodelled) or None)


def _native_backward(op: OpRecord, trace: Trace, conv: Conv, copy: int) -> Kernel:
    """The native kernel: the input's gradient (from a contiguous copy of a non-contiguous grad_output), then
    the weights' and bias's gradients, from another such copy and the column buffer."""
    if conv.dilated:
        return Kernel(output_steps(op, trace), "the native dilated convolution backward's buffers")
    outputs = output_steps(op, trace)
    mask = op.args.get("output_mask") or [True, True, True]
    steps = [Step(copy), outputs[0], Step(-copy)] if mask[0] else []
    rest = outputs[1:] if mask[0] else outputs
    if rest:
        columns = _columns(conv)
        steps += [*rest, Step(copy), Step(columns), Step(-columns), Step(-copy)]
    return Kernel(released(steps))


def _weight_gradient(conv: Conv, sizes: Blocked, outputs: Iterator[Step],
                     mask: list[bool]) -> tuple[list[Step], str | None]:
    """The steps of the weights' (and bias's) gradient: source and grad_output reordered, the gradient
    computed blocked and copied into the outputs."""
    weight_out = next(outputs) if mask[1] else None
    bias_out = next(outputs) if mask[2] else None
    if conv.depthwise and any(k > 3 for k in conv.kernel):
        steps = [Step(sizes.weight), *(s for s in (bias_out, weight_out) if s is not None), Step(-sizes.weight)]
        return steps, "oneDNN's per-thread buffers of a depthwise convolution's weight gradient (kernel > 3)"
    if conv.pointwise_strided:
        steps = [Step(sizes.destination), Step(sizes.source), Step(sizes.weight), Step(sizes.rtus),
                 Step(-sizes.rtus), Step(-sizes.source), Step(-sizes.destination)]
    else:
        steps = [Step(sizes.source), Step(sizes.destination), Step(sizes.weight)]
        if mask[2]:
            padded = sizes.bias or conv.c_out * conv.esize
            steps.append(Step(padded))
            if sizes.bias:  # an unaligned bias gradient: a plain copy too, kept to the end
                steps += [Step(conv.c_out * conv.esize), Step(-padded)]
        steps += [Step(-sizes.source), Step(-sizes.destination)]
    steps += [s for s in (bias_out, weight_out) if s is not None]
    steps.append(Step(-sizes.weight))
    if mask[2] and not conv.pointwise_strided:
        steps.append(Step(-conv.c_out * conv.esize))  # the plain copy of an unaligned bias, else the blocked one
    return steps, None
