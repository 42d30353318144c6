"""Each peer's counting convention, reproduced from the Trace so that a user sees why numbers differ.

- `inspectlab`: MACs of conv/matmul/attention (FLOPs = 2 × MACs), "other FLOPs" apart (costs.py).
- `torch`: torch.utils.flop_counter.FlopCounterMode as a user runs it on the CPU, in default grad mode:
  2 × MACs of mm, addmm, bmm, baddbmm, convolution (+ its backward) and the fused attention kernels it
  registers; nothing else. Its grad-weight formula for a convolution ignores groups (a depthwise conv's
  grad-weight is counted `groups` times). Where the CPU dispatches a kernel FlopCounterMode has no formula
  for (`cpu_dispatch.cpu_kernels`: the flash attention core, oneDNN's LSTM layer), that work counts 0.
- `fvcore`: FlopCountAnalysis.total(), in default grad mode: MACs (it calls them flops) of conv/matmul
  without biases, plus batch norm (eval: 1 or 2 per element; training: 4 or 5), group/layer/instance norm
  (4 or 5 per element), nearest (1) and bilinear (4) 2-D upsampling per output element, adaptive average
  pooling (1 per input element) and grid sampling (4 per output element); every other op counts 0. Its JIT
  trace sees `aten::scaled_dot_product_attention` and `aten::lstm`/`gru`/`rnn_*` whole, with no handle for
  them (0), and drops every op whose result does not reach the outputs.
- `torchinfo`: summary().total_mult_adds: for each call of a leaf module, for each parameter named
  weight or bias: numel × N × prod(output spatial) for classes whose name contains "Conv", else
  numel × N; other parameters with weight/bias in their names: numel × N × output dim 1. A pruned weight
  (`weight_orig` with a `weight_mask` buffer) counts the mask's ones, under the name `weight`.

Every row says what its peer leaves out of inspectlab's count on the path it runs, and why (`differs`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from math import prod
from typing import TYPE_CHECKING, Any

from inspectlab.analysis.costs import FUSED_ATTENTION, conv_macs
from inspectlab.analysis.cpu_dispatch import MHA_FAST, MHA_WHAT, attention_calls, backward_of, cpu_kernels, rnn_calls
from inspectlab.analysis.flops import FlopCount
from inspectlab.analysis.report import ABSENT, Absent, Row
from inspectlab.core.conventions import CONVENTIONS, DESCRIPTIONS, UNITS
from inspectlab.core.op_registry import OpRegistry
from inspectlab.tracing.records import OpRecord, Trace

if TYPE_CHECKING:
    from torch import nn

# The ops FlopCounterMode counts (2 × MACs each); convolution_backward has its own formula below.
TORCH_COUNTED: OpRegistry[bool] = OpRegistry("FlopCounterMode's counted ops")
TORCH_COUNTED.add(True, "aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm", "aten.convolution", "aten._convolution",
                  "aten.cudnn_convolution", "aten._slow_conv2d_forward", "aten.convolution_overrideable",
                  "aten._scaled_mm", "aten._scaled_dot_product_efficient_attention",
                  "aten._scaled_dot_product_flash_attention", "aten._scaled_dot_product_cudnn_attention")


@dataclass(frozen=True)
class ConventionCount:
    """A convention's total, and what it leaves out of inspectlab's count: reason -> amount (its unit)."""

    total: int
    left_out: dict[str, int | None] = field(default_factory=dict)  # None: an amount this trace cannot tell

    def differs(self, unit: str) -> str | Absent:
        """"reason: 1,430,654,976 FLOPs; ..." (ABSENT when nothing is left out)."""
        texts = [why if amount is None else f"{why}: {amount:,} {unit}" for why, amount in self.left_out.items()
                 if amount != 0]
        return "; ".join(texts) or ABSENT


def convention_total(count: FlopCount, convention: str, backward: bool = False,
                     pruned: Mapping[str, int] | None = None) -> int:
    """The total the peer library would print, computed from the Trace (`pruned`: see `convention_count`)."""
    return convention_count(count, convention, backward, pruned).total


def convention_count(count: FlopCount, convention: str, backward: bool = False,
                     pruned: Mapping[str, int] | None = None) -> ConventionCount:
    """The peer's total and what it leaves out. `pruned`: the ones of each pruning mask, by the pruned
    parameter's full name ("0.weight_orig"; `pruning_masks`), which torchinfo counts; without it a pruned weight
    counts whole, and the row says so."""
    phases = ("forward", "backward") if backward else ("forward",)
    if convention == "inspectlab":
        return ConventionCount(count.total(phases).flops)
    if convention == "torchinfo":
        return _torchinfo_count(count.trace, pruned or {})
    if convention == "torch":
        return _ruled(count, phases, _torch_op_flops, _torch_left_out(count.trace, backward))
    return _ruled(count, ("forward",), _fvcore_op_flops, _fvcore_left_out(count.trace))


@dataclass(eq=False)
class ConventionRow(Row):
    """A row of the flops Report: one convention's total and, compared, the peer library's own number."""

    convention: str
    unit: str  # "FLOPs" or "MACs"
    total: int
    peer: int | str | None  # the peer's own number, or why there is none; None when not compared
    counts: str  # what the convention counts
    match: bool | None  # peer == total, when the peer gave a number
    differs: str | Absent = ABSENT  # what the peer leaves out of inspectlab's count on its path, and why


def convention_rows(count: FlopCount, backward: bool = False, peers: Mapping[str, Any] | None = None,
                    pruned: Mapping[str, int] | None = None) -> list[ConventionRow]:
    """One row per convention (fvcore and torchinfo count no backward: left out with `backward`), beside
    `peers` (convention -> the peer's own number, e.g. from runtime.peers.peer_totals)."""
    peers = peers or {}
    rows = []
    for name in CONVENTIONS:
        if backward and name in ("fvcore", "torchinfo"):
            continue
        counted, peer = convention_count(count, name, backward, pruned), peers.get(name)
        match = peer == counted.total if isinstance(peer, int) else None
        rows.append(ConventionRow(convention=name, unit=UNITS[name], total=counted.total, peer=peer,
                                  counts=DESCRIPTIONS[name], match=match, differs=counted.differs(UNITS[name])))
    return rows


def pruning_masks(model: nn.Module) -> dict[str, int]:
    """The ones of every pruning mask (`torch.nn.utils.prune`: a parameter `NAME_orig` beside a buffer
    `NAME_mask`), by the parameter's full name; masks on the meta device hold no values and are left out."""
    found = {}
    for module_name, module in model.named_modules():
        buffers = dict(module.named_buffers(recurse=False))
        for name, _ in module.named_parameters(recurse=False):
            mask = buffers.get(f"{name[:-5]}_mask") if name.endswith("_orig") else None
            if mask is not None and not mask.is_meta:
                found[f"{module_name}.{name}" if module_name else name] = int(mask.sum())
    return found


Rule = Callable[[OpRecord, int, Trace], int]


def _ruled(count: FlopCount, phases: tuple[str, ...], rule: Rule, left: Mapping[int, str]) -> ConventionCount:
    """Sum `rule` over the ops of `phases`; an op of `left` (index -> why) counts 0, and its amount under the
    rule is added to its reason."""
    trace, total, left_out = count.trace, 0, Counter[str]()
    for op, cost in zip(trace.ops, count.costs, strict=True):
        if op.phase in phases:
            amount = rule(op, cost.macs if cost else 0, trace)
            why = left.get(op.index)
            if why is None:
                total += amount
            else:
                left_out[why] += amount
    return ConventionCount(total, {why: amount for why, amount in left_out.items() if amount})


def _torch_left_out(trace: Trace, backward: bool) -> dict[int, str]:
    """The ops a CPU run hands to kernels FlopCounterMode has no formula for (their backward too), and the
    fused kernels of a real run that it does not count."""
    left: dict[int, str] = {}
    for kernel in cpu_kernels(trace):
        why = f"FlopCounterMode on CPU does not count {kernel.what} ({kernel.op})"
        for index in kernel.ops | (backward_of(trace, kernel.ops) if backward else set()):
            left[index] = why
    for op in trace.ops:
        if op.packet == MHA_FAST:
            left.setdefault(op.index, f"FlopCounterMode on CPU does not count {MHA_WHAT} ({MHA_FAST})")
    return left


# What FlopCounterMode counts of the ops a trace may hold besides TORCH_COUNTED, where the CPU runs them:
# a fused attention kernel that a CPU run replaces by the math path (whose bmm's it counts; the flash kernel
# is left out by `_torch_left_out`), and the fused kernels whose work `_torch_left_out` names.
_TORCH_ON_CPU = frozenset({*FUSED_ATTENTION, "aten._native_multi_head_attention", "aten.mkldnn_rnn_layer"})


def _torch_op_flops(op: OpRecord, macs: int, trace: Trace) -> int:
    if op.packet == "aten.convolution_backward":
        return 2 * _torch_conv_backward_macs(op, trace)
    return 2 * macs if op.packet in TORCH_COUNTED or op.packet in _TORCH_ON_CPU else 0


def _torch_conv_backward_macs(op: OpRecord, trace: Trace) -> int:
    """FlopCounterMode's formula: grad_input as the forward; grad_weight = N·C_in·C_out·prod(space)·prod(k)."""
    grad_out = trace.tensors[op.tensor_args["grad_output"]].shape  # type: ignore[index]
    x = trace.tensors[op.tensor_args["input"]].shape  # type: ignore[index]
    w = trace.tensors[op.tensor_args["weight"]].shape  # type: ignore[index]
    transposed = bool(op.args.get("transposed"))
    mask = op.args.get("output_mask") or [True, True, True]
    macs = conv_macs(x, w, grad_out, transposed) if mask[0] else 0
    if mask[1]:
        spatial = x[2:] if transposed else grad_out[2:]
        macs += x[0] * x[1] * grad_out[1] * prod(spatial) * prod(w[2:])
    return macs


def _numel(trace: Trace, tensor_id: int) -> int:
    return trace.tensors[tensor_id].numel


# fvcore's count per op, given the op and inspectlab's MACs of it.
FVCORE: OpRegistry[Callable[[OpRecord, Trace, int], int]] = OpRegistry("fvcore's counted ops")
FVCORE.add(lambda op, trace, macs: macs, "aten.convolution", "aten._convolution", "aten.mm", "aten.addmm",
           "aten.bmm", "aten.baddbmm")
FVCORE.add(lambda op, trace, macs: _numel(trace, op.outputs[0]), "aten.upsample_nearest2d")
FVCORE.add(lambda op, trace, macs: 4 * _numel(trace, op.outputs[0]), "aten.upsample_bilinear2d",
           "aten.grid_sampler_2d")
FVCORE.add(lambda op, trace, macs: _numel(trace, op.inputs[0]), "aten._adaptive_avg_pool2d")


@FVCORE.register("aten.native_batch_norm", "aten._native_batch_norm_legit", "aten._native_batch_norm_legit_no_training",
                 "aten.native_group_norm", "aten.native_layer_norm")
def _fvcore_norm(op: OpRecord, trace: Trace, macs: int) -> int:
    numel = _numel(trace, op.inputs[0])
    affine = op.tensor_args.get("weight") is not None
    training = op.args.get("training", True) and "no_training" not in op.name
    if op.packet.endswith(("batch_norm", "batch_norm_legit")) and not training:
        return numel * (2 if affine else 1)
    return numel * (5 if affine else 4)


def _fvcore_left_out(trace: Trace) -> dict[int, str]:
    """The forward ops fvcore's JIT trace does not count: those whose result it drops, and those inside the
    ops it sees whole and has no handle for (scaled-dot-product attention, the recurrent layers)."""
    left = {index: "fvcore's JIT trace drops work whose result is unused" for index in _unused_ops(trace)}
    for kernel in cpu_kernels(trace, hooked=True):
        if kernel.op == MHA_FAST:  # fvcore's trace in default grad mode takes the fast path too
            left.update(dict.fromkeys(kernel.ops - left.keys(), f"fvcore has no handle for aten::{MHA_FAST[5:]}"))
    for op in trace.forward_ops():
        if op.packet == MHA_FAST:
            left.setdefault(op.index, f"fvcore has no handle for aten::{MHA_FAST[5:]}")
    for call in attention_calls(trace):
        for index in call.ops:
            left.setdefault(index, "fvcore has no handle for aten::scaled_dot_product_attention")
    for ops in rnn_calls(trace):
        for op in ops:
            left.setdefault(op.index, f"fvcore has no handle for aten::{ops[0].function or 'lstm'}")
    for op in trace.forward_ops():
        if op.function in SAME_PADDING_CONVS:
            left.setdefault(op.index, "fvcore has no handle for aten::_convolution_mode (a string padding)")
    return left


# A functional convolution called with a string padding ("same", "valid"), which torch runs as
# aten::_convolution_mode: labelled so by the recorder (the aten overload's name).
SAME_PADDING_CONVS = frozenset({"conv1d.padding", "conv2d.padding", "conv3d.padding"})


def _unused_ops(trace: Trace) -> set[int]:
    """The forward ops whose results never reach the model's outputs (what a JIT trace's dead-code elimination
    drops). An in-place op is kept when it writes the memory of a kept tensor, a parameter, a buffer or an input."""
    live = set(trace.outputs)
    live_storage = {trace.tensors[t].storage for t in live}
    state = {info.storage for info in trace.tensors.values() if info.kind in ("param", "buffer", "input")}
    unused = set()
    for op in reversed([op for op in trace.ops if op.phase == "forward"]):
        written = {trace.tensors[t].storage for t in op.outputs} if op.inplace else set()
        if any(t in live for t in op.outputs) or written & (live_storage | state):
            live.update(op.inputs)
            live_storage.update(trace.tensors[t].storage for t in op.inputs)
        else:
            unused.add(op.index)
    return unused


def _fvcore_op_flops(op: OpRecord, macs: int, trace: Trace) -> int:
    rule = FVCORE.get(op.packet)
    if rule is not None:
        return rule(op, trace, macs)
    if op.packet == "aten.mean" and op.function == "adaptive_avg_pool2d":  # torch lowers a 1×1 output to mean
        return _numel(trace, op.inputs[0])
    return 0


def _torchinfo_count(trace: Trace, pruned: Mapping[str, int]) -> ConventionCount:
    total, unknown = 0, 0
    for call in trace.calls:
        node = trace.modules.get(call.name)
        if node is None or not node.is_leaf or not call.outputs:
            continue
        out = trace.tensors[call.outputs[0]].shape
        if not out:
            continue
        for name, (_, numel, _) in node.params.items():
            if name.endswith("_orig") and f"{name[:-5]}_mask" in node.buffers:  # pruned: the mask's ones count
                full = f"{node.name}.{name}" if node.name else name
                unknown += full not in pruned
                numel, name = pruned.get(full, numel), name[:-5]
            if name in ("weight", "bias"):
                positions = prod(out[:1] + out[2:]) if "Conv" in node.type else out[0]
                total += numel * positions
            elif "weight" in name or "bias" in name:
                total += numel * prod(out[:2])
    why = (f"torchinfo counts a pruned weight by its mask's ones, which masks on the meta device do not hold: "
           f"{unknown} pruned weights counted whole")
    return ConventionCount(total, {why: None} if unknown else {})
