"""The cost of each aten op: multiply-accumulates (MACs) and "other FLOPs", with a category.

Conventions (docs/counting.md):
- MACs: convolution N·C_out·prod(out spatial)·(C_in/groups)·prod(kernel) (transposed: per *input*
  element), mm/addmm m·k·n, bmm/baddbmm b·m·k·n, attention b·h·(s_q·s_k·d + s_q·s_k·d_v).
  FLOPs = 2 × MACs for these.
- Other FLOPs: per-element formulas for bias adds, norms, activations, pooling, resampling,
  elementwise arithmetic, softmax and reductions (the constants below).
- Ops that only move or alias memory (view, cat, pad, copy, ...) cost 0 FLOPs, explicitly.
- An op in none of these tables is "uncounted": reported with its call count, never a silent 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import prod

from inspectlab.tracing.records import OpRecord, Trace

CATEGORIES = ("conv", "matmul", "attention", "norm", "activation", "pool", "resample", "elementwise",
              "reduction", "softmax", "memory")


@dataclass(frozen=True)
class OpCost:
    macs: int
    other_flops: int
    category: str


# Other FLOPs per output element (activations, elementwise) -------------------------------------
ACTIVATION_FLOPS = {
    "relu": 1, "relu_": 1, "threshold": 1, "hardtanh": 2, "hardtanh_": 2, "leaky_relu": 2, "leaky_relu_": 2,
    "hardsigmoid": 4, "hardsigmoid_": 4, "hardswish": 5, "hardswish_": 5, "sigmoid": 4, "sigmoid_": 4,
    "tanh": 5, "tanh_": 5, "gelu": 8, "gelu_": 8, "silu": 5, "silu_": 5, "elu": 4, "elu_": 4, "mish": 10,
    "softplus": 3, "prelu": 2, "_prelu_kernel": 2, "clamp": 2, "clamp_": 2, "clamp_min": 1, "clamp_min_": 1,
    "clamp_max": 1, "clamp_max_": 1,
}
ELEMENTWISE_FLOPS = {
    name: 1 for name in (
        "add", "add_", "sub", "sub_", "rsub", "mul", "mul_", "div", "div_", "neg", "abs", "exp", "log",
        "sqrt", "rsqrt", "pow", "reciprocal", "maximum", "minimum", "where", "lerp", "erf", "sign",
        "eq", "ne", "lt", "le", "gt", "ge", "floor", "ceil", "round", "remainder", "fmod",
    )
} | {"addcmul": 2, "addcmul_": 2, "addcdiv": 2, "addcdiv_": 2}
REDUCTION_OPS = ("sum", "mean", "amax", "amin", "max", "min", "prod", "var", "std", "norm", "linalg_vector_norm",
                 "logsumexp", "argmax", "argmin", "cumsum")
SOFTMAX_FLOPS = 5  # max, subtract, exp, sum, divide (per element)
NORM_FLOPS = {"eval": 2, "stats": 4, "affine": 1}  # eval BN: scale + shift; training: stats + normalise (+ affine)
RESAMPLE_FLOPS = {"nearest": 0, "linear": 3, "bilinear": 7, "trilinear": 15, "bicubic": 31}
ZERO_COST = (
    "view", "_unsafe_view", "reshape", "t", "transpose", "permute", "expand", "unsqueeze", "squeeze", "flatten",
    "select", "slice", "alias", "detach", "clone", "contiguous", "_to_copy", "copy_", "copy", "cat", "stack",
    "split", "split_with_sizes", "unbind", "chunk", "narrow", "constant_pad_nd", "pad", "reflection_pad2d",
    "replication_pad2d", "empty", "empty_like", "empty_strided", "zeros", "zeros_like", "ones", "ones_like",
    "full", "full_like", "fill", "fill_", "zero_", "new_empty", "new_zeros", "new_ones", "new_full",
    "randn", "rand", "randn_like", "rand_like", "normal_", "uniform_", "arange", "lift_fresh", "as_strided",
    "index", "index_select", "gather", "repeat", "roll", "flip", "pixel_shuffle", "pixel_unshuffle",
    "unfold", "channel_shuffle", "_reshape_alias", "lift_fresh_copy", "scalar_tensor", "bernoulli_",
    "set_", "resize_", "_local_scalar_dense", "item", "masked_fill", "masked_fill_", "embedding",
    "_native_batch_norm_legit_functional", "native_dropout_backward", "ones_like", "tril", "triu",
)


def _numel(trace: Trace, tensor_id: int | None) -> int:
    return trace.tensors[tensor_id].numel if tensor_id is not None else 0


def _shape(trace: Trace, tensor_id: int | list[int] | None) -> tuple[int, ...]:
    assert isinstance(tensor_id, int)
    return trace.tensors[tensor_id].shape


def _out_numel(op: OpRecord, trace: Trace) -> int:
    return _numel(trace, op.outputs[0]) if op.outputs else 0


def _first_input_numel(op: OpRecord, trace: Trace) -> int:
    return _numel(trace, op.inputs[0]) if op.inputs else 0


def conv_macs(x_shape: tuple[int, ...], w_shape: tuple[int, ...], out_shape: tuple[int, ...],
              transposed: bool) -> int:
    """N · prod(spatial) · prod(weight): output spatial for a conv, input spatial for a transposed conv."""
    spatial = x_shape[2:] if transposed else out_shape[2:]
    return x_shape[0] * prod(spatial) * prod(w_shape)


def _convolution(op: OpRecord, trace: Trace) -> OpCost:
    x, w = _shape(trace, op.tensor_args["input"]), _shape(trace, op.tensor_args["weight"])
    out = trace.tensors[op.outputs[0]].shape
    bias = op.tensor_args.get("bias")
    return OpCost(conv_macs(x, w, out, bool(op.args.get("transposed"))), prod(out) if bias is not None else 0,
                  "conv")


def _convolution_backward(op: OpRecord, trace: Trace) -> OpCost:
    """grad_input is a (transposed) conv of grad_output with the weight; grad_weight a conv of x with it."""
    grad_out = _shape(trace, op.tensor_args["grad_output"])
    x, w = _shape(trace, op.tensor_args["input"]), _shape(trace, op.tensor_args["weight"])
    mask = op.args.get("output_mask") or [True, True, True]
    transposed = bool(op.args.get("transposed"))
    forward_macs = conv_macs(x, w, grad_out, transposed)
    # grad_input is a conv of grad_output with the weight, grad_weight one of x with grad_output:
    # each costs what the forward costs.
    macs = forward_macs * (bool(mask[0]) + bool(mask[1]))
    other = prod(grad_out) if len(mask) > 2 and mask[2] else 0  # grad_bias: a sum over N and space
    return OpCost(macs, other, "conv")


def _mm(op: OpRecord, trace: Trace) -> OpCost:
    a, b = (_shape(trace, t) for t in _matrix_operands(op))
    macs = prod(a[:-1]) * a[-1] * b[-1]
    bias = op.tensor_args.get("self") if op.packet.endswith(("addmm", "baddbmm")) else None
    other = prod(a[:-1]) * b[-1] if bias is not None else 0
    return OpCost(macs, other, "matmul")


def _matrix_operands(op: OpRecord) -> tuple[int, int]:
    names = ("mat1", "mat2") if "mat1" in op.tensor_args else ("batch1", "batch2") if "batch1" in op.tensor_args \
        else ("self", "mat2")
    return op.tensor_args[names[0]], op.tensor_args[names[1]]  # type: ignore[return-value]


def attention_macs(q: tuple[int, ...], k: tuple[int, ...], v: tuple[int, ...]) -> int:
    """Q·Kᵀ then P·V: batch·heads·s_q·(s_k·d + s_k·d_v)."""
    batch_heads = prod(q[:-2])
    return batch_heads * q[-2] * k[-2] * q[-1] + batch_heads * q[-2] * k[-2] * v[-1]


def _attention(op: OpRecord, trace: Trace) -> OpCost:
    q, k, v = (_shape(trace, op.tensor_args[n]) for n in ("query", "key", "value"))
    scores = prod(q[:-2]) * q[-2] * k[-2]
    return OpCost(attention_macs(q, k, v), scores * (SOFTMAX_FLOPS + 1), "attention")  # softmax + scale


def _batch_norm(op: OpRecord, trace: Trace) -> OpCost:
    numel = _first_input_numel(op, trace)
    training = op.args.get("training", False) and "no_training" not in op.name
    if not training:
        return OpCost(0, NORM_FLOPS["eval"] * numel, "norm")
    affine = op.tensor_args.get("weight") is not None
    return OpCost(0, (NORM_FLOPS["stats"] + NORM_FLOPS["affine"] * affine) * numel, "norm")


def _layer_or_group_norm(op: OpRecord, trace: Trace) -> OpCost:
    affine = op.tensor_args.get("weight") is not None
    return OpCost(0, (NORM_FLOPS["stats"] + NORM_FLOPS["affine"] * affine) * _first_input_numel(op, trace), "norm")


def _pool(op: OpRecord, trace: Trace) -> OpCost:
    kernel = op.args.get("kernel_size") or [1]
    return OpCost(0, _out_numel(op, trace) * prod(kernel), "pool")


def _adaptive_pool(op: OpRecord, trace: Trace) -> OpCost:
    extra = _out_numel(op, trace) if "avg" in op.name else 0  # the average divides once per output
    return OpCost(0, _first_input_numel(op, trace) + extra, "pool")


def _upsample(op: OpRecord, trace: Trace) -> OpCost:
    mode = op.packet.split("upsample_")[-1].rstrip("0123456789d").replace("_aa", "").replace("_", "")
    return OpCost(0, RESAMPLE_FLOPS.get(mode, RESAMPLE_FLOPS["bilinear"]) * _out_numel(op, trace), "resample")


def _per_output(flops: int, category: str) -> Callable[[OpRecord, Trace], OpCost]:
    return lambda op, trace: OpCost(0, flops * _out_numel(op, trace), category)


def _reduction(op: OpRecord, trace: Trace) -> OpCost:
    extra = _out_numel(op, trace) if op.packet.endswith(("mean", "var", "std")) else 0
    return OpCost(0, _first_input_numel(op, trace) + extra, "reduction")


_SPECIAL: dict[str, Callable[[OpRecord, Trace], OpCost]] = {
    "convolution": _convolution, "_convolution": _convolution, "convolution_backward": _convolution_backward,
    "mm": _mm, "addmm": _mm, "bmm": _mm, "baddbmm": _mm,
    "native_batch_norm": _batch_norm, "_native_batch_norm_legit": _batch_norm,
    "_native_batch_norm_legit_no_training": _batch_norm, "cudnn_batch_norm": _batch_norm,
    "native_layer_norm": _layer_or_group_norm, "native_group_norm": _layer_or_group_norm,
    "max_pool2d_with_indices": _pool, "max_pool1d": _pool, "max_pool2d": _pool, "max_pool3d_with_indices": _pool,
    "avg_pool1d": _pool, "avg_pool2d": _pool, "avg_pool3d": _pool,
    "_adaptive_avg_pool2d": _adaptive_pool, "_adaptive_avg_pool3d": _adaptive_pool,
    "adaptive_max_pool2d": _adaptive_pool, "adaptive_max_pool1d": _adaptive_pool,
    "_softmax": _per_output(SOFTMAX_FLOPS, "softmax"), "_log_softmax": _per_output(SOFTMAX_FLOPS, "softmax"),
    "_safe_softmax": _per_output(SOFTMAX_FLOPS, "softmax"),
    "native_dropout": _per_output(2, "elementwise"),
    **{name: _attention for name in (
        "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
    )},
}


def op_cost(op: OpRecord, trace: Trace) -> OpCost | None:
    """The op's MACs and other FLOPs under inspectlab's convention; None when no formula applies."""
    base = op.packet.removeprefix("aten.")
    if base in _SPECIAL:
        return _SPECIAL[base](op, trace)
    if base.startswith("upsample_"):
        return _upsample(op, trace)
    if base in ACTIVATION_FLOPS:
        return OpCost(0, ACTIVATION_FLOPS[base] * _out_numel(op, trace), "activation")
    if base in ELEMENTWISE_FLOPS:
        return OpCost(0, ELEMENTWISE_FLOPS[base] * _out_numel(op, trace), "elementwise")
    if base in REDUCTION_OPS:
        return _reduction(op, trace)
    if base in ZERO_COST:
        return OpCost(0, 0, "memory")
    return None
