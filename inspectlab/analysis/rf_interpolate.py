"""The input units each output unit of an interpolation reads, per axis, in closed form: O(n_out) numpy on the
coordinate map of torch's CPU kernels (aten/src/ATen/native/UpSample.h, cpu/UpSampleKernel.cpp), never an
(n_out, n_in) table. `interpolation_taps` gives each output unit its candidate taps and which of them carry a
nonzero weight: the support torch's kernel shows on one-hot float64 inputs, the other axes resized from 2 units
to 2 (how the walk measured it before; tests/test_receptive_field.py compares the two on thousands of sizes and
scales, and on sampled units up to 30000).

With `scale` = area_pixel_compute_scale (double: (n_in-1)/(n_out-1) with align_corners, else 1/scale_factor
when one is given, else n_in/n_out) and the source coordinate x = scale·o (align_corners) or
scale·(o+½) - ½, torch reads:

- nearest: floor(scale·o), capped at n_in-1; nearest-exact: floor(max(x, 0) + ½), capped. Both round to float32
  before the floor (`floorf`). 2-d resizes with a small output (H + W <= 128: `_use_vectorized_kernel_cond_2d`)
  take the channels-last kernel instead, whose scale and product are float32, and whose nearest copies n_out =
  n_in and halves n_out = 2·n_in.
- (bi/tri)linear: units i = floorf(max(x, 0)) (capped) and the next one (capped), weights 1-λ and λ = clamp(x -
  i, 0, 1), where a zero weight reads nothing; n_out = n_in copies.
- bicubic: i = floorf(x), taps i-1 .. i+2 clamped to the axis, Keys weights (A = -0.75) of λ = clamp(x - i, 0,
  1); taps landing on one unit add up.
- antialiased bilinear / bicubic: the Pillow filter (triangle; Keys with A = -0.5) stretched by max(scale, 1)
  around scale·(o+½), over [trunc(centre - support + ½), trunc(centre + support + ½)); an axis whose size is
  kept is copied.

The last bit matters where x lands on a unit: an x86 build with FMA fuses scale·(o+½) - ½ and the cubic
polynomials into fused multiply-adds (a weight of 1e-17 instead of 0), the portable build does not.
`_arithmetic` asks torch's kernel once, on two tiny inputs, which of the two it does; `_fma` rounds once.
"""

from __future__ import annotations

from functools import cache

import numpy as np

_MODES = {
    "upsample_nearest1d": "nearest", "upsample_nearest2d": "nearest", "upsample_nearest3d": "nearest",
    "_upsample_nearest_exact1d": "nearest-exact", "_upsample_nearest_exact2d": "nearest-exact",
    "_upsample_nearest_exact3d": "nearest-exact", "upsample_linear1d": "linear", "upsample_bilinear2d": "linear",
    "upsample_trilinear3d": "linear", "upsample_bicubic2d": "cubic", "_upsample_bilinear2d_aa": "linear-aa",
    "_upsample_bicubic2d_aa": "cubic-aa",
}
# the support is defined by resizing one axis while the others stay at 2 units: the channels-last nearest kernel
# runs when that output's H + W <= 128
_SMALL_2D = 128 - 2


def interpolation_mode(packet: str) -> str:
    """The interpolation of an aten packet ("aten.upsample_bilinear2d" -> "linear")."""
    return _MODES[packet.split(".", 1)[1]]


