"""MACs and FLOPs of a Trace: per op, per module call, per category, and what no formula covers."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from itertools import accumulate

from inspectlab.analysis.costs import CATEGORIES, OpCost, op_cost
from inspectlab.analysis.cpu_dispatch import attention_calls
from inspectlab.tracing.records import Trace


@dataclass(frozen=True)
class Totals:
    macs: int
    other_flops: int

    @property
    def flops(self) -> int:
        """FLOPs of the MAC ops: 2 × MACs (other FLOPs are reported separately)."""
        return 2 * self.macs


@dataclass
class FlopCount:
    """Costs of every op of a Trace, with prefix sums so that any module call's total is O(1)."""

    trace: Trace
    costs: list[OpCost | None]

    def __post_init__(self) -> None:
        forward = [c if c is not None and op.phase == "forward" else None
                   for c, op in zip(self.costs, self.trace.ops, strict=True)]
        self._macs = [0, *accumulate(c.macs if c else 0 for c in forward)]
        self._other = [0, *accumulate(c.other_flops if c else 0 for c in forward)]

    def of_call(self, call_index: int) -> Totals:
        """MACs and other FLOPs of a module call, its children and functional code included."""
        call = self.trace.calls[call_index]
        return Totals(self._macs[call.end_op] - self._macs[call.first_op],
                      self._other[call.end_op] - self._other[call.first_op])

    def total(self, phases: tuple[str, ...] = ("forward",)) -> Totals:
        macs = other = 0
        for cost, op in zip(self.costs, self.trace.ops, strict=True):
            if cost is not None and op.phase in phases:
                macs += cost.macs
                other += cost.other_flops
        return Totals(macs, other)

    def by_category(self, phases: tuple[str, ...] = ("forward",)) -> dict[str, Totals]:
        macs: Counter[str] = Counter()
        other: Counter[str] = Counter()
        for cost, op in zip(self.costs, self.trace.ops, strict=True):
            if cost is not None and op.phase in phases:
                macs[cost.category] += cost.macs
                other[cost.category] += cost.other_flops
        return {c: Totals(macs[c], other[c]) for c in CATEGORIES if macs[c] or other[c]}

    def uncounted(self, phases: tuple[str, ...] = ("forward",)) -> dict[str, int]:
        """Ops with no formula, with their call counts (never a silent zero)."""
        counts = Counter(op.name for cost, op in zip(self.costs, self.trace.ops, strict=True)
                         if cost is None and op.phase in phases)
        return dict(counts.most_common())


def count_flops(trace: Trace) -> FlopCount:
    """Apply inspectlab's formulas (analysis/costs.py) to every op of the trace. The ops of torch's math path of
    scaled-dot-product attention count in the "attention" category, as the fused kernel that replaces them
    on a real device does: the breakdown does not depend on the path either."""
    costs = [op_cost(op, trace) for op in trace.ops]
    for call in attention_calls(trace):
        for index in call.ops:
            cost = costs[index]
            if cost is not None and (cost.macs or cost.other_flops):
                costs[index] = replace(cost, category="attention")
    return FlopCount(trace, costs)
