"""ptflops's and thop's counting conventions, reproduced from the Trace (the others are in conventions.py): the
total each library prints, and why it differs from the others. Both count MACs from forward hooks on the modules
of the classes they know, matched by exact class (here: by class name, so a subclass named like a torch.nn class,
such as timm's `Linear`, counts as that class; the library's own number beside it then differs).

- `ptflops` (0.7, `get_model_complexity_info` with its default "pytorch" backend): per module of a known class
  (one that holds a known class inside it counts only its own rule): conv and transposed conv MACs plus one per
  output element for a bias; Linear MACs plus the bias; batch/instance/group norm 1 per input element, 2 with an
  affine weight (LayerNorm always 1); ReLU, PReLU, ELU, LeakyReLU, ReLU6 and GELU 1 per output element; every
  pooling 1 per input element; Upsample 1 per output element of one sample. That sum is divided by the batch.
  Then, for every call anywhere of the functions it patches: F.relu, prelu, elu, relu6, gelu, silu, the poolings
  and softmax 1 per input element (so an nn.ReLU, which calls F.relu, counts twice, as ptflops does);
  F.interpolate the output elements (a scale factor: the input elements × scale^dims); torch.matmul (and `@`), mm,
  bmm: MACs; addmm, baddbmm: MACs + the added tensor. `torch.add`/`torch.mul` calls, which it counts, look in
  the trace like the operators `+` and `*`, which it does not: they are taken as operators, counted 0. Its
  recurrent, attention and deformable-conv rules are not reproduced: with such a module the total is unknown.
- `thop` (0.1, `thop.profile`): per module of a known class (containers are walked, a known module's inside is
  not): conv and transposed conv N·C_out·H_out·W_out·(C_in/groups)·k (no bias; a transposed conv per output
  element); Linear in_features per output element; batch/layer/instance norm 2 per input element, 4 with an affine
  weight (GroupNorm 0); AvgPool 1 per output element; AdaptiveAvgPool (input/output size ratio + 1) per output
  element; Softmax 3·n − 1 per row of n; PReLU 1 per input element in eval mode; Upsample 1 (nearest), 5
  (linear), 11 (bilinear) or 259 (bicubic) per output element; ReLU, max pooling, dropout 0; no functional op.
  Its recurrent rules are not reproduced: with such a module the total is unknown.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from inspectlab.analysis.conventions import ConventionRow
from inspectlab.analysis.flops import FlopCount
from inspectlab.tracing.records import ModuleCall, OpRecord, Trace

PEERS = ("ptflops", "thop")
UNIT = "MACs"
DESCRIPTIONS = {
    "ptflops": "module hooks: conv/linear MACs + bias, norm, activations, pooling (÷ batch); + patched F.relu, "
               "pooling, softmax, interpolate, matmul calls",
    "thop": "module hooks: conv/linear MACs (no bias), norm, avg pooling, softmax, upsample; no functional ops",
}
CONV = {f"Conv{n}d" for n in (1, 2, 3)}
CONV_TRANSPOSED = {f"ConvTranspose{n}d" for n in (1, 2, 3)}
POOLS = {f"{kind}Pool{n}d" for kind in ("Max", "Avg", "AdaptiveMax", "AdaptiveAvg") for n in (1, 2, 3)}
BATCH_NORMS = {f"BatchNorm{n}d" for n in (1, 2, 3)} | {f"InstanceNorm{n}d" for n in (1, 2, 3)}
UPSAMPLE_MODES = {"aten.upsample_nearest": "nearest", "aten.upsample_linear": "linear",
                  "aten.upsample_bilinear": "bilinear", "aten._upsample_bilinear2d_aa": "bilinear",
                  "aten.upsample_bicubic": "bicubic", "aten._upsample_bicubic2d_aa": "bicubic"}
_SHAPE_OPS = {"aten.view", "aten._unsafe_view", "aten.reshape", "aten.expand", "aten.unsqueeze", "aten.squeeze",
              "aten.permute", "aten.transpose", "aten.t", "aten.contiguous", "aten.clone", "aten.alias",
              "aten.detach", "aten.flatten", "aten.select", "aten.slice", "aten.as_strided"}


@dataclass(frozen=True)
class _Call:
    """What a module hook sees: the call's first input and output shapes, the module's parameters and ops."""

    trace: Trace
    call: ModuleCall

    @property
    def x(self) -> tuple[int, ...]:
        return self.trace.tensors[self.call.inputs[0]].shape

    @property
    def y(self) -> tuple[int, ...]:
        return self.trace.tensors[self.call.outputs[0]].shape

    def param(self, name: str) -> tuple[int, ...] | None:
        node = self.trace.modules.get(self.call.name)
        found = node.params.get(name) if node is not None else None
        return found[0] if found else None

    def op(self, *packets: str) -> OpRecord | None:
        return next((self.trace.ops[i] for i in self.call.op_range() if self.trace.ops[i].packet.startswith(packets)),
                    None)

    def conv(self) -> tuple[tuple[int, ...], bool, int]:
        """The call's convolution: its weight's shape, whether it adds a bias, its groups (the op's own, so that a
        pruned module, whose parameter is `weight_orig`, counts as the library sees it)."""
        op = self.op("aten.convolution", "aten._convolution", "aten.convolution_overrideable")
        if op is None or not isinstance(op.tensor_args.get("weight"), int):
            raise Unknown(f"{self.call.label} ran no convolution")
        weight = self.trace.tensors[op.tensor_args["weight"]].shape  # type: ignore[index]
        return weight, op.tensor_args.get("bias") is not None, int(op.args.get("groups", 1))


class Unknown(Exception):
    """A module whose rule is not reproduced: the convention's total is unknown."""


