"""Receptive fields checked with autograd: the exact support of a unit, next to the analytic field.

Exact support (`check_fields`). The gradient of one output unit with respect to the input is nonzero
exactly on the pixels the unit depends on, provided nothing cancels or saturates. So it runs on a
deep copy of the model made linear and positive; the user's model is never touched. What changes in
the copy, and nothing else:

- every floating-point parameter: a tensor of 2+ dims (conv / linear weights) becomes 1/fan-in
  (1 / numel of one output's slice), a `bias` becomes 0, any other parameter becomes 1;
- activations and clamps are the identity: relu, relu6/hardtanh, hardswish, hardsigmoid, sigmoid, tanh,
  gelu, silu, mish, elu, selu, celu, leaky_relu, prelu, rrelu, softplus, logsigmoid, clamp/clip;
- normalisation layers are the identity: batch_norm, group_norm, layer_norm, instance_norm;
- max pooling becomes average pooling over the same windows (adaptive max -> adaptive average);
- softmax / log_softmax over a dim become x / x.sum(dim) (positive, every entry still reads all);
- in a product of two tensors (mul, matmul: SE gates, recurrent gates, attention) the smaller factor is
  divided by its largest absolute value (a detached positive constant), so that magnitudes do not square
  at every gate and overflow; the support is unchanged;
- the copy runs in eval mode, in float64, on a constant input of ones; only the input gets gradients.

The network is then affine with positive weights, so the gradient is a sum of positive products and is
zero only off the support. To verify the local field of a layer that also has a global path (SE
blocks, ASPP image pooling), a second pass cuts global pooling (adaptive pooling to size 1, a mean /
sum / amax over both image axes) from the graph with `detach`, exactly the paths the analysis calls
global; a global layer must in turn depend on every input pixel in the uncut pass.

The effective field (model's own weights) is in effective_rf.py.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from inspectlab.analysis.receptive_field import FieldInfo, FieldMap, FieldRow
from inspectlab.core.errors import InspectlabError
from inspectlab.runtime.row_outputs import row_tensor, run_with_hooks

_IDENTITY = {
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_",
    "sigmoid", "sigmoid_", "tanh", "tanh_", "gelu", "silu", "silu_", "mish", "mish_", "elu", "elu_", "selu",
    "selu_", "celu", "celu_", "leaky_relu", "leaky_relu_", "prelu", "rrelu", "rrelu_", "softplus", "logsigmoid",
    "clamp", "clamp_", "clip", "clip_", "clamp_min", "clamp_min_", "clamp_max", "clamp_max_",
    "batch_norm", "group_norm", "layer_norm", "instance_norm",
}
_MAX_POOLS = {"max_pool1d": 1, "max_pool2d": 2, "max_pool3d": 3}
_ADAPTIVE_MAX = {"adaptive_max_pool1d": F.adaptive_avg_pool1d, "adaptive_max_pool2d": F.adaptive_avg_pool2d,
                 "adaptive_max_pool3d": F.adaptive_avg_pool3d}
_ADAPTIVE = {"adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", *_ADAPTIVE_MAX}
_REDUCTIONS = {"mean", "sum", "amax", "amin", "max", "min", "logsumexp"}
_PRODUCTS = {"mul", "mul_", "__mul__", "__rmul__", "__imul__", "matmul", "__matmul__", "bmm", "mm"}
_SOFTMAX = {"softmax", "log_softmax", "_softmax"}


def _first(args: Sequence[Any], kwargs: dict[str, Any], name: str = "input") -> Any:
    return args[0] if args else kwargs.get(name, kwargs.get("self"))


def _avg_pool(dims: int, args: Sequence[Any], kwargs: dict[str, Any]) -> torch.Tensor:
    """Average pooling over the windows a max pooling with these arguments would use."""
    names = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    bound = {**dict(zip(names, args, strict=False)), **kwargs}
    if bound.get("return_indices"):
        raise InspectlabError("--empirical: max pooling with return_indices has no linear stand-in")
    x = bound["input"]
    kernel = _tuple(bound["kernel_size"], dims)
    stride = _tuple(bound.get("stride") or kernel, dims)
    padding = _tuple(bound.get("padding", 0), dims)
    dilation = _tuple(bound.get("dilation", 1), dims)
    ceil_mode = bool(bound.get("ceil_mode", False))
    if all(d == 1 for d in dilation):
        pool = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[dims - 1]
        return pool(x, kernel, stride, padding, ceil_mode=ceil_mode, count_include_pad=True)
    if ceil_mode:
        raise InspectlabError("--empirical: dilated max pooling with ceil_mode has no linear stand-in")
    channels = x.shape[1]
    weight = x.new_full((channels, 1, *kernel), 1.0 / math.prod(kernel))
    conv = (F.conv1d, F.conv2d, F.conv3d)[dims - 1]
    return conv(x, weight, None, stride, padding, dilation, channels)


def _unit_scale(x: torch.Tensor) -> torch.Tensor:
    """x divided by its largest absolute value (detached; left as is when all zero)."""
    peak = x.detach().abs().amax()
    return x / torch.where(peak > 0, peak, torch.ones_like(peak))


def _tuple(value: Any, dims: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * dims
    values = tuple(value)
    return values * dims if len(values) == 1 else values


def _is_global_reduction(name: str, args: Sequence[Any], kwargs: dict[str, Any]) -> bool:
    """Adaptive pooling to size 1, or a mean/sum/amax over both image axes of a 4-D tensor."""
    x = _first(args, kwargs)
    if not isinstance(x, torch.Tensor):
        return False
    if name in _ADAPTIVE:
        size = args[1] if len(args) > 1 else kwargs.get("output_size")
        sizes = [size] if isinstance(size, int) else list(size)
        return all(s == 1 for s in sizes)
    if name in _REDUCTIONS and x.dim() == 4:
        dim = args[1] if len(args) > 1 else kwargs.get("dim")
        if dim is None:
            return True
        dims = {d % 4 for d in ([dim] if isinstance(dim, int) else dim)}
        return {2, 3} <= dims
    return False


class _Linearise(TorchFunctionMode):
    """Identity activations and norms, average instead of max pooling; with `cut_global`, global pooling
    results are detached from the graph."""

    def __init__(self, cut_global: bool = False) -> None:
        super().__init__()
        self.cut_global = cut_global

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: Sequence[Any] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _IDENTITY:
            return _first(args, kwargs)
        if name.removeprefix("_") in _MAX_POOLS:
            return _avg_pool(_MAX_POOLS[name.removeprefix("_")], args, kwargs)
        if name in _PRODUCTS and len(args) >= 2 and all(isinstance(a, torch.Tensor) and a.dim() for a in args[:2]):
            a, b = args[0], args[1]
            if a.numel() <= b.numel():
                a = _unit_scale(a)
            else:
                b = _unit_scale(b)
            args = (a, b, *args[2:])
            if name.endswith("_") or name == "__imul__":
                func = torch.mul
        if name in _SOFTMAX:
            x = _first(args, kwargs)
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            return x / x.sum(dim=dim, keepdim=True)
        if name in _ADAPTIVE_MAX:
            if kwargs.get("return_indices") or (len(args) > 2 and args[2]):
                raise InspectlabError("--empirical: adaptive max pooling with return_indices has no linear stand-in")
            func = _ADAPTIVE_MAX[name]
            args, kwargs = args[:2], {k: v for k, v in kwargs.items() if k != "return_indices"}
        result = func(*args, **kwargs)
        if self.cut_global and _is_global_reduction(name, args, kwargs):
            result = result.detach() if isinstance(result, torch.Tensor) else result
        return result


def linear_positive_copy(model: nn.Module, device: str = "cpu", dtype: torch.dtype = torch.float64) -> nn.Module:
    """A deep copy of `model` with the constant positive parameters of the module docstring, in eval mode,
    on `device` in `dtype`, with no parameter requiring grad. The model itself is not modified."""
    if any(p.is_meta for p in model.parameters()) or any(b.is_meta for b in model.buffers()):
        raise InspectlabError("--empirical needs a model with real tensors, not one on the meta device")
    clone = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    with torch.no_grad():
        for name, param in clone.named_parameters():
            param.requires_grad_(False)
            if not param.is_floating_point():
                continue
            if name.rsplit(".", 1)[-1] == "bias":
                param.zero_()
            elif param.dim() >= 2:
                param.fill_(1.0 / max(param[0].numel(), 1))
            else:
                param.fill_(1.0)
    return clone


def chosen_unit(info: FieldInfo, input_size: Sequence[int], where: str = "centre") -> list[int | None]:
    """Per axis, the unit to measure. "centre": one with the largest field, whose field fits inside the input
    if one does, nearest to the centre of the tensor; "first" / "last": the first / last unit."""
    units: list[int | None] = []
    for axis, extent in zip(info.axes, input_size, strict=True):
        if axis.table is None:
            units.append(None)
            continue
        if where != "centre":
            units.append(0 if where == "first" else axis.table.shape[1] - 1)
            continue
        lo, hi = axis.table[0], axis.table[1]
        sizes = np.where(np.isfinite(hi - lo), hi - lo, -np.inf)
        candidates = np.flatnonzero(sizes == sizes.max())
        fitting = candidates[(lo[candidates] >= 0) & (hi[candidates] <= extent - 1)]
        pool = fitting if fitting.size else candidates
        middle = (len(lo) - 1) / 2
        units.append(int(pool[np.argmin(np.abs(pool - middle))]))
    return units


def _support(grad: torch.Tensor | None, input_dims: Sequence[int]) -> list[tuple[int, int] | None]:
    """Per image axis: first and last input pixel with a nonzero gradient (None: no dependence at all)."""
    if grad is None:
        return [None] * len(input_dims)
    magnitude = grad.abs()
    spans: list[tuple[int, int] | None] = []
    for dim in input_dims:
        others = [d for d in range(magnitude.dim()) if d != dim]
        line = magnitude.amax(dim=others) if others else magnitude
        hits = torch.nonzero(line > 0).flatten()
        spans.append((int(hits[0]), int(hits[-1])) if hits.numel() else None)
    return spans


@dataclass
class EmpiricalRow:
    """The measured support of one row's unit next to the analytic one (both clipped to the input)."""

    name: str
    mode: str  # "centre" / "first" / "last": that unit's local field (global paths cut); "global": every pixel
    unit: list[int | None]
    analytic: list[tuple[int, int] | None]
    measured: list[tuple[int, int] | None]
    fits: bool  # the analytic field lies inside the input (nothing clipped)
    reachable: bool = True  # False: no module call returns the tensor, nothing was measured

    @property
    def match(self) -> bool:
        return self.reachable and self.analytic == self.measured

    @property
    def size(self) -> list[int | None]:
        return [None if span is None else span[1] - span[0] + 1 for span in self.measured]


