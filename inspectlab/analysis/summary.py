"""The summary: one row per module call down to a depth, and the model's totals, from one Trace."""

from __future__ import annotations

from inspectlab.analysis.flops import FlopCount, count_flops
from inspectlab.analysis.memory import estimate_memory
from inspectlab.analysis.params import count_params_of_node
from inspectlab.analysis.report import Report
from inspectlab.tracing.records import Trace

LAYER_KEYS = ("name", "type", "depth", "call", "input_shapes", "output_shapes", "params", "trainable_params",
              "macs", "flops", "other_flops", "output_bytes", "macs_pct")


def summarize(trace: Trace, model_name: str, depth: int = 2, backward: bool = False,
              count: FlopCount | None = None, receptive_field: bool = False) -> Report:
    """Rows for module calls at depth 1..`depth` (the root alone if it has no children) and totals.

    `receptive_field` adds "rf" (size per axis, or "global") and "stride" of each row's first output.
    """
    count = count or count_flops(trace)
    params = count_params_of_node(trace)
    phases = ("forward", "backward") if backward else ("forward",)
    totals_cost = count.total(phases)
    forward_macs = count.total().macs
    memory = estimate_memory(trace)
    param_tensors = [t for t in trace.tensors.values() if t.kind == "param"]
    root_params = (sum(t.numel for t in param_tensors), sum(t.numel for t in param_tensors if t.requires_grad))
    fields = _fields(trace) if receptive_field else None
    layers = []
    for call in trace.calls:
        if not (1 <= call.depth <= depth or (call.depth == 0 and len(trace.calls) == 1)):
            continue
        cost = count.of_call(call.index)
        total, trainable = params[call.name]
        layers.append({
            "name": call.label, "type": call.type, "depth": call.depth, "call": call.call,
            "input_shapes": trace.shapes(call.inputs), "output_shapes": trace.shapes(call.outputs),
            "params": total, "trainable_params": trainable, "macs": cost.macs, "flops": cost.flops,
            "other_flops": cost.other_flops, "output_bytes": sum(trace.tensors[t].bytes for t in call.outputs),
            "macs_pct": 100.0 * cost.macs / forward_macs if forward_macs else 0.0,
        })
        if fields is not None:
            layers[-1].update(_field_columns(fields.get(call.outputs[0]) if call.outputs else None))
    totals = {
        "params": root_params[0], "trainable_params": root_params[1],
        "non_trainable_params": root_params[0] - root_params[1],
        "macs": totals_cost.macs, "flops": totals_cost.flops, "other_flops": totals_cost.other_flops,
        "param_bytes": memory.param_bytes, "buffer_bytes": memory.buffer_bytes, "input_bytes": memory.input_bytes,
        "activation_bytes": memory.activation_bytes, "peak_bytes": memory.peak_bytes,
    }
    breakdown = {category: {"macs": t.macs, "flops": t.flops, "other_flops": t.other_flops}
                 for category, t in count.by_category(phases).items()}
    return Report(
        model=model_name, inputs=trace.shapes(trace.inputs), layers=layers, totals=totals,
        extra={"uncounted_ops": count.uncounted(phases), "breakdown": breakdown, "device": trace.device,
               "backward": backward, "notes": trace.notes},
    )


def _fields(trace: Trace):  # noqa: ANN202  (FieldMap; imported lazily: numpy and the rf rules)
    from inspectlab.analysis.receptive_field import receptive_fields

    return receptive_fields(trace)


def _field_columns(field) -> dict:  # noqa: ANN001
    """"rf": [h, w] (or "global"), "stride": [h, w], for a FieldInfo of analysis/receptive_field.py."""
    if field is None or field.size is None:
        return {"rf": None, "stride": None}
    stride = [float(s) if s.denominator != 1 else int(s) for s in field.stride]
    rf = "global" if field.is_global else [int(v) if v is not None and float(v).is_integer() else v
                                            for v in field.size]
    return {"rf": rf, "stride": stride}
