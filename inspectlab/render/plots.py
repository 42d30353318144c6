"""Plots of comparisons and size sweeps (matplotlib figures on the Agg canvas; pyplot is never used).

Each function takes the rows of a frame (plain dicts, see `inspectlab.analysis.compare.frame_rows`), skips
rows without the values it needs, and returns a Figure, or None when no row has them.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from inspectlab.render.columns import duration
from inspectlab.render.formats import human_bytes, human_count

Rows = Sequence[Mapping[str, Any]]

_COLOURS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974",
            "#64B5CD")
_DPI = 110


def _figure(width: float, height: float, columns: int = 1) -> tuple[Any, list[Any]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = [figure.add_subplot(1, columns, k + 1) for k in range(columns)]
    for ax in axes:
        ax.grid(True, which="major", color="#dddddd", linewidth=0.7)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    return figure, axes


def _colours(rows: Rows) -> dict[int, str]:
    """A colour per row, by its position among all rows: a model keeps its colour in every plot."""
    return {id(row): _COLOURS[k % len(_COLOURS)] for k, row in enumerate(rows)}


def png_bytes(figure: Any, dpi: int = _DPI) -> bytes:
    """The figure as a PNG image."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def _has(row: Mapping[str, Any], *keys: str) -> bool:
    return all(isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool) and row[k] > 0
               for k in keys)


def _label_points(ax: Any, xs: Sequence[float], ys: Sequence[float], labels: Sequence[str],
                  radii: Sequence[float] | None = None, avoid: Sequence[Any] = ()) -> list[Any]:
    """Name each point beside its marker (radius `radii`, in points): the first place, right, left, above,
    below, then the four diagonals, whose text box (as the renderer measures it) stays inside the axes and
    overlaps no marker, no label placed before and none of the artists in `avoid`; failing all, the same
    places further out, joined to the marker by a thin line. Crowded points are named first. Call it once the
    rest of the figure (titles, legend) is made: the layout must not move afterwards. Returns the labels."""
    figure = ax.figure
    figure.draw_without_rendering()  # settle the layout, so that data -> display is final
    renderer = figure.canvas.get_renderer()
    pixels = figure.dpi / 72.0
    centres = [tuple(ax.transData.transform((x, y))) for x, y in zip(xs, ys, strict=True)]
    radii = list(radii) if radii else [6.0] * len(xs)
    markers = [_square(cx, cy, r * pixels) for (cx, cy), r in zip(centres, radii, strict=True)]
    taken = list(markers) + [_extent(artist, renderer) for artist in avoid]
    frame = _extent(ax, renderer)

    def crowding(k: int) -> float:
        return sum(1.0 / (1.0 + math.dist(centres[k], other)) for j, other in enumerate(centres) if j != k)

    placed: list[Any] = []
    for k in sorted(range(len(xs)), key=crowding, reverse=True):
        gap = radii[k] + 3.0
        text = ax.annotate(labels[k], (xs[k], ys[k]), textcoords="offset points", xytext=(0, 0), fontsize=_FONT)
        text.set_in_layout(False)
        chosen = None
        for ring in range(4):
            for dx, dy, ha, va in _places(gap + ring * _FONT * 1.4):
                text.set_position((dx, dy))
                text.set_ha(ha)
                text.set_va(va)
                box = _extent(text, renderer)
                inside = frame[0] <= box[0] and box[2] <= frame[2] and frame[1] <= box[1] and box[3] <= frame[3]
                if inside and not any(_overlap(box, other) for j, other in enumerate(taken) if j != k):
                    chosen = (dx, dy, ha, va, ring > 0)
                    break
            if chosen:
                break
        dx, dy, ha, va, leader = chosen or (gap, 0.0, "left", "center", False)
        text.remove()
        text = ax.annotate(labels[k], (xs[k], ys[k]), textcoords="offset points", xytext=(dx, dy), ha=ha, va=va,
                           fontsize=_FONT, arrowprops={"arrowstyle": "-", "color": "#777777", "linewidth": 0.6,
                                                       "shrinkA": 0, "shrinkB": radii[k]} if leader else None)
        text.set_in_layout(False)
        taken.append(_extent(text, renderer))
        placed.append(text)
    return placed


_FONT = 8


def _places(gap: float) -> list[tuple[float, float, str, str]]:
    """Offsets (points) and alignments of a label `gap` points from its point: right, left, above, below, then
    the diagonals."""
    side = gap * 0.75
    return [(gap, 0.0, "left", "center"), (-gap, 0.0, "right", "center"), (0.0, gap, "center", "bottom"),
            (0.0, -gap, "center", "top"), (side, side, "left", "bottom"), (side, -side, "left", "top"),
            (-side, side, "right", "bottom"), (-side, -side, "right", "top")]