def _analytic_span(info: FieldInfo, unit: Sequence[int | None], input_size: Sequence[int], mode: str,
                   ) -> tuple[list[tuple[int, int] | None], bool]:
    """The pixels the unit actually depends on (every pixel for `global`), and whether its unclipped field
    lies inside the input."""
    if mode == "global":
        return [(0, n - 1) for n in input_size], True
    index = [0 if u is None else u for u in unit]
    spans: list[tuple[int, int] | None] = []
    for span in info.unit(index, actual=True):
        spans.append(None if span is None else (int(span[0]), int(span[1])))
    fits = all(
        span is None or (span[0] >= 0 and span[1] <= extent - 1)
        for span, extent in zip(info.unit(index), input_size, strict=True)
    )
    return [s if u is not None else None for s, u in zip(spans, unit, strict=True)], fits


def check_fields(model: nn.Module, fields: FieldMap, rows: Sequence[FieldRow], inputs_shape: Sequence[int],
                 device: str = "cpu", units: Sequence[str] = ("centre",)) -> list[EmpiricalRow]:
    """Measure the support of each row's unit(s) on the linear positive copy of `model`, next to the analytic
    field (both clipped to the input). `units`: any of "centre", "first", "last" (see `chosen_unit`); the
    first and last units check each end of a field larger than the input. Rows with an unknown or constant
    field are skipped."""
    local = [r for r in rows if not r.field.unknown and any(a.table is not None for a in r.field.axes)]
    whole = [r for r in rows if not r.field.unknown and r.field.is_global]
    cut_needed = any(r.field.is_global for r in local)
    clone = linear_positive_copy(model, device)
    jobs = [(r, where) for r in local for where in units] + [(r, "global") for r in whole]
    passes = [[j for j in jobs if j[1] != "global"], [j for j in jobs if j[1] == "global"]] if cut_needed else [jobs]
    results: dict[tuple[str, str], EmpiricalRow] = {}
    for batch in passes:
        if not batch:
            continue
        cut = cut_needed and batch[0][1] != "global"
        x = torch.ones(tuple(inputs_shape), dtype=torch.float64, device=device, requires_grad=True)
        with torch.enable_grad():
            outputs = run_with_hooks(clone, [x], _Linearise(cut_global=cut))
            for row, mode in batch:
                results[(row.name, mode)] = _measure(outputs, fields, row, mode, x)
        del outputs
    return [results[(r.name, m)] for r in rows for m in (*units, "global") if (r.name, m) in results]


