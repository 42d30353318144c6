"""Each peer's counting convention, reproduced from the Trace so that a user sees why numbers differ.

- `inspectlab`: MACs of conv/matmul/attention (FLOPs = 2 × MACs), "other FLOPs" apart (costs.py).
- `torch`: torch.utils.flop_counter.FlopCounterMode: 2 × MACs of mm, addmm, bmm, baddbmm, convolution
  (+ its backward) and the fused attention kernels it registers; nothing else. Its grad-weight formula
  for a convolution ignores groups (a depthwise conv's grad-weight is counted `groups` times).
- `fvcore`: FlopCountAnalysis.total(): MACs (it calls them flops) of conv/matmul without biases, plus
  batch norm (eval: 1 or 2 per element; training: 4 or 5), group/layer/instance norm (4 or 5 per element),
  nearest (1) and bilinear (4) 2-D upsampling per output element, adaptive average pooling (1 per input
  element) and grid sampling (4 per output element); every other op counts 0.
- `torchinfo`: summary().total_mult_adds: for each call of a leaf module, for each parameter named
  weight or bias: numel × N × prod(output spatial) for classes whose name contains "Conv", else
  numel × N; other parameters with weight/bias in their names: numel × N × output dim 1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from math import prod
from typing import Any

from inspectlab.analysis.costs import conv_macs
from inspectlab.analysis.flops import FlopCount
from inspectlab.analysis.report import Row
from inspectlab.core.conventions import CONVENTIONS, DESCRIPTIONS, UNITS
from inspectlab.core.op_registry import OpRegistry
from inspectlab.tracing.records import OpRecord, Trace

# The ops FlopCounterMode counts (2 × MACs each); convolution_backward has its own formula below.
TORCH_COUNTED: OpRegistry[bool] = OpRegistry("FlopCounterMode's counted ops")
TORCH_COUNTED.add(True, "aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm", "aten.convolution", "aten._convolution",
                  "aten.cudnn_convolution", "aten._slow_conv2d_forward", "aten.convolution_overrideable",
                  "aten._scaled_mm", "aten._scaled_dot_product_efficient_attention",
                  "aten._scaled_dot_product_flash_attention", "aten._scaled_dot_product_cudnn_attention")


def convention_total(count: FlopCount, convention: str, backward: bool = False) -> int:
    """The total the peer library would print, computed from the Trace."""
    trace = count.trace
    phases = ("forward", "backward") if backward else ("forward",)
    if convention == "inspectlab":
        return count.total(phases).flops
    if convention == "torchinfo":
        return _torchinfo_total(trace)
    rule = _torch_op_flops if convention == "torch" else _fvcore_op_flops
    total = 0
    for op, cost in zip(trace.ops, count.costs, strict=True):
        if op.phase in phases:
            total += rule(op, cost.macs if cost else 0, trace)
    return total


@dataclass(eq=False)
class ConventionRow(Row):
    """A row of the flops Report: one convention's total and, compared, the peer library's own number."""

    convention: str
    unit: str  # "FLOPs" or "MACs"
    total: int
    peer: int | str | None  # the peer's own number, or why there is none; None when not compared
    counts: str  # what the convention counts
    match: bool | None  # peer == total, when the peer gave a number


def convention_rows(count: FlopCount, backward: bool = False, peers: Mapping[str, Any] | None = None,
                    ) -> list[ConventionRow]:
    """One row per convention (fvcore and torchinfo count no backward: left out with `backward`), beside
    `peers` (convention -> the peer's own number, e.g. from runtime.peers.peer_totals)."""
    peers = peers or {}
    rows = []
    for name in CONVENTIONS:
        if backward and name in ("fvcore", "torchinfo"):
            continue
        total, peer = convention_total(count, name, backward), peers.get(name)
        rows.append(ConventionRow(convention=name, unit=UNITS[name], total=total, peer=peer,
                                  counts=DESCRIPTIONS[name], match=peer == total if isinstance(peer, int) else None))
    return rows


def _torch_op_flops(op: OpRecord, macs: int, trace: Trace) -> int:
    if op.packet == "aten.convolution_backward":
        return 2 * _torch_conv_backward_macs(op, trace)
    return 2 * macs if op.packet in TORCH_COUNTED else 0


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


def _fvcore_op_flops(op: OpRecord, macs: int, trace: Trace) -> int:
    rule = FVCORE.get(op.packet)
    if rule is not None:
        return rule(op, trace, macs)
    if op.packet == "aten.mean" and op.function == "adaptive_avg_pool2d":  # torch lowers a 1×1 output to mean
        return _numel(trace, op.inputs[0])
    return 0


def _torchinfo_total(trace: Trace) -> int:
    total = 0
    for call in trace.calls:
        node = trace.modules.get(call.name)
        if node is None or not node.is_leaf or not call.outputs:
            continue
        out = trace.tensors[call.outputs[0]].shape
        if not out:
            continue
        for name, (_, numel, _) in node.params.items():
            if name in ("weight", "bias"):
                positions = prod(out[:1] + out[2:]) if "Conv" in node.type else out[0]
                total += numel * positions
            elif "weight" in name or "bias" in name:
                total += numel * prod(out[:2])
    return total