# ptflops -------------------------------------------------------------------------------------------------------
RECURRENT = {"RNN", "GRU", "LSTM", "RNNCell", "GRUCell", "LSTMCell"}
PTFLOPS_ACTIVATIONS = {"ReLU", "PReLU", "ELU", "LeakyReLU", "ReLU6", "GELU"}
PTFLOPS_CLASSES = (CONV | CONV_TRANSPOSED | PTFLOPS_ACTIVATIONS | POOLS | BATCH_NORMS | RECURRENT
                   | {"GroupNorm", "LayerNorm", "Linear", "Upsample", "MultiheadAttention", "DeformConv2d",
                      "Attention"})


def _ptflops_module(kind: str, c: _Call) -> int:
    """ptflops's hook of a module of a class it knows (PTFLOPS_CLASSES)."""
    if kind in CONV or kind in CONV_TRANSPOSED:
        weight, biased, _ = c.conv()
        spatial = c.x[2:] if kind in CONV_TRANSPOSED else c.y[2:]
        return c.x[0] * math.prod(spatial) * math.prod(weight) + (c.x[0] * math.prod(c.y[1:]) if biased else 0)
    if kind in PTFLOPS_ACTIVATIONS:
        return math.prod(c.y)
    if kind in POOLS:
        return math.prod(c.x)
    if kind in BATCH_NORMS or kind == "GroupNorm":
        return math.prod(c.x) * (2 if c.param("weight") else 1)
    if kind == "LayerNorm":
        return math.prod(c.x)
    if kind == "Linear":
        outputs = c.y[-1]
        return (c.x[-1] * outputs + (outputs if c.param("bias") else 0)) * math.prod(c.x[:-1])
    if kind == "Upsample":
        return math.prod(c.y[1:])
    raise Unknown(f"ptflops's rule for {kind} is not reproduced")