def _square(cx: float, cy: float, half: float) -> tuple[float, float, float, float]:
    return (cx - half, cy - half, cx + half, cy + half)


def _extent(artist: Any, renderer: Any) -> tuple[float, float, float, float]:
    """An artist's box on the canvas (pixels): left, bottom, right, top."""
    box = artist.get_window_extent(renderer)
    return (box.x0, box.y0, box.x1, box.y1)


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _plain_ticks(ax: Any, *axes: str) -> None:
    """Log-axis ticks written 0.5, 2, 40 rather than 5×10⁻¹."""
    from matplotlib.ticker import FuncFormatter

    formatter = FuncFormatter(lambda value, _: f"{value:g}")
    for name in axes:
        axis = ax.xaxis if name == "x" else ax.yaxis
        axis.set_major_formatter(formatter)
        axis.set_minor_formatter(FuncFormatter(_two_and_five))


def _two_and_five(value: float, _: Any = None) -> str:
    """A minor tick's label where its first digit is 2 or 5 (0.2, 50, 2000), else none."""
    text = f"{value:g}"
    return text if text.lstrip("0.")[:1] in ("2", "5") else ""


def _pad_log_axis(ax: Any, axis: str, values: Sequence[float], factor: float = 1.8) -> None:
    low, high = min(values), max(values)
    setter = ax.set_xlim if axis == "x" else ax.set_ylim
    setter(low / factor, high * factor)