def interpolation_taps(mode: str, count: int, n_in: int, n_out: int, align: bool | None, scale: float | None,
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(taps, mask), both (n_out, k): the input units output unit o may read along one axis of a `count`-d
    interpolation, and which of them it reads with a nonzero weight (several taps may name one unit)."""
    units = np.arange(n_out, dtype=np.int64)
    copy = units[:, None], np.ones((n_out, 1), dtype=bool)
    if mode in ("nearest", "nearest-exact"):
        small = count == 2 and n_out <= _SMALL_2D
        source = (_nearest_small if small else _nearest)(mode == "nearest-exact", units, n_in, n_out, scale)
        return source[:, None], copy[1]
    if n_out == n_in and mode != "cubic":
        return copy
    if mode in ("linear-aa", "cubic-aa"):
        return _antialiased(mode == "cubic-aa", units, n_in, n_out, align, scale)
    ratio = _area_scale(n_in, n_out, align, scale)
    if mode == "linear":
        first, lam1 = _guard(np.maximum(_source(ratio, units, align), 0.0), n_in)
        lam0 = 1.0 - lam1
        last = first == n_in - 1  # both taps name the last unit: their weights add up
        both = last & ((lam0 + lam1) != 0)
        mask = np.stack([np.where(last, both, lam0 != 0), np.where(last, both, lam1 != 0)], axis=1)
        return np.stack([first, first + ~last], axis=1), mask
    if mode == "cubic":
        index, lam = _guard(_source(ratio, units, align), n_in)
        taps = np.clip(index[:, None] + np.arange(-1, 3)[None, :], 0, n_in - 1)
        return taps, _nonzero_per_unit(taps, _keys_coefficients(lam))
    raise ValueError(f"unknown interpolation {mode!r}")


def _area_scale(n_in: int, n_out: int, align: bool | None, scale: float | None) -> float:
    """area_pixel_compute_scale<double>."""
    if align:
        return (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    if scale is not None and scale > 0:
        return 1.0 / scale
    return n_in / n_out


def _source(ratio: float, units: np.ndarray, align: bool | None) -> np.ndarray:
    """area_pixel_compute_source_index<double>, before its clamp at 0."""
    if align:
        return ratio * units.astype(np.float64)
    return _madd(np.float64(ratio), units + 0.5, -0.5, _arithmetic()[0])


def _guard(x: np.ndarray, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """guard_index_and_lambda: the unit floorf(x) (x rounded to float32 first) capped at n_in-1, and λ."""
    index = np.minimum(np.floor(x.astype(np.float32)).astype(np.int64), n_in - 1)
    return index, np.clip(x - index, 0.0, 1.0)


def _nearest(exact: bool, units: np.ndarray, n_in: int, n_out: int, scale: float | None) -> np.ndarray:
    """HelperInterpNearest(Exact): the coordinate in double, rounded to float32 by floorf."""
    ratio = _area_scale(n_in, n_out, False, scale)
    x = np.maximum(_source(ratio, units, False), 0.0) + 0.5 if exact else ratio * units.astype(np.float64)
    return np.minimum(np.floor(x.astype(np.float32)).astype(np.int64), n_in - 1)


def _nearest_small(exact: bool, units: np.ndarray, n_in: int, n_out: int, scale: float | None) -> np.ndarray:
    """nearest_idx / nearest_exact_idx of the channels-last kernel: a float32 scale."""
    if not exact and n_out == n_in:
        return units
    if not exact and n_out == 2 * n_in:
        return units >> 1
    ratio = np.float32(1.0 / scale) if scale is not None and scale > 0 else np.float32(n_in) / np.float32(n_out)
    x = ((units + 0.5) * np.float64(ratio)).astype(np.float32) if exact else units.astype(np.float32) * ratio
    return np.minimum(np.floor(x).astype(np.int64), n_in - 1)


def _keys_coefficients(lam: np.ndarray) -> np.ndarray:
    """get_cubic_upsample_coefficients (A = -0.75): the weights of taps floor(x)-1 .. floor(x)+2, (n, 4). A
    build that fuses multiply-adds fuses all of these but the last step of cubic_convolution2."""
    a, fused = -0.75, _arithmetic()[0]
    _, c0 = _cubic_parts(lam + 1.0, a, fused, last=False)
    c1, _ = _cubic_parts(lam, a, fused, last=False)
    c2, _ = _cubic_parts(1.0 - lam, a, fused, last=False)
    _, c3 = _cubic_parts((1.0 - lam) + 1.0, a, fused, last=False)
    return np.stack([c0, c1, c2, c3], axis=1)


def _cubic_parts(x: np.ndarray, a: float, fused: bool, last: bool) -> tuple[np.ndarray, np.ndarray]:
    """cubic_convolution1 (|x| <= 1) and cubic_convolution2 (1 <= |x| <= 2) as torch writes them:
    ((a+2)·x - (a+3))·x·x + 1 and ((a·x - 5a)·x + 8a)·x - 4a, with the multiply-adds `fused` or not (the
    final one of cubic_convolution2: `last`)."""
    near = _madd(_madd(np.float64(a + 2), x, -(a + 3), fused) * x, x, 1.0, fused)
    far = _madd(_madd(_madd(np.float64(a), x, -5 * a, fused), x, 8 * a, fused), x, -4 * a, fused and last)
    return near, far


def _nonzero_per_unit(taps: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per tap: does the unit it names get a nonzero total weight (the taps naming one unit add up, in order)?"""
    k = taps.shape[1]
    totals = np.zeros(weights.shape, dtype=np.float64)
    for j in range(k):
        for i in range(k):
            totals[:, j] = np.where(taps[:, i] == taps[:, j], totals[:, j] + weights[:, i], totals[:, j])
    return totals != 0


def _antialiased(cubic: bool, units: np.ndarray, n_in: int, n_out: int, align: bool | None, scale: float | None,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """HelperInterpBase::_compute_indices_min_size_weights_aa with the triangle or the cubic Pillow filter."""
    ratio = _area_scale(n_in, n_out, align, scale)
    support = (2.0 if cubic else 1.0) * (ratio if ratio >= 1.0 else 1.0)
    width = int(np.ceil(support)) * 2 + 1
    centre = ratio * (units + 0.5)
    inverse = 1.0 / ratio if ratio >= 1.0 else 1.0
    low = np.maximum(np.trunc(centre - support + 0.5).astype(np.int64), 0)
    size = np.clip(np.minimum(np.trunc(centre + support + 0.5).astype(np.int64), n_in) - low, 0, width)
    j = np.arange(width, dtype=np.int64)[None, :]
    taps = low[:, None] + j
    x = np.abs(((taps - centre[:, None]) + 0.5) * inverse)
    if cubic:
        near, far = _cubic_parts(x, -0.5, _arithmetic()[1], last=True)
        weights = np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))
    else:
        weights = np.where(x < 1.0, 1.0 - x, 0.0)
    return np.minimum(taps, n_in - 1), (j < size[:, None]) & (weights != 0)


