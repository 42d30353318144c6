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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

from inspectlab.analysis.report import ABSENT, Absent, Report, Row
from inspectlab.analysis.rf_checks import coarsest_stride, field_problem
from inspectlab.analysis.rf_fields import (
    CONSTANT,
    AxisField,
    AxisSummary,
    FieldInfo,
    FieldMap,
    FieldNote,
    Inconsistent,
    NoRule,
    identity_table,
)
from inspectlab.analysis.rf_inplace import written_bases
from inspectlab.analysis.rf_merge import merge_fields
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
        self.pending: list[str] = []  # flags the current op's rule raised (Walk.flag)

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
        self.pending = []
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
            results = _carry_flags(inputs, results, self.pending)
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
        if op.inplace:  # a write into a view also writes its base (rf_inplace.py)
            for base, info in written_bases(self, op):
                if info.unknown and not self.field(base).unknown and info.unknown.startswith("an in-place write"):
                    self.note(op, "no-rule", info.unknown)
                self.fields[base] = info

    def flag(self, op: OpRecord, text: str, flag: str) -> None:
        """A note about `op` (kind "flag") and the flag its outputs carry downstream (FieldInfo.flags)."""
        self.note(op, "flag", text)
        self.pending.append(flag)

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
              quiet: bool = False) -> FieldInfo:
        """Union of several inputs' fields on the output's dims (rf_merge.merge_fields), noting a misaligned one
        unless `quiet` (the parts of one product, which need not be centred alike)."""
        def note(text: str, offsets: tuple[tuple[float, ...], ...]) -> None:
            if not quiet:
                self.note(op, "misaligned", text, offsets)

        return merge_fields(parts, out_shape, op.function or op.packet, note, self.fields.input_size)


def _carry_flags(inputs: Sequence[FieldInfo], results: Sequence[FieldInfo], raised: Sequence[str],
                 ) -> list[FieldInfo]:
    """The results with the flags of their inputs and those the rule raised (each once, in order)."""
    flags = tuple(dict.fromkeys([*(flag for f in inputs for flag in f.flags), *raised]))
    if not flags:
        return list(results)
    return [r if r.constant or r.unknown else replace(r, flags=tuple(dict.fromkeys(flags + r.flags)))
            for r in results]


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
Strides = list[int | str | None]  # an int, or an exact fraction "p/q" (exact_number)


@dataclass(eq=False)
class RfRow(Row):
    """A row of the rf Report. `empirical` (the autograd checks), `measured` and `check` (their table
    text) are keys only once set: `dataclasses.replace(row, empirical=..., measured=..., check=...)`."""

    name: str
    output_shape: list[int]
    rf: Numbers | None
    rf_min: Numbers | None
    stride: Strides | None
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


def exact_number(value: Fraction | None) -> int | str | None:
    """A stride as printed: an int where it is integral, else the exact fraction "p/q" (16/3, 504/511), never a
    rounded decimal that would read as measured."""
    if value is None:
        return None
    value = Fraction(value)
    return int(value) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def field_columns(info: FieldInfo | None, digits: int | None = 4) -> dict[str, Any]:
    """The rf columns of a row, per input axis in input pixels: rf, rf_min, padding (lists of `plain_number`s:
    whole pixels), stride (`exact_number`s: an int or "p/q"), each None when not known or the tensor does not
    depend on the input, and global."""
    if info is None:
        info = CONSTANT

    def numbers(values: Iterable[Any] | None) -> Numbers | None:
        return None if values is None else [plain_number(value, digits) for value in values]

    strides = info.stride
    return {
        "rf": numbers(info.size), "rf_min": numbers(info.size_min),
        "stride": None if strides is None else [exact_number(j) for j in strides],
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
        if not call.outputs:
            if call.parent is None:  # the model returned no tensor (a custom object, a number): say so
                reason = "unknown, because the model's output holds no tensor"
                rows.append(FieldRow(call.label, call.index, 0, -1, [], FieldInfo(unknown=reason), [reason]))
            continue
        for position, tensor in enumerate(call.outputs):
            info = fields.of(tensor)
            name = call.label if len(call.outputs) == 1 else f"{call.label}[{position}]"
            rows.append(FieldRow(name, call.index, position, tensor, list(fields.trace.tensors[tensor].shape),
                                 info, row_notes(info)))
    return rows


def row_notes(info: FieldInfo) -> list[str]:
    """What a row says besides its numbers: why its field is unknown, why it has none, or its flags."""
    if info.unknown:
        return [info.unknown]
    if info.constant:
        return ["no field: it does not depend on the input (it is made of parameters, shapes and constants)"]
    return list(info.flags)


def field_report(fields: FieldMap, model: str, depth: int | None = None, layers: str | None = None,
                 ) -> Report[RfRow]:
    """The rf table as a Report: rows, the model output's field as totals, and the walk's notes."""
    rows = field_rows(fields, depth, layers)
    trace = fields.trace
    root = next((call for call in trace.calls if call.parent is None), None)
    totals: dict[str, Any] = {}
    if root is not None and call_field(fields, root) is not None:
        totals = field_columns(call_field(fields, root))
    outputs = [] if root is None else [r.as_dict() for r in field_rows(fields, depth=0) if r.call == root.index]
    extra = {
        "input_axes": list(fields.spatial_dims),
        "outputs": outputs,  # one entry per output tensor of the model (totals: the first that has a field)
        "notes": [{"kind": n.kind, "op": n.op, "module": n.where, "text": n.text,
                   **({"offsets": [list(o) for o in n.offsets]} if n.offsets else {})} for n in fields.notes],
    }
    return Report(model=model, inputs=trace.shapes(trace.inputs), layers=[r.report_row() for r in rows],
                  totals=totals, extra=extra)
