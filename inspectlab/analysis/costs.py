"""The cost of each aten op: multiply-accumulates (MACs) and "other FLOPs", with a category.

Conventions (docs/counting.md):
- MACs: convolution N·C_out·prod(out spatial)·(C_in/groups)·prod(kernel) (transposed: per *input*
  element), mm/addmm m·k·n, bmm/baddbmm b·m·k·n, attention b·h·(s_q·s_k·d + s_q·s_k·d_v).
  FLOPs = 2 × MACs for these.
- Other FLOPs: per-element formulas for bias adds, norms, activations, pooling, resampling,
  elementwise arithmetic, softmax and reductions (the constants below).
- Ops that only move or alias memory (view, cat, pad, copy, ...) cost 0 FLOPs, explicitly.
- An op with no formula in `COSTS` is "uncounted": reported with its call count, never a silent 0.

Every formula is registered in `COSTS` by op packet ("aten.convolution"), beside its definition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import prod

from inspectlab.core.op_registry import OpRegistry
from inspectlab.tracing.records import OpRecord, Trace

CATEGORIES = ("conv", "matmul", "attention", "norm", "activation", "pool", "resample", "elementwise",
              "reduction", "softmax", "memory")


@dataclass(frozen=True)
class OpCost:
    macs: int
    other_flops: int
    category: str


Formula = Callable[[OpRecord, Trace], OpCost]
COSTS: OpRegistry[Formula] = OpRegistry("costs")

SOFTMAX_FLOPS = 5  # max, subtract, exp, sum, divide (per element)
NORM_FLOPS = {"eval": 2, "stats": 4, "affine": 1}  # eval BN: scale + shift; training: stats + normalise (+ affine)
RESAMPLE_FLOPS = {"nearest": 0, "linear": 3, "bilinear": 7, "trilinear": 15, "bicubic": 31}


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


@COSTS.register("aten.convolution", "aten._convolution")
def _convolution(op: OpRecord, trace: Trace) -> OpCost:
    x, w = _shape(trace, op.tensor_args["input"]), _shape(trace, op.tensor_args["weight"])
    out = trace.tensors[op.outputs[0]].shape
    bias = op.tensor_args.get("bias")
    return OpCost(conv_macs(x, w, out, bool(op.args.get("transposed"))), prod(out) if bias is not None else 0,
                  "conv")


@COSTS.register("aten.convolution_backward")
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


@COSTS.register("aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm")
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
    """Q·Kᵀ then P·V: batch·heads·s_q·(s_k·d + s_k·d_v) (grouped-query attention: the query's heads)."""
    batch_heads = prod(q[:-2])
    return batch_heads * q[-2] * k[-2] * q[-1] + batch_heads * q[-2] * k[-2] * v[-1]


def attention_other_flops(q: tuple[int, ...], k: tuple[int, ...], masked: bool, causal: bool, dropout: bool) -> int:
    """Other FLOPs of scaled-dot-product attention as torch's math path computes it (the path the meta trace
    records, so that a fused kernel counts what its parts count): Q and Kᵀ each scaled by √scale (one per
    element, Kᵀ after grouped-query heads are repeated), the mask added to the scores (a causal mask is first
    built: one per s_q·s_k), softmax (SOFTMAX_FLOPS per score), dropout (2 per score)."""
    batch_heads = prod(q[:-2])
    scores = batch_heads * q[-2] * k[-2]
    other = batch_heads * q[-2] * q[-1] + batch_heads * k[-2] * k[-1] + SOFTMAX_FLOPS * scores
    if causal:
        other += q[-2] * k[-2] + scores
    elif masked:
        other += scores
    return other + (2 * scores if dropout else 0)


# every fused scaled-dot-product attention kernel -> the name of its mask argument
FUSED_ATTENTION = {"aten._scaled_dot_product_flash_attention_for_cpu": "attn_mask",
                   "aten._scaled_dot_product_flash_attention": None,
                   "aten._scaled_dot_product_efficient_attention": "attn_bias",
                   "aten._scaled_dot_product_cudnn_attention": "attn_bias",
                   "aten._scaled_dot_product_fused_attention_overrideable": "attn_bias",
                   "aten._scaled_dot_product_attention_math_for_mps": "attn_mask"}


@COSTS.register(*FUSED_ATTENTION)
def _attention(op: OpRecord, trace: Trace) -> OpCost:
    q, k, v = (_shape(trace, op.tensor_args[n]) for n in ("query", "key", "value"))
    mask = FUSED_ATTENTION[op.packet]
    masked = mask is not None and op.tensor_args.get(mask) is not None
    other = attention_other_flops(q, k, masked, bool(op.args.get("is_causal")), bool(op.args.get("dropout_p")))
    return OpCost(attention_macs(q, k, v), other, "attention")


@COSTS.register("aten._native_multi_head_attention")
def _native_multi_head_attention(op: OpRecord, trace: Trace) -> OpCost:
    """nn.MultiheadAttention's fused fast path, counted like the parts its slow path runs: the input
    projections (one packed matmul for self-attention) and their biases, attention over num_head heads (Q and K
    scaled when the weights are not returned, else Q only; a given mask added), the output projection and its
    bias, and the weights averaged over the heads when they are returned averaged."""
    q, k = _shape(trace, op.tensor_args["query"]), _shape(trace, op.tensor_args["key"])
    batch, embed, heads = prod(q[:-2]), q[-1], int(op.args["num_head"])
    queries, keys = batch * q[-2], batch * k[-2]
    scores = heads * queries * k[-2]
    macs = (queries + 2 * keys) * embed * embed + queries * embed * embed + 2 * queries * k[-2] * embed
    weights = op.args.get("need_weights", True)
    other = (queries + 2 * keys) * embed + queries * embed + SOFTMAX_FLOPS * scores
    other += queries * embed + (0 if weights else keys * embed)  # Q (and K) scaled
    other += scores if op.tensor_args.get("mask") is not None else 0
    if weights and op.args.get("average_attn_weights", True):
        other += scores + queries * k[-2]  # the mean over the heads
    return OpCost(macs, other, "attention")


LSTM_STEP_FLOPS = {"gates": 30, "biases": 8}  # other FLOPs per hidden unit and step (docs/counting.md)


@COSTS.register("aten.mkldnn_rnn_layer")
def _mkldnn_rnn_layer(op: OpRecord, trace: Trace) -> OpCost:
    """One layer and direction of an LSTM as oneDNN runs it on the CPU, counted like the steps the meta device
    decomposes it into: per step and row, x·W_ihᵀ and h·W_hhᵀ (4·hidden outputs each), their biases, the sum of
    the two, three sigmoid gates, two tanh, c = f·c + i·g and h = o·tanh(c)."""
    x, w_ih = _shape(trace, op.tensor_args["input"]), _shape(trace, op.tensor_args["weight0"])
    hidden, inputs = int(op.args["hidden_size"]), w_ih[-1]
    rows = prod(x) // inputs  # steps × batch
    other = LSTM_STEP_FLOPS["gates"] + (LSTM_STEP_FLOPS["biases"] if op.args.get("has_biases", True) else 0)
    return OpCost(rows * 4 * hidden * (inputs + hidden), rows * hidden * other, "matmul")


@COSTS.register("aten.native_batch_norm", "aten._native_batch_norm_legit",
                "aten._native_batch_norm_legit_no_training", "aten.cudnn_batch_norm")
def _batch_norm(op: OpRecord, trace: Trace) -> OpCost:
    numel = _first_input_numel(op, trace)
    training = op.args.get("training", False) and "no_training" not in op.name
    if not training:
        return OpCost(0, NORM_FLOPS["eval"] * numel, "norm")
    affine = op.tensor_args.get("weight") is not None
    return OpCost(0, (NORM_FLOPS["stats"] + NORM_FLOPS["affine"] * affine) * numel, "norm")


@COSTS.register("aten.native_layer_norm", "aten.native_group_norm")
def _layer_or_group_norm(op: OpRecord, trace: Trace) -> OpCost:
    affine = op.tensor_args.get("weight") is not None
    return OpCost(0, (NORM_FLOPS["stats"] + NORM_FLOPS["affine"] * affine) * _first_input_numel(op, trace), "norm")


@COSTS.register("aten.max_pool2d_with_indices", "aten.max_pool1d", "aten.max_pool2d",
                "aten.max_pool3d_with_indices", "aten.avg_pool1d", "aten.avg_pool2d", "aten.avg_pool3d")
def _pool(op: OpRecord, trace: Trace) -> OpCost:
    kernel = op.args.get("kernel_size") or [1]
    return OpCost(0, _out_numel(op, trace) * prod(kernel), "pool")


@COSTS.register("aten._adaptive_avg_pool2d", "aten._adaptive_avg_pool3d", "aten.adaptive_max_pool2d",
                "aten.adaptive_max_pool1d")
def _adaptive_pool(op: OpRecord, trace: Trace) -> OpCost:
    extra = _out_numel(op, trace) if "avg" in op.name else 0  # the average divides once per output
    return OpCost(0, _first_input_numel(op, trace) + extra, "pool")


# every aten packet named upsample_* (the backward ones too, at the bilinear rate); not the _upsample_* ones
@COSTS.register(*(f"aten.upsample_{kind}{suffix}" for kind in (
    "nearest1d", "nearest2d", "nearest3d", "linear1d", "bilinear2d", "bicubic2d", "trilinear3d",
) for suffix in ("", "_backward")))
def _upsample(op: OpRecord, trace: Trace) -> OpCost:
    mode = op.packet.split("upsample_")[-1].rstrip("0123456789d").replace("_aa", "").replace("_", "")
    return OpCost(0, RESAMPLE_FLOPS.get(mode, RESAMPLE_FLOPS["bilinear"]) * _out_numel(op, trace), "resample")


def _per_output(flops: int, category: str) -> Callable[[OpRecord, Trace], OpCost]:
    return lambda op, trace: OpCost(0, flops * _out_numel(op, trace), category)


@COSTS.register("aten.sum", "aten.mean", "aten.amax", "aten.amin", "aten.max", "aten.min", "aten.prod",
                "aten.var", "aten.std", "aten.norm", "aten.linalg_vector_norm", "aten.logsumexp", "aten.argmax",
                "aten.argmin", "aten.cumsum")
def _reduction(op: OpRecord, trace: Trace) -> OpCost:
    extra = _out_numel(op, trace) if op.packet.endswith(("mean", "var", "std")) else 0
    return OpCost(0, _first_input_numel(op, trace) + extra, "reduction")


def _memory(op: OpRecord, trace: Trace) -> OpCost:
    """Ops that only move, alias, fill or index memory: 0 FLOPs, counted."""
    return OpCost(0, 0, "memory")


COSTS.add(_per_output(SOFTMAX_FLOPS, "softmax"), "aten._softmax", "aten._log_softmax", "aten._safe_softmax")
COSTS.add(_per_output(2, "elementwise"), "aten.native_dropout")
# activations: other FLOPs per output element
COSTS.add(_per_output(1, "activation"), "aten.relu", "aten.relu_", "aten.threshold", "aten.clamp_min",
          "aten.clamp_min_", "aten.clamp_max", "aten.clamp_max_")
COSTS.add(_per_output(2, "activation"), "aten.hardtanh", "aten.hardtanh_", "aten.leaky_relu", "aten.leaky_relu_",
          "aten.prelu", "aten._prelu_kernel", "aten.clamp", "aten.clamp_")
COSTS.add(_per_output(3, "activation"), "aten.softplus")
COSTS.add(_per_output(4, "activation"), "aten.hardsigmoid", "aten.hardsigmoid_", "aten.sigmoid", "aten.sigmoid_",
          "aten.elu", "aten.elu_")
COSTS.add(_per_output(5, "activation"), "aten.hardswish", "aten.hardswish_", "aten.tanh", "aten.tanh_", "aten.silu",
          "aten.silu_")
COSTS.add(_per_output(8, "activation"), "aten.gelu", "aten.gelu_")
COSTS.add(_per_output(10, "activation"), "aten.mish")
# elementwise arithmetic and comparisons: other FLOPs per output element
COSTS.add(_per_output(1, "elementwise"),
          "aten.add", "aten.add_", "aten.sub", "aten.sub_", "aten.rsub", "aten.mul", "aten.mul_", "aten.div",
          "aten.div_", "aten.neg", "aten.abs", "aten.exp", "aten.log", "aten.sqrt", "aten.rsqrt", "aten.pow",
          "aten.reciprocal", "aten.maximum", "aten.minimum", "aten.where", "aten.lerp", "aten.erf", "aten.sign",
          "aten.eq", "aten.ne", "aten.lt", "aten.le", "aten.gt", "aten.ge", "aten.floor", "aten.ceil", "aten.round",
          "aten.remainder", "aten.fmod")
COSTS.add(_per_output(2, "elementwise"), "aten.addcmul", "aten.addcmul_", "aten.addcdiv", "aten.addcdiv_")
COSTS.add(
    _memory,
    "aten.view", "aten._unsafe_view", "aten.reshape", "aten.t", "aten.transpose", "aten.permute", "aten.expand",
    "aten.unsqueeze", "aten.squeeze", "aten.flatten", "aten.select", "aten.slice", "aten.alias", "aten.detach",
    "aten.clone", "aten.contiguous", "aten._to_copy", "aten.copy_", "aten.copy", "aten.cat", "aten.stack",
    "aten.split", "aten.split_with_sizes", "aten.unbind", "aten.chunk", "aten.narrow", "aten.constant_pad_nd",
    "aten.pad", "aten.reflection_pad2d", "aten.replication_pad2d", "aten.empty", "aten.empty_like",
    "aten.empty_strided", "aten.zeros", "aten.zeros_like", "aten.ones", "aten.ones_like", "aten.full",
    "aten.full_like", "aten.fill", "aten.fill_", "aten.zero_", "aten.new_empty", "aten.new_zeros", "aten.new_ones",
    "aten.new_full", "aten.randn", "aten.rand", "aten.randn_like", "aten.rand_like", "aten.normal_", "aten.uniform_",
    "aten.arange", "aten.lift_fresh", "aten.as_strided", "aten.index", "aten.index_select", "aten.gather",
    "aten.repeat", "aten.roll", "aten.flip", "aten.pixel_shuffle", "aten.pixel_unshuffle", "aten.unfold",
    "aten.channel_shuffle", "aten._reshape_alias", "aten.lift_fresh_copy", "aten.scalar_tensor", "aten.bernoulli_",
    "aten.set_", "aten.resize_", "aten._local_scalar_dense", "aten.item", "aten.masked_fill", "aten.masked_fill_",
    "aten.embedding", "aten._native_batch_norm_legit_functional", "aten.native_dropout_backward", "aten.tril",
    "aten.triu", "aten.unsafe_split", "aten.unsafe_split_with_sizes", "aten.unsafe_chunk", "aten.transpose_",
    "aten.t_", "aten.squeeze_", "aten.unsqueeze_",
)


def op_cost(op: OpRecord, trace: Trace) -> OpCost | None:
    """The op's MACs and other FLOPs under inspectlab's convention; None when no formula applies."""
    formula = COSTS.get(op.packet)
    return formula(op, trace) if formula is not None else None
