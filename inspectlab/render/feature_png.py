"""PNG pictures of captured features: per output and image, its k most active channels next to the input.

Activity is a channel's mean |activation| over its positions. The channels of one picture share one
colour scale (a diverging map centred on 0 when some values are negative, else magma from 0) and one
colour bar, so their strengths compare. A vector output (N×K, or N×C×1×1) is drawn as a bar chart of its
k largest |values|. Other outputs are skipped.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from inspectlab.core.shapes import shape_text

if TYPE_CHECKING:
    import numpy as np
    import torch
    from matplotlib.figure import Figure


def input_pictures(batch: torch.Tensor) -> np.ndarray | None:
    """N×H×W×C pictures in [0, 1] of an N×C×H×W input (its first 3 channels, or its first, each picture
    scaled from its own min to max); None for an input that is not an image."""
    if batch.dim() != 4:
        return None
    shown = batch[:, :3] if batch.shape[1] >= 3 else batch[:, :1]
    low = shown.amin(dim=(1, 2, 3), keepdim=True)
    high = shown.amax(dim=(1, 2, 3), keepdim=True)
    scaled = (shown - low) / (high - low).clamp_min(1e-12)
    return scaled.permute(0, 2, 3, 1).detach().cpu().float().numpy()


def file_stem(key: str) -> str:
    """A file-name-safe form of an entry key: "layer1.0#2[out]" -> "layer1.0_2_out"."""
    return re.sub(r"[^\w.\-]+", "_", key).strip("_") or "output"


def feature_pngs(entries: Iterable[Any], pictures: np.ndarray | None, top_k: int = 16
                 ) -> list[tuple[str, Callable[[], bytes]]]:
    """(file name, a function drawing its PNG) per drawable entry (runtime.capture.Entry with its tensor) and
    batch element: the caller checks every file name before anything is drawn."""
    rendered = []
    for entry in entries:
        value = entry.value
        if value is None or value.dim() not in (2, 4) or not value.is_floating_point():
            continue
        for sample in range(value.shape[0]):
            suffix = f".b{sample}" if value.shape[0] > 1 else ""
            picture = pictures[sample] if pictures is not None and sample < len(pictures) else None
            rendered.append((f"{file_stem(entry.key)}{suffix}.png",
                             lambda v=value[sample], p=picture, k=entry.key: _png(k, v, p, top_k)))
    return rendered


def _png(key: str, value: torch.Tensor, picture: np.ndarray | None, top_k: int) -> bytes:
    buffer = io.BytesIO()
    feature_figure(key, value, picture, top_k).savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def feature_figure(key: str, value: torch.Tensor, picture: np.ndarray | None, top_k: int = 16) -> Figure:
    """The figure of one sample's output: C×H×W as a channel grid, K (or C×1×1) as a bar chart."""
    from matplotlib.figure import Figure

    values = value.detach().float().cpu()
    vector = values.dim() == 1 or (values.dim() == 3 and values.shape[1] * values.shape[2] == 1)
    figure = Figure(figsize=(10, 5.4), layout="constrained")
    left, right = figure.subfigures(1, 2, width_ratios=(1, 1.3 if not vector else 1.7))
    _draw_picture(left, picture)
    if vector:
        _draw_bars(right, values.flatten(), top_k)
    else:
        _draw_grid(right, values, top_k)
    figure.suptitle(f"{key}   ({shape_text(list(values.shape))})", fontsize=13)
    return figure


def _draw_picture(panel: Any, picture: np.ndarray | None) -> None:
    axes = panel.subplots()
    axes.set_axis_off()
    if picture is None:
        axes.text(0.5, 0.5, "input is not an image", ha="center", va="center")
        return
    axes.imshow(picture.squeeze(-1) if picture.shape[-1] == 1 else picture, cmap="gray")
    axes.set_title(f"input {picture.shape[0]}×{picture.shape[1]}")


def _draw_grid(panel: Any, values: torch.Tensor, top_k: int) -> None:
    import torch

    activity = values.abs().mean(dim=(1, 2))
    count = min(top_k, values.shape[0])
    order = torch.topk(activity, count).indices.tolist()
    shown = values[order]
    low, high = float(shown.min()), float(shown.max())
    if low < 0:
        bound = max(-low, high, 1e-12)
        cmap, low, high = "RdBu_r", -bound, bound
    else:
        cmap, low, high = "magma", 0.0, max(high, 1e-12)
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    axes = panel.subplots(rows, columns, squeeze=False)
    image = None
    for position, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if position >= count:
            continue
        image = ax.imshow(shown[position].numpy(), cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
        ax.set_title(f"ch {order[position]}  |a|={float(activity[order[position]]):.2g}", fontsize=8)
    panel.colorbar(image, ax=axes.ravel().tolist(), shrink=0.85)
    panel.suptitle(f"{count} most active of {values.shape[0]} channels (mean |activation|)", fontsize=10)


def _draw_bars(panel: Any, values: torch.Tensor, top_k: int) -> None:
    import torch

    count = min(top_k, values.numel())
    order = torch.topk(values.abs(), count).indices.tolist()
    axes = panel.subplots()
    heights = [float(values[i]) for i in order]
    axes.bar(range(count), heights, color=["#b2182b" if h < 0 else "#2166ac" for h in heights])
    axes.set_xticks(range(count), [str(i) for i in order], rotation=90, fontsize=7)
    axes.set_xlabel("index")
    axes.axhline(0, color="black", linewidth=0.6)
    axes.set_title(f"{count} largest |values| of {values.numel()}", fontsize=10)
