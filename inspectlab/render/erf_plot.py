"""The effective-receptive-field heatmap: mean |gradient| per input pixel, with the analytic field drawn on it.

Two panels: the ERF on a linear scale (where the mass is) and on a log scale (how far it reaches,
next to the analytic field's box), with the discs holding 50% and 90% of the mass.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def erf_png(heat: np.ndarray, center: tuple[float, float], box: Any, radius50: float, radius90: float,
            title: str) -> bytes:
    """Render the two panels to PNG bytes. `box`: ((first row, last row), (first col, last col)) or None."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, Rectangle

    peak = float(heat.max()) if heat.size and heat.max() > 0 else 1.0
    scaled = heat / peak
    floor = 1e-6
    figure, axes = plt.subplots(1, 2, figsize=(11, 5.2), constrained_layout=True)
    panels = (
        (axes[0], scaled, "linear (fraction of the peak)", {"vmin": 0.0, "vmax": 1.0}),
        (axes[1], np.log10(np.maximum(scaled, floor)), "log10 (fraction of the peak)", {"vmin": np.log10(floor),
                                                                                          "vmax": 0.0}),
    )
    for ax, image, label, limits in panels:
        shown = ax.imshow(image, cmap="magma", interpolation="nearest", **limits)
        figure.colorbar(shown, ax=ax, shrink=0.8, label=label)
        if box is not None:
            (top, bottom), (left, right) = box
            ax.add_patch(Rectangle((left - 0.5, top - 0.5), right - left + 1, bottom - top + 1, fill=False,
                                   edgecolor="cyan", linewidth=1.5, label=f"analytic field {bottom - top + 1:g}×"
                                   f"{right - left + 1:g}"))
        for radius, style, name in ((radius50, "--", "50%"), (radius90, ":", "90%")):
            if np.isfinite(radius):
                ax.add_patch(Circle((center[1], center[0]), radius, fill=False, edgecolor="white", linestyle=style,
                                    linewidth=1.5, label=f"{name} of the mass: r = {radius:.1f} px"))
        ax.plot([center[1]], [center[0]], marker="+", color="cyan", markersize=10)
        ax.add_patch(Rectangle((-0.5, -0.5), heat.shape[1], heat.shape[0], fill=False, edgecolor="0.6",
                               linewidth=0.8))
        (low_y, high_y), (low_x, high_x) = _view(heat.shape, box)
        ax.set_xlim(low_x, high_x)
        ax.set_ylim(high_y, low_y)
        ax.set_xlabel("input column (px)")
        ax.set_ylabel("input row (px)")
    axes[0].legend(loc="lower left", fontsize=8, facecolor="0.15", edgecolor="0.5", labelcolor="white",
                   framealpha=0.85)
    figure.suptitle(title, fontsize=11)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def _view(shape: tuple[int, ...], box: Any) -> tuple[tuple[float, float], tuple[float, float]]:
    """Axis limits covering the image and the analytic field's box (which may reach past the image)."""
    limits = []
    for extent, span in zip(shape, box if box is not None else (None, None), strict=True):
        low, high = -0.5, extent - 0.5
        if span is not None:
            margin = 0.02 * (span[1] - span[0] + 1)
            low, high = min(low, span[0] - 0.5 - margin), max(high, span[1] + 0.5 + margin)
        limits.append((low, high))
    return limits[0], limits[1]
