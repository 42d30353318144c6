"""Receptive fields on the whole dataflow graph of a Trace (a pure function of the Trace).

For every tensor and every spatial axis of the analysed input (H and W), the walk keeps, per unit of
the tensor along that axis, the interval of input pixels the unit depends on:

- through all paths (their union: "rf"), and through the path with the smallest field ("rf_min");
- in unclipped input coordinates: a padded tap of a convolution or a pool counts as the input unit
  that would sit there (extrapolated with the effective stride), as the usual r/j/c formulas do.

It also keeps the effective stride (jump) j per axis. The ops are walked in recorded (topological)
order, each op mapping the tables of its inputs to those of its outputs with the exact index map of
the op (convolution taps, pooling windows, the interpolation taps torch itself uses, ...). For a
convolution or pooling with kernel k, stride s, padding p and dilation d this is the classic
r' = r + (k-1)·d·j, j' = j·s, c' = c + ((k-1)·d/2 - p)·j, per unit. Where paths meet (add, mul, cat)
the field is the union, and merges whose inputs are not centred on the same pixels are noted with
their offsets. A reduction over a spatial axis (global pooling, flatten + linear, softmax over
positions, attention) makes the field global: the axis keeps, as a summary, the local field it had.
An axis moved by permute / view (NHWC blocks, tokens, windows) keeps its per-unit table, spread over several
dims where it shares one (rf_layout.py). An op with no rule, or one that would mix such positions in a way the
walk does not follow, makes its outputs "unknown" (with the reason), never a guess; so does a field that
breaks an invariant (rf_checks.py: "inconsistent: ...").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from inspectlab.analysis.report import ABSENT, Absent, Report, Row
from inspectlab.analysis.rf_checks import coarsest_stride, field_problem, merge_problem
from inspectlab.analysis.rf_fields import (
    CONSTANT,
    AxisField,
    AxisSummary,
    FieldInfo,
    FieldMap,
    FieldNote,
    Inconsistent,
    NoRule,
    Pieces,
    broadcast,
    centre_offset,
    identity_table,
    union,
)
from inspectlab.analysis.rf_rules import ZERO_FACTORIES, constant, layout_guard, pointwise, rule_for, times_zero
from inspectlab.analysis.rf_tables import PackedTable
from inspectlab.core.errors import InspectlabError
from inspectlab.core.naming import matches
from inspectlab.tracing.records import ModuleCall, OpRecord, Trace

__all__ = ["CONSTANT", "AxisField", "AxisSummary", "FieldInfo", "FieldMap", "FieldNote", "FieldRow", "RfRow",
           "call_field", "field_columns", "field_report", "field_rows", "image_axes", "plain_number",
           "receptive_fields"]

# --------------------------------------------------------------------------------------------------
# the walk


class Walk:
    """Propagates FieldInfos through the ops of a trace, in order."""

    def __init__(self, trace: Trace, fields: FieldMap) -> None:
        self.trace = trace
        self.fields = fields
        self.coarsest = Fraction(1)  # the largest stride of a map so far (rf_checks.extent_problem)

    def shape(self, tensor_id: int) -> tuple[int, ...]:
        return self.trace.tensors[tensor_id].shape

    def field(self, tensor_id: int | None) -> FieldInfo:
        return CONSTANT if tensor_id is None else self.fields.of(tensor_id)

    def where(self, op: OpRecord) -> str:
        return self.trace.calls[op.module_call].label if op.module_call is not None else "(outside modules)"

    def note(self, op: OpRecord, kind: str, text: str, offsets: tuple[tuple[float, ...], ...] = ()) -> None:
        self.fields.notes.append(FieldNote(kind, op.index, self.where(op), text, offsets))

    def run(self) -> None:
        for op in self.trace.forward_ops():
            if op.outputs:
                self.step(op)

    def step(self, op: OpRecord) -> None:
        inputs = [self.field(t) for t in op.inputs]
        unknown = next((f.unknown for f in inputs if f.unknown), None)
        if unknown is not None:
            self.assign(op, [FieldInfo(unknown=unknown)] * len(op.outputs))
            return
        rule = rule_for(op)
        if all(f.constant for f in inputs) or rule is constant:
            zero = op.packet in ZERO_FACTORIES or (
                op.packet == "aten.fill_" and op.args.get("value") == 0
            ) or (rule is pointwise and times_zero(self, op))
            self.assign(op, [FieldInfo(zero=zero)] * len(op.outputs))
            return
        if rule is None:
            reason = f"no rule for {op.packet} (op #{op.index} in {self.where(op)})"
            self.note(op, "no-rule", reason)
            self.assign(op, [FieldInfo(unknown=reason)] * len(op.outputs))
            return
        try:
            layout_guard(self, op, rule)
            results = rule(self, op)
            size = self.fields.input_size
            problem = next(filter(None, (field_problem(inputs, r, size, self.coarsest) for r in results)), None)
            if problem:
                raise Inconsistent(problem)
            self.coarsest = coarsest_stride(results, self.coarsest)
        except Inconsistent as exc:
            reason = f"inconsistent: {op.packet}: {exc} (op #{op.index} in {self.where(op)})"
            self.note(op, "inconsistent", reason)
            results = [FieldInfo(unknown=reason)] * len(op.outputs)
        except NoRule as exc:
            reason = f"no rule for {op.packet} here: {exc} (op #{op.index} in {self.where(op)})"
            self.note(op, "no-rule", reason)
            results = [FieldInfo(unknown=reason)] * len(op.outputs)
        self.assign(op, results)

    def assign(self, op: OpRecord, results: Sequence[FieldInfo]) -> None:
        for tensor_id, info in zip(op.outputs, results, strict=False):
            self.fields[tensor_id] = info

    # helpers shared by the rules ---------------------------------------------------------------
    def main(self, op: OpRecord) -> int:
        for name in ("input", "self"):
            value = op.tensor_args.get(name)
            if isinstance(value, int):
                return value
        return op.inputs[0]

    def others_global(self, op: OpRecord, main: int) -> bool:
        """An input other than the main one depends on the image (input-dependent weights): global."""
        return any(not self.field(t).constant for t in op.inputs if t != main)

    def merge(self, op: OpRecord, parts: Sequence[tuple[FieldInfo, dict[int, int]]], out_shape: Sequence[int],
              ) -> FieldInfo:
        """Union of several inputs' fields on the output's dims. `parts`: (field, {input dim: output dim}).
        An axis spread over several dims (pieces) merges with the same layout, or with a single broadcast unit."""
        live = [(f, dim_map) for f, dim_map in parts if not f.constant]
        if not live:
            return CONSTANT
        count = len(live[0][0].axes)
        is_global = any(f.is_global for f, _ in live)
        axes: list[AxisField] = []
        offsets: list[list[float]] = [[] for _ in live]
        jumps: list[list[Fraction]] = []
        done: dict[tuple[Any, ...], tuple[dict[int, float], AxisField]] = {}
        for k in range(count):
            tabled: list[tuple[int, AxisField, int | Pieces]] = []  # (part, axis, output dim or pieces)
            folded: list[AxisField] = []
            for p, (f, dim_map) in enumerate(live):
                axis = f.axes[k]
                if axis.pieces:
                    if any(d not in dim_map for d, _, _ in axis.pieces):
                        raise NoRule("an image axis spread over several dims would lose a piece")
                    tabled.append((p, axis, tuple((dim_map[d], i, c) for d, i, c in axis.pieces)))
                    continue
                out_dim = dim_map.get(axis.dim) if axis.dim is not None else None
                if axis.tabled and out_dim is not None:
                    tabled.append((p, axis, out_dim))
                else:
                    folded.append(axis.moved(out_dim))
            if not tabled:
                best = max(folded, key=lambda a: a.summary().size or -1)
                dims = {a.dim for a in folded if a.dim is not None}
                axes.append(best.moved(dims.pop() if len(dims) == 1 else None))
                for row in offsets:
                    row.append(0.0)
                continue
            wheres = {w for _, a, w in tabled if a.units > 1} or {tabled[0][2]}  # a single unit broadcasts anywhere
            if len(wheres) > 1:
                raise NoRule("the inputs carry the same image axis on different dims")
            where = wheres.pop()
            n = out_shape[where] if isinstance(where, int) else math.prod(c for _, _, c in where)
            key = (n, tuple((p, id(a.packed), a.jump) for p, a, _ in tabled))
            if len(tabled) == 1 and tabled[0][1].units == n:  # one input: its field as it is
                done[key] = {tabled[0][0]: 0.0}, tabled[0][1]
            if key not in done:  # else: the same tables as another axis (H and W of a square image)
                tables = [broadcast(a.per_unit, n) for _, a, _ in tabled]  # type: ignore[arg-type]
                shifts = {p: centre_offset(tables[0], t) for (p, _, _), t in zip(tabled, tables, strict=True)}
                done[key] = shifts, AxisField(None, tabled[0][1].jump, union(tables))
            shifts, merged = done[key]
            for p, row in enumerate(offsets):
                row.append(shifts.get(p, 0.0))
            jumps.append([a.jump for _, a, _ in tabled])
            axes.append(merged.relaid(where, None) if isinstance(where, int) else merged.relaid(None, where))
        self.note_misaligned(op, offsets, jumps)
        result = FieldInfo(tuple(axes), is_global)
        problem = merge_problem([f for f, _ in live], result)
        if problem:
            raise Inconsistent(problem)
        return result

    def note_misaligned(self, op: OpRecord, offsets: list[list[float]], jumps: list[list[Fraction]]) -> None:
        """One note per merge whose inputs have different strides or are centred on different pixels."""
        texts = []
        if any(len(set(per_axis)) > 1 for per_axis in jumps):
            texts.append("strides " + " vs ".join(
                "(" + ", ".join(str(j) for j in per_input) + ")" for per_input in zip(*jumps, strict=False)))
        if any(abs(v) > 1e-9 for row in offsets for v in row):
            texts.append("centres offset by " + ", ".join(
                "(" + ", ".join(f"{v:+g}" for v in row) + ")" for row in offsets) + " px")
        if texts:
            self.note(op, "misaligned", f"{op.function or op.packet}: inputs " + "; ".join(texts),
                      tuple(tuple(r) for r in offsets))



# --------------------------------------------------------------------------------------------------
# public functions


def image_axes(shape: Sequence[int]) -> tuple[int, ...]:
    """The dims of an input that are image axes: the last two (N, C, H, W, ...), the last one for (N, C, L)."""
    if len(shape) >= 4:
        return (len(shape) - 2, len(shape) - 1)
    if len(shape) == 3:
        return (2,)
    raise InspectlabError(f"receptive fields need an input with spatial dims such as N×C×H×W, got {list(shape)}")


def receptive_fields(trace: Trace, input_index: int = 0) -> FieldMap:
    """The field of every tensor of the trace with respect to input `input_index` (tensor id -> FieldInfo).

    The other inputs count as constants. `FieldMap.notes` lists ops with no rule and misaligned merges.
    """
    if not trace.inputs:
        raise InspectlabError("the trace has no input tensor")
    input_id = trace.inputs[input_index]
    shape = trace.tensors[input_id].shape
    dims = image_axes(shape)
    fields = FieldMap(trace, input_id, dims)
    tables = {n: PackedTable(identity_table(n)) for n in {shape[d] for d in dims}}  # square: one for H and W
    fields[input_id] = FieldInfo(tuple(AxisField(d, Fraction(1), tables[shape[d]]) for d in dims))
    Walk(trace, fields).run()
    return fields


def call_field(fields: FieldMap, call: ModuleCall) -> FieldInfo | None:
    """The field of a module call's (first input-dependent) output tensor; None when it has no output."""
    infos = [fields.of(t) for t in call.outputs]
    return next((f for f in infos if not f.constant), infos[0] if infos else None)


