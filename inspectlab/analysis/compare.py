"""What the compare and sweep tables show of one Trace: output stride, the output's receptive field, output
pixels, and the fitted exponent of a quantity against the input's pixels. Pure functions: the tracing and
timing of each model is `inspectlab.workflows.compare`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from inspectlab.analysis.receptive_field import call_field, plain_number, receptive_fields
from inspectlab.core.errors import InspectlabError
from inspectlab.core.shapes import Shape

if TYPE_CHECKING:
    from inspectlab.tracing.records import Trace

# Columns of the frames, in order; nullable integer columns stay integers when an error row has no value.
COMPARE_KEYS = (
    "model", "input", "output_shape", "params", "trainable_params", "macs", "flops", "other_flops", "param_bytes",
    "activation_bytes", "peak_bytes", "output_stride", "rf", "rf_global", "latency_p50_ms", "latency_p90_ms",
    "macs_per_param", "macs_per_output_pixel", "notes", "error",
)
SWEEP_KEYS = (
    "size", "height", "width", "pixels", "input", "macs", "flops", "other_flops", "activation_bytes", "peak_bytes",
    "latency_p50_ms", "latency_p90_ms", "notes", "error",
)
INT_KEYS = frozenset({"params", "trainable_params", "macs", "flops", "other_flops", "param_bytes", "activation_bytes",
                      "peak_bytes", "train_peak_bytes", "rf", "height", "width", "pixels"})
FITTED_KEYS = ("macs", "other_flops", "activation_bytes", "peak_bytes", "latency_p50_ms")


def output_pixels(shape: Sequence[int]) -> int:
    """Positions of an output: N·H·W for N×C×H×W (the two last dims; leading dims before C multiply),
    N·L for N×C×L, N for N×K (a classifier makes one prediction per image)."""
    if len(shape) >= 4:
        return math.prod(shape[:-3]) * shape[-2] * shape[-1]
    if len(shape) == 3:
        return shape[0] * shape[2]
    return shape[0] if shape else 1


def final_field(trace: Trace) -> dict[str, Any]:
    """Output stride (the coarsest stride of any feature map that still has its H and W axes; maps
    pooled to a fixed grid, and maps computed from them alone, do not count: their stride follows the
    input size) and the receptive field of the model's output (largest over the axes, local part;
    `rf_global` when some path sees the whole input)."""
    try:
        fields = receptive_fields(trace)
    except InspectlabError as exc:
        return {"output_stride": None, "rf": None, "rf_global": None, "notes": f"receptive field: {exc}"}
    pooled = pooled_to_a_grid(trace)
    strides = [max(info.stride) for tensor, info in fields.items()
               if tensor not in pooled and info.axes and not info.unknown and all(d is not None for d in info.dims)]
    root = next(call for call in trace.calls if call.parent is None)
    info = call_field(fields, root)
    sizes = [s for s in (info.size or ()) if s is not None] if info is not None else []
    note = f"receptive field unknown: {info.unknown}" if info is not None and info.unknown else None
    return {
        "output_stride": plain_number(max(strides)) if strides else None,
        "rf": int(max(sizes)) if sizes and not note else None,
        "rf_global": bool(info.is_global) if info is not None and not note else None,
        "notes": note,
    }


def pooled_to_a_grid(trace: Trace) -> set[int]:
    """Tensors made by adaptive pooling, or by ops whose activation inputs all are such tensors (a classifier
    head after `AdaptiveAvgPool2d(8)`); a merge with an unpooled map (x · SE(x)) is not."""
    pooled: set[int] = set()
    for op in trace.ops:
        activations = [t for t in op.inputs if trace.tensors[t].kind in ("activation", "input")]
        if "adaptive_" in op.name or (activations and all(t in pooled for t in activations)):
            pooled.update(op.outputs)
    return pooled


def fit_exponent(x: Sequence[float], y: Sequence[float | None]) -> float | None:
    """The slope b of the least-squares fit log y = a + b·log x over the points with positive x and y;
    None with fewer than two distinct x."""
    points = [(math.log(a), math.log(b)) for a, b in zip(x, y, strict=True)
              if a is not None and b is not None and a > 0 and b > 0 and math.isfinite(b)]
    if len({p[0] for p in points}) < 2:
        return None
    mean_x = math.fsum(p[0] for p in points) / len(points)
    mean_y = math.fsum(p[1] for p in points) / len(points)
    covariance = math.fsum((px - mean_x) * (py - mean_y) for px, py in points)
    variance = math.fsum((px - mean_x) ** 2 for px, _ in points)
    return covariance / variance


def sized(template: Shape, height: int, width: int) -> Shape:
    """The template input with its two last dims replaced by height and width."""
    if len(template) < 3:
        raise InspectlabError(f"a size sweep needs an input with spatial dims such as N×C×H×W, got {list(template)}")
    return (*template[:-2], height, width)