_PATCHED_UNARY = {"relu", "prelu", "elu", "relu6", "gelu", "silu", "softmax", "_softmax",
                  *(f"{kind}_pool{n}d" for kind in ("avg", "max", "adaptive_avg", "adaptive_max") for n in (1, 2, 3)),
                  *(f"_max_pool{n}d" for n in (1, 2, 3)), *(f"max_pool{n}d_with_indices" for n in (1, 2, 3)),
                  *(f"adaptive_max_pool{n}d_with_indices" for n in (1, 2, 3))}


def _origin(trace: Trace, tensor_id: int, function: str | None) -> tuple[int, ...]:
    """The shape of the tensor the function was given: back through its own reshapes and expansions."""
    while True:
        producer = trace.tensors[tensor_id].producer
        op = trace.ops[producer] if producer is not None else None
        if op is None or op.function != function or op.packet not in _SHAPE_OPS or not op.inputs:
            return trace.tensors[tensor_id].shape
        tensor_id = op.inputs[0]


def _ptflops_function(op: OpRecord, trace: Trace) -> float:
    """ptflops's count of one call of a function it patches (0 for any other op)."""
    if op.phase != "forward" or op.packet in _SHAPE_OPS or not op.inputs:
        return 0
    name = op.function or ""
    x = _origin(trace, op.inputs[0], name)
    if name in _PATCHED_UNARY:
        return math.prod(x)
    if name in ("interpolate", "upsample") and op.packet.startswith(tuple(UPSAMPLE_MODES)):
        scales = [v for k, v in op.args.items() if k.startswith("scales") and v is not None]
        if not scales:  # a size: the output elements
            return math.prod(trace.tensors[op.outputs[0]].shape)
        if len(set(scales)) == 1:  # one scale factor (or equal ones): input × scale^dims
            return math.prod(x) * scales[0] ** len(scales)
        return math.prod(x) * int(math.prod(scales))
    if name in ("matmul", "mm", "bmm") and len(op.inputs) >= 2:
        return math.prod(x) * _origin(trace, op.inputs[1], name)[-1]
    if name in ("addmm", "baddbmm") and len(op.inputs) >= 3:
        added = math.prod(x) if op.args.get("beta", 1) != 0 else 0
        return math.prod(trace.tensors[op.inputs[1]].shape) * trace.tensors[op.inputs[2]].shape[-1] + added
    return 0


def ptflops_total(trace: Trace) -> int:
    """ptflops's total: the module hooks' sum divided by the batch, plus the patched functions' calls."""
    module_total = _walk(trace, "", PTFLOPS_CLASSES, _ptflops_module)
    root = next((c for c in trace.calls if c.depth == 0 and c.inputs), None)
    batch = trace.tensors[root.inputs[0]].shape[0] if root is not None and trace.tensors[root.inputs[0]].shape else 1
    functions = sum(_ptflops_function(op, trace) for op in trace.ops)
    return int(module_total / batch + functions)


# thop ----------------------------------------------------------------------------------------------------------
THOP_ZERO = {"ZeroPad2d", "ReLU", "ReLU6", "LeakyReLU", "Dropout", "Sequential", "PixelShuffle",
             *(f"{k}Pool{n}d" for k in ("Max", "AdaptiveMax") for n in (1, 2, 3))}
THOP_CLASSES = (CONV | CONV_TRANSPOSED | BATCH_NORMS | THOP_ZERO | RECURRENT
                | {"LayerNorm", "SyncBatchNorm", "PReLU", "Softmax", "Linear", "Upsample", "UpsamplingBilinear2d",
                   "UpsamplingNearest2d", *(f"{k}Pool{n}d" for k in ("Avg", "AdaptiveAvg") for n in (1, 2, 3))})


