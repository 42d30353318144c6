"""What a real CPU run dispatches where a Trace recorded something else, so that a peer's convention counts
what the peer sees on the path it actually runs (docs/counting.md, "The path each peer runs").

The meta device runs every composite op through its decomposition; a CPU run may take a fused kernel instead:

- **scaled-dot-product attention** (`F.scaled_dot_product_attention`, and nn.MultiheadAttention's slow path,
  which calls it when no weights are returned): on meta torch always takes its math path (Q and Kᵀ scaled,
  `bmm`, the mask added, `aten._safe_softmax`, dropout, `bmm`); a CPU run takes
  `aten._scaled_dot_product_flash_attention_for_cpu` when `cpu_attention_backend` says "flash" (the gates of
  torch's `use_flash_attention_cpp`), else the same math path. A trace made on a real device holds the fused
  kernel itself. `attention_calls` finds both forms: the math path by its `_safe_softmax` and the `bmm`s on
  either side of it, through the view ops `at::matmul` lowers to.
- **nn.MultiheadAttention** takes its fused fast path (`aten._native_multi_head_attention`: projections and
  attention in one kernel) in eval mode when no tensor of the call requires grad, even in default grad mode (a
  frozen model) and when its own gates hold (`mha_fast_path`); so does nn.TransformerEncoderLayer, the whole
  layer in `aten._transformer_encoder_layer_fwd` (`encoder_layer_fast_path`), unless the peer hooks its
  modules. The recorder's function mode and hooks keep a traced pass on the slow paths, whose ops it holds.
- **nn.LSTM**: meta decomposes it into one `addmm` per gate matmul and step; a CPU run dispatches one
  `aten.mkldnn_rnn_layer` per layer and direction when oneDNN takes it (`cpu_lstm_kernel`). GRU and RNN run
  the same matmuls on the CPU as on meta.

Facts of a run that a Trace holds only in part, and how they are read:
- which tensors require grad (a mask that does, a learned relative-position bias, keeps the CPU on the math
  path): `grad_tensors` follows the dataflow from the parameters that require grad, as a run in default grad
  mode would;
- strides: the last dimension of Q, K and V is taken to be contiguous (true of every layout
  `view`/`permute`/`transpose(1, 2)` produce from a projection);
- the process's switches (`torch.backends.cuda.flash_sdp_enabled()`, oneDNN's) are read when counting.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from inspectlab.analysis.costs import FUSED_ATTENTION
from inspectlab.tracing.records import ModuleCall, OpRecord, Shape, Trace

FLASH_CPU = "aten._scaled_dot_product_flash_attention_for_cpu"
LSTM_CPU = "aten.mkldnn_rnn_layer"
MHA_FAST = "aten._native_multi_head_attention"
MHA_WHAT = "nn.MultiheadAttention's fast path"
ENCODER_FAST = "aten._transformer_encoder_layer_fwd"
RNN_FUNCTIONS = ("lstm", "gru", "rnn_tanh", "rnn_relu")  # the torch functions nn.LSTM/GRU/RNN call
FLASH_DTYPES = ("float32", "float64", "bfloat16", "float16")
_LOWERING = ("aten.view", "aten._unsafe_view", "aten.reshape", "aten.clone", "aten.expand")  # at::matmul's
# ops whose output never requires grad, whatever their inputs
_NO_GRAD = frozenset({"aten.detach", "aten.empty_like", "aten.zeros_like", "aten.ones_like", "aten.full_like",
                      "aten.rand_like", "aten.randn_like", "aten.new_empty", "aten.new_zeros", "aten.new_ones",
                      "aten.new_full", "aten.bernoulli_", "aten.argmax", "aten.argmin"})


@dataclass(frozen=True)
class Attention:
    """One scaled-dot-product attention call of a trace, with the arguments the call got."""

    ops: frozenset[int]  # its forward ops: the math path's, or the one fused kernel
    query: Shape
    key: Shape  # before grouped-query heads are repeated
    value: Shape
    dtype: str
    mask: Shape | None  # the additive mask (a boolean or causal one as the math path makes it additive)
    mask_requires_grad: bool
    dropout: bool
    fused: str | None  # the fused kernel the trace holds; None for the math path


@dataclass(frozen=True)
class Kernel:
    """Forward ops that one fused kernel runs on the CPU, where the trace holds them (or that kernel)."""

    what: str  # "the attention core", "an LSTM"
    op: str  # the kernel a CPU run dispatches
    ops: frozenset[int]


def grad_tensors(trace: Trace) -> set[int]:
    """The tensors that require grad in a run in default grad mode: parameters (and inputs) that do, and every
    floating output of a forward op that reads one (except ops whose result never does: detach, `*_like`)."""
    found = {t for t, info in trace.tensors.items() if info.requires_grad and info.kind in ("param", "input")}
    for op in trace.forward_ops():
        if op.packet not in _NO_GRAD and any(t in found for t in op.inputs):
            found.update(t for t in op.outputs if trace.tensors[t].dtype.startswith(("float", "bfloat", "complex")))
    return found


def attention_calls(trace: Trace, grad: set[int] | None = None) -> list[Attention]:
    """Every scaled-dot-product attention of the forward pass, math path or fused kernel, in order."""
    candidates = [op for op in trace.forward_ops() if op.packet in FUSED_ATTENTION or op.packet == "aten._safe_softmax"]
    if candidates and grad is None:
        grad = grad_tensors(trace)
    found = []
    for op in candidates:
        call = _fused_call(op, trace, grad) if op.packet in FUSED_ATTENTION else _math_call(op, trace, grad)
        if call is not None:
            found.append(call)
    return found


def cpu_attention_backend(call: Attention) -> str:
    """"flash" when a CPU run would take `aten._scaled_dot_product_flash_attention_for_cpu` for this call, else
    "math": torch's gates (`use_flash_attention_cpp`): flash enabled, no dropout, 4-D Q/K/V with one batch size
    and heads equal (or grouped: K and V alike, dividing Q's), a mask that requires no grad and is 2-D or 4-D
    and broadcasts to (batch, heads, L, S), one head dimension, non-empty sequences, a supported dtype."""
    q, k, v, mask = call.query, call.key, call.value, call.mask
    if not torch.backends.cuda.flash_sdp_enabled() or call.dropout or call.dtype not in FLASH_DTYPES:
        return "math"
    if not len(q) == len(k) == len(v) == 4 or not q[0] == k[0] == v[0] or not q[-1] == k[-1] == v[-1]:
        return "math"
    if k[1] != v[1] or q[1] % k[1] or q[2] == 0 or k[2] == 0:
        return "math"
    if mask is not None and (call.mask_requires_grad or mask[-2] not in (q[2], 1) or mask[-1] not in (k[2], 1)):
        return "math"
    if mask is not None and not (len(mask) == 2 or len(mask) == 4 and mask[0] in (1, q[0]) and mask[1] in (1, q[1])):
        return "math"
    return "flash"


def cpu_lstm_kernel(trace: Trace, ops: list[OpRecord]) -> bool:
    """Whether a CPU run hands these ops of one LSTM call to oneDNN (`aten.mkldnn_rnn_layer`), as torch's
    `use_mkldnn` decides in default grad mode: oneDNN on and enabled, a float32 input (bfloat16 where the CPU
    supports it; float16 only without grad), no projections, not a packed sequence, not empty."""
    if any(op.packet == LSTM_CPU for op in ops):
        return True
    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return False
    call = trace.calls[ops[0].module_call] if ops[0].module_call is not None else None
    inputs = [trace.tensors[t] for t in (call.inputs if call is not None else ops[0].inputs)]
    if not inputs or any(not info.dtype.startswith(("float", "bfloat")) for info in inputs) or inputs[0].numel == 0:
        return False  # an integer tensor among the inputs: a packed sequence's batch sizes
    node = trace.modules.get(call.name) if call is not None else None
    if node is not None and any(name.startswith("weight_hr") for name in node.params):
        return False
    dtype = inputs[0].dtype
    return dtype == "float32" or (dtype == "bfloat16" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()))


def rnn_calls(trace: Trace, functions: Iterable[str] = RNN_FUNCTIONS) -> list[list[OpRecord]]:
    """The forward ops of each recurrent call (`_VF.lstm`, `gru`, `rnn_tanh`, `rnn_relu`): consecutive ops that
    torch function and one module call issued."""
    wanted = frozenset(functions)
    groups: list[list[OpRecord]] = []
    for op in trace.forward_ops():
        if op.function in wanted or op.packet == LSTM_CPU:
            previous = groups[-1][-1] if groups else None
            if previous is None or previous.index != op.index - 1 or (previous.function, previous.module_call) != (
                    op.function, op.module_call):
                groups.append([])
            groups[-1].append(op)
    return groups


def mha_fast_path(trace: Trace, call: ModuleCall, grad: set[int]) -> bool:
    """Whether this call of an nn.MultiheadAttention takes the fast path in a run in default grad mode, by the
    gates of `MultiheadAttention.forward`, as the trace tells them: eval mode, fast path enabled, a batched
    self-attention (one tensor as query, key and value) with no floating-point mask, packed input projections
    with a bias and no bias_k/bias_v, batch_first (the slow path then transposes the query itself), no
    add_zero_attn (no `cat` in the call), an even number of heads (the embedding over the head dimension of its
    `bmm`s), and no tensor among the query and the projections' weights and biases that requires grad."""
    node = trace.modules.get(call.name)
    out_proj = trace.modules.get(f"{call.name}.out_proj" if call.name else "out_proj")
    if call.type != "MultiheadAttention" or node is None or out_proj is None or trace.training:
        return False
    if not torch.backends.mha.get_fastpath_enabled() or not {"in_proj_weight", "in_proj_bias"} <= set(node.params):
        return False
    query = call.inputs[0] if len(call.inputs) >= 3 and call.inputs[0] == call.inputs[1] == call.inputs[2] else None
    if query is None or len(trace.tensors[query].shape) != 3 or {"bias_k", "bias_v"} & set(node.params):
        return False
    if any(trace.tensors[t].dtype.startswith(("float", "bfloat")) for t in call.inputs[3:]):
        return False
    ops = [trace.ops[i] for i in call.op_range()]
    if any(op.packet == "aten.cat" for op in ops) or not any(
            op.packet == "aten.transpose" and op.inputs[:1] == [query] for op in ops):
        return False
    heads = _heads(trace, call, ops, query)
    if heads is None or heads % 2:
        return False
    tensors = [query, *node.param_ids.values(), *out_proj.param_ids.values()]
    return not any(t in grad for t in tensors)


def _heads(trace: Trace, call: ModuleCall, ops: list[OpRecord], query: int) -> int | None:
    """A MultiheadAttention call's number of heads: the heads of its scaled-dot-product attention, or (when it
    returns the weights) the embedding over the head dimension of the `bmm`/`baddbmm` whose scores it softmaxes."""
    inside = set(call.op_range())
    for attention in attention_calls(trace):
        if attention.ops <= inside and len(attention.query) == 4:
            return attention.query[1]
    for op in ops:
        if op.packet == "aten._softmax":
            scores = _producer(trace, _before(trace, op.inputs[0], set(), ("aten.view", "aten._unsafe_view")))
            if scores is not None and scores.packet in ("aten.bmm", "aten.baddbmm"):
                operand = scores.tensor_args.get("self" if scores.packet == "aten.bmm" else "batch1")
                return trace.tensors[query].shape[-1] // trace.tensors[operand].shape[-1]  # type: ignore[index]
    return None


def encoder_layer_fast_path(trace: Trace, call: ModuleCall, grad: set[int]) -> bool:
    """Whether this call of an nn.TransformerEncoderLayer takes its fast path (`_transformer_encoder_layer_fwd`:
    the whole layer in one kernel) in a run in default grad mode with no hooks on its modules, by the gates of
    `TransformerEncoderLayer.forward`: eval mode, fast path enabled, a batched input, a self-attention that
    takes the MultiheadAttention fast path but for grad (`mha_fast_path`), ReLU or GELU after linear1, one eps
    for both norms, and no tensor among the input and the layer's parameters that requires grad."""
    prefix = f"{call.name}." if call.name else ""
    children = {c.name[len(prefix):]: c for c in trace.calls
                if c.parent == call.index or (c.parent is not None and trace.calls[c.parent].parent == call.index)}
    attention, linear1 = children.get("self_attn"), children.get("linear1")
    if call.type != "TransformerEncoderLayer" or attention is None or linear1 is None or not call.inputs:
        return False
    if len(trace.tensors[call.inputs[0]].shape) != 3 or not mha_fast_path(trace, attention, set()):
        return False
    activation = [trace.ops[i].packet for t in linear1.outputs[:1] for i in trace.tensors[t].consumers]
    eps = {op.args.get("eps") for i in call.op_range() if (op := trace.ops[i]).packet == "aten.native_layer_norm"}
    if not set(activation) & {"aten.relu", "aten.relu_", "aten.gelu"} or len(eps) != 1:
        return False
    params = [t for name, node in trace.modules.items() if name.startswith(prefix) or name == call.name
              for t in node.param_ids.values()]
    return not any(t in grad for t in (call.inputs[0], *params))


def cpu_kernels(trace: Trace, hooked: bool = False) -> list[Kernel]:
    """The fused kernels a CPU run in default grad mode dispatches for this trace's forward pass. `hooked`: the
    peer attaches forward hooks to every module (fvcore's JIT trace does), which keeps an
    nn.TransformerEncoderLayer off its fast path (its MultiheadAttention checks for no hooks)."""
    grad = grad_tensors(trace)
    kernels = [] if hooked else [
        Kernel("nn.TransformerEncoderLayer's fast path", ENCODER_FAST, frozenset(call.op_range()))
        for call in trace.calls
        if call.type == "TransformerEncoderLayer" and encoder_layer_fast_path(trace, call, grad)]
    fused = {i for kernel in kernels for i in kernel.ops}
    kernels += [Kernel(MHA_WHAT, MHA_FAST, frozenset(call.op_range())) for call in trace.calls
                if call.type == "MultiheadAttention" and not set(call.op_range()) & fused
                and mha_fast_path(trace, call, grad)]
    fused = {i for kernel in kernels for i in kernel.ops}
    kernels += [Kernel("the attention core", FLASH_CPU, call.ops) for call in attention_calls(trace, grad)
                if cpu_attention_backend(call) == "flash" and not call.ops & fused]
    kernels += [Kernel("an LSTM", LSTM_CPU, frozenset(op.index for op in ops)) for ops in rnn_calls(trace, ("lstm",))
                if cpu_lstm_kernel(trace, ops)]
    return kernels


def backward_of(trace: Trace, ops: frozenset[int]) -> set[int]:
    """The backward ops that read what these forward ops keep for the backward: a tensor they made that no
    other forward op reads and that is no output of the model (views and versions of it included)."""
    inside = {t for i in ops for t in trace.ops[i].outputs}
    outputs = set(trace.outputs)
    kept = {t for t in inside if t not in outputs
            and all(c in ops or trace.ops[c].phase != "forward" for c in trace.tensors[t].consumers)}
    found = set()
    for op in trace.ops:
        if op.phase == "backward" and any(_root_in(trace, t, kept) for t in op.inputs):
            found.add(op.index)
    return found


def _root_in(trace: Trace, tensor_id: int, kept: set[int]) -> bool:
    seen = 0
    while tensor_id is not None and seen < 64:  # a view of a view ... of a kept tensor
        if tensor_id in kept:
            return True
        tensor_id = trace.tensors[tensor_id].alias_of
        seen += 1
    return False


def _fused_call(op: OpRecord, trace: Trace, grad: set[int] | None) -> Attention:
    q, k, v = (trace.tensors[op.tensor_args[n]] for n in ("query", "key", "value"))  # type: ignore[index]
    mask_name = FUSED_ATTENTION[op.packet]
    mask = op.tensor_args.get(mask_name) if mask_name else None
    causal = (q.shape[-2], k.shape[-2]) if op.args.get("is_causal") else None
    return Attention(frozenset({op.index}), q.shape, k.shape, v.shape, q.dtype,
                     trace.tensors[mask].shape if isinstance(mask, int) else causal,
                     isinstance(mask, int) and mask in (grad or ()), bool(op.args.get("dropout_p")), op.packet)


def _math_call(softmax: OpRecord, trace: Trace, grad: set[int] | None) -> Attention | None:
    """The math path around one `_safe_softmax`, or None when these ops are not it."""
    ops = {softmax.index}
    scores, mask = softmax.inputs[0], None
    added = _producer(trace, scores)
    if added is not None and added.packet == "aten.add" and len(added.inputs) == 2:
        ops.add(added.index)
        scores, mask = added.inputs
        made = _producer(trace, mask)  # is_causal: the math path builds the mask, where(tril(ones), 0, -inf)
        tril = _producer(trace, made.inputs[0]) if made is not None and made.packet == "aten.where" else None
        if made is not None and tril is not None and tril.packet == "aten.tril":
            ops.update((made.index, tril.index))
    first = _lowered(trace, scores, ops, ("aten._unsafe_view", "aten.view"))
    if first is None or first.packet != "aten.bmm":
        return None
    second, dropout = _consumer_bmm(trace, softmax, ops)
    if second is None:
        return None
    q_scale = _producer(trace, _unlowered(trace, first.inputs[0], ops))
    k_scale = _producer(trace, _unlowered(trace, first.inputs[1], ops))
    if q_scale is None or k_scale is None or q_scale.packet != "aten.mul" or k_scale.packet != "aten.mul":
        return None
    transpose = _producer(trace, k_scale.inputs[0])
    if transpose is None or transpose.packet != "aten.transpose":
        return None
    ops.update((first.index, second.index, q_scale.index, k_scale.index, transpose.index))
    ops.update(c for t in second.outputs for c in trace.tensors[t].consumers
               if trace.ops[c].packet == "aten._unsafe_view")
    query = trace.tensors[q_scale.inputs[0]].shape
    key = _repeated(trace, transpose.inputs[0], q_scale.function, ops)
    value = _repeated(trace, _unlowered(trace, second.inputs[1], ops), q_scale.function, ops)
    return Attention(frozenset(ops), query, key, value, trace.tensors[q_scale.inputs[0]].dtype,
                     trace.tensors[mask].shape if mask is not None else None, mask in (grad or ()), dropout, None)


def _producer(trace: Trace, tensor_id: int) -> OpRecord | None:
    producer = trace.tensors[tensor_id].producer
    return trace.ops[producer] if producer is not None else None


def _before(trace: Trace, tensor_id: int, ops: set[int], through: tuple[str, ...]) -> int:
    """The tensor that the view ops of `through` (at most one of each, recorded in `ops`) turned into `tensor_id`."""
    passed: list[str] = []
    producer = _producer(trace, tensor_id)
    while producer is not None and producer.packet in through and producer.packet not in passed and producer.inputs:
        passed.append(producer.packet)
        ops.add(producer.index)
        tensor_id = producer.inputs[0]
        producer = _producer(trace, tensor_id)
    return tensor_id


def _unlowered(trace: Trace, tensor_id: int, ops: set[int]) -> int:
    """The operand of a `bmm` before at::matmul lowered it: `expand`, then `view` (or, for a layout `view`
    cannot take, `clone` and `_unsafe_view`)."""
    tensor_id = _before(trace, tensor_id, ops, ("aten.view",)) if _is(trace, tensor_id, "aten.view") else (
        _before(trace, tensor_id, ops, ("aten._unsafe_view", "aten.clone")))
    return _before(trace, tensor_id, ops, ("aten.expand",))


def _is(trace: Trace, tensor_id: int, packet: str) -> bool:
    producer = _producer(trace, tensor_id)
    return producer is not None and producer.packet == packet


def _lowered(trace: Trace, tensor_id: int, ops: set[int], through: tuple[str, ...]) -> OpRecord | None:
    """The op that made `tensor_id` before the view ops of `through`."""
    return _producer(trace, _before(trace, tensor_id, ops, through))


def _consumer_bmm(trace: Trace, softmax: OpRecord, ops: set[int]) -> tuple[OpRecord | None, bool]:
    """The `bmm` that multiplies the probabilities by V, reached through at::matmul's view ops (and dropout's
    multiplication by its mask, when there is one)."""
    frontier, walked, dropout = [softmax.outputs[0]], set(), False
    for _ in range(len(_LOWERING) + 1):
        following = []
        for tensor_id in frontier:
            for index in trace.tensors[tensor_id].consumers:
                op = trace.ops[index]
                if op.packet == "aten.bmm" and op.inputs and op.inputs[0] == tensor_id:
                    ops.update(walked)
                    return op, dropout
                if op.packet in _LOWERING or op.packet in ("aten.mul", "aten.native_dropout"):
                    dropout = dropout or op.packet in ("aten.mul", "aten.native_dropout")
                    walked.add(index)
                    following.extend(op.outputs[:1])
        frontier = following
    return None, False


def _repeated(trace: Trace, tensor_id: int, function: str | None, ops: set[int]) -> Shape:
    """K or V as the kernel choice sees them: before the math path's `repeat_interleave` of grouped-query heads
    (unsqueeze, expand, clone, view). (A 3-D call is made 4-D by `unsqueeze(0)` before the choice.)"""
    chain, current = [], tensor_id
    for packet in ("aten.view", "aten.clone", "aten.expand", "aten.unsqueeze"):
        producer = _producer(trace, current)
        if producer is None or producer.packet != packet or producer.function != function:
            break
        chain.append(producer.index)
        current = producer.inputs[0]
    if len(chain) == 4:
        ops.update(chain)
        return trace.tensors[current].shape
    return trace.tensors[tensor_id].shape
