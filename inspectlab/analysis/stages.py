"""The feature pyramid of a backbone from one Trace: at each stride, the feature map a decoder or a detection
neck would take (its module, channels, shape, receptive field, and the MACs and parameters of everything
computed up to it). A pure function of the Trace and its receptive fields; the timm `feature_info` of a
`features_only` model comes from the built module (`inspectlab.workflows.stages`) as `GivenStage`s.

The rule for any other model (docs/stages.md):

1. Candidates are module-call outputs that are still feature maps: their field (`receptive_fields`) is known
   and keeps every image axis on a tensor dim, and they are not pooled to a fixed grid (nor computed from such
   a map alone: `pooled_to_a_grid`). Classifier heads (pooled, flattened) have no stride and never count.
   A tensor's stride is its effective stride (jump), the largest over the image axes. Left out too: maps the
   model's outputs do not depend on (dead ends), maps made by a module that does no arithmetic (a
   `ZeroPad2d`: a padded copy of a map, not a feature), and maps made inside a call that goes back up (one
   whose returned maps are all finer than the coarsest map it reads or makes: a decoder, an FPN's top-down
   path, a head that upsamples; HRNet's stages return their coarsest branch, so they are not such calls).
2. The encoder ends with the innermost module call that alone made maps at every stride, going down from the
   root while exactly one child call does (an smp `encoder`, a torchvision `backbone`, timm's `blocks`): what
   runs after it at its level (an ASPP, a classifier's 1×1 expansion before the pooling, a decoder working
   at the coarsest stride) is not part of the pyramid; what ran before it (a stem) is. Within it, the top is
   the last-made candidate at the coarsest stride S. A candidate belongs to the encoder if it was made before
   the top and the top depends on it, or the call that returned the top also returned it (HRNet's parallel
   branches); side branches the top does not read (DeepLabV3+'s low-level projection) are not stages.
3. The module depth: at depth d the model reads as the calls at depth d plus the shallower calls without
   children. The depth is the shallowest d whose encoder outputs reach every stride that the encoder's
   outputs at any depth reach (ResNet: depth 1, `layer1`..`layer4`; ConvNeXt and MobileNet: depth 2,
   `stages.0`.., `features.3`..); if none does, the one that reaches the most.
4. At each stride, the stage is the last of those outputs at that stride (named after the first call that
   returned that tensor: an `Identity` after it adds no row). One of several outputs of a call is
   `name[k]` (HRNet's branches: `stage4.2[0]`..`stage4.2[3]`).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from inspectlab.analysis.compare import pooled_to_a_grid
from inspectlab.analysis.flops import FlopCount, Totals, count_flops
from inspectlab.analysis.params import count_params_of_node
from inspectlab.analysis.receptive_field import FieldMap, field_columns, plain_number
from inspectlab.analysis.report import Report, Row
from inspectlab.core.errors import InspectlabError
from inspectlab.tracing.records import ModuleCall, Trace

STAGE_KEYS = ("name", "type", "stride", "channels", "output_shape", "rf", "rf_global", "cumulative_macs",
              "cumulative_params")
WIDE_KEYS = ("name", "channels", "macs", "rf")  # per stride in `compare --stages`: s4_name, s4_channels, ...
_WIDE = re.compile(r"^s(\d+(?:\.\d+)?)_(name|channels|macs|rf)$")


@dataclass(eq=False)
class StageRow(Row):
    """One stage of the pyramid: the last feature map at one stride.

    `stride` is the effective stride (input pixels per step, the largest over the image axes); `rf` the
    receptive field per image axis (largest over the map's units, all paths; `rf_global`: some path also
    sees the whole input). `cumulative_macs`/`cumulative_params`: the forward's MACs, and the distinct
    parameters it read, from its first op up to and including the op that wrote this map, in call order.
    """

    name: str
    type: str
    stride: int | float
    channels: int
    output_shape: list[int]
    rf: list[int | float | None] | None
    rf_global: bool
    cumulative_macs: int
    cumulative_params: int


@dataclass(frozen=True)
class GivenStage:
    """A stage the model names itself (timm's `feature_info`): module name, channels, reduction."""

    module: str
    channels: int | None = None
    reduction: int | float | None = None


@dataclass(frozen=True)
class _Output:
    """A module call's output that is a feature map."""

    call: ModuleCall
    position: int
    tensor: int
    stride: Fraction

    @property
    def name(self) -> str:
        return self.call.label if len(self.call.outputs) == 1 else f"{self.call.label}[{self.position}]"


@dataclass
class _Found:
    """The stages' outputs and how they were chosen."""

    outputs: list[_Output]
    depth: int | None = None
    notes: list[str] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)  # tensor -> a given name (feature_info)


