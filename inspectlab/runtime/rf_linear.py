"""The linear positive copy of a model, on which the gradient of a unit is nonzero exactly on its support.

The gradient of one output unit with respect to the input is nonzero exactly on the pixels the unit depends
on, provided nothing cancels or saturates. `linear_positive_copy` makes a deep copy (the user's model is never
touched) and `Linearise` runs it with these changes, and nothing else:

- every floating-point parameter: a tensor of 2+ dims (conv / linear weights) becomes 1/fan-in
  (1 / numel of one output's slice), a `bias` becomes 0, any other parameter becomes 1;
- activations and clamps are the identity: relu, relu6/hardtanh, hardswish, hardsigmoid, sigmoid, tanh,
  gelu, silu, mish, elu, selu, celu, leaky_relu, prelu, rrelu, softplus, logsigmoid, clamp/clip;
- normalisation layers are the identity: batch_norm, group_norm, layer_norm, instance_norm;
- max pooling becomes average pooling over the same windows (adaptive max -> adaptive average);
- softmax / log_softmax over a dim become (x + x.sum(dim)) / (2·x.sum(dim)), the denominator detached: every
  entry still reads all, through positive partial derivatives (x / x.sum(dim) would have negative ones, and
  its gradient could cancel);
- in a product of two tensors (mul, matmul: SE gates, recurrent gates, attention) the smaller factor is
  divided by its largest absolute value (a detached positive constant), so that magnitudes do not square
  at every gate and overflow; the support is unchanged;
- the copy runs in eval mode, on a constant input of ones.

The network is then a sum of products of positive numbers, so every gradient entry is >= 0 and is zero only
off the support (empirical_rf.py checks the sign: a negative entry means a subtraction the copy kept, e.g.
`x - x.mean()`, where cancellation could hide pixels).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from inspectlab.core.errors import InspectlabError

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
_PRODUCTS = {"mul", "mul_", "__mul__", "__rmul__", "__imul__", "matmul", "__matmul__", "bmm", "mm"}
_SOFTMAX = {"softmax", "log_softmax", "_softmax"}


def _first(args: Sequence[Any], kwargs: dict[str, Any], name: str = "input") -> Any:
    return args[0] if args else kwargs.get(name, kwargs.get("self"))


def _tuple(value: Any, dims: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * dims
    values = tuple(value)
    return values * dims if len(values) == 1 else values


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


class Linearise(TorchFunctionMode):
    """Identity activations and norms, average instead of max pooling, normalised products, softmax as a
    normalised sum (the module docstring)."""

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
            total = x.sum(dim=dim, keepdim=True)
            scale = 2 * total.detach()
            return (x + total) / torch.where(scale > 0, scale, torch.ones_like(scale))
        if name in _ADAPTIVE_MAX:
            if kwargs.get("return_indices") or (len(args) > 2 and args[2]):
                raise InspectlabError("--empirical: adaptive max pooling with return_indices has no linear stand-in")
            func = _ADAPTIVE_MAX[name]
            args, kwargs = args[:2], {k: v for k, v in kwargs.items() if k != "return_indices"}
        return func(*args, **kwargs)


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
