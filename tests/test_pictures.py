"""The pictures look right (issue 17 §7), each measured on the drawing itself: the title of a 3-D "×k" box clears
its front face's top edge; no frame of the DeepLabV3+ or LR-ASPP graph holds a tall empty band; the SVG of a
wide graph (HRNet at depth 3) has a viewBox and opens at a scale that shows its whole width in a 1400-pixel
window; the labels of the receptive-field plot sit beside their markers and overlap nothing."""

from __future__ import annotations

import math
import re
import shutil
import xml.etree.ElementTree as ET
from functools import cache

import pytest
from matplotlib.text import Text

from inspectlab import api
from inspectlab.render import plots
from inspectlab.render.graphviz_render import SVG_FIT_WIDTH, SVG_MIN_SCALE, render_bytes

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed "
                               "(apt-get install graphviz); CI installs it")
NS = "{http://www.w3.org/2000/svg}"
CAP_HEIGHT = 0.72  # of Helvetica (bold too), in ems: the top of a capital letter above its baseline


@cache
def svg(model: str, shape: tuple[int, ...], depth: int) -> ET.Element:
    return ET.fromstring(render_bytes(api.graph(model, shape, depth=depth), "svg"))


def _numbers(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", text)]


def _box(group: ET.Element) -> tuple[float, float, float, float] | None:
    """left, top, right, bottom of a node's or frame's outline (SVG y grows downward)."""
    xs: list[float] = []
    ys: list[float] = []
    for element in group:
        tag = element.tag.removeprefix(NS)
        if tag in ("polygon", "polyline", "path"):
            values = _numbers(element.get("points") or element.get("d") or "")
            xs += values[0::2]
            ys += values[1::2]
        elif tag == "ellipse":
            cx, cy, rx, ry = (float(element.get(k)) for k in ("cx", "cy", "rx", "ry"))
            xs += [cx - rx, cx + rx]
            ys += [cy - ry, cy + ry]
    return (min(xs), min(ys), max(xs), max(ys)) if xs else None


def _groups(root: ET.Element, klass: str) -> list[ET.Element]:
    return [g for g in root.iter(NS + "g") if g.get("class") == klass]


def _title_clearance(group: ET.Element) -> tuple[str, float]:
    """(shape, the gap in points between the top of the bold title's capitals and the top edge of the box's front
    face): a 3-D box's front face starts below its lip (the horizontal polyline); a rounded box's is its outline."""
    title = next(t for t in group.iter(NS + "text") if t.get("font-weight") == "bold")
    cap_top = float(title.get("y")) - CAP_HEIGHT * float(title.get("font-size"))
    lips = [_numbers(p.get("points")) for p in group.iter(NS + "polyline")]
    horizontal = [v[1] for v in lips if len(v) == 4 and v[1] == v[3]]
    if horizontal:
        return "box3d", cap_top - horizontal[0]
    return "box", cap_top - _box(group)[1]


@needs_dot
def test_the_title_of_a_3d_box_clears_its_top_edge():
    root = svg("resnet50", (1, 3, 64, 64), 2)
    clearances = [_title_clearance(g) for g in _groups(root, "node")
                  if any(t.get("font-weight") == "bold" for t in g.iter(NS + "text"))
                  and g.find(NS + "ellipse") is None]
    boxes3d = [gap for shape, gap in clearances if shape == "box3d"]
    rounded = [gap for shape, gap in clearances if shape == "box"]
    assert len(boxes3d) == 4  # one "Bottleneck ×k" per stage
    assert min(boxes3d) >= 1.5, boxes3d  # was -1.1: the capitals crossed the front face's top edge
    assert min(boxes3d) >= min(rounded), (boxes3d, rounded)  # as clear as a plain box's title


def _largest_empty_band(frame: tuple[float, float, float, float], inside: list[tuple[float, float, float, float]]
                        ) -> float:
    """The tallest horizontal band of a frame (below its title line) that none of the boxes inside it reaches."""
    top, bottom = frame[1] + 14, frame[3]
    spans = sorted((max(b[1], top), min(b[3], bottom)) for b in inside if b[1] < bottom and b[3] > top)
    largest, reached = 0.0, top
    for low, high in spans:
        largest, reached = max(largest, low - reached), max(reached, high)
    return max(largest, bottom - reached)


def _empty_bands(root: ET.Element) -> dict[str, float]:
    frames = {g.findtext(NS + "title"): _box(g) for g in _groups(root, "cluster")}
    boxes = [_box(g) for g in _groups(root, "node")] + list(frames.values())

    def within(box: tuple[float, ...], frame: tuple[float, ...]) -> bool:
        return box != frame and box[0] >= frame[0] - 0.5 and box[2] <= frame[2] + 0.5 and \
            box[1] >= frame[1] - 0.5 and box[3] <= frame[3] + 0.5

    return {name: _largest_empty_band(frame, [b for b in boxes if within(b, frame)]) for name, frame in frames.items()}


@needs_dot
@pytest.mark.parametrize(("model", "depth"), [("deeplabv3plus_resnet50", 3), ("lraspp_mobilenet_v3_large", 2)])
def test_no_frame_holds_a_tall_empty_band(model, depth):
    # The classifier frame used to start beside backbone.layer1 (where its low-level projection reads) and run
    # down beside the whole backbone, empty: bands of 189 pt (DeepLabV3+) and 350 pt (LR-ASPP). A box is about
    # 22 pt tall and ranks are 9 pt apart.
    bands = _empty_bands(svg(model, (1, 3, 128, 128), depth))
    assert len(bands) >= 2
    assert max(bands.values()) <= 60, bands


@needs_dot
def test_a_wide_svg_has_a_viewbox_and_opens_showing_its_whole_width():
    root = svg("hrnetv2_w32", (1, 3, 64, 64), 3)
    view = _numbers(root.get("viewBox"))
    width, height = (float(root.get(k).removesuffix("pt")) for k in ("width", "height"))
    assert view[2] > SVG_FIT_WIDTH  # a wide drawing: 1936 pt, 2581 px at 100 %
    scale = width / view[2]
    assert math.isclose(scale, height / view[3], rel_tol=0.01)  # the aspect ratio kept
    assert SVG_MIN_SCALE <= scale < 1 and width <= SVG_FIT_WIDTH + 0.5  # 1000 pt = 1333 px < 1400 px
    assert "max-width: 100%" in root.get("style")  # a narrower window shrinks it further
    small = ET.fromstring(render_bytes(api.graph("lenet5", (1, 1, 32, 32), depth=1), "svg"))
    assert float(small.get("width").removesuffix("pt")) == pytest.approx(_numbers(small.get("viewBox"))[2], abs=0.5)


# the receptive-field plot -------------------------------------------------------------------------------
# `inspectlab compare` of the five segmentation networks at 1×3×512×512 (reports/segmentation.csv): output
# stride, receptive field (px), global path. The values only place the points; the test measures the layout.
SEGMENTATION = [("unet", 16, 236, False), ("deeplabv3plus_resnet50", 16, 1035, True),
                ("deeplabv3plus_hrnetv2_w32", 32, 3135, True), ("lraspp_mobilenet_v3_large", 16, 691, True),
                ("matting_mobilenetv3", 16, 787, True)]
CROWDED = [(f"model_{k}", 16, 400 + 25 * k, k % 2 == 0) for k in range(8)] + [("far_away", 8, 3000, False)]


def _layout(points: list[tuple[str, int, int, bool]]):
    rows = [{"model": m, "output_stride": s, "rf": rf, "rf_global": g} for m, s, rf, g in points]
    figure = plots.rf_stride_chart(rows, 512)
    figure.draw_without_rendering()
    renderer = figure.canvas.get_renderer()
    (ax,) = figure.axes
    names = {m for m, *_ in points}
    labels = {t.get_text(): t for t in ax.texts if t.get_text() in names}
    markers = {}
    for collection in ax.collections:
        (x, y), (size,) = collection.get_offsets()[0], collection.get_sizes()
        markers[(float(x), float(y))] = (ax.transData.transform((x, y)), math.sqrt(size) / 2 * figure.dpi / 72)
    return figure, renderer, labels, [(m, markers[(float(s), float(rf))]) for m, s, rf, _ in points]


def _distance(point, box) -> float:
    dx = max(box.x0 - point[0], 0.0, point[0] - box.x1)
    dy = max(box.y0 - point[1], 0.0, point[1] - box.y1)
    return math.hypot(dx, dy)


@pytest.mark.parametrize("points", [SEGMENTATION, CROWDED], ids=["segmentation", "crowded"])
def test_rf_plot_labels_sit_by_their_markers_and_overlap_nothing(points):
    figure, renderer, labels, markers = _layout(points)
    assert set(labels) == {m for m, *_ in points}
    boxes = {name: Text.get_window_extent(text, renderer) for name, text in labels.items()}  # the text, no leader
    near = 0
    for name, (centre, radius) in markers:
        box = boxes[name]
        gap = _distance(centre, box) - radius  # pixels from the marker's edge to its label
        if labels[name].arrow_patch is None:  # no leader line: the label must be right by its marker, in line
            assert gap <= 8 * figure.dpi / 72, (name, gap)
            beside = abs((box.y0 + box.y1) / 2 - centre[1]) <= 1 or abs((box.x0 + box.x1) / 2 - centre[0]) <= 1
            diagonal = min(abs(box.x0 - centre[0]), abs(box.x1 - centre[0])) <= radius + 8 and \
                min(abs(box.y0 - centre[1]), abs(box.y1 - centre[1])) <= radius + 8
            assert beside or diagonal, name
            if points is SEGMENTATION:  # distinct markers: each label is nearer its own than any other
                others = [_distance(c, box) - r for other, (c, r) in markers if other != name]
                assert gap < min(others), (name, gap, min(others))
            near += 1
        for other, (centre_other, radius_other) in markers:
            assert _distance(centre_other, box) >= radius_other - 0.5, (name, "covers the marker of", other)
    assert near >= len(points) - 2  # at most two labels pushed out, each with its leader line
    names = list(boxes)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not boxes[a].overlaps(boxes[b]), (a, b)
    if points is SEGMENTATION:  # distinct values: no marker hides another (lraspp's and matting's stars touched)
        for i, (a, (centre_a, radius_a)) in enumerate(markers):
            for b, (centre_b, radius_b) in markers[i + 1:]:
                assert math.dist(centre_a, centre_b) >= radius_a + radius_b, (a, b)
    side = next(t for t in figure.axes[0].texts if t.get_text().startswith("input side"))
    for name, box in boxes.items():
        assert not box.overlaps(side.get_window_extent(renderer)), name