def stage_report(trace: Trace, fields: FieldMap, model: str, given: Sequence[GivenStage] | None = None,
                 count: FlopCount | None = None) -> Report[StageRow]:
    """The pyramid as a Report: one StageRow per stride (finest first); `given`: the model's own stages
    (timm's feature_info), in the order of the model's outputs. Raises when no module output is a map."""
    count = count or count_flops(trace)
    maps = _map_strides(trace, fields)
    outputs = _feature_maps(trace, maps)
    found = _from_given(trace, fields, outputs, given) if given else None
    if found is None:
        found = _from_trace(trace, outputs, maps, count)
        if given:
            found.notes.insert(0, f"the model's feature_info names {len(given)} features, but its outputs are "
                               "not those maps: stages found from the trace instead")
    if not found.outputs:
        raise InspectlabError(_no_maps(trace, fields))
    sums = _MacsAndParams(trace, count)
    rows = [_row(trace, fields, output, found.names.get(output.tensor, output.name), sums) for output in found.outputs]
    unknown = dict.fromkeys(fields.of(t).unknown for c in trace.calls for t in c.outputs if fields.of(t).unknown)
    notes = [*trace.notes, *found.notes, *(f"no stride is known after this (no stage can follow it): {reason}"
                                           for reason in list(unknown)[:3])]
    totals = {"stages": len(rows), "output_stride": rows[-1].stride, "macs": count.total().macs,
              "params": sums.params_total}
    extra = {"method": "feature_info" if found.names else "trace", "depth": found.depth, "notes": notes}
    return Report(model=model, inputs=trace.shapes(trace.inputs), layers=rows, totals=totals, extra=extra)


def wide_columns(rows: Sequence[StageRow]) -> dict[str, Any]:
    """One model's stages as the columns of `compare --stages`: s{stride}_name, _channels, _macs
    (cumulative) and _rf (largest over the axes), per stride."""
    columns: dict[str, Any] = {}
    for row in rows:
        prefix = f"s{row.stride:g}" if isinstance(row.stride, float) else f"s{row.stride}"
        sizes = [s for s in (row.rf or []) if s is not None]
        columns.update({f"{prefix}_name": row.name, f"{prefix}_channels": row.channels,
                        f"{prefix}_macs": row.cumulative_macs, f"{prefix}_rf": max(sizes) if sizes else None})
    return columns


