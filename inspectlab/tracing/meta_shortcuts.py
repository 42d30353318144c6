"""Results of common ops on the meta device, given without running torch's Python meta code.

On the meta device torch computes many ops' output metadata in Python (decompositions and `_refs`):
batch norm ~1.5 ms a call, bilinear upsampling ~20 ms, an elementwise add ~0.4 ms, and the first
elementwise op in a process imports torch._dynamo (~1.3 s). For the common cases below the result's
shape, strides and dtype are plain to see, so the recorder makes the empty meta tensor itself. Each
shortcut returns NotImplemented for any case it does not cover (broadcasting over mixed layouts, dtype
promotion, unusual layouts), and torch then runs as usual. `tests/test_meta_shortcuts.py` compares each
answer with torch's own result on real tensors; `tests/test_trace.py` checks that a meta trace records the
same ops, shapes, dtypes and aliasing as a real run.

`SHORTCUTS` holds each shortcut by op packet, for the overloads it covers: the recorder asks
`SHORTCUTS.lookup("aten.add", "Tensor")`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from inspectlab.core.op_registry import OpRegistry

Shortcut = Callable[..., Any]
SHORTCUTS: OpRegistry[Shortcut] = OpRegistry("meta shortcuts")


def _empty_like(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=x.device)


def _batch_norm(x: torch.Tensor, running_mean: torch.Tensor | None, training: bool) -> Any:
    """(output, saved mean, saved inverse std): the statistics have C entries in training, 0 in eval."""
    channels = x.shape[1] if x.dim() > 1 else 0
    if running_mean is not None and running_mean.numel() != channels:
        raise RuntimeError(f"running_mean should contain {channels} elements not {running_mean.numel()}")
    stats_shape = (channels,) if training else (0,)
    stats = [torch.empty_strided(stats_shape, (1,), dtype=x.dtype, device=x.device) for _ in range(2)]
    return _empty_like(x), *stats


@SHORTCUTS.register("aten.native_batch_norm", overloads=("default",))
def _native_batch_norm(x: torch.Tensor, weight: Any, bias: Any, mean: Any, var: Any, *args: Any,
                       **kwargs: Any) -> Any:
    return _batch_norm(x, mean, bool(kwargs.get("training", *args[:1])))


@SHORTCUTS.register("aten._native_batch_norm_legit_no_training", overloads=("default",))
def _batch_norm_no_training(x: torch.Tensor, weight: Any, bias: Any, mean: Any, *args: Any, **kwargs: Any) -> Any:
    return _batch_norm(x, mean, False)


@SHORTCUTS.register("aten.relu_", "aten.hardtanh_", "aten.hardswish_", "aten.hardsigmoid_", "aten.sigmoid_",
                    "aten.tanh_", "aten.silu_", "aten.leaky_relu_", "aten.elu_", overloads=("default",))
def _in_place(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """An in-place activation returns its input."""
    return x


@SHORTCUTS.register("aten.add", "aten.sub", "aten.mul", "aten.div", "aten.rsub", overloads=("Tensor", "Scalar"))
@SHORTCUTS.register("aten.relu", "aten.hardtanh", "aten.hardswish", "aten.hardsigmoid", "aten.sigmoid", "aten.tanh",
                    "aten.silu", "aten.leaky_relu", "aten.elu", "aten.clamp", "aten.gelu", overloads=("default",))
def _elementwise(*args: Any, **kwargs: Any) -> Any:
    """A unary or binary elementwise op on floating tensors of one dtype, other arguments Python numbers:
    tensors of one shape and strides give a tensor like the first; contiguous tensors of broadcastable
    shapes give a contiguous tensor of the broadcast shape."""
    tensors = [v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)]
    first = args[0]
    if not isinstance(first, torch.Tensor) or not first.is_floating_point():
        return NotImplemented
    if any(not isinstance(v, (bool, int, float, str, torch.Tensor)) and v is not None
           for v in (*args, *kwargs.values())):
        return NotImplemented  # complex scalars promote the dtype
    if any(t.dtype != first.dtype for t in tensors):
        return NotImplemented
    if all(t.shape == first.shape and t.stride() == first.stride() for t in tensors):
        return _empty_like(first)
    if all(t.is_contiguous() for t in tensors):
        try:
            shape = torch.broadcast_shapes(*(t.shape for t in tensors))
        except RuntimeError:
            return NotImplemented  # torch raises its own error
        return torch.empty(shape, dtype=first.dtype, device=first.device)
    return NotImplemented


@SHORTCUTS.register("aten.cat", overloads=("default",))
def _cat(tensors: Any, dim: int = 0) -> Any:
    """torch.cat of contiguous (or of channels-last) floating tensors of one dtype and rank, equal but
    for `dim`."""
    tensors = list(tensors)
    if not tensors or any(not isinstance(t, torch.Tensor) for t in tensors):
        return NotImplemented
    first = tensors[0]
    rank = first.dim()
    if rank == 0 or any(t.dim() != rank or t.dtype != first.dtype for t in tensors):
        return NotImplemented
    dim = dim % rank
    if any(t.shape[:dim] != first.shape[:dim] or t.shape[dim + 1:] != first.shape[dim + 1:] for t in tensors):
        return NotImplemented
    shape = (*first.shape[:dim], sum(t.shape[dim] for t in tensors), *first.shape[dim + 1:])
    if all(t.is_contiguous() for t in tensors):
        return torch.empty(shape, dtype=first.dtype, device=first.device)
    if rank == 4 and all(t.is_contiguous(memory_format=torch.channels_last) for t in tensors):
        return torch.empty(shape, dtype=first.dtype, device=first.device, memory_format=torch.channels_last)
    return NotImplemented


@SHORTCUTS.register("aten.addmm", overloads=("default",))
def _addmm(bias: torch.Tensor, mat1: torch.Tensor, mat2: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
    """bias + mat1 @ mat2 (a linear layer) for floating matrices of one dtype: an n×m contiguous tensor."""
    if mat1.dim() != 2 or mat2.dim() != 2 or mat1.shape[1] != mat2.shape[0] or not mat1.is_floating_point():
        return NotImplemented
    if bias.dtype != mat1.dtype or mat2.dtype != mat1.dtype:
        return NotImplemented
    try:
        torch.broadcast_shapes(bias.shape, (mat1.shape[0], mat2.shape[1]))
    except RuntimeError:
        return NotImplemented
    return torch.empty((mat1.shape[0], mat2.shape[1]), dtype=mat1.dtype, device=mat1.device)


@SHORTCUTS.register("aten.mean", overloads=("dim",))
def _mean(x: torch.Tensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Any:
    """mean over `dim` of a contiguous floating tensor: a contiguous tensor without (or with size-1) dims."""
    if not x.is_floating_point() or not x.is_contiguous() or dim is None or x.dim() == 0 or len(dim) == 0:
        return NotImplemented
    reduced = {d % x.dim() for d in dim}
    shape = [1 if i in reduced else n for i, n in enumerate(x.shape) if keepdim or i not in reduced]
    return torch.empty(shape, dtype=dtype or x.dtype, device=x.device)


@SHORTCUTS.register("aten.upsample_bilinear2d", "aten.upsample_nearest2d", overloads=("default",))
def _upsample(x: torch.Tensor, output_size: Any, *args: Any, **kwargs: Any) -> Any:
    """upsample_{nearest,bilinear}2d with an explicit output size: N×C×H'×W', in the input's layout
    (contiguous or channels-last)."""
    if x.dim() != 4 or output_size is None or len(output_size) != 2 or x.shape[2] <= 0 or x.shape[3] <= 0:
        return NotImplemented
    height, width = (int(s) for s in output_size)
    if height <= 0 or width <= 0:
        raise RuntimeError(f"Input and output sizes should be greater than 0, but got output ({height}, {width})")
    shape = (x.shape[0], x.shape[1], height, width)
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=layout)


def on_meta(args: Any) -> bool:
    """Whether an op's first argument (or the first of a tensor list, for cat) is a meta tensor."""
    first = args[0] if args else None
    if isinstance(first, (list, tuple)):
        first = first[0] if first else None
    return getattr(first, "is_meta", False)
