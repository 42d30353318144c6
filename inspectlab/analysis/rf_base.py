"""The receptive-field rule registry and the helpers every rule module shares: `RULES` maps an aten op
packet to its rule, (walk, op) -> one FieldInfo per output tensor. The rules themselves live in
rf_windows.py (windowed and indexing ops), rf_layout.py (shape and order ops) and rf_mixing.py
(elementwise, copies, reductions, products); rf_rules.py gathers them. See receptive_field.py."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any, Protocol

import numpy as np

from inspectlab.analysis.rf_fields import AxisField, FieldInfo, Reuse
from inspectlab.analysis.rf_gather import gather
from inspectlab.core.op_registry import OpRegistry
from inspectlab.tracing.records import OpRecord, Trace


class WalkView(Protocol):
    """What a rule reads of the walk over the trace (receptive_field.Walk): shapes, fields so far, the
    main input of an op, and the union of several inputs' fields; what it may tell: a flag (a note, and a
    FieldInfo flag its outputs carry downstream). Structural, so that the rule modules need not import
    receptive_field.py (which imports them)."""

    trace: Trace

    def flag(self, op: OpRecord, text: str, flag: str) -> None: ...

    def shape(self, tensor_id: int) -> tuple[int, ...]: ...

    def field(self, tensor_id: int | None) -> FieldInfo: ...

    def main(self, op: OpRecord) -> int: ...

    def others_global(self, op: OpRecord, main: int) -> bool: ...

    def merge(self, op: OpRecord, parts: Sequence[tuple[FieldInfo, dict[int, int]]], out_shape: Sequence[int],
              quiet: bool = False) -> FieldInfo: ...


Rule = Callable[[WalkView, OpRecord], list[FieldInfo]]
RULES: OpRegistry[Rule] = OpRegistry("receptive-field rules")  # each rule is registered beside its definition
# The rules that follow an image axis spread over several dims (AxisField.pieces): "any" (whatever dims the op
# works along), "dims" (as long as the dims the op works along, its `dim`/`dims`, hold no piece). The walk makes
# the outputs of any other rule on such an input unknown (rf_layout.layout_guard).
LAYOUT_AWARE: dict[Rule, str] = {}


def follows_layout(kind: str) -> Callable[[Rule], Rule]:
    """Decorator (under @RULES.register): the rule follows image axes spread over several dims (`kind`: see
    LAYOUT_AWARE)."""
    assert kind in ("any", "dims"), kind

    def mark(rule: Rule) -> Rule:
        LAYOUT_AWARE[rule] = kind
        return rule

    return mark


def ints(value: Any, count: int, default: int) -> list[int]:
    """An int-or-list op argument (stride, padding, dims) as `count` ints; `default` when absent."""
    if value is None or value == []:
        return [default] * count
    if isinstance(value, int):
        return [value] * count
    values = list(value)
    return values * count if len(values) == 1 else values


def index_map(walk: WalkView, op: OpRecord,
              per_dim: Callable[[int, int, int], tuple[np.ndarray, Fraction] | None],
              main: int | None = None, out: int = 0) -> FieldInfo:
    """Apply a per-dim index map: per_dim(dim, n_in, n_out) -> (taps (n_out,) or (n_out, k), jump factor)."""
    main = walk.main(op) if main is None else main
    info = walk.field(main)
    in_shape, out_shape = walk.shape(main), walk.shape(op.outputs[out])
    axes, reuse = [], Reuse()
    for axis in info.axes:
        mapped = per_dim(axis.dim, in_shape[axis.dim], out_shape[axis.dim]) if (
            axis.tabled and axis.dim is not None) else None
        if mapped is None:
            axes.append(axis)
        else:
            taps, factor = mapped
            if factor == 1 and taps.shape == (axis.units,) and np.array_equal(taps, np.arange(axis.units)):
                axes.append(axis)  # each unit reads itself (a padding or a slice of 0)
                continue
            key = (factor, taps.shape, taps.tobytes())
            axes.append(reuse.field(axis, key, lambda axis=axis, taps=taps, factor=factor: AxisField(
                axis.dim, axis.jump * factor, gather(axis, taps))))
    return FieldInfo(tuple(axes), info.is_global)
