"""The summary: one row per module call down to a depth, and the model's totals, from one Trace."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inspectlab.analysis.flops import FlopCount, count_flops
from inspectlab.analysis.memory import estimate_memory
from inspectlab.analysis.params import count_params_of_node
from inspectlab.analysis.receptive_field import field_columns, receptive_fields
from inspectlab.analysis.report import ABSENT, Absent, Report, Row
from inspectlab.analysis.rf_base import ints
from inspectlab.tracing.records import ModuleCall, Trace

if TYPE_CHECKING:
    from inspectlab.analysis.rf_fields import FieldInfo, FieldMap

LAYER_KEYS = ("name", "type", "depth", "call", "input_shapes", "output_shapes", "params", "trainable_params",
              "macs", "flops", "other_flops", "output_bytes", "macs_pct", "params_pct", "trainable", "kernel")
CONVOLUTIONS = ("aten.convolution", "aten._convolution", "aten.convolution_overrideable")
POOLS = (*(f"aten.{kind}_pool{n}d" for kind in ("max", "avg") for n in (1, 2, 3)),
         *(f"aten.max_pool{n}d_with_indices" for n in (1, 2, 3)))


@dataclass(eq=False)
class LayerRow(Row):
    """One module call of the summary. `rf`/`stride` are keys only when the receptive field was asked for."""

    name: str
    type: str
    depth: int
    call: int
    input_shapes: list[list[int]]
    output_shapes: list[list[int]]
    params: int
    trainable_params: int
    macs: int
    flops: int
    other_flops: int
    output_bytes: int
    macs_pct: float
    params_pct: float  # of the model's parameters (each tensor once)
    trainable: str | None  # "yes", "no", "partial" (some of its parameters train), None: it has no parameters
    kernel: dict[str, Any] | None  # the window it computes (`window_of`), None for none or several
    rf: list[int | float | None] | str | None | Absent = ABSENT  # size per axis, "global", None: unknown
    stride: list[int | float] | None | Absent = ABSENT


def summarize(trace: Trace, model_name: str, depth: int = 2, backward: bool = False,
              count: FlopCount | None = None, receptive_field: bool = False) -> Report[LayerRow]:
    """Rows for module calls at depth 1..`depth` (the root alone if it has no children) and totals.

    `receptive_field` adds "rf" (size per axis, or "global") and "stride" of each row's first output.
    """
    count = count or count_flops(trace)
    params = count_params_of_node(trace)
    phases = ("forward", "backward") if backward else ("forward",)
    totals_cost = count.total(phases)
    forward_macs = count.total().macs
    memory = estimate_memory(trace)
    fields = _fields(trace) if receptive_field else None
    root_total, root_trainable = params[""]
    layers = []
    for call in trace.calls:
        if not (1 <= call.depth <= depth or (call.depth == 0 and len(trace.calls) == 1)):
            continue
        cost = count.of_call(call.index)
        total, trainable = params[call.name]
        columns = _field_columns(fields.get(call.outputs[0]) if call.outputs else None) if fields is not None else {}
        layers.append(LayerRow(
            name=call.label, type=call.type, depth=call.depth, call=call.call,
            input_shapes=trace.shapes(call.inputs), output_shapes=trace.shapes(call.outputs),
            params=total, trainable_params=trainable, macs=cost.macs, flops=cost.flops,
            other_flops=cost.other_flops, output_bytes=sum(trace.tensors[t].bytes for t in call.outputs),
            macs_pct=100.0 * cost.macs / forward_macs if forward_macs else 0.0,
            params_pct=100.0 * total / root_total if root_total else 0.0, trainable=_trainable(total, trainable),
            kernel=window_of(trace, call), **columns,
        ))
    totals = {
        "params": root_total, "trainable_params": root_trainable, "non_trainable_params": root_total - root_trainable,
        "macs": totals_cost.macs, "flops": totals_cost.flops, "other_flops": totals_cost.other_flops,
        "param_bytes": memory.param_bytes, "buffer_bytes": memory.buffer_bytes, "input_bytes": memory.input_bytes,
        "activation_bytes": memory.activation_bytes, "peak_bytes": memory.peak_bytes,
    }
    breakdown = {category: {"macs": t.macs, "flops": t.flops, "other_flops": t.other_flops}
                 for category, t in count.by_category(phases).items()}
    extra = {"uncounted_ops": count.uncounted(phases), "breakdown": breakdown, "device": trace.device,
             "backward": backward, "notes": trace.notes}
    details = input_details(trace)
    if details is not None:
        extra["input_details"] = details
    return Report(model=model_name, inputs=trace.shapes(trace.inputs), layers=layers, totals=totals, extra=extra)


def _trainable(total: int, trainable: int) -> str | None:
    if not total:
        return None
    return "yes" if trainable == total else "no" if not trainable else "partial"


def window_of(trace: Trace, call: ModuleCall) -> dict[str, Any] | None:
    """The convolution or pooling window a call computes: its own (a Conv2d's, a MaxPool2d's), else the only one
    inside it (a conv + norm + activation block); None when it computes none or several. As a dict: size,
    stride, padding, dilation (per axis), groups, transposed."""
    ops = [trace.ops[i] for i in call.op_range()
           if trace.ops[i].phase == "forward" and trace.ops[i].packet in CONVOLUTIONS + POOLS]
    own = [op for op in ops if op.module_call == call.index]
    chosen = own or ops
    if len(chosen) != 1:
        return None
    op = chosen[0]
    if op.packet in CONVOLUTIONS:
        weight = op.tensor_args.get("weight")
        if not isinstance(weight, int):
            return None
        size = list(trace.tensors[weight].shape[2:])
        stride = ints(op.args.get("stride"), len(size), 1)
        groups = int(op.args.get("groups", 1))
    else:
        size = list(op.args["kernel_size"])
        stride = [s or k for s, k in zip(ints(op.args.get("stride"), len(size), 0), size, strict=True)]
        groups = 1
    return {"size": size, "stride": stride, "padding": ints(op.args.get("padding"), len(size), 0),
            "dilation": ints(op.args.get("dilation"), len(size), 1), "groups": groups,
            "transposed": bool(op.args.get("transposed", False))}


FLOATING = ("float32", "float16", "bfloat16", "float64")


def input_details(trace: Trace) -> list[dict[str, Any]] | None:
    """Name, shape and dtype of each input tensor (in the order of `Report.inputs`), or None for plain inputs:
    positional floating tensors, whose shapes alone (`Report.inputs`) say what they are. Inputs that are not
    tensors (strings, None, numbers passed to forward) appear in neither."""
    details = [{"name": trace.tensors[t].name, "shape": list(trace.tensors[t].shape), "dtype": trace.tensors[t].dtype}
               for t in trace.inputs]
    if all(item["name"] is None and item["dtype"] in FLOATING for item in details):
        return None
    return details


def _fields(trace: Trace) -> FieldMap:
    return receptive_fields(trace)


def _field_columns(info: FieldInfo | None) -> dict[str, Any]:
    """"rf": [h, w] (or "global"), "stride": [h, w], unrounded; both None when the field is not known."""
    columns = field_columns(info, digits=None)
    if columns["rf"] is None:
        return {"rf": None, "stride": None}
    return {"rf": "global" if columns["global"] else columns["rf"], "stride": columns["stride"]}
