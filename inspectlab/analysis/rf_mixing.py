"""Receptive-field rules of ops that combine values: factories (no field), elementwise ops, copies and
per-channel ops, channel mixing, reductions, matrix products and fused attention."""

from __future__ import annotations

from dataclasses import replace

from inspectlab.analysis.rf_base import RULES, WalkView, follows_layout, ints
from inspectlab.analysis.rf_fields import CONSTANT, AxisField, FieldInfo, NoRule, aligned_dims
from inspectlab.analysis.rf_layout import remapped
from inspectlab.tracing.records import OpRecord

ZERO_FACTORIES = {"aten.zeros", "aten.zeros_like", "aten.new_zeros", "aten.zero_", "aten.zero"}
_FACTORIES = {
    "aten.empty", "aten.empty_like", "aten.new_empty", "aten.empty_strided", "aten.new_empty_strided",
    "aten.ones", "aten.ones_like", "aten.new_ones", "aten.full", "aten.full_like", "aten.new_full",
    "aten.rand_like", "aten.randn_like", "aten.randint_like", "aten.scalar_tensor", "aten.arange",
    "aten.fill_", "aten.fill", "aten.normal_", "aten.uniform_", "aten.bernoulli_", "aten.bernoulli",
    "aten.random_", "aten.exponential_", "aten.lift_fresh", "aten.sym_size", "aten.sym_numel",
    "aten.sym_stride", "aten.size", "aten.stride", "aten._local_scalar_dense", "aten.argmax", "aten.argmin",
} | ZERO_FACTORIES
_NORMS = {
    "aten.native_batch_norm", "aten._native_batch_norm_legit", "aten._native_batch_norm_legit_no_training",
    "aten._native_batch_norm_legit_functional", "aten.cudnn_batch_norm", "aten.miopen_batch_norm",
    "aten.native_layer_norm", "aten.native_group_norm", "aten.batch_norm", "aten.layer_norm", "aten.group_norm",
    "aten.instance_norm",
}
_SAME_SHAPE_REDUCTIONS = {"aten._softmax", "aten._log_softmax", "aten.softmax", "aten.log_softmax",
                          "aten.cumsum", "aten.cumprod", "aten.logcumsumexp", "aten.cummax", "aten.cummin",
                          "aten.topk", "aten.sort"}


