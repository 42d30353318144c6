"""In-place writes into views: `pad[..., :h, :w].copy_(img)` (torchvision's detection transform batches its images
this way), `x[:, :c] += y`, `v.zero_()`. The trace gives the written view a new version but the base tensor keeps
its id, so without this the base's later readers would see the field it had before the write (none, for a batch
made by `new_full`): every field after it would be blank, with no reason.

After an in-place op the walk asks `written_bases` for the new field of each base up the view chain: a slice,
narrow, select, unbind, split or chunk writes its units of the base (replacing their field where the write
covers the base's other dims, a union with the old field where it does not), and a view that covers the whole
base (view, reshape, squeeze / unsqueeze, permute / transpose, alias, detach) gives the base the written field
through the inverse view. Any other view makes the base unknown from there on, with the reason."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from inspectlab.analysis.rf_base import RULES
from inspectlab.analysis.rf_fields import EMPTY, AxisField, FieldInfo, NoRule
from inspectlab.analysis.rf_gather import union
from inspectlab.tracing.records import OpRecord

if TYPE_CHECKING:
    from inspectlab.analysis.rf_base import WalkView

_WHOLE_VIEWS = {"aten.view", "aten._unsafe_view", "aten.reshape", "aten._reshape_alias", "aten.view_as",
                "aten.unsqueeze", "aten.squeeze", "aten.alias", "aten.detach", "aten.permute", "aten.transpose",
                "aten.t", "aten.swapaxes", "aten.swapdims", "aten.movedim"}
_PART_VIEWS = {"aten.slice", "aten.narrow", "aten.select", "aten.unbind", "aten.split", "aten.split_with_sizes",
               "aten.chunk"}


def written_bases(walk: WalkView, op: OpRecord) -> list[tuple[int, FieldInfo]]:
    """(base tensor id, its field after `op`) for each base up the view chains of the tensors `op` wrote."""
    tensors, ops = walk.trace.tensors, walk.trace.ops
    changes: list[tuple[int, FieldInfo]] = []
    for written in op.outputs:
        info = walk.field(written)
        view = tensors[written].alias_of
        while view is not None and tensors[view].alias_of is not None and tensors[view].producer is not None:
            producer = ops[tensors[view].producer]  # type: ignore[index]
            base = tensors[view].alias_of
            if producer.inplace:  # an earlier version of the same view
                view = base
                continue
            try:
                info = _base_field(walk, producer, view, base, info)  # type: ignore[arg-type]
            except NoRule as exc:
                info = FieldInfo(unknown=f"an in-place write into a view made by {producer.packet} is not followed: "
                                         f"{exc} (op #{op.index})")
            changes.append((base, info))  # type: ignore[arg-type]
            view = base
    return changes


class _Written:
    """The walk, with the field of the view just written replaced: the inverse view reads it."""

    def __init__(self, walk: WalkView, view: int, info: FieldInfo) -> None:
        self.walk, self.view, self.info = walk, view, info
        self.trace = walk.trace

    def __getattr__(self, name: str) -> object:
        return getattr(self.walk, name)

    def field(self, tensor_id: int | None) -> FieldInfo:
        return self.info if tensor_id == self.view else self.walk.field(tensor_id)


def _base_field(walk: WalkView, producer: OpRecord, view: int, base: int, written: FieldInfo) -> FieldInfo:
    if producer.packet in _WHOLE_VIEWS:
        if written.constant or written.unknown:
            return written
        base_shape = walk.shape(base)
        if producer.packet == "aten.permute":
            order = [d % len(base_shape) for d in producer.args["dims"]]
            inverse = replace(producer, args={"dims": [order.index(d) for d in range(len(order))]})
        elif producer.packet in ("aten.transpose", "aten.t", "aten.swapaxes", "aten.swapdims"):
            inverse = producer
        elif producer.packet == "aten.movedim":
            raise NoRule("movedim")
        else:
            inverse = replace(producer, name="aten.view.default", args={"size": list(base_shape)})
        inverse = replace(inverse, tensor_args={"self": view}, inputs=[view], outputs=[base])
        rule = RULES.get(inverse.packet)
        assert rule is not None
        return rule(_Written(walk, view, written), inverse)[0]  # type: ignore[arg-type]
    if producer.packet not in _PART_VIEWS:
        raise NoRule(f"a view by {producer.packet}")
    return _scatter(walk, producer, view, base, written)


def _part(walk: WalkView, producer: OpRecord, view: int, base: int) -> tuple[int, np.ndarray | int]:
    """The dim of the base a part-view cuts, and the base's indices along it the view holds (an int: a select)."""
    rank = len(walk.shape(base))
    dim = int(producer.args.get("dim", 0)) % rank
    n = walk.shape(base)[dim]
    packet = producer.packet
    if packet == "aten.select" or packet == "aten.unbind":
        index = producer.outputs.index(view) if packet == "aten.unbind" else int(producer.args.get("index", 0))
        return dim, index % n
    if packet in ("aten.split", "aten.split_with_sizes", "aten.chunk"):
        position = producer.outputs.index(view)
        start = sum(walk.shape(t)[dim] for t in producer.outputs[:position])
        return dim, start + np.arange(walk.shape(view)[dim])
    start = producer.args.get("start") or 0
    start = min(max(start + n if start < 0 else start, 0), n)
    step = int(producer.args.get("step") or 1)
    return dim, start + np.arange(walk.shape(view)[dim]) * step


def _scatter(walk: WalkView, producer: OpRecord, view: int, base: int, written: FieldInfo) -> FieldInfo:
    """The base's field after a write into a part of it: the written units replaced (unioned with the old field
    where the part does not cover the base's other dims)."""
    old = walk.field(base)
    if old.unknown or written.unknown or (written.constant and old.constant):
        return old if old.unknown or not written.unknown else FieldInfo(unknown=written.unknown)
    dim, indices = _part(walk, producer, view, base)
    selected = isinstance(indices, int)
    base_shape = walk.shape(base)
    whole = (not selected and len(indices) == base_shape[dim]) or (selected and base_shape[dim] == 1)

    def base_dim(d: int | None) -> int | None:  # a dim of the view, in the base
        return None if d is None else d + 1 if selected and d >= dim else d

    template = old if not old.constant else written
    axes = []
    for k in range(len(template.axes)):
        before = old.axes[k] if not old.constant else None
        after = written.axes[k] if not written.constant else None
        if any(a is not None and (a.pieces or not a.tabled) for a in (before, after)):
            raise NoRule("an image axis spread over several dims, or without a per-unit table")
        here = before.dim if before is not None else base_dim(after.dim)  # type: ignore[union-attr]
        n = base_shape[here]  # type: ignore[index]
        table = before.table if before is not None else np.tile(EMPTY[:, None], (1, n))
        new = after.table if after is not None else np.tile(EMPTY[:, None], (1, walk.shape(view)[dim] if not
                                                                            selected and here == dim else n))
        if here == dim:
            if selected:
                raise NoRule("a write into one row of an image axis")
            table = table.copy()  # type: ignore[union-attr]
            table[:, indices] = new
        else:
            table = new if whole else union([table, new])  # type: ignore[list-item]
        jumps = [a.jump for a in (before, after) if a is not None]
        axes.append(AxisField(here, max(jumps, key=abs), table))
    is_global = written.is_global or (not whole and old.is_global)
    return FieldInfo(tuple(axes), is_global, flags=tuple(dict.fromkeys(old.flags + written.flags)))
