"""The effective receptive field (Luo et al., NeurIPS 2016): with the model's own weights, the mean
|gradient| of one unit over random normal inputs, and the radii holding 50% and 90% of that mass.
Weights files are loaded by `inspectlab.core.checkpoints`."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from inspectlab.analysis.receptive_field import FieldMap, FieldRow
from inspectlab.core.errors import InspectlabError
from inspectlab.runtime.row_outputs import row_tensor, run_with_hooks
from inspectlab.tracing.inputs import example_inputs


@dataclass
class EffectiveField:
    """Mean |gradient| of one unit over random inputs, per input pixel, and where its mass lies."""

    name: str
    unit: list[int | None]
    heat: np.ndarray  # (H, W), summed over input channels, averaged over samples
    center: tuple[float, float]  # centre of the unit's analytic field (input pixels, row, column)
    box: tuple[tuple[float, float], tuple[float, float]] | None  # analytic field (rows, columns), unclipped
    radius50: float
    radius90: float
    samples: int


def mass_radius(heat: np.ndarray, center: Sequence[float], fraction: float) -> float:
    """Smallest radius (Euclidean, in pixels, around `center`) of a disc holding `fraction` of the mass."""
    rows, cols = np.indices(heat.shape)
    distance = np.hypot(rows - center[0], cols - center[1]).ravel()
    order = np.argsort(distance, kind="stable")
    mass = np.cumsum(heat.ravel()[order])
    if mass[-1] <= 0:
        return math.nan
    position = int(np.searchsorted(mass, fraction * mass[-1]))
    return float(distance[order][min(position, len(order) - 1)])


def effective_field(model: nn.Module, fields: FieldMap, row: FieldRow, inputs_shape: Sequence[int],
                    samples: int = 16, seed: int = 0, device: str = "cpu", chunk: int = 4) -> EffectiveField:
    """ERF of `row`'s centre unit (Luo et al., NeurIPS 2016) with the model's own weights, in eval mode on a
    deep copy: mean over `samples` standard-normal inputs of |d unit / d input|, summed over channels."""
    if samples < 1:
        raise InspectlabError("--samples must be at least 1")
    if len(fields.spatial_dims) != 2:
        raise InspectlabError("--erf needs a 2-D image input (N×C×H×W)")
    tabled = [a for a in row.field.axes if a.table is not None]
    if len(tabled) != 2:
        raise InspectlabError(f"--erf: {row.name} has no per-position field (global or flattened); pick a "
                              "spatial layer with --erf-layer")
    clone = copy.deepcopy(model).to(device).eval()
    for param in clone.parameters():
        param.requires_grad_(False)
    unit = [int(a.table.shape[1] // 2) for a in row.field.axes]  # type: ignore[union-attr]
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros(tuple(fields.input_size), dtype=torch.float64)
    done = 0
    while done < samples:
        count = min(chunk, samples - done)
        shape = (count, *inputs_shape[1:])
        x = example_inputs([shape], "float32", device, seed=generator)[0].requires_grad_(True)
        with torch.enable_grad():
            tensor = row_tensor(run_with_hooks(clone, [x]), fields, row)
            if tensor is None:
                raise InspectlabError(f"--erf: no module call returns the output of {row.name}; pick another "
                                      "--erf-layer")
            index: list[Any] = [slice(None)] * tensor.dim()
            for axis, position in zip(row.field.axes, unit, strict=True):
                index[axis.dim] = position  # type: ignore[index]
            (grad,) = torch.autograd.grad(tensor[tuple(index)].sum(), x, allow_unused=True) or (None,)
        if grad is not None:
            dims = [d for d in range(grad.dim()) if d not in fields.spatial_dims]
            total += grad.abs().sum(dim=dims).double().cpu()
        done += count
    heat = (total / samples).numpy()
    spans = row.field.unit(unit)
    box = (spans[0], spans[1]) if spans[0] is not None and spans[1] is not None else None
    center = ((box[0][0] + box[0][1]) / 2, (box[1][0] + box[1][1]) / 2) if box else (
        (heat.shape[0] - 1) / 2, (heat.shape[1] - 1) / 2)
    return EffectiveField(row.name, unit, heat, center, box, mass_radius(heat, center, 0.5),
                          mass_radius(heat, center, 0.9), samples)