@dataclass
class FieldRow:
    """One row of the rf table: a module call's output tensor and its field."""

    name: str
    call: int
    output: int  # position among the call's output tensors
    tensor: int
    shape: list[int]
    field: FieldInfo
    notes: list[str] = field(default_factory=list)

    def report_row(self) -> RfRow:
        """This row of the rf Report: the output's shape and its field columns."""
        columns = field_columns(self.field)
        return RfRow(name=self.name, output_shape=self.shape, rf=columns["rf"], rf_min=columns["rf_min"],
                     stride=columns["stride"], padding=columns["padding"], is_global=columns["global"],
                     notes=list(self.notes))

    def as_dict(self) -> dict[str, Any]:
        """`report_row()` as the plain dict of the JSON document."""
        return self.report_row().to_dict()


Numbers = list[int | float | None]


@dataclass(eq=False)
class RfRow(Row):
    """A row of the rf Report. `empirical` (the autograd checks), `measured` and `check` (their table
    text) are keys only once set: `dataclasses.replace(row, empirical=..., measured=..., check=...)`."""

    name: str
    output_shape: list[int]
    rf: Numbers | None
    rf_min: Numbers | None
    stride: Numbers | None
    padding: Numbers | None
    is_global: bool = field(metadata={"key": "global"})
    notes: list[str] = field(default_factory=list)
    empirical: list[dict[str, Any]] | Absent = ABSENT
    measured: str | Absent = ABSENT
    check: str | Absent = ABSENT


