"""Receptive-field rules of ops that move elements without mixing them: select, split, cat, stack,
reshape, expand, permute. An image axis keeps its table and moves to another dim, or is spread over several
dims (AxisField.pieces: tokens, NHWC rows of a Linear, windows) and gathered back, or is folded away.

A view keeps the elements' order, so each piece of an axis (digit (index // inner) % count along its dim)
occupies a range of flat strides [S·inner, S·inner·count), S the product of the later dims' sizes; the output
dims that cover that range hold its new pieces. Where a range does not split evenly at the output dims'
boundaries the walk cannot follow it, and the field is unknown from there on (never a guess). `layout_guard`
does the same for every op whose rule does not follow pieces."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from fractions import Fraction

import numpy as np

from inspectlab.analysis.rf_base import LAYOUT_AWARE, RULES, Rule, WalkView, follows_layout, index_map, ints
from inspectlab.analysis.rf_fields import EMPTY, AxisField, FieldInfo, NoRule, Pieces, Slot, aligned_dims
from inspectlab.analysis.rf_gather import block_union
from inspectlab.tracing.records import OpRecord

# --------------------------------------------------------------------------------------------------
# image axes spread over several dims


def pieces_of(axis: AxisField) -> Pieces:
    """The pieces of an axis with a per-unit table: its own, or one along `dim` (none for a single unit)."""
    if axis.pieces:
        return axis.pieces
    assert axis.tabled and axis.dim is not None
    return ((axis.dim, 1, axis.units),) if axis.units > 1 else ()


def laid_out(axis: AxisField, pieces: Pieces, shape: Sequence[int], slot: Slot | None = None) -> AxisField:
    """`axis` over `pieces` of a tensor of `shape` (positions of `slot`, if given: rf_fields.Slot): adjacent pieces
    of one dim joined, plain (along one dim, `pieces` None) where one piece is a whole dim. A slot with no other
    token is no slot: its pieces are then pieces of its dim."""
    if slot is not None and slot.start == 0 and slot.length == slot.size:
        pieces, slot = tuple((slot.dim, slot.inner * inner, count) for _, inner, count in pieces), None
    joined: list[tuple[int, int, int]] = []
    for dim, inner, count in pieces:
        if count == 1:
            continue
        if joined and joined[-1][0] == dim and joined[-1][1] == inner * count:
            joined[-1] = (dim, inner, joined[-1][2] * count)
        else:
            joined.append((dim, inner, count))
    if slot is None and len(joined) == 1 and joined[0][1] == 1 and shape[joined[0][0]] == joined[0][2]:
        return axis.relaid(joined[0][0], None)
    if not joined:
        raise NoRule("an image axis lost its units")
    return axis.relaid(None, tuple(joined), slot)


def reshaped(axis: AxisField, in_shape: Sequence[int], out_shape: Sequence[int]) -> AxisField:
    """An axis with a per-unit table after a view from `in_shape` to `out_shape`. The tokens of a Slot move as
    one piece (a view that splits them is not followed); its positions' pieces go with them."""
    if axis.slot is None:
        return laid_out(axis, reshape_pieces(pieces_of(axis), in_shape, out_shape), out_shape)
    slot = axis.slot
    moved = reshape_pieces(((slot.dim, slot.inner, slot.size),), in_shape, out_shape)
    if len(moved) != 1:
        raise NoRule(f"the view from {list(in_shape)} to {list(out_shape)} splits tokens with and without a position")
    dim, inner, _ = moved[0]
    return laid_out(axis, tuple((dim, i, c) for _, i, c in axis.pieces or ()), out_shape,
                    slot._replace(dim=dim, inner=inner))


def coarsened(axis: AxisField, dims: set[int]) -> AxisField:
    """An axis spread over several dims, once the digits of its pieces on `dims` are summed over (a Linear over
    the channels of timm's PatchMerging, which hold each 2×2 cell's positions): each unit of the remaining digits
    reads the units of its cell, a unit `block` units wide, so the stride grows by `block`. Only where those
    digits are the least significant (the positions inside a cell), else NoRule."""
    pieces = axis.pieces or ()
    mixed = [d in dims for d, _, _ in pieces]
    if axis.slot is not None or not any(mixed) or mixed != sorted(mixed):
        raise NoRule("it sums over part of an image axis spread over several dims, not over a cell of it")
    counts = [c for _, _, c in pieces]
    block = math.prod(c for c, m in zip(counts, mixed, strict=True) if m)
    table = block_union(axis.per_unit, counts, mixed)[:, ::block]  # type: ignore[arg-type]
    kept = tuple(p for p, m in zip(pieces, mixed, strict=True) if not m)
    return AxisField(None, axis.jump * block, table, None, kept)