def macs_params_chart(rows: Rows, bubble: str = "peak_bytes") -> Any:
    """MACs against params (log-log), one bubble per model, its area proportional to `bubble`
    (peak_bytes, activation_bytes or latency_p50_ms)."""
    points = [r for r in rows if _has(r, "params", "macs")]
    if not points:
        return None
    from matplotlib.lines import Line2D

    sized = [r for r in points if _has(r, bubble)]
    largest = max((float(r[bubble]) for r in sized), default=1.0)
    figure, (ax,) = _figure(8.0, 4.8)
    xs = [r["params"] / 1e6 for r in points]
    ys = [r["macs"] / 1e9 for r in points]
    areas = [_AREA * float(r[bubble]) / largest if _has(r, bubble) else 30.0 for r in points]
    areas = [max(a, 30.0) for a in areas]
    colours = _colours(rows)
    for k, r in enumerate(points):
        ax.scatter(xs[k], ys[k], s=areas[k], color=colours[id(r)], alpha=0.55, edgecolors="black", linewidths=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _pad_log_axis(ax, "x", xs)
    _pad_log_axis(ax, "y", ys, 2.5)
    _plain_ticks(ax, "x", "y")
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("MACs (billions)")
    what = BUBBLES.get(bubble, bubble)
    ax.set_title(f"MACs vs parameters · bubble area ∝ {what}", fontsize=10)
    if sized:
        shown = _reference_values(largest)
        handles = [Line2D([], [], marker="o", linestyle="", markerfacecolor="#bbbbbb", markeredgecolor="black",
                          markersize=math.sqrt(_AREA * v / largest), alpha=0.6) for v in shown]
        ax.legend(handles, [_bubble_text(bubble, v) for v in shown], title=what, loc="upper left",
                  bbox_to_anchor=(1.02, 1.0), fontsize=8, title_fontsize=8, labelspacing=2.2, borderpad=1.2,
                  handlelength=3.0, handletextpad=2.5, frameon=False)
    _label_points(ax, xs, ys, [r["model"] for r in points], [math.sqrt(a) / 2 for a in areas])
    return figure


_AREA = 1600.0  # points² of the largest bubble
BUBBLES = {"peak_bytes": "estimated peak memory", "activation_bytes": "activation memory",
            "latency_p50_ms": "latency p50"}


def _reference_values(largest: float) -> list[float]:
    return [largest / 4, largest / 2, largest]


def _bubble_text(bubble: str, value: float) -> str:
    if bubble.startswith("latency"):
        return duration(float(f"{value:.2g}"))
    for factor, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if value >= factor:
            return f"{float(f'{value / factor:.2g}'):g} {unit}"
    return f"{value:.0f} B"


def latency_chart(rows: Rows) -> Any:
    """Horizontal bars of latency p50 per model, whiskers up to p90."""
    points = [r for r in rows if _has(r, "latency_p50_ms", "latency_p90_ms")]
    if not points:
        return None
    figure, (ax,) = _figure(7.5, 0.9 + 0.45 * len(points))
    seconds = max(r["latency_p90_ms"] for r in points) >= 1000
    scale = 1e-3 if seconds else 1.0
    labels = [r["model"] for r in points]
    p50 = [r["latency_p50_ms"] * scale for r in points]
    spread = [max(r["latency_p90_ms"] - r["latency_p50_ms"], 0.0) * scale for r in points]
    positions = list(range(len(points)))[::-1]
    ax.barh(positions, p50, xerr=[[0.0] * len(points), spread], height=0.6,
            color=[_colours(rows)[id(r)] for r in points], alpha=0.8,
            error_kw={"capsize": 4, "elinewidth": 1.2, "ecolor": "black"})
    for position, r in zip(positions, points, strict=True):
        ax.annotate(f" {duration(r['latency_p50_ms'])} (p90 {duration(r['latency_p90_ms'])})",
                    (r["latency_p90_ms"] * scale, position), va="center", fontsize=8)
    ax.set_yticks(positions, labels, fontsize=8)
    ax.set_xlim(0, max(r["latency_p90_ms"] for r in points) * scale * 1.5)
    ax.set_xlabel(f"latency per forward ({'s' if seconds else 'ms'}): bar = p50, whisker = p90")
    ax.grid(False, axis="y")
    ax.set_title("Latency", fontsize=10)
    return figure


def rf_stride_chart(rows: Rows, input_side: int | None = None) -> Any:
    """Receptive field of the final feature map against the output stride (log-log, base 2); models
    with a global path (global pooling, attention) drawn as stars; a dashed line at the input side."""
    points = [r for r in rows if _has(r, "output_stride", "rf")]
    if not points:
        return None
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FixedLocator, NullLocator

    figure, (ax,) = _figure(7.5, 5.0)
    xs = [float(r["output_stride"]) for r in points]
    ys = [float(r["rf"]) for r in points]
    colours = _colours(rows)
    sizes = [110.0 if r.get("rf_global") else 70.0 for r in points]
    for k, r in enumerate(points):
        ax.scatter(xs[k], ys[k], s=sizes[k], marker="*" if r.get("rf_global") else "o",
                   color=colours[id(r)], edgecolors="black", linewidths=0.6, zorder=3)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ticks = [2**k for k in range(int(math.log2(min(xs))) - 1, int(math.log2(max(xs))) + 3)]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlim(ticks[0] * 0.8, ticks[-1] * 1.25)
    values = [*ys, *([input_side] if input_side else [])]
    _pad_log_axis(ax, "y", values, 1.6)
    _plain_ticks(ax, "y")
    avoid: list[Any] = []
    if input_side:
        avoid.append(ax.axhline(input_side, color="#888888", linestyle="--", linewidth=1))
        avoid.append(ax.annotate(f"input side {input_side} px", (ticks[0] * 0.85, input_side),
                                 textcoords="offset points", xytext=(0, 4), fontsize=8, color="#555555"))
    ax.set_xlabel("output stride (coarsest feature map)")
    ax.set_ylabel("receptive field of the output (px)")
    ax.set_title("Receptive field vs output stride", fontsize=10)
    marks = [Line2D([], [], marker="o", linestyle="", color="#999999", markeredgecolor="black", label="local only"),
             Line2D([], [], marker="*", linestyle="", color="#999999", markeredgecolor="black", markersize=10,
                    label="also a global path")]
    avoid.append(ax.legend(handles=marks, loc="lower right", fontsize=8, frameon=False))
    _label_points(ax, xs, ys, [r["model"] for r in points], [math.sqrt(size) / 2 for size in sizes], avoid)
    return figure


def _fit_line(ax: Any, xs: Sequence[float], ys: Sequence[float], exponent: float | None, colour: str) -> None:
    """The fitted power law through the points' geometric mean."""
    if exponent is None or len(xs) < 2:
        return
    mean_x = math.fsum(math.log(x) for x in xs) / len(xs)
    mean_y = math.fsum(math.log(y) for y in ys) / len(ys)
    ends = [min(xs), max(xs)]
    ax.plot(ends, [math.exp(mean_y + exponent * (math.log(x) - mean_x)) for x in ends], color=colour,
            linestyle=":", linewidth=1)


def sweep_chart(rows: Rows, exponents: Mapping[str, float | None]) -> Any:
    """Log-log plots against pixels (H·W): MACs and other FLOPs; activation and peak memory; latency
    (when measured). Each series is labelled with its fitted exponent, the fit drawn dotted."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    panels = [
        ("compute", (("macs", "MACs"), ("other_flops", "other FLOPs")), "operations", human_count),
        ("memory", (("activation_bytes", "activation memory"), ("peak_bytes", "peak memory")), "bytes",
         human_bytes),
        ("latency", (("latency_p50_ms", "latency p50"),), "time per forward", duration),
    ]
    panels = [p for p in panels if any(_has(r, key) for r in rows for key, _ in p[1])]
    if not panels:
        return None
    figure, axes = _figure(4.2 * len(panels), 4.2, len(panels))
    for ax, (title, series, unit, show) in zip(axes, panels, strict=True):
        for k, (key, name) in enumerate(series):
            points = [r for r in rows if _has(r, key, "pixels")]
            if not points:
                continue
            xs = [float(r["pixels"]) for r in points]
            ys = [float(r[key]) for r in points]
            exponent = exponents.get(key)
            colour = _COLOURS[k]
            text = f"{name}: ∝ pixels^{exponent:.3f}" if exponent is not None else name
            ax.plot(xs, ys, marker="o", color=colour, label=text)
            if key == "latency_p50_ms":
                spread = [max((r.get("latency_p90_ms") or y) - y, 0.0) for r, y in zip(points, ys, strict=True)]
                ax.errorbar(xs, ys, yerr=[[0.0] * len(xs), spread], fmt="none", ecolor="black", capsize=3)
            _fit_line(ax, xs, ys, exponent, colour)
        ax.set_xscale("log")
        ax.set_yscale("log", base=2 if unit == "bytes" else 10)  # bytes: ticks at 64 MiB, 128 MiB, ...
        sizes = [r for r in rows if _has(r, "pixels")]
        ax.set_xticks([r["pixels"] for r in sizes], [r["size"] for r in sizes], fontsize=7, rotation=30)
        ax.minorticks_off()
        if unit != "bytes":  # ticks at 1, 2, 5 × 10^k where the range is short
            low, high = ax.get_ylim()
            ax.yaxis.set_major_locator(LogLocator(10, subs=(1.0,) if high / low > 1e3 else (1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _, show=show: show(value)))
        ax.set_xlabel("input size (H×W), log of pixels")
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8, loc="upper left", frameon=False)
    return figure


def grouped_latency_chart(items: Sequence[str], groups: Sequence[str], p50: Sequence[Sequence[float | None]],
                          p90: Sequence[Sequence[float | None]]) -> Any:
    """p50 of each item (a model at an input) per group, a dot each, with a line on to p90; one row per item, the
    groups side by side within it; a log time axis, so that a laptop and a GPU fit on one picture."""
    figure, (ax,) = _figure(8.0, 1.2 + 0.22 * len(items) * max(len(groups), 1) + 0.15 * len(items))
    step = 0.8 / max(len(groups), 1)
    values = [v for line in [*p50, *p90] for v in line if v]
    for g, name in enumerate(groups):
        colour = _COLOURS[g % len(_COLOURS)]
        for k in range(len(items)):
            if p50[k][g] is None:
                continue
            position = len(items) - 1 - k + 0.4 - (g + 0.5) * step
            high = p90[k][g]
            if high is not None and high > p50[k][g]:
                ax.plot([p50[k][g], high], [position, position], color=colour, linewidth=1.2)
            ax.plot([p50[k][g]], [position], marker="o", color=colour, markeredgecolor="black", markeredgewidth=0.5,
                    linestyle="", label=name if k == next(i for i in range(len(items)) if p50[i][g] is not None)
                    else None)
    ax.set_xscale("log")
    if values:
        _pad_log_axis(ax, "x", values, 1.5)
    _plain_ticks(ax, "x")
    ax.set_yticks(range(len(items))[::-1], list(items), fontsize=8)
    ax.set_ylim(-0.6, len(items) - 0.4)
    ax.set_xlabel("latency per forward (ms, log scale): dot = p50, line to p90")
    ax.grid(False, axis="y")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title("Latency per machine/condition", fontsize=10)
    return figure


def latency_scaling_chart(series: Mapping[str, Sequence[tuple[float, float, str]]]) -> Any:
    """p50 against pixels (log-log), one line per series name: (pixels, p50 ms, size label) points."""
    from matplotlib.ticker import NullLocator

    figure, (ax,) = _figure(7.5, 4.5)
    for k, (name, points) in enumerate(series.items()):
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=_COLOURS[k % len(_COLOURS)],
                label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    sizes = {p[0]: p[2] for points in series.values() for p in points}
    ax.set_xticks(list(sizes), list(sizes.values()), fontsize=7, rotation=30)
    ax.xaxis.set_minor_locator(NullLocator())
    _pad_log_axis(ax, "y", [p[1] for points in series.values() for p in points], 1.6)
    _plain_ticks(ax, "y")
    ax.set_xlabel("input (log of pixels H·W)")
    ax.set_ylabel("latency p50 (ms)")
    ax.legend(fontsize=8, loc="best", frameon=False)
    ax.set_title("Latency against input size", fontsize=10)
    return figure