def _measure(outputs: dict[tuple[str, int], list[torch.Tensor]], fields: FieldMap, row: FieldRow, mode: str,
             x: torch.Tensor) -> EmpiricalRow:
    """Gradient of the row's chosen unit (all of the tensor for `global`) with respect to the input."""
    tensor = row_tensor(outputs, fields, row)
    input_size = fields.input_size
    unit = chosen_unit(row.field, input_size, mode) if mode != "global" else [None] * len(input_size)
    if tensor is None:
        return EmpiricalRow(row.name, mode, unit, [], [], False, reachable=False)
    index: list[Any] = [slice(None)] * tensor.dim()
    for axis, position in zip(row.field.axes, unit, strict=True):
        if position is not None and axis.dim is not None:
            index[axis.dim] = position
    objective = tensor[tuple(index)].sum()
    grad = None
    if objective.requires_grad:
        grad = torch.autograd.grad(objective, x, retain_graph=True, allow_unused=True)[0]
    analytic, fits = _analytic_span(row.field, unit, input_size, mode)
    measured = _support(grad, fields.spatial_dims)
    if mode != "global":  # an axis folded away has no per-unit field to compare
        measured = [m if axis.table is not None else None for axis, m in zip(row.field.axes, measured, strict=True)]
    return EmpiricalRow(row.name, mode, unit, analytic, measured, fits)
