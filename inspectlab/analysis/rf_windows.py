"""Receptive-field rules of windowed and indexing ops along image axes: convolution, pooling (fixed and
adaptive), interpolation, padding, slicing, flipping and pixel (un)shuffle, each the exact index map of the op."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from inspectlab.analysis.rf_base import RULES, WalkView, follows_layout, index_map, ints
from inspectlab.analysis.rf_fields import AxisField, FieldInfo, NoRule, Reuse
from inspectlab.analysis.rf_gather import gather, gather_window
from inspectlab.analysis.rf_interpolate import interpolation_mode, interpolation_taps
from inspectlab.tracing.records import OpRecord


def _window_op(walk: WalkView, op: OpRecord, kernel: Sequence[int], stride: Sequence[int],
               padding: Sequence[int], dilation: Sequence[int], transposed: bool = False) -> FieldInfo:
    """Convolution / pooling over the last len(kernel) dims of the main input."""
    main = walk.main(op)
    info = walk.field(main)
    rank = len(walk.shape(main))
    out_shape = walk.shape(op.outputs[0])
    first = rank - len(kernel)
    axes, reuse = [], Reuse()

    def window(axis: AxisField, k: int, s: int, p: int, d: int, n_out: int) -> AxisField:
        units = np.arange(n_out)[:, None]
        t = np.arange(k)[None, :]
        if not transposed:
            if k == 1 and s == 1 and p == 0 and n_out == axis.units:  # 1x1: each unit reads itself
                return axis
            return AxisField(axis.dim, axis.jump * s, gather_window(axis, n_out, k, s, p, d))
        numerator = units + p - t * d  # output o receives input i where o = i*s - p + t*d
        mask = numerator % s == 0
        return AxisField(axis.dim, axis.jump / s, gather(axis, np.where(mask, numerator // s, 0), mask))

    for axis in info.axes:
        if axis.dim is None or axis.dim < first or not axis.tabled:
            axes.append(axis)
            continue
        i = axis.dim - first
        params = (kernel[i], stride[i], padding[i], dilation[i], out_shape[axis.dim])
        axes.append(reuse.field(axis, params, lambda axis=axis, params=params: window(axis, *params)))
    return FieldInfo(tuple(axes), info.is_global or walk.others_global(op, main))


@RULES.register("aten.convolution", "aten._convolution", "aten.convolution_overrideable")
def _convolution(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    weight = op.tensor_args.get("weight")
    if not isinstance(weight, int):
        raise NoRule("no weight tensor")
    kernel = list(walk.shape(weight)[2:])
    count = len(kernel)
    result = _window_op(
        walk, op, kernel, ints(op.args.get("stride"), count, 1), ints(op.args.get("padding"), count, 0),
        ints(op.args.get("dilation"), count, 1), transposed=bool(op.args.get("transposed", False)),
    )
    return [result] * len(op.outputs)


@RULES.register(*(f"aten.{kind}_pool{n}d" for kind in ("max", "avg") for n in (1, 2, 3)),
                *(f"aten.max_pool{n}d_with_indices" for n in (1, 2, 3)))
def _pool(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    kernel = list(op.args["kernel_size"])
    count = len(kernel)
    stride = ints(op.args.get("stride"), count, 0)
    stride = [s or k for s, k in zip(stride, kernel, strict=True)]
    result = _window_op(walk, op, kernel, stride, ints(op.args.get("padding"), count, 0),
                        ints(op.args.get("dilation"), count, 1))
    return [result] * len(op.outputs)  # max pool's indices depend on the same window


@RULES.register(*(f"aten.adaptive_{kind}_pool{n}d" for kind in ("max", "avg") for n in (1, 2, 3)),
                "aten._adaptive_avg_pool2d", "aten._adaptive_avg_pool3d")
def _adaptive_pool(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """Adaptive pooling: unit o averages input [floor(o·n/m), ceil((o+1)·n/m)); to size 1 it is global."""
    main = walk.main(op)
    info = walk.field(main)
    out_shape = walk.shape(op.outputs[0])
    count = len(op.args["output_size"])
    first = len(walk.shape(main)) - count
    axes, is_global, reuse = [], info.is_global, Reuse()
    for axis in info.axes:
        if axis.dim is None or axis.dim < first or not axis.tabled:
            axes.append(axis)
            continue
        n, m = walk.shape(main)[axis.dim], out_shape[axis.dim]
        if m == 1:
            axes.append(axis.folded(axis.dim))
            is_global = True
            continue
        axes.append(reuse.field(axis, (n, m), lambda axis=axis, n=n, m=m: AxisField(
            axis.dim, axis.jump * Fraction(n, m), gather(axis, *_adaptive_taps(n, m)))))
    return [FieldInfo(tuple(axes), is_global)] * len(op.outputs)


def _adaptive_taps(n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    starts = (np.arange(m) * n) // m
    ends = -((-(np.arange(m) + 1) * n) // m)
    width = int((ends - starts).max())
    taps = starts[:, None] + np.arange(width)[None, :]
    return taps, taps < ends[:, None]


_SCALE_NAMES = {1: ("scales",), 2: ("scales_h", "scales_w"), 3: ("scales_d", "scales_h", "scales_w")}


@RULES.register(
    "aten.upsample_nearest1d", "aten.upsample_nearest2d", "aten.upsample_nearest3d", "aten._upsample_nearest_exact1d",
    "aten._upsample_nearest_exact2d", "aten._upsample_nearest_exact3d", "aten.upsample_linear1d",
    "aten.upsample_bilinear2d", "aten.upsample_trilinear3d", "aten.upsample_bicubic2d", "aten._upsample_bilinear2d_aa",
    "aten._upsample_bicubic2d_aa",
)
def _interpolate(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """Interpolation (nearest, bilinear, bicubic, ...): the taps torch's own kernel reads for each output
    unit (rf_interpolate.py: its coordinate map in closed form, O(n_out) per axis), so clamping at the borders
    and taps of weight 0 are exactly torch's; the stride scales by the op's coordinate scale."""
    main = walk.main(op)
    info = walk.field(main)
    in_shape, out_shape = walk.shape(main), walk.shape(op.outputs[0])
    count = len(in_shape) - 2
    align = op.args.get("align_corners")
    scales = op.args.get("scale_factors")
    if scales is None:
        scales = [op.args.get(name) for name in _SCALE_NAMES.get(count, ())]
    scales = list(scales) if scales else [None] * count
    mode = interpolation_mode(op.packet)
    axes, reuse = [], Reuse()

    def resized(axis: AxisField, n_in: int, n_out: int, scale: float | None) -> AxisField:
        taps, mask = interpolation_taps(mode, count, n_in, n_out, align, scale)
        return AxisField(axis.dim, axis.jump * _coordinate_scale(n_in, n_out, align, scale), gather(axis, taps, mask))

    for axis in info.axes:
        if axis.dim is None or axis.dim < 2 or not axis.tabled:
            axes.append(axis)
            continue
        params = (in_shape[axis.dim], out_shape[axis.dim], scales[axis.dim - 2])
        axes.append(reuse.field(axis, params, lambda axis=axis, params=params: resized(axis, *params)))
    return [FieldInfo(tuple(axes), info.is_global)] * len(op.outputs)


def _coordinate_scale(n_in: int, n_out: int, align: bool | None, scale: float | None) -> Fraction:
    """Input units per output unit, as torch maps coordinates (area_pixel_compute_scale)."""
    if align:
        return Fraction(n_in - 1, n_out - 1) if n_out > 1 else Fraction(0)
    if scale:
        return 1 / Fraction(scale).limit_denominator(1 << 20)
    return Fraction(n_in, n_out)


def _pad_pairs(pads: Sequence[int], rank: int) -> dict[int, int]:
    """F.pad order (last dim first, before/after pairs) -> {dim: padding before}."""
    return {rank - 1 - i: int(pads[2 * i]) for i in range(len(pads) // 2)}


def pad_pairs(op: OpRecord, rank: int) -> tuple[dict[int, int], set[int]]:
    """The padding before each padded dim, and the dims padded at either end (F.pad's pairs, last dim first)."""
    pads = op.args.get("pad") or op.args.get("padding") or []
    padded = {rank - 1 - i for i in range(len(pads) // 2) if pads[2 * i] or pads[2 * i + 1]}
    return _pad_pairs(pads, rank), padded


@RULES.register(*(f"aten.{kind}_pad{n}d" for kind in ("reflection", "replication") for n in (1, 2, 3)))
@follows_layout("any")
def plain_pad(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """Constant padding adds virtual units (unclipped coordinates, like a conv's padding); reflection and
    replication read real units. Padding only dims that hold no image position (a channel, as EfficientViT pads
    its values with a 1) keeps tokens and windows as they are."""
    main = walk.main(op)
    before, padded = pad_pairs(op, len(walk.shape(main)))
    if any(a.pieces and {d for d, _, _ in a.pieces} & padded for a in walk.field(main).axes):
        raise NoRule("it pads a dim that holds image positions spread over several dims (tokens, windows)")
    mode = "reflect" if "reflection" in op.packet else "replicate" if "replication" in op.packet else "constant"

    def per_dim(dim: int, n_in: int, n_out: int) -> tuple[np.ndarray, Fraction] | None:
        if dim not in before:
            return None
        source = np.arange(n_out) - before[dim]
        if mode == "reflect":
            period = 2 * (n_in - 1) if n_in > 1 else 1
            source = np.abs(source) % period
            source = np.where(source >= n_in, period - source, source)
        elif mode == "replicate":
            source = np.clip(source, 0, n_in - 1)
        return source, Fraction(1)

    return [index_map(walk, op, per_dim)] * len(op.outputs)


def plain_slice(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    main = walk.main(op)
    rank = len(walk.shape(main))
    target = op.args.get("dim", 0) % rank
    start, step = op.args.get("start"), op.args.get("step") or 1

    def per_dim(dim: int, n_in: int, n_out: int) -> tuple[np.ndarray, Fraction] | None:
        if dim != target:
            return None
        first = 0 if start is None else (start + n_in if start < 0 else start)
        first = min(max(first, 0), n_in)
        return first + np.arange(n_out) * step, Fraction(step)

    return [index_map(walk, op, per_dim)] * len(op.outputs)


@RULES.register("aten.flip")
@follows_layout("dims")
def _flip(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    main = walk.main(op)
    rank = len(walk.shape(main))
    dims = {d % rank for d in ints(op.args.get("dims"), 1, 0)}

    def per_dim(dim: int, n_in: int, n_out: int) -> tuple[np.ndarray, Fraction] | None:
        return (n_in - 1 - np.arange(n_out), Fraction(-1)) if dim in dims else None

    return [index_map(walk, op, per_dim)] * len(op.outputs)


@RULES.register("aten.pixel_shuffle", "aten.pixel_unshuffle")
def _pixel_shuffle(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """pixel_shuffle(r): output unit o comes from input unit o // r; pixel_unshuffle(r): from o·r .. o·r+r-1."""
    main = walk.main(op)
    rank = len(walk.shape(main))
    shuffle = op.packet == "aten.pixel_shuffle"
    r = int(op.args.get("upscale_factor") or op.args.get("downscale_factor"))

    def per_dim(dim: int, n_in: int, n_out: int) -> tuple[np.ndarray, Fraction] | None:
        if dim < rank - 2:
            return None
        units = np.arange(n_out)
        if shuffle:
            return units // r, Fraction(1, r)
        return units[:, None] * r + np.arange(r)[None, :], Fraction(r)

    return [index_map(walk, op, per_dim)] * len(op.outputs)
