"""Receptive-field rules along a token dim: tokens with a grid position beside tokens without one (ViT's class
token, DeiT's distillation token, register tokens), and the index ops that add or remove them.

- `cat` of patch tokens (an image axis spread over the token dim: rf_fields.AxisField.pieces) with tokens that
  depend on no pixel (a parameter) or on every pixel (a pooled summary) records where the positions are
  (rf_fields.Slot): the patch tokens keep their fields, the others have none, or are global.
- a `slice` that keeps every position (`x[:, 1:]`) gives the grid of tokens back, and a later view back to N×C×H×W
  restores the per-dim field; a `select` (`x[:, 0]`), `split` or `unbind` of tokens without a position gives
  nothing, or a global field with the local one of the patch path beside it (after attention), of a patch token
  that token's field.
- anything else along such a dim (a slice through the positions, a second tensor with positions) is not
  followed: unknown, with the reason.

Along dims that hold no positions these ops are the plain index maps of rf_layout.py and rf_windows.py."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from inspectlab.analysis.rf_base import RULES, WalkView, follows_layout
from inspectlab.analysis.rf_fields import CONSTANT, AxisField, FieldInfo, NoRule, Slot
from inspectlab.analysis.rf_layout import dims_guard, held, laid_out, plain_cat, plain_select, plain_split, remapped
from inspectlab.analysis.rf_windows import pad_pairs, plain_pad, plain_slice
from inspectlab.tracing.records import OpRecord


def _on(info: FieldInfo, dim: int) -> list[AxisField]:
    """The axes of `info` with positions spread over `dim` (pieces)."""
    return [a for a in info.axes if a.pieces and dim in held(a)]


def _tokens(walk: WalkView, op: OpRecord, tensor: int, dim: int) -> Slot | None:
    """The Slot of the positions along `dim` (None: every token is a position); NoRule where the positions share
    `dim` with other dims' digits or its tokens are merged with another dim."""
    info = walk.field(tensor)
    axes = _on(info, dim)
    if any(held(a) != {dim} for a in axes):
        raise NoRule("it works along a dim that holds image positions and also lies along other dims (windows)")
    slots = {a.slot for a in axes}
    if len(slots) != 1:
        raise NoRule("the image axes lie differently along the token dim")
    slot = slots.pop()
    n = walk.shape(tensor)[dim]
    if slot is None:
        if math.prod(c for a in axes for _, _, c in a.pieces or ()) != n:
            raise NoRule("the token dim holds more than the positions (heads or a batch merged into it)")
        return None
    if slot.inner != 1 or slot.size != n:
        raise NoRule("the tokens with and without a position share their dim with another dim")
    return slot


def _extras(info: FieldInfo, slot: Slot | None, dim: int) -> FieldInfo:
    """The field of tokens without a position: none, or global with the local field of the patch path beside."""
    if slot is None:
        raise NoRule("it picks tokens that are not all positions")
    if not slot.extras_global:
        if any(not (a.pieces and dim in held(a)) for a in info.axes):
            raise NoRule("tokens without a position, in a tensor with positions along other dims")
        return CONSTANT
    return FieldInfo(tuple(a.folded(None) if a.pieces and dim in held(a) else a for a in info.axes), True)


def _positions(walk: WalkView, op: OpRecord, main: int, dim: int, first: int, stop: int, step: int,
               out: int) -> FieldInfo:
    """A slice [first, stop) by `step` along a token dim with positions: every position (and maybe other tokens),
    or tokens without a position only."""
    info = walk.field(main)
    slot = _tokens(walk, op, main, dim)
    start, end = (0, walk.shape(main)[dim]) if slot is None else (slot.start, slot.start + slot.length)
    if stop <= start or first >= end:
        return _extras(info, slot, dim)
    if step != 1 or first > start or stop < end:
        raise NoRule("it slices part of the positions of a token dim")
    if slot is None:  # all of them: a slice of nothing
        return info
    out_shape = walk.shape(out)
    axes = []
    for axis in info.axes:
        if axis.pieces and dim in held(axis):
            moved = slot._replace(size=stop - first, start=start - first)
            axes.append(laid_out(axis, axis.pieces, out_shape, moved))
        else:
            axes.append(axis)
    return FieldInfo(tuple(axes), info.is_global)


