"""The largest batch (or square input) that fits a memory budget, from traces at two sizes.

Every moment of the estimated timeline (one per op) is affine in the batch size, and in the pixels of a
square input: parameters and optimizer state are constant, activations, gradients of activations and most
kernel buffers grow with the batch and the pixels. From the timelines at two values x1 < x2 (same ops), each
moment gets its own line a + c·x, and the peak at any x is the largest of those lines: a convex,
piecewise-affine function, so the peak's op may change with the size and the answer still follows. When the
two timelines do not have the same ops (value-dependent control flow) only the two peaks are fitted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Fit:
    lines: list[tuple[float, float]]  # (a, c): bytes = a + c·x, one per moment (or one: the peak)
    kind: str  # "per-op" or "peak"

    def predict(self, x: float) -> float:
        return max(a + c * x for a, c in self.lines)


def fit_lines(first: Sequence[int], second: Sequence[int], x1: float, x2: float, peak1: int, peak2: int) -> Fit:
    """The lines through the moments at x1 and x2 (the peaks only when the timelines differ in length)."""
    if x1 == x2:
        raise ValueError("two distinct sizes are needed to fit")
    pairs, kind = (zip(first, second, strict=True), "per-op") if len(first) == len(second) and first else (
        [(peak1, peak2)], "peak")
    lines = []
    for low, high in pairs:
        slope = (high - low) / (x2 - x1)
        lines.append((low - slope * x1, slope))
    return Fit(lines=lines, kind=kind)


def largest_fitting(fit: Fit, budget: int, step: int, value_of: Callable[[int], float]) -> int:
    """The largest multiple v of `step` whose predicted peak (at x = value_of(v)) fits `budget`; 0 when even
    `step` does not."""
    if fit.predict(value_of(step)) > budget:
        return 0
    low, high = 1, 2
    while fit.predict(value_of(high * step)) <= budget:
        low, high = high, high * 2
        if high > 1 << 40:
            raise ValueError("the fitted peak does not grow with the size: no largest value")
    while high - low > 1:
        middle = (low + high) // 2
        if fit.predict(value_of(middle * step)) <= budget:
            low = middle
        else:
            high = middle
    return low * step


def granularity(side: int, largest: int = 32) -> int:
    """The step of a square side search: the largest power of two (at most `largest`) that divides the given
    side, which the model accepts (224 -> 32, 100 -> 4, 513 -> 1)."""
    step = 1
    while step * 2 <= largest and side % (step * 2) == 0:
        step *= 2
    return step