def _thop_module(kind: str, c: _Call) -> int | float:
    """thop's hook of a module of a class it knows (THOP_CLASSES)."""
    if kind in CONV or kind in CONV_TRANSPOSED:
        weight, _, groups = c.conv()
        return math.prod(c.y) * (c.x[1] // groups) * math.prod(weight[2:])
    if kind in BATCH_NORMS or kind in {"LayerNorm", "SyncBatchNorm"}:
        return 2 * math.prod(c.x) * (2 if c.param("weight") else 1)
    if kind == "PReLU":
        return 0 if c.trace.training else math.prod(c.x)
    if kind == "Softmax":
        op = c.op("aten._softmax", "aten.softmax")
        features = c.x[op.args.get("dim", -1) if op is not None else -1]
        return math.prod(c.x) // features * (3 * features - 1)
    if kind in {f"AvgPool{n}d" for n in (1, 2, 3)}:
        return math.prod(c.y)
    if kind in {f"AdaptiveAvgPool{n}d" for n in (1, 2, 3)}:
        ratio = math.prod(float(i) / float(o) for i, o in zip(c.x[2:], c.y[2:], strict=False))
        return int((ratio + 1) * math.prod(c.y))
    if kind == "Linear":
        return (c.param("weight") or (0, 0))[1] * math.prod(c.y)
    if kind in {"Upsample", "UpsamplingBilinear2d", "UpsamplingNearest2d"}:
        op = c.op("aten.upsample", "aten._upsample")
        mode = next((m for p, m in UPSAMPLE_MODES.items() if op is not None and op.packet.startswith(p)), None)
        return math.prod(c.y) * {"nearest": 1, "linear": 5, "bilinear": 11, "bicubic": 259}.get(mode or "", 0)
    if kind in THOP_ZERO:
        return 0
    raise Unknown(f"thop's rule for {kind} is not reproduced")


def thop_total(trace: Trace) -> int:
    """thop's total: the hooks of the known modules, containers (Sequential, ModuleList) walked."""
    return int(_walk(trace, "", THOP_CLASSES, _thop_module, containers=("Sequential", "ModuleList"), root_adds=True))


# the module tree, as each library walks it ---------------------------------------------------------------------
def _walk(trace: Trace, name: str, known: set[str], rule: Callable[[str, _Call], int | float],
          containers: Sequence[str] = (), root_adds: bool = False) -> float:
    """The rule's sum over the calls of a module of a `known` class; for another module, or one of `containers`
    (or, `root_adds`, the model itself), its own sum (0 when not known) plus its children's, recursively."""
    node = trace.modules.get(name)
    kind = node.type if node is not None else trace.model_type
    calls = [c for c in trace.calls if c.name == name and not c.implicit and c.inputs and c.outputs]
    own = float(sum(rule(kind, _Call(trace, c)) for c in calls)) if kind in known else 0.0
    if kind in known and kind not in containers and not (root_adds and not name):
        return own
    return own + sum(_walk(trace, child, known, rule, containers) for child in _children(trace, name))


def _children(trace: Trace, name: str) -> list[str]:
    node = trace.modules.get(name)
    if node is not None and node.children is not None:
        return list(node.children)
    depth = 0 if not name else name.count(".") + 1
    prefix = f"{name}." if name else ""
    return [other for other in trace.modules if other.startswith(prefix) and other and other.count(".") == depth]


TOTALS: Mapping[str, Callable[[Trace], int]] = {"ptflops": ptflops_total, "thop": thop_total}


def extra_rows(count: FlopCount, backward: bool, peers: Mapping[str, Any]) -> list[ConventionRow]:
    """A row for each of ptflops and thop that `peers` holds (it ran: `flops --compare` with the library
    installed): the total reproduced from the Trace (None when a rule is not reproduced) beside its own number.
    Forward only, as both libraries count."""
    rows = []
    for name in PEERS:
        if backward or name not in peers:
            continue
        try:
            total: int | None = TOTALS[name](count.trace)
            counts = DESCRIPTIONS[name]
        except Unknown as why:
            total, counts = None, f"unknown, because {why}"
        peer = peers[name]
        rows.append(ConventionRow(convention=name, unit=UNIT, total=total, peer=peer, counts=counts,  # type: ignore[arg-type]
                                  match=peer == total if isinstance(peer, int) and total is not None else None))
    return rows
