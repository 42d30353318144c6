"""Receptive-field rules of ops that combine values: factories (no field), elementwise ops, copies and
per-channel ops, channel mixing and reductions (softmax within windows included). Matrix products and attention
are in rf_attention.py."""

from __future__ import annotations

from dataclasses import replace

from inspectlab.analysis.rf_base import RULES, WalkView, follows_layout, ints
from inspectlab.analysis.rf_fields import CONSTANT, FieldInfo, NoRule, aligned_dims
from inspectlab.analysis.rf_gather import block_union
from inspectlab.analysis.rf_layout import remapped
from inspectlab.tracing.records import OpRecord

ZERO_FACTORIES = {"aten.zeros", "aten.zeros_like", "aten.new_zeros", "aten.zero_", "aten.zero"}
_FACTORIES = {
    "aten.empty", "aten.empty_like", "aten.new_empty", "aten.empty_strided", "aten.new_empty_strided",
    "aten.ones", "aten.ones_like", "aten.new_ones", "aten.full", "aten.full_like", "aten.new_full",
    "aten.rand_like", "aten.randn_like", "aten.randint_like", "aten.scalar_tensor", "aten.arange",
    "aten.fill_", "aten.fill", "aten.normal_", "aten.uniform_", "aten.bernoulli_", "aten.bernoulli",
    "aten.random_", "aten.exponential_", "aten.lift_fresh", "aten.sym_size", "aten.sym_numel",
    "aten.sym_stride", "aten.size", "aten.stride", "aten._local_scalar_dense",
} | ZERO_FACTORIES
_NORMS = {
    "aten.native_batch_norm", "aten._native_batch_norm_legit", "aten._native_batch_norm_legit_no_training",
    "aten._native_batch_norm_legit_functional", "aten.cudnn_batch_norm", "aten.miopen_batch_norm",
    "aten.native_layer_norm", "aten.native_group_norm", "aten.batch_norm", "aten.layer_norm", "aten.group_norm",
    "aten.instance_norm",
}
_SOFTMAX = {"aten._softmax", "aten._log_softmax", "aten.softmax", "aten.log_softmax", "aten._safe_softmax"}
_SAME_SHAPE_REDUCTIONS = {*_SOFTMAX, "aten.cumsum", "aten.cumprod", "aten.logcumsumexp", "aten.cummax", "aten.cummin",
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
    is reduced away when all of its dims are (softmax over tokens); a softmax over some of them (within windows)
    gives each unit the union of its window's units; other reductions over part of them are not followed."""
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
            elif held & reduced and op.packet in _SOFTMAX and not axis.slot:  # within windows: each unit reads
                mixed = [d in reduced for d, _, _ in axis.pieces]  # the units of its window
                axes.append(axis.with_table(block_union(axis.per_unit, [c for _, _, c in axis.pieces], mixed)))
            elif held & reduced:
                raise NoRule("it reduces part of an image axis spread over several dims (within windows)")
            else:
                axes.append(axis if keep else remapped(axis, lambda d: d - sum(1 for r in reduced if r < d)))
        elif axis.dim is not None and axis.dim in reduced:
            is_global = is_global or (axis.tabled and axis.units > 1)  # a single unit or a summary: nothing mixed
            axes.append(axis.folded(axis.dim if keep else None) if axis.packed is not None else axis.moved(
                axis.dim if keep else None))
        elif axis.dim is not None and not keep:
            axes.append(axis.moved(axis.dim - sum(1 for d in reduced if d < axis.dim)))
        else:
            axes.append(axis)
    return [FieldInfo(tuple(axes), is_global)] * len(op.outputs)


@RULES.register("aten.argmax", "aten.argmin")
@follows_layout("any")
def _indices(walk: WalkView, op: OpRecord) -> list[FieldInfo]:
    """The index of a maximum: it depends on the input's values, but not as a field the walk (or autograd: an
    index has no gradient) can give."""
    raise NoRule("its result is an index chosen by the input's values, not a function of pixels with a gradient")