# --------------------------------------------------------------------------------------------------
# the last bit: does this torch build fuse its multiply-adds?


@cache
def _arithmetic() -> tuple[bool, bool]:
    """(source coordinate fused, Pillow cubic fused), asked once of torch's own kernels on two inputs where
    the answers differ: linear 2 -> 10 reads unit 1 at output 2 only when scale·(o+½) - ½ is fused (0.2·2.5
    - 0.5 is 0 in two roundings, 2.8e-17 in one); antialiased bicubic 10 -> 6 reads unit 2 at output 2 only
    when its filter is."""
    import torch

    def reads(packet: str, n_in: int, n_out: int, unit: int, output: int, count: int) -> bool:
        one_hot = torch.zeros((1, 1, n_in) + (2,) * (count - 1), dtype=torch.float64, device="cpu")
        one_hot[0, 0, unit] = 1.0
        overload = getattr(torch.ops.aten, packet).default
        out = overload(one_hot, [n_out] + [2] * (count - 1), False, *[None] * count)
        return bool(out[(0, 0, output) + (0,) * (count - 1)] != 0)

    with torch.no_grad():
        return reads("upsample_linear1d", 2, 10, 1, 2, 1), reads("_upsample_bicubic2d_aa", 10, 6, 2, 2, 2)


def _madd(a: np.ndarray, b: np.ndarray, c: float, fused: bool) -> np.ndarray:
    """a·b + c, rounded once when `fused`."""
    return _fma(a, b, c) if fused else a * b + c


def _fma(a: np.ndarray, b: np.ndarray, c: float) -> np.ndarray:
    """a·b + c rounded once, elementwise (Boldo & Melquiond, "Emulation of FMA and correctly rounded sums:
    proved algorithms using rounding to odd", 2008): the exact product as two doubles, its high part added
    exactly to c, the low parts summed with rounding to odd, then one rounding to nearest."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    high, low = _two_product(a, b)
    top, rest = _two_sum(np.full_like(high, c), high)
    total, error = _two_sum(rest, low)
    even = (total.view(np.int64) & 1) == 0
    total = np.where((error != 0) & even, np.nextafter(total, np.where(error > 0, np.inf, -np.inf)), total)
    return top + total


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """s = fl(a + b) and the exact error a + b - s (Knuth)."""
    s = a + b
    v = s - a
    return s, (a - (s - v)) + (b - v)


def _two_product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """p = fl(a·b) and the exact error a·b - p (Dekker, with Veltkamp's split at 2**27 + 1)."""
    p = a * b
    a_high, a_low = _split(a)
    b_high, b_low = _split(b)
    return p, ((a_high * b_high - p) + a_high * b_low + a_low * b_high) + a_low * b_low


def _split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = a * 134217729.0
    high = t - (t - a)
    return high, a - high
