"""Receptive-field rules of ops that move elements without mixing them: select, split, cat, stack,
reshape, expand, permute. An image axis keeps its table, moves to another dim, or is folded away."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from fractions import Fraction

import numpy as np

from inspectlab.analysis.rf_base import RULES, WalkView, index_map
from inspectlab.analysis.rf_fields import EMPTY, AxisField, FieldInfo, NoRule, aligned_dims
from inspectlab.tracing.records import OpRecord


@RULES.register("aten.select")
def _select(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """select(dim, index): a spatial axis selected at one unit keeps that unit's field as a summary."""
    main = walk.main(op)
    rank = len(walk.shape(main))
    target, index = op.args.get("dim", 0) % rank, op.args.get("index", 0)
    info = walk.field(main)
    axes = []
    for axis in info.axes:
        if axis.dim is None or axis.dim < target:
            axes.append(axis)
        elif axis.dim > target:
            axes.append(axis.moved(axis.dim - 1))
        elif axis.tabled:
            n = walk.shape(main)[target]
            single = AxisField(None, axis.jump, axis.table[:, [index % n]])  # type: ignore[index]
            axes.append(single.folded(None))
        else:
            axes.append(axis.moved(None))
    return [FieldInfo(tuple(axes), info.is_global)] * len(op.outputs)


@RULES.register("aten.split", "aten.split_with_sizes", "aten.unbind", "aten.chunk", "aten.unsafe_split",
                "aten.unsafe_split_with_sizes", "aten.unsafe_chunk")
def _split(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """split / split_with_sizes / unbind / chunk: each output is a slice (or a select) of the input."""
    main = walk.main(op)
    rank = len(walk.shape(main))
    target = op.args.get("dim", 0) % rank
    results, offset = [], 0
    for position, out in enumerate(op.outputs):
        out_shape = walk.shape(out)
        if len(out_shape) < rank:  # unbind: selects
            fake = replace(op, args={"dim": target, "index": position}, outputs=[out])
            results.extend(_select(walk, fake))
            continue
        start = offset

        def per_dim(dim: int, n_in: int, n_out: int, start: int = start) -> tuple[np.ndarray, Fraction] | None:
            return (start + np.arange(n_out), Fraction(1)) if dim == target else None

        results.append(index_map(walk, op, per_dim, main, position))
        offset += out_shape[target]
    return results


@RULES.register("aten.cat", "aten.concat")
def _cat(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """cat along channels: union of the inputs' fields (a merge); along an image axis: tables end to end."""
    parts = op.tensor_args.get("tensors")
    if not isinstance(parts, list):
        raise NoRule("no tensor list")
    out_shape = walk.shape(op.outputs[0])
    rank = len(out_shape)
    target = op.args.get("dim", 0) % rank
    parts = [t for t in parts if walk.shape(t) != (0,)]  # legacy empty tensors are skipped by torch
    live = [walk.field(t) for t in parts if not walk.field(t).constant]
    spatial = any(a.dim == target for f in live for a in f.axes)
    if not spatial:
        return [walk.merge(op, [(walk.field(t), {d: d for d in range(rank)}) for t in parts], out_shape)]
    axes = []
    for k, reference in enumerate(live[0].axes):
        if reference.dim != target:
            merged = walk.merge(op, [(replace(f, axes=(f.axes[k],)), {d: d for d in range(rank)}) for f in live],
                                out_shape)
            axes.append(merged.axes[0])
            continue
        pieces = []
        for t in parts:
            f = walk.field(t)
            n = walk.shape(t)[target]
            if f.constant:
                pieces.append(np.tile(EMPTY[:, None], (1, n)))
            elif not f.axes[k].tabled or f.axes[k].dim != target:
                raise NoRule("inputs do not all carry this image axis on the concatenated dim")
            else:
                pieces.append(f.axes[k].table)
        axes.append(AxisField(target, reference.jump, np.concatenate(pieces, axis=1)))
    return [FieldInfo(tuple(axes), any(f.is_global for f in live))]


@RULES.register("aten.stack")
def _stack(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    parts = op.tensor_args.get("tensors")
    if not isinstance(parts, list):
        raise NoRule("no tensor list")
    out_shape = walk.shape(op.outputs[0])
    target = op.args.get("dim", 0) % len(out_shape)
    shift = {d: d if d < target else d + 1 for d in range(len(out_shape) - 1)}
    return [walk.merge(op, [(walk.field(t), shift) for t in parts], out_shape)]


def _remap(info: FieldInfo, dim_of: Callable[[AxisField], AxisField]) -> FieldInfo:
    return FieldInfo(tuple(dim_of(a) for a in info.axes), info.is_global)


@RULES.register("aten.view", "aten._unsafe_view", "aten.reshape", "aten.flatten", "aten.unflatten", "aten.squeeze",
                "aten.squeeze_", "aten.unsqueeze", "aten.unsqueeze_", "aten._reshape_alias", "aten.view_as")
def _reshape(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """view / reshape / flatten / unflatten / squeeze / unsqueeze: element order is kept, so an image
    axis keeps its table where some output dim has its size and the same elements after it; otherwise it
    is folded into the output dim that now holds it (its per-unit table is summed up)."""
    main = walk.main(op)
    in_shape, out_shape = walk.shape(main), walk.shape(op.outputs[0])

    def inner(shape: Sequence[int], dim: int) -> int:
        return math.prod(shape[dim + 1:])

    def moved(axis: AxisField) -> AxisField:
        if axis.dim is None:
            return axis
        n, after = in_shape[axis.dim], inner(in_shape, axis.dim)
        for e in range(len(out_shape)):
            if out_shape[e] == n and inner(out_shape, e) == after and (axis.tabled or n > 1):
                return axis.moved(e)
        holder = next((e for e in range(len(out_shape)) if inner(out_shape, e) <= after), None)
        if holder is not None and out_shape[holder] == 1:
            holder = None
        return axis.folded(holder) if axis.tabled else axis.moved(holder)

    return [_remap(walk.field(main), moved)] * len(op.outputs)


@RULES.register("aten.expand", "aten.expand_as")
def _expand(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    main = walk.main(op)
    out_shape = walk.shape(op.outputs[0])
    dim_map = aligned_dims(len(walk.shape(main)), len(out_shape))
    return [walk.merge(op, [(walk.field(main), dim_map)], out_shape)] * len(op.outputs)


@RULES.register("aten.permute", "aten.transpose", "aten.transpose_", "aten.t", "aten.swapaxes", "aten.swapdims",
                "aten.movedim")
def _permute(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    main = walk.main(op)
    rank = len(walk.shape(main))
    if op.packet == "aten.permute":
        order = [d % rank for d in op.args["dims"]]
    else:
        order = list(range(rank))
        if op.packet in ("aten.t", "aten.numpy_T") or "dim0" not in op.args:
            order = order[::-1]
        else:
            a, b = op.args["dim0"] % rank, op.args["dim1"] % rank
            order[a], order[b] = order[b], order[a]
    new_dim = {old: new for new, old in enumerate(order)}
    return [_remap(walk.field(main), lambda a: a.moved(None if a.dim is None else new_dim[a.dim]))] * len(
        op.outputs)
