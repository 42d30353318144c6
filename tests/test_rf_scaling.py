"""The analytic receptive field at any input size (issue 13, section 3): the walk allocates nothing that grows
with the input's pixels (no (H, W) or (n_out, n_in) array: per axis, packed tables of a few bytes a unit), so
a UNet at 30000² is analysed in the time and memory of one at 512²; benchmarks/bench_rf.py measures it."""

from __future__ import annotations

import math
import tracemalloc

from inspectlab import api
from inspectlab.analysis.receptive_field import receptive_fields


def _walk_peak(side: int) -> int:
    """Peak bytes allocated (Python and numpy, by tracemalloc) while the walk runs on unet at side²."""
    trace = api.trace("unet", (1, 3, side, side))  # meta device: no activation is allocated
    tracemalloc.start()
    try:
        receptive_fields(trace)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_walk_memory_does_not_grow_with_the_pixels() -> None:
    receptive_fields(api.trace("unet", (1, 3, 64, 64)))  # one-time imports and caches out of the way
    small, large = _walk_peak(256), _walk_peak(4096)
    # 256 times the pixels, 16 times the side: the packed per-axis tables (exact per-unit fields) may grow
    # with the side, nothing with the pixels (measured: 0.15 MB and 1.3 MB)
    assert large < 16 * small, (small, large)
    # before issue 13: 147 MB (interpolation supports built as (n_out, n_in) tables); one byte a pixel is 16 MB
    assert large < 4_000_000, large


def test_rf_at_16384_and_30000_is_the_rf_at_512() -> None:
    columns = {}
    for side in (512, 16384, 30000):
        totals = api.receptive_field("unet", (1, 3, side, side)).totals
        columns[side] = (totals["rf"], totals["rf_min"], totals["stride"], totals["padding"])
    assert columns[512] == columns[16384] == columns[30000] == ([236, 236], [9, 9], [1, 1], [92, 92])


def test_compare_at_30000_returns_a_row() -> None:
    """Before issue 13: an allocator error (or 68 s and 16 GB where the memory was there)."""
    table = api.compare(["unet"], (1, 3, 30000, 30000))
    (row,) = table.to_dict("records")
    assert row["error"] is None or (isinstance(row["error"], float) and math.isnan(row["error"]))
    assert row["rf"] == 236 and row["output_stride"] == 16 and row["output_shape"] == [1, 2, 30000, 30000]