def _picked(walk: WalkView, op: OpRecord, main: int, dim: int, index: int) -> FieldInfo:
    """A select of one token along a token dim with positions."""
    info = walk.field(main)
    slot = _tokens(walk, op, main, dim)
    n = walk.shape(main)[dim]
    position = index % n - (0 if slot is None else slot.start)
    if slot is not None and not 0 <= position < slot.length:
        result = _extras(info, slot, dim)
        return replace(result, axes=tuple(_without(a, dim) for a in result.axes))
    axes = []
    for axis in info.axes:
        if axis.pieces and dim in held(axis):
            unit, weight = 0, axis.units
            for _, inner, count in axis.pieces:
                weight //= count
                unit += ((position // inner) % count) * weight
            axes.append(AxisField(None, axis.jump, axis.per_unit[:, [unit]]).folded(None))  # type: ignore[index]
        else:
            axes.append(_without(axis, dim))
    return FieldInfo(tuple(axes), info.is_global)


def _without(axis: AxisField, dim: int) -> AxisField:
    """An axis that does not lie along `dim`, once `dim` is selected away."""
    if axis.pieces:
        return remapped(axis, lambda d: d if d < dim else d - 1)
    return axis.moved(axis.dim - 1) if axis.dim is not None and axis.dim > dim else axis


def _bounds(op: OpRecord, n: int) -> tuple[int, int, int]:
    """slice / narrow arguments as [first, stop) by step within n."""
    start = op.args.get("start")
    first = 0 if start is None else (start + n if start < 0 else start)
    if op.packet == "aten.narrow":
        stop = first + int(op.args.get("length", 0))
    else:
        end = op.args.get("end")
        stop = n if end is None else (end + n if end < 0 else end)
    first, stop = min(max(first, 0), n), min(max(stop, 0), n)
    return first, max(stop, first), int(op.args.get("step") or 1)


@RULES.register("aten.slice", "aten.narrow")
@follows_layout("any")
def _slice(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    main = walk.main(op)
    dim = op.args.get("dim", 0) % len(walk.shape(main))
    if not _on(walk.field(main), dim):
        dims_guard(walk, op)
        return plain_slice(walk, op)
    first, stop, step = _bounds(op, walk.shape(main)[dim])
    return [_positions(walk, op, main, dim, first, stop, step, op.outputs[0])] * len(op.outputs)


@RULES.register("aten.select")
@follows_layout("any")
def _select(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    main = walk.main(op)
    dim = op.args.get("dim", 0) % len(walk.shape(main))
    if not _on(walk.field(main), dim):
        dims_guard(walk, op)
        return plain_select(walk, op)
    return [_picked(walk, op, main, dim, int(op.args.get("index", 0)))] * len(op.outputs)


@RULES.register("aten.split", "aten.split_with_sizes", "aten.unbind", "aten.chunk", "aten.unsafe_split",
                "aten.unsafe_split_with_sizes", "aten.unsafe_chunk")
@follows_layout("any")
def _split(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """split / unbind / chunk: each output is a slice (or a select) of the input."""
    main = walk.main(op)
    rank = len(walk.shape(main))
    dim = op.args.get("dim", 0) % rank
    if not _on(walk.field(main), dim):
        dims_guard(walk, op)
        return plain_split(walk, op)
    results, offset = [], 0
    for position, out in enumerate(op.outputs):
        size = walk.shape(out)[dim] if len(walk.shape(out)) == rank else None
        if size is None:
            results.append(_picked(walk, op, main, dim, position))
            continue
        results.append(_positions(walk, op, main, dim, offset, offset + size, 1, out))
        offset += size
    return results


@RULES.register("aten.cat", "aten.concat")
@follows_layout("any")
def _cat(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """cat along a token dim with positions: tokens without a position join the patch tokens (Slot)."""
    parts = op.tensor_args.get("tensors")
    if not isinstance(parts, list):
        raise NoRule("no tensor list")
    out_shape = walk.shape(op.outputs[0])
    dim = op.args.get("dim", 0) % len(out_shape)
    parts = [t for t in parts if walk.shape(t) != (0,)]  # legacy empty tensors are skipped by torch
    carriers = [t for t in parts if _on(walk.field(t), dim)]
    if not carriers:
        dims_guard(walk, op)
        return plain_cat(walk, op)
    if len(carriers) > 1:
        raise NoRule("it joins several tensors with image positions along one token dim")
    return [_token_cat(walk, op, parts, carriers[0], dim, out_shape)]


def _token_cat(walk: WalkView, op: OpRecord, parts: Sequence[int], patches: int, dim: int,
               out_shape: Sequence[int]) -> FieldInfo:
    info = walk.field(patches)
    slot = _tokens(walk, op, patches, dim)
    offset = sum(walk.shape(t)[dim] for t in parts[:list(parts).index(patches)])
    others = [walk.field(t) for t in parts if t != patches and not walk.field(t).constant]
    for other in others:
        if not other.is_global or any(a.pieces or (a.tabled and a.units > 1) for a in other.axes):
            raise NoRule("a token without a position that depends on the input locally")
    extras_global = bool(others) or (slot is not None and slot.extras_global)
    n = walk.shape(patches)[dim]
    if slot is None:
        slot = Slot(dim, 1, out_shape[dim], offset, n, extras_global)
    else:
        slot = slot._replace(size=out_shape[dim], start=slot.start + offset, extras_global=extras_global)
    axes = tuple(a.relaid(None, a.pieces, slot) if a.pieces and dim in held(a) else a for a in info.axes)
    return FieldInfo(axes, info.is_global or bool(others))


@RULES.register("aten.constant_pad_nd")
@follows_layout("any")
def _pad(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """Constant padding (rf_windows.plain_pad); along a token dim with positions it adds tokens without a position
    (CoaT pads a zero token in front of its patch tokens where its class token goes)."""
    main = walk.main(op)
    rank = len(walk.shape(main))
    before, padded = pad_pairs(op, rank)
    info = walk.field(main)
    token_dims = {d for d in padded if _on(info, d)}
    if not token_dims:
        return plain_pad(walk, op)
    if len(padded) != 1:
        raise NoRule("it pads a token dim with positions and another dim")
    (dim,) = token_dims
    slot = _tokens(walk, op, main, dim)
    if slot is not None and slot.extras_global:
        raise NoRule("it adds constant tokens beside global ones")
    n, size = walk.shape(main)[dim], walk.shape(op.outputs[0])[dim]
    if before[dim] < 0 or size < n + before[dim]:
        raise NoRule("a negative padding crops the tokens")
    moved = Slot(dim, 1, size, before[dim], n, False) if slot is None else slot._replace(
        size=size, start=slot.start + before[dim])
    axes = tuple(a.relaid(None, a.pieces, moved) if a.pieces and dim in held(a) else a for a in info.axes)
    return [FieldInfo(axes, info.is_global)] * len(op.outputs)