def remapped(axis: AxisField, new_dim: Callable[[int], int | None]) -> AxisField:
    """The axis with each of its dims d now at new_dim(d) (None: gone; a piece cannot go)."""
    if axis.pieces:
        pieces = []
        for dim, inner, count in axis.pieces:
            new = new_dim(dim)
            if new is None:
                raise NoRule("an image axis spread over several dims would lose a piece")
            pieces.append((new, inner, count))
        slot = axis.slot._replace(dim=pieces[0][0]) if axis.slot else None
        return axis.relaid(None, tuple(pieces), slot)
    return axis if axis.dim is None else axis.moved(new_dim(axis.dim))


def _flat_strides(shape: Sequence[int]) -> list[int]:
    return [math.prod(shape[d + 1:]) for d in range(len(shape))]


def reshape_pieces(pieces: Pieces, in_shape: Sequence[int], out_shape: Sequence[int]) -> Pieces:
    """The pieces of an axis after a view from `in_shape` to `out_shape` (same element order)."""
    s_in, s_out = _flat_strides(in_shape), _flat_strides(out_shape)
    result = []
    for dim, inner, count in pieces:
        low, high = s_in[dim] * inner, s_in[dim] * inner * count
        for e, size in enumerate(out_shape):
            start, end = max(low, s_out[e]), min(high, s_out[e] * size)
            if size == 1 or start >= end:
                continue
            if start % low or start % s_out[e] or end % start or (s_out[e] * size) % end:
                raise NoRule(f"the view from {list(in_shape)} to {list(out_shape)} splits an image axis unevenly")
            result.append((e, start // s_out[e], end // start))
    return tuple(result)


def acting_dims(op: OpRecord, rank: int) -> set[int]:
    """The dims an op with a `dim`/`dims` argument works along (torch's default where none is recorded)."""
    value = op.args.get("dims", op.args.get("dim", op.args.get("axis")))
    if value is None or value == []:
        value = -1 if op.packet == "aten.glu" else 0
    return {d % rank for d in ints(value, 1, 0)} if rank else set()


def held(axis: AxisField) -> set[int]:
    """The dims an axis's positions lie along (its pieces', or its dim where it has a per-unit table of more than
    one unit: a folded axis or a single unit carried by a dim has no positions to mix)."""
    if axis.pieces:
        return {d for d, _, _ in axis.pieces}
    return {axis.dim} if axis.tabled and axis.dim is not None and axis.units > 1 else set()


def layout_guard(walk: WalkView, op: OpRecord, rule: Rule) -> None:
    """Raise NoRule where an input has an image axis spread over several dims and the rule cannot follow it."""
    _guard(walk, op, LAYOUT_AWARE.get(rule))


def dims_guard(walk: WalkView, op: OpRecord) -> None:
    """layout_guard for a rule that follows pieces on the dims it does not work along (kind "dims")."""
    _guard(walk, op, "dims")


def _guard(walk: WalkView, op: OpRecord, kind: str | None) -> None:
    if kind == "any":
        return
    for tensor in op.inputs:
        spread = {d for a in walk.field(tensor).axes if a.pieces for d, _, _ in a.pieces}
        if not spread:
            continue
        if kind is None:
            raise NoRule("its input has image axes spread over several dims (tokens, windows, rows of a linear "
                         "layer), which the walk does not follow through this op")
        if spread & acting_dims(op, len(walk.shape(tensor))):
            raise NoRule("it works along a dim that holds image positions spread over several dims (tokens, "
                         "windows)")


def plain_select(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """select(dim, index): a spatial axis selected at one unit keeps that unit's field as a summary."""
    main = walk.main(op)
    rank = len(walk.shape(main))
    target, index = op.args.get("dim", 0) % rank, op.args.get("index", 0)
    info = walk.field(main)
    axes = []
    for axis in info.axes:
        if axis.pieces:
            axes.append(remapped(axis, lambda d: d if d < target else d - 1))
        elif axis.dim is None or axis.dim < target:
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


def plain_split(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """split / split_with_sizes / unbind / chunk: each output is a slice (or a select) of the input."""
    main = walk.main(op)
    rank = len(walk.shape(main))
    target = op.args.get("dim", 0) % rank
    results, offset = [], 0
    for position, out in enumerate(op.outputs):
        out_shape = walk.shape(out)
        if len(out_shape) < rank:  # unbind: selects
            fake = replace(op, args={"dim": target, "index": position}, outputs=[out])
            results.extend(plain_select(walk, fake))
            continue
        start = offset

        def per_dim(dim: int, n_in: int, n_out: int, start: int = start) -> tuple[np.ndarray, Fraction] | None:
            return (start + np.arange(n_out), Fraction(1)) if dim == target else None

        results.append(index_map(walk, op, per_dim, main, position))
        offset += out_shape[target]
    return results


def plain_cat(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """cat along channels: union of the inputs' fields (a merge); along an image axis: tables end to end."""
    parts = op.tensor_args.get("tensors")
    if not isinstance(parts, list):
        raise NoRule("no tensor list")
    out_shape = walk.shape(op.outputs[0])
    rank = len(out_shape)
    target = op.args.get("dim", 0) % rank
    parts = [t for t in parts if walk.shape(t) != (0,)]  # legacy empty tensors are skipped by torch
    live = [walk.field(t) for t in parts if not walk.field(t).constant]
    spatial = any(a.tabled and a.dim == target for f in live for a in f.axes)
    if not spatial:
        return [walk.merge(op, [(walk.field(t), {d: d for d in range(rank)}) for t in parts], out_shape)]
    axes = []
    for k, reference in enumerate(live[0].axes):
        if reference.dim != target or not reference.tabled:
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
@follows_layout("any")
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
@follows_layout("any")
def _reshape(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """view / reshape / flatten / unflatten / squeeze / unsqueeze: element order is kept, so an image
    axis keeps its table: along the output dim that has its size and the same elements after it, else spread
    over the output dims that now hold its pieces (`reshape_pieces`). A single unit or a folded axis moves to
    the output dim that holds it."""
    main = walk.main(op)
    in_shape, out_shape = walk.shape(main), walk.shape(op.outputs[0])

    def inner(shape: Sequence[int], dim: int) -> int:
        return math.prod(shape[dim + 1:])

    taken: set[int] = set()  # dims given to a single unit: two axes never share one (size-1 dims are ambiguous)

    def moved(axis: AxisField) -> AxisField:
        if axis.pieces or (axis.tabled and axis.dim is not None and 1 < axis.units == in_shape[axis.dim]):
            return reshaped(axis, in_shape, out_shape)
        if axis.dim is None:
            return axis
        n, after = in_shape[axis.dim], inner(in_shape, axis.dim)
        for e in range(len(out_shape)):
            if out_shape[e] == n and inner(out_shape, e) == after and (axis.tabled or n > 1) and e not in taken:
                taken.add(e)
                return axis.moved(e)
        holder = next((e for e in range(len(out_shape)) if inner(out_shape, e) <= after), None)
        if holder is not None and out_shape[holder] == 1:
            holder = None
        return axis.folded(holder) if axis.tabled else axis.moved(holder)

    return [_remap(walk.field(main), moved)] * len(op.outputs)


@RULES.register("aten.expand", "aten.expand_as")
@follows_layout("any")
def _expand(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    main = walk.main(op)
    out_shape = walk.shape(op.outputs[0])
    dim_map = aligned_dims(len(walk.shape(main)), len(out_shape))
    return [walk.merge(op, [(walk.field(main), dim_map)], out_shape)] * len(op.outputs)


@RULES.register("aten.permute", "aten.transpose", "aten.transpose_", "aten.t", "aten.swapaxes", "aten.swapdims",
                "aten.movedim")
@follows_layout("any")
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
    return [_remap(walk.field(main), lambda a: remapped(a, new_dim.__getitem__))] * len(op.outputs)
