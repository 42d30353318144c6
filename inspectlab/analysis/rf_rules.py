"""The receptive-field rules: for each aten op, how its outputs' fields follow from its inputs' (the exact
index map of the op: convolution taps, pooling windows, interpolation taps...). See receptive_field.py.

The registry `RULES` and the shared helpers are in rf_base.py; the rules register into it beside their
definitions in rf_windows.py (windows and index maps), rf_sampling.py (roll, unfold, grid_sample, as_strided),
rf_layout.py (shape and order), rf_tokens.py (index ops along token dims), rf_mixing.py (elementwise, copies,
reductions) and rf_attention.py (products, softmax and attention, also within windows), all imported here, so
`rule_for` sees them all."""

from __future__ import annotations

from functools import cache

from inspectlab.analysis import rf_attention, rf_sampling, rf_tokens, rf_windows  # noqa: F401  (register into RULES)
from inspectlab.analysis.rf_base import RULES, Rule
from inspectlab.analysis.rf_layout import layout_guard
from inspectlab.analysis.rf_mixing import ZERO_FACTORIES, constant, pointwise, times_zero
from inspectlab.tracing.records import OpRecord

__all__ = ["RULES", "ZERO_FACTORIES", "Rule", "constant", "layout_guard", "pointwise", "rule_for", "times_zero"]


def rule_for(op: OpRecord) -> Rule | None:
    rule = RULES.get(op.packet)
    if rule is not None:
        return rule
    return pointwise if _is_pointwise(op.name) else None


@cache
def _is_pointwise(name: str) -> bool:
    """torch tags elementwise ops `pointwise`; an in-place op is elementwise when its out-of-place op is."""
    import torch

    parts = name.split(".")
    if len(parts) < 3 or parts[0] != "aten":
        return False
    candidates = [(parts[1], parts[2])]
    if parts[1].endswith("_"):
        candidates += [(parts[1][:-1], parts[2]), (parts[1][:-1], "default")]
    for packet, overload in candidates:
        try:
            op = getattr(getattr(torch.ops.aten, packet), overload)
        except (AttributeError, RuntimeError):
            continue
        if torch.Tag.pointwise in op.tags:
            return True
    return False