def wide_keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The per-stride keys that some row has, by stride, then name, channels, macs, rf."""
    found = set()
    for row in rows:
        for key in row:
            match = _WIDE.match(key)
            if match is not None:
                found.add((float(match.group(1)), WIDE_KEYS.index(match.group(2)), key))
    return [key for *_, key in sorted(found)]


def integral_keys(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[str]:
    """Those of `keys` whose values are all integers (a frame keeps them as integers when a row lacks one)."""
    return [key for key in keys if not key.endswith("_name") and all(
        isinstance(row.get(key), int) for row in rows if row.get(key) is not None)]


# --------------------------------------------------------------------------------------------------
# finding the stages


def _map_strides(trace: Trace, fields: FieldMap) -> dict[int, Fraction]:
    """Every activation that is a feature map (rule 1), with its stride."""
    pooled = pooled_to_a_grid(trace)
    maps = {}
    for tensor, info in fields.items():
        if (tensor in pooled or trace.tensors[tensor].kind != "activation" or not info.axes or info.unknown
                or any(d is None for d in info.dims)):
            continue
        maps[tensor] = max(info.stride or (Fraction(1),))
    return maps


def _feature_maps(trace: Trace, maps: Mapping[int, Fraction]) -> list[_Output]:
    """Every module-call output (root aside, unless it has no children) that is a feature map, in call order."""
    parents = {call.parent for call in trace.calls}
    return [_Output(call, position, tensor, maps[tensor]) for call in trace.calls
            if not (call.parent is None and call.index in parents)
            for position, tensor in enumerate(call.outputs) if tensor in maps]


def _from_trace(trace: Trace, outputs: list[_Output], maps: Mapping[int, Fraction], count: FlopCount) -> _Found:
    encoder = _encoder(trace, outputs, maps, count)
    if not encoder:
        return _Found([])
    wanted = {o.stride for o in encoder}
    parents = {call.parent for call in trace.calls}
    best: tuple[int, int, list[_Output]] | None = None  # (strides reached, depth, outputs)
    for depth in range(min(o.call.depth for o in encoder), max(o.call.depth for o in encoder) + 1):
        seen = [o for o in encoder if o.call.depth == depth or (o.call.depth < depth and o.call.index not in parents)]
        reached = len({o.stride for o in seen})
        if best is None or reached > best[0]:
            best = (reached, depth, seen)
        if reached == len(wanted):
            break
    assert best is not None
    _, depth, seen = best
    last_at: dict[Fraction, _Output] = {}
    first_of: dict[int, _Output] = {}
    for output in seen:
        first_of.setdefault(output.tensor, output)
        last_at[output.stride] = output
    return _Found([first_of[last_at[s].tensor] for s in sorted(last_at)], depth)


def _encoder(trace: Trace, outputs: list[_Output], maps: Mapping[int, Fraction], count: FlopCount
             ) -> list[_Output]:
    """The candidates of the encoder (rule 2), in the order their maps were made (then call order)."""
    # what the model's outputs are computed from (no dead ends); everything when no output is a tensor
    live = _inputs_of(trace, *trace.outputs) if trace.outputs else set(trace.tensors)
    up = _going_up(trace, {tensor: stride for tensor, stride in maps.items() if tensor in live})
    idle = {call.index for call in trace.calls if count.of_call(call.index) == _NO_WORK}
    kept = [o for o in outputs if o.tensor in live and _made(trace, o) not in up and not _idle(trace, o, idle)]
    if not kept:
        return []
    end = _encoder_end(trace, kept)
    kept = [o for o in kept if _made(trace, o) < end]
    made = sorted(kept, key=lambda o: (_made(trace, o), o.call.index))
    coarsest = max(o.stride for o in kept)
    top = max((o for o in made if o.stride == coarsest), key=lambda o: _made(trace, o))
    needed = _inputs_of(trace, top.tensor) | set(top.call.outputs)
    end = _made(trace, top)
    return [o for o in made if _made(trace, o) <= end and o.tensor in needed]


_NO_WORK = Totals(0, 0)


def _idle(trace: Trace, output: _Output, idle: set[int]) -> bool:
    """The map was made by a module that does no arithmetic (padding, a reshape, a concatenation alone): a
    copy of maps made before it, not a feature of its own."""
    producer = trace.tensors[output.tensor].producer
    return producer is not None and trace.ops[producer].module_call in idle


def _going_up(trace: Trace, maps: Mapping[int, Fraction]) -> set[int]:
    """The ops inside a call that goes back up: one (the root aside) whose returned maps are all finer than the
    coarsest map its ops read or write (a decoder, an FPN's top-down path, a head that upsamples)."""
    coarsest_of_op = [max((maps[t] for t in (*op.inputs, *op.outputs) if t in maps), default=None)
                      for op in trace.ops]
    ops: set[int] = set()
    for call in trace.calls:
        returned = [maps[t] for t in call.outputs if t in maps]
        if call.parent is None or not returned or any(
                t not in maps and trace.tensors[t].kind == "activation" for t in call.outputs):
            continue  # the root, a head without maps, or a call some of whose outputs have no known field
        seen = [s for s in coarsest_of_op[call.first_op:call.end_op] if s is not None]
        if seen and max(returned) < max(seen):
            ops.update(call.op_range())
    return ops


def _encoder_end(trace: Trace, kept: list[_Output]) -> int:
    """The op index where the encoder ends: the end of the innermost module call that alone made maps at every
    stride (an smp `encoder`, a torchvision `backbone`, timm's `blocks`), going down from the root while exactly
    one child call does; what runs after it at its level (a 1×1 expansion before the pooling, an ASPP, a
    decoder) is not part of the pyramid, what ran before it (a stem) is. An implicit call (a ModuleList whose
    children ran in a loop) is looked through."""
    made_at: dict[Fraction, list[int]] = {}
    for output in kept:
        made_at.setdefault(output.stride, []).append(_made(trace, output))
    for indices in made_at.values():
        indices.sort()

    def reaches_all(call: ModuleCall) -> bool:
        for indices in made_at.values():
            k = bisect_left(indices, call.first_op)
            if k == len(indices) or indices[k] >= call.end_op:
                return False
        return True

    children: dict[int | None, list[ModuleCall]] = {}
    for call in trace.calls:
        if not call.implicit:
            parent = call.parent
            while parent is not None and trace.calls[parent].implicit:
                parent = trace.calls[parent].parent
            children.setdefault(parent, []).append(call)
    container = next(call for call in trace.calls if call.parent is None)
    while True:
        inner = [call for call in children.get(container.index, []) if reaches_all(call)]
        if len(inner) != 1:
            return container.end_op
        container = inner[0]


def _made(trace: Trace, output: _Output) -> int:
    producer = trace.tensors[output.tensor].producer
    return producer if producer is not None else output.call.first_op


def _inputs_of(trace: Trace, *tensors: int) -> set[int]:
    """The tensors and every tensor they were computed from (the dataflow graph, backwards)."""
    seen = set(tensors)
    stack = list(tensors)
    while stack:
        producer = trace.tensors[stack.pop()].producer
        if producer is None:
            continue
        for source in trace.ops[producer].inputs:
            if source not in seen:
                seen.add(source)
                stack.append(source)
    return seen


def _from_given(trace: Trace, fields: FieldMap, outputs: list[_Output], given: Sequence[GivenStage]
                ) -> _Found | None:
    """The model's own stages (timm's feature_info): its outputs, in order, one per named stage. Each row's
    type is that of the call named like the stage (FeatureListNet renames `stages.0` to `stages_0`), else of
    the innermost call that returned the map."""
    root = next(call for call in trace.calls if call.parent is None)
    if len(root.outputs) != len(given):
        return None
    found = _Found([])
    for position, (stage, tensor) in enumerate(zip(given, root.outputs, strict=True)):
        info = fields.of(tensor)
        if not info.axes or info.unknown or any(d is None for d in info.dims):
            return None
        stride = max(info.stride or (Fraction(1),))
        returned = [o for o in outputs if o.tensor == tensor]
        named = [o for o in returned if stage.module in (o.call.name, o.call.name.replace("_", "."))]
        output = (named or returned[::-1] or [_Output(root, position, tensor, stride)])[0]
        found.outputs.append(output)
        found.names[tensor] = stage.module
        if stage.reduction is not None and stage.reduction != stride:
            found.notes.append(f"{stage.module}: feature_info says reduction {stage.reduction}, the trace stride "
                               f"{plain_number(stride)}")
    found.outputs.sort(key=lambda o: o.stride)
    return found


# --------------------------------------------------------------------------------------------------
# the rows


class _MacsAndParams:
    """MACs and distinct parameters of the forward ops before an op index (prefix sums over the ops)."""

    def __init__(self, trace: Trace, count: FlopCount) -> None:
        self.macs = [0]
        first_read: dict[int, int] = {}
        for op, cost in zip(trace.ops, count.costs, strict=True):
            forward = op.phase == "forward"
            self.macs.append(self.macs[-1] + (cost.macs if cost is not None and forward else 0))
            for tensor in op.inputs if forward else ():
                if trace.tensors[tensor].kind == "param":
                    first_read.setdefault(tensor, op.index)
        self.params = [0] * (len(trace.ops) + 1)
        for tensor, index in first_read.items():
            self.params[index + 1] += trace.tensors[tensor].numel
        for k in range(1, len(self.params)):
            self.params[k] += self.params[k - 1]
        self.params_total = count_params_of_node(trace)[""][0]

    @staticmethod
    def end(trace: Trace, output: _Output) -> int:
        """The op index after the op that wrote the stage's map (after its call for a map no op wrote)."""
        producer = trace.tensors[output.tensor].producer
        return producer + 1 if producer is not None else output.call.end_op


def _row(trace: Trace, fields: FieldMap, output: _Output, name: str, sums: _MacsAndParams) -> StageRow:
    tensor = trace.tensors[output.tensor]
    info = fields.of(output.tensor)
    columns = field_columns(info, digits=None)
    spatial = {0, *(d for d in info.dims if d is not None)}
    channels = 1
    for dim, size in enumerate(tensor.shape):
        if dim not in spatial:
            channels *= size
    end = sums.end(trace, output)
    stride = plain_number(output.stride, digits=None)
    assert stride is not None
    return StageRow(name=name, type=output.call.type, stride=stride, channels=channels,
                    output_shape=list(tensor.shape), rf=columns["rf"], rf_global=bool(columns["global"]),
                    cumulative_macs=sums.macs[end], cumulative_params=sums.params[end])


def _no_maps(trace: Trace, fields: FieldMap) -> str:
    """Why a model has no stage: its field is unknown, or no module output keeps the image axes."""
    unknown = next((fields.of(t).unknown for c in trace.calls for t in c.outputs if fields.of(t).unknown), None)
    if unknown is not None:
        return f"no module output has a known stride: the receptive field is unknown ({unknown})"
    return ("no module output is a feature map with a stride: every output is pooled, flattened or lost its "
            "image axes (stages need a convolutional backbone, or a model that keeps H and W)")
