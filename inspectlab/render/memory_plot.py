"""The memory timeline of an estimated run as a picture: live bytes by category while each op runs, stacked,
with the phase boundaries (forward, backward, optimizer) marked and the peak pointed at. Returns PNG bytes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from inspectlab.render.formats import human_bytes
from inspectlab.render.plots import png_bytes

# bottom to top: what lives throughout first, the kernels' buffers last
ORDER = ("parameter", "param", "buffer", "constant", "input", "optimizer", "gradient", "weight copy", "activation",
         "temporary", "workspace")
COLOURS = {"parameter": "#2e7d32", "param": "#2e7d32", "buffer": "#81c784", "constant": "#81c784",
           "input": "#424242", "optimizer": "#c9a227", "gradient": "#1f4e9c", "activation": "#c62828",
           "temporary": "#8e6cc0", "workspace": "#9e9e9e", "weight copy": "#6fa8dc"}
LABELS = {"param": "parameter", "constant": "buffer", "optimizer": "optimizer state",
          "weight copy": "low-precision weight copies (autocast)",
          "activation": "activations saved for backward", "workspace": "kernel workspace"}


def timeline_figure(points: Sequence[tuple[int, Mapping[str, int]]], phase_starts: Mapping[str, int],
                    title: str, peak: tuple[int, int] | None = None) -> Any:
    """A stacked area chart of (op index, bytes by category) points; `peak`: (op index, bytes) to mark."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9.5, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(1, 1, 1)
    origin = points[0][0] if points else 0
    xs = [x - origin for x, _ in points]
    present = [c for c in ORDER if any(values.get(c) for _, values in points)]
    present += sorted({c for _, values in points for c in values} - set(present))
    scale, unit = _unit(max((sum(v.values()) for _, v in points), default=1))
    stacks = [[values.get(c, 0) / scale for _, values in points] for c in present]
    if xs:
        training = len(phase_starts) > 1
        names = [LABELS.get(c, c) if training or c != "activation" else "activations" for c in present]
        ax.stackplot(xs, *stacks, labels=names,
                     colors=[COLOURS.get(c, "#bdbdbd") for c in present], step="post", linewidth=0)
    top = max((sum(v.values()) for _, v in points), default=0) / scale
    if len(phase_starts) > 1:
        for name, start in sorted(phase_starts.items(), key=lambda item: item[1]):
            ax.axvline(start - origin, color="#333333", linestyle="--", linewidth=0.8)
            ax.text(start - origin, 1.005, f" {name}", fontsize=8, va="bottom", ha="left", color="#333333",
                    transform=ax.get_xaxis_transform())
    if peak is not None:
        ax.annotate(f"peak {human_bytes(peak[1])}", xy=(peak[0] - origin, peak[1] / scale),
                    xytext=(0.01, 0.965), textcoords="axes fraction", fontsize=9, va="top",
                    arrowprops={"arrowstyle": "->", "color": "#000000", "linewidth": 0.8})
    ax.set_xlim(xs[0] if xs else 0, (xs[-1] + 1) if xs else 1)
    ax.set_ylim(0, top * 1.12 if top else 1)
    ax.set_xlabel("op, in the order the run makes them")
    ax.set_ylabel(f"live memory ({unit})")
    ax.set_title(title, fontsize=10, pad=16)
    ax.grid(True, axis="y", color="#dddddd", linewidth=0.7)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, reverse=True)
    return figure


def timeline_png(points: Sequence[tuple[int, Mapping[str, int]]], phase_starts: Mapping[str, int], title: str,
                 peak: tuple[int, int] | None = None) -> bytes:
    """`timeline_figure` as PNG bytes."""
    return png_bytes(timeline_figure(points, phase_starts, title, peak))


def _unit(largest: float) -> tuple[float, str]:
    for factor, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if largest >= factor:
            return float(factor), name
    return 1.0, "B"