@RULES.register(*sorted(_FACTORIES))
@follows_layout("any")
def constant(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    return [CONSTANT] * len(op.outputs)


def times_zero(walk: WalkView, op: OpRecord) -> bool:
    """x * 0 (or 0 / x): the result is a known zero, whatever x is (a recurrent state starting at zero)."""
    if op.packet in ("aten.mul", "aten.mul_"):
        return any(walk.field(t).zero for t in op.inputs)
    if op.packet in ("aten.div", "aten.div_"):
        numerator = op.tensor_args.get("self")
        return isinstance(numerator, int) and walk.field(numerator).zero
    return False


@RULES.register(  # elementwise ops torch does not tag `pointwise`
    "aten.hardswish", "aten.hardswish_", "aten.prelu", "aten._prelu_kernel", "aten.log_sigmoid",
    "aten.log_sigmoid_forward", "aten.rrelu_with_noise", "aten.rrelu_with_noise_", "aten.rrelu", "aten.rrelu_",
)
@follows_layout("any")
def pointwise(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """Elementwise op (activations, add, mul, where, ...): union of the broadcast inputs' fields."""
    out_shape = walk.shape(op.outputs[0])
    if times_zero(walk, op):
        return [FieldInfo(zero=True)] * len(op.outputs)
    parts = [(walk.field(t), aligned_dims(len(walk.shape(t)), len(out_shape))) for t in op.inputs]
    merged = walk.merge(op, parts, out_shape)
    return [merged] * len(op.outputs)


@RULES.register(
    *sorted(_NORMS), "aten.alias", "aten.detach", "aten.detach_", "aten.clone", "aten.contiguous", "aten._to_copy",
    "aten.to", "aten.lift_fresh_copy", "aten.native_dropout", "aten.dropout", "aten.feature_dropout",
    "aten._conj", "aten.positive", "aten.resolve_conj", "aten.resolve_neg",
)
@follows_layout("any")
def _passthrough(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """Copies and per-channel ops (detach, clone, batch norm, dropout): the first output has the main
    input's field; the other outputs (saved statistics, masks) have none."""
    main = walk.main(op)
    if walk.shape(op.outputs[0]) != walk.shape(main):
        raise NoRule("output shape differs from the input's")
    info = walk.field(main)
    if walk.others_global(op, main) and op.packet not in _NORMS:
        info = replace(info, is_global=True)
    return [info] + [CONSTANT] * (len(op.outputs) - 1)


@RULES.register("aten.glu", "aten.channel_shuffle", "aten.native_channel_shuffle", "aten.index_select")
@follows_layout("dims")
def _per_position(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """Ops that mix channels only (glu, channel_shuffle, index_select over channels): the field passes,
    unless the op's `dim` is an image axis."""
    main = walk.main(op)
    info = walk.field(main)
    rank = len(walk.shape(main))
    dim = op.args.get("dim", op.args.get("axis"))
    if isinstance(dim, int) and any(a.dim == dim % rank for a in info.axes):
        raise NoRule("it works along an image axis")
    out_shape = walk.shape(op.outputs[0])
    if len(out_shape) != rank or any(a.tabled and out_shape[a.dim] != walk.shape(main)[a.dim] for a in info.axes):
        raise NoRule("it changes the size of an image axis")
    return [replace(info, is_global=info.is_global or walk.others_global(op, main))] * len(op.outputs)


@RULES.register("aten.copy_", "aten.copy")
@follows_layout("any")
def _copy(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """copy_(self, src): the destination now holds src (broadcast)."""
    src = op.tensor_args.get("src")
    if not isinstance(src, int):
        raise NoRule("no source tensor")
    out_shape = walk.shape(op.outputs[0])
    merged = walk.merge(op, [(walk.field(src), aligned_dims(len(walk.shape(src)), len(out_shape)))], out_shape)
    return [merged] * len(op.outputs)


def _reduced_dims(op: OpRecord, rank: int) -> set[int]:
    dims = op.args.get("dim")
    if dims is None or dims == []:
        return set(range(rank))
    return {d % rank for d in ints(dims, 1, 0)}


@RULES.register(
    "aten.sum", "aten.mean", "aten.amax", "aten.amin", "aten.max", "aten.min", "aten.var", "aten.std",
    "aten.var_mean", "aten.std_mean", "aten.prod", "aten.logsumexp", "aten.norm", "aten.linalg_vector_norm",
    "aten.nansum", "aten.nanmean", "aten.any", "aten.all", "aten.aminmax", "aten.median", "aten.nanmedian",
    "aten.mode", *sorted(_SAME_SHAPE_REDUCTIONS),
)
@follows_layout("any")
def _reduce(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """sum / mean / amax / var / ... over dims: an image axis reduced away makes the field global, keeping
    the local field as a summary; reductions over channels pass the field. An axis spread over several dims
    is reduced away when all of its dims are (softmax over tokens); over some of them only (within windows),
    the walk does not follow it."""
    if op.name.endswith(".other"):  # max(a, b) / min(a, b): elementwise
        return pointwise(walk, op)
    main = walk.main(op)
    rank = len(walk.shape(main))
    reduced = _reduced_dims(op, rank)
    keep = bool(op.args.get("keepdim", False)) or op.packet in _SAME_SHAPE_REDUCTIONS
    info = walk.field(main)
    axes, is_global = [], info.is_global
    for axis in info.axes:
        if axis.pieces:
            held = {d for d, _, _ in axis.pieces}
            if held <= reduced:
                is_global = True
                axes.append(axis.folded(None))
            elif held & reduced:
                raise NoRule("it reduces part of an image axis spread over several dims (within windows)")
            else:
                axes.append(axis if keep else remapped(axis, lambda d: d - sum(1 for r in reduced if r < d)))
        elif axis.dim is not None and axis.dim in reduced:
            is_global = True
            axes.append(axis.folded(axis.dim if keep else None))
        elif axis.dim is not None and not keep:
            axes.append(axis.moved(axis.dim - sum(1 for d in reduced if d < axis.dim)))
        else:
            axes.append(axis)
    return [FieldInfo(tuple(axes), is_global)] * len(op.outputs)


def _held(axis: AxisField) -> set[int]:
    """The dims an axis lies along (its pieces', or its dim)."""
    if axis.pieces:
        return {d for d, _, _ in axis.pieces}
    return set() if axis.dim is None else {axis.dim}


@RULES.register("aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm")
@follows_layout("any")
def _matmul(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """mm / addmm / bmm / baddbmm: rows come from the first matrix, columns from the second; an image
    axis on the contracted dim (flatten + linear, attention over positions) makes the field global. A
    contraction over channels (a Linear over an NHWC tensor or tokens: view -> addmm -> view) is pointwise in
    space: the rows keep their positions, and so does a batch of positions (N·H·W small products). An axis
    with pieces both on the contracted dim and elsewhere (attention within windows) is not followed."""
    names = {"aten.mm": ("self", "mat2"), "aten.addmm": ("mat1", "mat2"), "aten.bmm": ("self", "mat2"),
             "aten.baddbmm": ("batch1", "batch2")}[op.packet]
    first, second = (op.tensor_args.get(n) for n in names)
    if not isinstance(first, int) or not isinstance(second, int):
        raise NoRule("missing matrix")
    out_shape = walk.shape(op.outputs[0])
    batched = len(out_shape) == 3
    b = 1 if batched else 0
    parts: list[tuple[FieldInfo, dict[int, int]]] = []
    contracted_global = False
    keeps: list[int] = []  # per part: its row (first) or column (second) dim
    for tensor, (keep_dim, contracted) in ((first, (b, b + 1)), (second, (b + 1, b))):
        info = walk.field(tensor)
        if info.constant:
            continue
        keeps.append(keep_dim)
        axes, here = [], False
        for axis in info.axes:
            if axis.pieces and contracted in _held(axis) and _held(axis) != {contracted}:
                raise NoRule("it contracts part of an image axis spread over several dims (attention within "
                             "windows)")
            if axis.dim == contracted or (axis.pieces and contracted in _held(axis)):
                contracted_global = here = True
                axes.append(axis.folded(None))
            else:
                axes.append(axis)
        dim_map = {keep_dim: keep_dim, **({0: 0} if batched else {})}
        parts.append((FieldInfo(tuple(axes), info.is_global or here), dim_map))
    bias = op.tensor_args.get("self") if op.packet in ("aten.addmm", "aten.baddbmm") else None
    if isinstance(bias, int) and not walk.field(bias).constant:
        parts.append((walk.field(bias), aligned_dims(len(walk.shape(bias)), len(out_shape))))
    carried = [(f, m) for f, m in parts if any(_held(a) & set(m) for a in f.axes)]
    on_rows = any(any(keep in _held(a) for a in f.axes) for (f, _), keep in zip(parts, keeps, strict=False))
    if len(carried) > 1 and on_rows and any(a.tabled or a.pieces for f, _ in carried for a in f.axes):
        # positions on both sides (attention scores): every entry mixes two positions; call it global
        if batched and any(a.pieces and 0 in _held(a) for f, _ in carried for a in f.axes):
            raise NoRule("positions on both sides within windows (attention within windows)")
        parts = [(FieldInfo(tuple(a.folded(None) if a.tabled or a.pieces else a.moved(None) for a in f.axes),
                            True), m) for f, m in parts]
    merged = walk.merge(op, parts, out_shape)
    if contracted_global:
        merged = replace(merged, is_global=True)
    return [merged] * len(op.outputs)


@RULES.register(
    "aten._scaled_dot_product_flash_attention", "aten._scaled_dot_product_efficient_attention",
    "aten._scaled_dot_product_cudnn_attention", "aten._scaled_dot_product_flash_attention_for_cpu",
    "aten.scaled_dot_product_attention", "aten._scaled_dot_product_attention_math", "aten._fused_sdp_choice",
)
@follows_layout("any")
def _attention(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """Fused scaled-dot-product attention: every query position reads every key position (of its window,
    where positions also lie along a batch dim: not followed)."""
    query = op.tensor_args.get("query")
    query = query if isinstance(query, int) else op.inputs[0]
    info = walk.field(query)
    rank = len(walk.shape(query))
    if any(a.pieces and min(_held(a)) < rank - 2 for a in info.axes):
        raise NoRule("positions also lie along a batch dim (attention within windows)")
    axes = tuple(a.folded(a.dim) if a.tabled or a.pieces else a for a in info.axes)
    if not axes:
        axes = next((walk.field(t).axes for t in op.inputs if not walk.field(t).constant), ())
        axes = tuple(a.folded(None) for a in axes)
    return [FieldInfo(axes, True)] + [FieldInfo(axes, True)] * (len(op.outputs) - 1)
