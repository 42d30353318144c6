"""The effective receptive field (Luo et al., NeurIPS 2016): with the model's own weights, the mean
|gradient| of one unit over random normal inputs, and the radii holding 50% and 90% of that mass.
Loading a weights file for it is here too (`load_weights`)."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from inspectlab.analysis.receptive_field import FieldMap, FieldRow
from inspectlab.core.errors import InspectlabError, first_line
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


def load_weights(model: nn.Module, path: str) -> nn.Module:
    """Load a state_dict file into `model` (torch.load with weights_only=True, or .safetensors); a dict
    holding it under "state_dict" or "model" is unwrapped. Keys must match exactly."""
    if not os.path.isfile(path):
        raise InspectlabError(f"no such weights file: {path}")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state: Any = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InspectlabError(f"cannot read weights from {path}: {type(exc).__name__}: {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise InspectlabError(f"{path} holds a {type(state).__name__}, not a state_dict")
    def shape(value: Any) -> str:
        return "×".join(map(str, value.shape)) if hasattr(value, "shape") else type(value).__name__

    own = model.state_dict()
    wrong = [f"{key} is {shape(value)} in the file, {shape(own[key])} in the model" for key, value in state.items()
             if key in own and hasattr(value, "shape") and tuple(value.shape) != tuple(own[key].shape)]
    missing = [f"{key} ({shape(own[key])})" for key in own if key not in state]
    unexpected = [f"{key} ({shape(state[key])})" for key in state if key not in own]
    problems = [f"{len(keys)} {what}: {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}" for what, keys in (
        ("with another shape", wrong), ("missing", missing), ("unexpected", unexpected)) if keys]
    if problems:  # the first keys of each kind, and their shapes, in one line
        raise InspectlabError(f"{path} does not fit the model: {'; '.join(problems)}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # anything else load_state_dict refuses (a value that is not a tensor, ...)
        raise InspectlabError(f"{path} does not fit the model: {first_line(str(exc))}") from exc
    return model
