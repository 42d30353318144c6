"""Receptive-field rules of matrix products and attention: mm / addmm / bmm / baddbmm, fused scaled-dot-product
attention, `_native_multi_head_attention`.

- A product over channels (a Linear over an NHWC tensor or over tokens: view -> addmm -> view; a batch of
  positions: N·H·W small products) is pointwise in space: the rows keep their positions.
- A product over every position of an axis (flatten + Linear, a Linear over tokens as in MLP-Mixer, attention
  over all tokens) is global, with the local field kept beside the flag (the query's, or the rows' kept as a
  summary).
- Attention within windows (Swin's window partition, MaxViT's block and grid attention): the positions lie both
  on a batch dim (which window) and on the token dims (where in the window). An output unit then reads the units
  of its window: per axis, the union over the digits of the positions on the contracted or other-side dims,
  unit by unit (rf_gather.block_union), laid out like the query's rows. Exact, since a window is a product of
  an interval of rows and one of columns (or of a strided set of them, for MaxViT's grid: the field is then the
  hull of its units' fields, first to last pixel)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from inspectlab.analysis.rf_base import RULES, WalkView, follows_layout
from inspectlab.analysis.rf_fields import AxisField, FieldInfo, NoRule, Pieces, aligned_dims
from inspectlab.analysis.rf_gather import block_union
from inspectlab.analysis.rf_layout import coarsened, held, laid_out
from inspectlab.tracing.records import OpRecord


@dataclass(frozen=True)
class Operand:
    """One input of a product: its field, its batch dims (-> output dims), its kept dim (rows of the first
    matrix, columns of the second, a query's tokens: -> an output dim; None: none) and the dims it contracts
    (or mixes whole: a key's and a value's tokens)."""

    info: FieldInfo
    batch: dict[int, int]
    kept: tuple[int, int] | None
    contracted: frozenset[int]


def windowed(operands: Sequence[Operand]) -> bool:
    """Some operand has positions on a batch dim: attention within windows (positions also on other dims), or
    a batch of positions (N·H·W small products: only there)."""
    return any(held(a) & set(o.batch) for o in operands for a in o.info.axes)


def window_product(walk: WalkView, op: OpRecord, operands: Sequence[Operand], out_shape: Sequence[int],
                   ) -> FieldInfo:
    """The field of a product or attention within windows: per axis, each operand's units unioned over the
    digits it mixes (contracted, or on the other side of the product), laid out like the first operand that
    keeps positions on its kept dim (the query's rows)."""
    live = [o for o in operands if not o.info.constant]
    count = len(live[0].info.axes)
    laid: list[list[AxisField]] = [[] for _ in live]
    for k in range(count):
        source = next((o for o in live if o.kept and o.kept[0] in held(o.info.axes[k])), None)
        source = source or next((o for o in live if held(o.info.axes[k])), None)
        if source is None:  # no operand has positions on this axis
            for p, o in enumerate(live):
                laid[p].append(o.info.axes[k])
            continue
        keep = {**source.batch, **({source.kept[0]: source.kept[1]} if source.kept else {})}
        layout = _pieces(source.info.axes[k])
        if any(d not in keep for d, _, _ in layout):
            raise NoRule("the query's positions also lie on a dim it contracts")
        target: Pieces = tuple((keep[d], i, c) for d, i, c in layout)
        for p, o in enumerate(live):
            axis = o.info.axes[k]
            if not held(axis):
                laid[p].append(axis)
                continue
            own = {**o.batch, **({o.kept[0]: o.kept[1]} if o is source and o.kept else {})}
            pieces = _pieces(axis)
            if [c for _, _, c in pieces] != [c for _, _, c in target]:
                raise NoRule("the operands' positions are numbered differently (windows of other shapes)")
            mixed = [d not in own for d, _, _ in pieces]
            if any(not m and (own[d], i, c) != t for (d, i, c), m, t in zip(pieces, mixed, target, strict=True)):
                raise NoRule("the operands' windows lie differently along the batch dims")
            table = block_union(axis.per_unit, [c for _, _, c in pieces], mixed) if any(mixed) else axis.per_unit
            laid[p].append(laid_out(AxisField(None, axis.jump, table, None, target), target,  # type: ignore[arg-type]
                                    out_shape))
    parts = [(replace(o.info, axes=tuple(axes)), {d: d for d in range(len(out_shape))}) for o, axes in
             zip(live, laid, strict=True)]
    return walk.merge(op, parts, out_shape, quiet=True)


def _pieces(axis: AxisField) -> Pieces:
    if axis.slot is not None:
        raise NoRule("attention within windows over tokens with a class token")
    if axis.pieces:
        return axis.pieces
    return ((axis.dim, 1, axis.units),) if axis.dim is not None and axis.units > 1 else ()


_MATRICES = {"aten.mm": ("self", "mat2"), "aten.addmm": ("mat1", "mat2"), "aten.bmm": ("self", "mat2"),
             "aten.baddbmm": ("batch1", "batch2")}


@RULES.register(*_MATRICES)
@follows_layout("any")
def _matmul(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """mm / addmm / bmm / baddbmm: rows come from the first matrix, columns from the second (module docstring)."""
    first, second = (op.tensor_args.get(n) for n in _MATRICES[op.packet])
    if not isinstance(first, int) or not isinstance(second, int):
        raise NoRule("missing matrix")
    out_shape = walk.shape(op.outputs[0])
    batched = len(out_shape) == 3
    b = 1 if batched else 0
    batch = {0: 0} if batched else {}
    operands = [Operand(walk.field(first), batch, (b, b), frozenset({b + 1})),
                Operand(walk.field(second), batch, (b + 1, b + 1), frozenset({b}))]
    bias = op.tensor_args.get("self") if op.packet in ("aten.addmm", "aten.baddbmm") else None
    bias_part = []
    if isinstance(bias, int) and not walk.field(bias).constant:
        bias_part = [(walk.field(bias), aligned_dims(len(walk.shape(bias)), len(out_shape)))]
    if windowed(operands):
        merged = window_product(walk, op, operands, out_shape)
        if bias_part:
            merged = walk.merge(op, [(merged, {d: d for d in range(len(out_shape))}), *bias_part], out_shape)
        return [merged] * len(op.outputs)
    return [_product(walk, op, operands, bias_part, out_shape)] * len(op.outputs)


def _product(walk: WalkView, op: OpRecord, operands: Sequence[Operand],
             bias: list[tuple[FieldInfo, dict[int, int]]], out_shape: Sequence[int]) -> FieldInfo:
    """A product with no windows: over channels, pointwise in space; over all of an axis's positions, or with
    positions on both sides (attention scores), global with the local field kept as a summary."""
    parts: list[tuple[FieldInfo, dict[int, int]]] = []
    keeps: list[int] = []
    contracted_global = False
    for operand in operands:
        info = operand.info
        if info.constant:
            continue
        assert operand.kept is not None
        (contracted,) = operand.contracted
        keeps.append(operand.kept[0])
        axes, here = [], False
        for axis in info.axes:
            if axis.pieces and contracted in held(axis) and held(axis) != {contracted}:
                axis = coarsened(axis, {contracted})  # a Linear over the positions of each cell (PatchMerging)
                axes.append(laid_out(axis, axis.pieces or (), out_shape) if axis.pieces else axis)
                continue
            if contracted in held(axis):
                contracted_global = here = True
                axes.append(axis.folded(None))
            else:
                axes.append(axis)
        parts.append((FieldInfo(tuple(axes), info.is_global or here, flags=info.flags),
                      {operand.kept[0]: operand.kept[1], **operand.batch}))
    parts += bias
    carried = [(f, m) for f, m in parts if any(held(a) & set(m) for a in f.axes)]
    on_rows = any(any(keep in held(a) for a in f.axes) for (f, _), keep in zip(parts, keeps, strict=False))
    if len(carried) > 1 and on_rows and any(a.tabled or a.pieces for f, _ in carried for a in f.axes):
        # positions on both sides (attention scores): every entry mixes two positions; call it global
        parts = [(replace(f, axes=tuple(a.folded(None) if a.tabled or a.pieces else a.moved(None) for a in f.axes),
                          is_global=True), m) for f, m in parts]
    merged = walk.merge(op, parts, out_shape)
    return replace(merged, is_global=True) if contracted_global else merged


_FUSED = ("aten._scaled_dot_product_flash_attention", "aten._scaled_dot_product_efficient_attention",
          "aten._scaled_dot_product_cudnn_attention", "aten._scaled_dot_product_flash_attention_for_cpu",
          "aten.scaled_dot_product_attention", "aten._scaled_dot_product_attention_math",
          "aten._scaled_dot_product_fused_attention_overrideable", "aten._native_multi_head_attention")


@RULES.register(*_FUSED)
@follows_layout("any")
def _attention(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """Fused attention: every query position reads every key and value position (of its window, where positions
    also lie along the batch dims: `window_product`), and the mask's row. Over all positions: global, with the
    query's local field kept as a summary. Outputs beyond the first (log-sum-exp, seeds, weights) are for the
    backward pass or inspection: unknown."""
    query = op.tensor_args.get("query")
    query = query if isinstance(query, int) else op.inputs[0]
    rank = len(walk.shape(query))
    batch = {d: d for d in range(rank - 2)}
    tokens = rank - 2
    operands = [Operand(walk.field(query), batch, (tokens, tokens), frozenset({rank - 1}))]
    for name in ("key", "value"):
        tensor = op.tensor_args.get(name)
        if isinstance(tensor, int):
            operands.append(Operand(walk.field(tensor), batch, None, frozenset({tokens, rank - 1})))
    mask = next((op.tensor_args.get(n) for n in ("attn_mask", "mask", "attn_bias")
                 if isinstance(op.tensor_args.get(n), int)), None)
    if isinstance(mask, int) and not walk.field(mask).constant:
        mask_rank = len(walk.shape(mask))
        operands.append(Operand(walk.field(mask), {d: d + rank - mask_rank for d in range(mask_rank - 2)},
                                (mask_rank - 2, tokens), frozenset({mask_rank - 1})))
    out_shape = walk.shape(op.outputs[0])
    others = [FieldInfo(unknown=f"an auxiliary output of {op.packet}")] * (len(op.outputs) - 1)
    if windowed(operands):
        return [window_product(walk, op, operands, out_shape), *others]
    live = [o.info for o in operands if not o.info.constant]
    info = operands[0].info if not operands[0].info.constant else live[0]
    axes = tuple(a.folded(a.dim if info is operands[0].info else None) if a.tabled or a.pieces else a
                 for a in info.axes)
    flags = tuple(dict.fromkeys(flag for f in live for flag in f.flags))
    return [FieldInfo(axes, True, flags=flags), *others]
