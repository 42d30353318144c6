"""Receptive-field rules of ops that resample along image axes in other ways than a window or a resize: `roll`
(Swin's shifted windows), `unfold` / `im2col` (F.unfold, Tensor.unfold: a convolution's windows laid out as
columns), `grid_sample` (where it reads depends on the grid's values) and `as_strided` (what adaptive pooling to
size 1 records on the meta device for a channels-last input)."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import numpy as np

from inspectlab.analysis.rf_base import RULES, WalkView, follows_layout, index_map, ints
from inspectlab.analysis.rf_fields import AxisField, FieldInfo, NoRule, Reuse
from inspectlab.analysis.rf_gather import gather_window
from inspectlab.analysis.rf_layout import held, laid_out
from inspectlab.tracing.records import OpRecord

ROLL_FLAG = "a roll wraps around the border (aten.roll): units at one border read the other border's pixels"
SAMPLING_FLAG = ("data-dependent sampling (aten.grid_sampler): the pixels read depend on the grid's values, so "
                 "the field is counted as global")


@RULES.register("aten.roll")
@follows_layout("dims")
def _roll(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """roll(shifts, dims): output unit i reads input unit (i - shift) mod n: the same size, the centres shifted;
    where the shift is not a whole turn, units at one border read the other border (flagged)."""
    main = walk.main(op)
    rank = len(walk.shape(main))
    info = walk.field(main)
    dims = ints(op.args.get("dims"), 1, 0) if op.args.get("dims") else []
    if not dims:  # a roll of the flattened tensor
        if any(held(a) and a.units > 1 for a in info.axes):
            raise NoRule("a roll of the flattened tensor moves positions across image rows")
        return [info] * len(op.outputs)
    shifts = ints(op.args.get("shifts"), len(dims), 0)
    shift_of = {d % rank: s for d, s in zip(dims, shifts, strict=True)}
    in_shape = walk.shape(main)
    wrapped = [k for k, a in enumerate(info.axes)
               if a.tabled and a.dim in shift_of and shift_of[a.dim] % in_shape[a.dim]]
    if wrapped:
        shifts_text = ", ".join(str(shift_of[info.axes[k].dim]) for k in wrapped)  # type: ignore[index]
        walk.flag(op, f"roll by {shifts_text} along image axes {wrapped} wraps around the border", ROLL_FLAG)

    def per_dim(dim: int, n_in: int, n_out: int) -> tuple[np.ndarray, Fraction] | None:
        if dim not in shift_of:
            return None
        return (np.arange(n_out) - shift_of[dim]) % n_in, Fraction(1)

    return [index_map(walk, op, per_dim)] * len(op.outputs)


@RULES.register("aten.unfold")
@follows_layout("any")
def _unfold(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """Tensor.unfold(dimension, size, step): window o of the dim reads units o·step .. o·step + size - 1 (a
    pooling window); the offset inside the window becomes a new last dim, like a channel."""
    main = walk.main(op)
    rank = len(walk.shape(main))
    dim = int(op.args.get("dimension", 0)) % rank if rank else 0
    size, step = int(op.args["size"]), int(op.args["step"])
    info = walk.field(main)
    if any(a.pieces and dim in held(a) for a in info.axes):
        raise NoRule("it unfolds a dim that holds image positions spread over several dims")
    n_out = walk.shape(op.outputs[0])[dim] if rank else 1
    axes, reuse = [], Reuse()
    for axis in info.axes:
        if axis.tabled and axis.dim == dim:
            axes.append(reuse.field(axis, (n_out, size, step), lambda axis=axis: AxisField(
                dim, axis.jump * step, gather_window(axis, n_out, size, step, 0, 1))))
        else:
            axes.append(axis)
    return [FieldInfo(tuple(axes), info.is_global)] * len(op.outputs)


@RULES.register("aten.im2col")
def _im2col(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """im2col (F.unfold, nn.Unfold): column l = (oh·W_out + ow) holds the kernel's taps at (oh, ow), one channel
    per tap: per unit the window of a convolution with that kernel, stride, padding and dilation; the units
    lie on the last dim as pieces (H: inner W_out, count H_out; W: inner 1, count W_out)."""
    main = walk.main(op)
    in_shape, out_shape = walk.shape(main), walk.shape(op.outputs[0])
    kernel, dilation = ints(op.args.get("kernel_size"), 2, 1), ints(op.args.get("dilation"), 2, 1)
    padding, stride = ints(op.args.get("padding"), 2, 0), ints(op.args.get("stride"), 2, 1)
    sizes = [(in_shape[-2 + i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
             for i in range(2)]
    last = len(out_shape) - 1
    info = walk.field(main)
    axes, reuse = [], Reuse()
    for axis in info.axes:
        if not axis.tabled or axis.dim is None or axis.dim < len(in_shape) - 2:
            if axis.tabled and axis.dim is not None and axis.units > 1:
                raise NoRule("an image axis on a dim im2col folds into its channels")
            axes.append(axis)
            continue
        i = axis.dim - (len(in_shape) - 2)
        params = (sizes[i], kernel[i], stride[i], padding[i], dilation[i])
        windows = reuse.field(axis, params, lambda axis=axis, params=params: AxisField(
            axis.dim, axis.jump * params[2], gather_window(axis, *params)))
        inner = sizes[1] if i == 0 else 1
        if sizes[i] == 1:
            axes.append(windows.relaid(last, None))
        else:
            axes.append(laid_out(windows, ((last, inner, sizes[i]),), out_shape))
    return [FieldInfo(tuple(axes), info.is_global)] * len(op.outputs)


@RULES.register("aten.grid_sampler_2d", "aten.grid_sampler_3d", "aten.grid_sampler", "aten.cudnn_grid_sampler",
                "aten._grid_sampler_2d_cpu_fallback")
def _grid_sample(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """grid_sample: output unit (h, w) reads the input where grid[h, w] points, which the trace does not know (it
    depends on the grid's values): global, flagged, with the input's field kept beside as a summary; and the
    grid's own field where it depends on the input (a spatial transformer; exact, where the sampled image does
    not depend on the input)."""
    main = walk.main(op)
    grid = op.tensor_args.get("grid")
    out_shape = walk.shape(op.outputs[0])
    info = walk.field(main)
    parts = []
    if not info.constant:
        walk.flag(op, f"{op.packet} reads where its grid points: the field is data-dependent, counted as global",
                  SAMPLING_FLAG)
        parts.append((FieldInfo(tuple(a.folded(None) for a in info.axes), True), {}))
    if isinstance(grid, int) and not walk.field(grid).constant:
        rank = len(walk.shape(grid))  # (N, H, W, 2): its dims 1..rank-2 are the output's 2..
        parts.append((walk.field(grid), {0: 0, **{d: d + 1 for d in range(1, rank - 1)}}))
    merged = walk.merge(op, parts, out_shape)
    return [replace(merged, is_global=merged.is_global or not info.constant)] * len(op.outputs)


@RULES.register("aten.as_strided", "aten.as_strided_")
def _as_strided(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """as_strided: any map of the storage's elements. Followed where it cannot mix positions: the input has no
    image axis with more than one unit (AdaptiveAvgPool2d(1) on a channels-last input records a mean over H and W,
    then as_strided_ to restore the memory format), and it reads its own storage."""
    main = walk.main(op)
    info = walk.field(main)
    if any(a.units > 1 for a in info.axes):
        raise NoRule("it maps the elements of a tensor with image positions in a way the walk does not follow")
    tensor = walk.trace.tensors[main]
    if tensor.storage != main and walk.field(tensor.storage) != info:
        raise NoRule("it reads the storage of a larger tensor")
    out_rank = len(walk.shape(op.outputs[0]))
    same = out_rank == len(walk.shape(main))
    axes = tuple(a if same else a.moved(None) if not a.packed else a.folded(None) for a in info.axes)
    return [FieldInfo(axes, info.is_global)] * len(op.outputs)
