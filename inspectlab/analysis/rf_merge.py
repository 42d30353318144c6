"""Where paths meet (add, mul, cat of channels, a product's operands): the union of their fields, unit by unit,
with the shortest path kept, and a note when the inputs are not centred on the same pixels or have different
strides. Used by the walk (receptive_field.Walk.merge) for every rule that merges.

The stride of a merge whose inputs' strides differ is the one that fits its map best: the closest to the
input's size over the map's units, H0/n (among inputs with more than one unit; the first on a tie). Such merges
come from resizes: with `align_corners=True` an upsampled branch's units are (n-1)/(m-1) of its units apart, a
shade under the map's own spacing, and a resize between sizes that do not divide moves them a shade over it, so
the best fit is the branch at the map's own resolution (PSPNet's pyramid at 512 px: 8 px beside 256/63, 1024/189
and 1280/189; UNet's skips: 8 px beside 496/63; HRNet at 17 px: 4 px beside 24/5). The strides are listed in
the merge's note."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

from inspectlab.analysis.rf_checks import merge_problem
from inspectlab.analysis.rf_fields import CONSTANT, AxisField, FieldInfo, Inconsistent, NoRule, Pieces, Slot
from inspectlab.analysis.rf_gather import broadcast, centre_offset, union

Layout = int | tuple[Pieces, Slot | None]  # an output dim, or pieces (and the slot of their positions)
Note = Callable[[str, tuple[tuple[float, ...], ...]], None]  # (text, offsets) -> a "misaligned" note


def merge_fields(parts: Sequence[tuple[FieldInfo, dict[int, int]]], out_shape: Sequence[int], label: str,
                 note: Note, input_size: Sequence[int]) -> FieldInfo:
    """Union of several inputs' fields on the output's dims. `parts`: (field, {input dim: output dim}). An axis
    spread over several dims (pieces) merges with the same layout, or with a single broadcast unit; `label` names
    the op in the note `note` is called with; `input_size`: the analysed input's size per axis (for the stride)."""
    live = [(f, dim_map) for f, dim_map in parts if not f.constant]
    if not live:
        return CONSTANT
    count = len(live[0][0].axes)
    is_global = any(f.is_global for f, _ in live)
    axes: list[AxisField] = []
    offsets: list[list[float]] = [[] for _ in live]
    jumps: list[list[Fraction]] = []
    done: dict[tuple[Any, ...], tuple[dict[int, float], AxisField]] = {}
    for k in range(count):
        tabled: list[tuple[int, AxisField, Layout]] = []  # (part, axis, where its units lie in the output)
        folded: list[tuple[int, AxisField]] = []
        for p, (f, dim_map) in enumerate(live):
            axis = f.axes[k]
            if axis.pieces:
                if any(d not in dim_map for d, _, _ in axis.pieces):
                    raise NoRule("an image axis spread over several dims would lose a piece")
                slot = axis.slot._replace(dim=dim_map[axis.slot.dim], extras_global=False) if axis.slot else None
                tabled.append((p, axis, (tuple((dim_map[d], i, c) for d, i, c in axis.pieces), slot)))
                continue
            out_dim = dim_map.get(axis.dim) if axis.dim is not None else None
            if axis.tabled and out_dim is not None:
                tabled.append((p, axis, out_dim))
            else:
                folded.append((p, axis.moved(out_dim)))
        if not tabled:
            best = max((a for _, a in folded), key=lambda a: a.summary().size or -1)
            dims = {a.dim for _, a in folded if a.dim is not None}
            axes.append(best.moved(dims.pop() if len(dims) == 1 else None))
            for row in offsets:
                row.append(0.0)
            continue
        wheres = {w for _, a, w in tabled if a.units > 1} or {tabled[0][2]}  # a single unit broadcasts anywhere
        if len(wheres) > 1:
            raise NoRule("the inputs carry the same image axis on different dims")
        where = wheres.pop()
        n = out_shape[where] if isinstance(where, int) else math.prod(c for _, _, c in where[0])
        key = (n, tuple((p, id(a.packed), a.jump) for p, a, _ in tabled))
        if len(tabled) == 1 and tabled[0][1].units == n:  # one input: its field as it is
            done[key] = {tabled[0][0]: 0.0}, tabled[0][1]
        if key not in done:  # else: the same tables as another axis (H and W of a square image)
            tables = [broadcast(a.per_unit, n) for _, a, _ in tabled]  # type: ignore[arg-type]
            shifts = {p: centre_offset(tables[0], t) for (p, _, _), t in zip(tabled, tables, strict=True)}
            spread = [a.jump for _, a, _ in tabled if a.units > 1] or [a.jump for _, a, _ in tabled]
            fit = Fraction(input_size[k], n) if k < len(input_size) else Fraction(1)
            done[key] = shifts, AxisField(None, min(spread, key=lambda j: abs(abs(j) - fit)), union(tables))
        shifts, merged = done[key]
        for p, row in enumerate(offsets):
            row.append(shifts.get(p, 0.0))
        jumps.append([a.jump for _, a, _ in tabled])
        if isinstance(where, int):
            axes.append(merged.relaid(where, None))
        else:
            pieces, slot = where
            if slot is not None:
                slot = slot._replace(extras_global=_extras_global(live, tabled, folded))
            axes.append(merged.relaid(None, pieces, slot))
    _note_misaligned(label, offsets, jumps, note)
    result = FieldInfo(tuple(axes), is_global)
    problem = merge_problem([f for f, _ in live], result)
    if problem:
        raise Inconsistent(problem)
    return result


def _extras_global(live: Sequence[tuple[FieldInfo, dict[int, int]]], tabled: Sequence[tuple[int, AxisField, Any]],
                   folded: Sequence[tuple[int, AxisField]]) -> bool:
    """Whether the tokens without a position (rf_fields.Slot) of a merge's output see the whole input: one of its
    inputs' do, or an input that reaches every token (a broadcast) is global. A broadcast input with a local field
    would give them a field the walk cannot keep."""
    extras = any(a.slot.extras_global for _, a, _ in tabled if a.slot is not None)
    for p in [p for p, _ in folded] + [p for p, a, _ in tabled if a.units == 1 and not a.pieces]:
        if not live[p][0].is_global:
            raise NoRule("a tensor without positions is added to tokens with and without a position")
        extras = True
    return extras


def _note_misaligned(label: str, offsets: list[list[float]], jumps: list[list[Fraction]], note: Note) -> None:
    """One note per merge whose inputs have different strides or are centred on different pixels."""
    texts = []
    if any(len(set(per_axis)) > 1 for per_axis in jumps):
        texts.append("strides " + " vs ".join(
            "(" + ", ".join(str(j) for j in per_input) + ")" for per_input in zip(*jumps, strict=False)))
    if any(abs(v) > 1e-9 for row in offsets for v in row):
        texts.append("centres offset by " + ", ".join(
            "(" + ", ".join(f"{v:+g}" for v in row) + ")" for row in offsets) + " px")
    if texts:
        note(f"{label}: inputs " + "; ".join(texts), tuple(tuple(r) for r in offsets))
