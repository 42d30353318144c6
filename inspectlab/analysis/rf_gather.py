"""The numpy primitives the receptive-field rules build per-unit tables with (see rf_fields.AxisField for the
table's rows): the union of the fields of the units an output unit reads (`gather`, `gather_window`), the union
of several paths (`union`), broadcasting and the centre offsets of a merge's inputs."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from inspectlab.analysis.rf_fields import EMPTY, INF, AxisField, NoRule


def outward(values: np.ndarray) -> None:
    """Round the unclipped rows (0-3) of a table outward to whole pixels, in place: a virtual unit beyond the
    border is placed one stride per unit out, which at a stride such as 256/63 falls between pixels."""
    np.floor(values[0::2][:2], out=values[0::2][:2])
    np.ceil(values[1::2][:2], out=values[1::2][:2])


def gather(axis: AxisField, taps: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Union of the fields of input units `taps` (n_out, k), masked. Units outside the tensor are the
    virtual units a padding adds: extrapolated with the axis's stride in the unclipped rows, nothing in
    the actual rows. One tap column at a time: O(n_out) memory per column, whatever k."""
    table = axis.table
    assert table is not None
    n = table.shape[1]
    if n == 0:
        raise NoRule("an image axis of size 0")
    taps = np.asarray(taps, dtype=np.int64)
    if taps.ndim == 1:
        taps = taps[:, None]
    columns = np.ascontiguousarray(taps.T)  # (k, n_out)
    inside = np.clip(columns, 0, n - 1)
    shift = columns - inside
    padded = bool(shift.any())
    skipped = None if mask is None else ~np.ascontiguousarray(np.asarray(mask, dtype=bool).T)
    jump = float(axis.jump)
    result = np.repeat(EMPTY[:, None], columns.shape[1], axis=1)  # (no tap: nothing is read)
    for t in range(columns.shape[0]):
        values = np.take(table, inside[t], axis=1)  # (6, n_out)
        if padded:
            with np.errstate(invalid="ignore"):
                values[:4] += shift[t] * jump
                if not jump.is_integer():
                    outward(values)
            values[4:, shift[t] != 0] = EMPTY[4:, None]
        if skipped is not None:
            values[:, skipped[t]] = EMPTY[:, None]
        if t == 0:
            result = values
        else:
            np.minimum(result[0::2], values[0::2], out=result[0::2])
            np.maximum(result[1::2], values[1::2], out=result[1::2])
    return result


def gather_window(axis: AxisField, n_out: int, kernel: int, stride: int, padding: int, dilation: int,
                  ) -> np.ndarray:
    """gather(axis, taps) for the taps u·stride - padding + t·dilation (t < kernel) of a convolution or
    pooling window: the same numbers, the units whose tap is inside the axis read through strided views,
    the others (the borders) as gather does."""
    table = axis.table
    assert table is not None
    n = table.shape[1]
    if n == 0:
        raise NoRule("an image axis of size 0")
    result = np.empty((6, n_out))
    result[:] = EMPTY[:, None]
    units = np.arange(n_out)
    jump = float(axis.jump)
    for t in range(kernel):
        start = t * dilation - padding  # the tap of unit 0
        first = max(0, -(start // stride))  # the first unit whose tap is >= 0
        last = min(n_out - 1, (n - 1 - start) // stride)  # the last whose tap is <= n - 1
        if first <= last:
            view = table[:, start + first * stride:start + last * stride + 1:stride]
            part = result[:, first:last + 1]
            np.minimum(part[0::2], view[0::2], out=part[0::2])
            np.maximum(part[1::2], view[1::2], out=part[1::2])
        border = units[(units < first) | (units > last)]
        if border.size:
            taps = start + border * stride
            inside = np.clip(taps, 0, n - 1)
            values = table[:, inside]
            with np.errstate(invalid="ignore"):
                values[:4] += (taps - inside) * jump
                if not jump.is_integer():
                    outward(values)
            values[4:] = EMPTY[4:, None]  # a virtual unit: nothing is read
            result[0::2, border] = np.minimum(result[0::2][:, border], values[0::2])
            result[1::2, border] = np.maximum(result[1::2][:, border], values[1::2])
    return result


def union(tables: Sequence[np.ndarray]) -> np.ndarray:
    """Per unit: the union of the fields (all paths, unclipped and actual) and the narrowest of the
    shortest-path fields (the first of the narrowest on a tie)."""
    if len(tables) == 1:
        return tables[0]
    result = tables[0].copy()
    narrowest = _shortest_width(result)
    for table in tables[1:]:
        for low, high in ((0, 1), (4, 5)):
            np.minimum(result[low], table[low], out=result[low])
            np.maximum(result[high], table[high], out=result[high])
        width = _shortest_width(table)
        better = width < narrowest
        result[2:4] = np.where(better, table[2:4], result[2:4])
        narrowest = np.where(better, width, narrowest)
    return result


def _shortest_width(table: np.ndarray) -> np.ndarray:
    width = table[3] - table[2]
    return np.where(np.isfinite(width), width, INF)


def broadcast(table: np.ndarray, n: int) -> np.ndarray:
    if table.shape[1] == n:
        return table
    if table.shape[1] == 1:
        return np.repeat(table, n, axis=1)
    raise NoRule(f"cannot broadcast {table.shape[1]} units to {n}")


def centres(table: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # a unit that depends on nothing: inf - inf, not finite either way
        return (table[0] + table[1]) / 2



def centre_offset(reference: np.ndarray, table: np.ndarray) -> float:
    """Median shift of the field centres of `table` from those of `reference` (borders, where torch clamps
    interpolation taps, do not weigh in)."""
    a, b = centres(reference), centres(table)
    both = np.isfinite(a) & np.isfinite(b)
    return float(np.median(b[both] - a[both])) if both.any() else 0.0




def block_union(table: np.ndarray, counts: Sequence[int], mixed: Sequence[bool]) -> np.ndarray:
    """A per-unit table (6, n) of units numbered by digits of `counts` (most significant first: an axis's pieces),
    with each unit's field replaced by the union over the units that differ from it only in the `mixed` digits:
    what attention within a window reads (those digits: the positions inside the window). The shortest path is
    that of the narrowest of those units (the first on a tie)."""
    k = len(counts)
    order = [i for i in range(k) if not mixed[i]] + [i for i in range(k) if mixed[i]]
    block = math.prod(c for c, m in zip(counts, mixed, strict=True) if m)
    grid = table.reshape(6, *counts).transpose(0, *(1 + i for i in order))
    moved_shape = grid.shape
    grid = grid.reshape(6, -1, block)
    result = np.empty_like(grid)
    for low, high in ((0, 1), (4, 5)):
        result[low] = grid[low].min(axis=1, keepdims=True)
        result[high] = grid[high].max(axis=1, keepdims=True)
    width = grid[3] - grid[2]
    pick = np.argmin(np.where(np.isfinite(width), width, INF), axis=1)[:, None]
    for row in (2, 3):
        result[row] = np.take_along_axis(grid[row], pick, axis=1)
    inverse = np.argsort([0, *(1 + i for i in order)])
    return result.reshape(moved_shape).transpose(*inverse).reshape(6, -1)