def plain_number(value: Fraction | float | None, digits: int | None = 4) -> int | float | None:
    """An int where the value is integral, else a float rounded to `digits` (None: not rounded)."""
    if value is None:
        return None
    if float(value).is_integer():
        return int(value)
    return float(value) if digits is None else round(float(value), digits)


def field_columns(info: FieldInfo | None, digits: int | None = 4) -> dict[str, Any]:
    """The rf columns of a row, per input axis in input pixels: rf, rf_min, stride, padding (lists of
    `plain_number`s, None when not known or the tensor does not depend on the input) and global."""
    if info is None:
        info = CONSTANT

    def numbers(values: Iterable[Any] | None) -> Numbers | None:
        return None if values is None else [plain_number(value, digits) for value in values]

    return {
        "rf": numbers(info.size), "rf_min": numbers(info.size_min), "stride": numbers(info.stride),
        "padding": numbers(info.padding), "global": info.is_global,
    }


def field_rows(fields: FieldMap, depth: int | None = None, layers: str | None = None) -> list[FieldRow]:
    """One row per module call output (several outputs: `name[k]`), in call order, filtered by depth and a
    --layers pattern on the module name or call label (`inspectlab.core.naming.matches`: a glob, or re:REGEX;
    the model itself is `(root)`)."""
    rows = []
    for call in fields.trace.calls:
        if depth is not None and call.depth > depth:
            continue
        if layers and not (matches(layers, call.name) or matches(layers, call.label)):
            continue
        for position, tensor in enumerate(call.outputs):
            info = fields.of(tensor)
            name = call.label if len(call.outputs) == 1 else f"{call.label}[{position}]"
            notes = [info.unknown] if info.unknown else []
            rows.append(FieldRow(name, call.index, position, tensor, list(fields.trace.tensors[tensor].shape),
                                 info, notes))
    return rows


def field_report(fields: FieldMap, model: str, depth: int | None = None, layers: str | None = None,
                 ) -> Report[RfRow]:
    """The rf table as a Report: rows, the model output's field as totals, and the walk's notes."""
    rows = field_rows(fields, depth, layers)
    trace = fields.trace
    root = next((call for call in trace.calls if call.parent is None), None)
    totals: dict[str, Any] = {}
    if root is not None and call_field(fields, root) is not None:
        totals = field_columns(call_field(fields, root))
    extra = {
        "input_axes": list(fields.spatial_dims),
        "notes": [{"kind": n.kind, "op": n.op, "module": n.where, "text": n.text,
                   **({"offsets": [list(o) for o in n.offsets]} if n.offsets else {})} for n in fields.notes],
    }
    return Report(model=model, inputs=trace.shapes(trace.inputs), layers=[r.report_row() for r in rows],
                  totals=totals, extra=extra)
