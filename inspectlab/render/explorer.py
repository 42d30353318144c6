"""The explorer: one self-contained HTML page (docs/explore.md) holding a model's graph at every depth level as
inline SVG with pan and zoom, a side panel for the selected node, a search box and a sortable layer table.

Nothing on the page is fetched: the script, the styles, the drawings and the data are inline, and a
Content-Security-Policy allows nothing else (no network, no file, no frame). The page's template and script
are package data beside this module (explorer_page.html, explorer.js); the data come from explorer_data.py.
"""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from inspectlab.core.version import __version__

SVG = "http://www.w3.org/2000/svg"
XLINK = "http://www.w3.org/1999/xlink"
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
       "base-uri 'none'; form-action 'none'")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")


def _points(element: ET.Element) -> list[float]:
    tag = element.tag.removeprefix(f"{{{SVG}}}")
    if tag in ("polygon", "polyline"):
        return [float(v) for v in _NUMBER.findall(element.get("points", ""))]
    if tag == "path":
        return [float(v) for v in _NUMBER.findall(element.get("d", ""))]
    if tag == "ellipse":
        cx, cy, rx, ry = (float(element.get(k, "0")) for k in ("cx", "cy", "rx", "ry"))
        return [cx - rx, cy - ry, cx + rx, cy + ry]
    return []


def _translation(root: ET.Element) -> tuple[float, float, float]:
    """(scale, dx, dy) of graphviz's top group: transform="scale(s s) rotate(0) translate(dx dy)"."""
    group = root.find(f"{{{SVG}}}g")
    transform = group.get("transform", "") if group is not None else ""
    scale = re.search(r"scale\(([-\d.]+)", transform)
    shift = re.search(r"translate\(([-\d.]+)[ ,]+([-\d.]+)\)", transform)
    return (float(scale[1]) if scale else 1.0, float(shift[1]) if shift else 0.0, float(shift[2]) if shift else 0.0)


def page_svg(svg: bytes) -> tuple[str, dict[str, list[float]]]:
    """A graphviz SVG made ready to sit inline beside others: no width/height (the page sizes it), no element
    ids (each level's drawing has its own node1, clust1...), each node's and frame's group marked `data-id` with
    its graphviz name (a node's id, `cluster_k`) instead of a <title> (the script titles it with what it shows).
    Also each node's and frame's box in the SVG's user units: [x, y, width, height]."""
    ET.register_namespace("", SVG)
    ET.register_namespace("xlink", XLINK)
    root = ET.fromstring(svg)
    for key in ("width", "height", "style"):
        root.attrib.pop(key, None)
    root.set("preserveAspectRatio", "xMidYMid meet")
    scale, dx, dy = _translation(root)
    boxes: dict[str, list[float]] = {}
    for element in root.iter():
        element.attrib.pop("id", None)
        klass = element.get("class")
        if element.tag != f"{{{SVG}}}g" or klass not in ("node", "cluster"):
            continue
        title = element.find(f"{{{SVG}}}title")
        name = title.text if title is not None and title.text else ""
        element.set("data-id", name)
        if title is not None:
            element.remove(title)
        values = [v for child in element for v in _points(child)]
        if values:
            _join_runs(element, (min(values[0::2]) + max(values[0::2])) / 2 if klass == "node" else None)
        if values:
            xs, ys = [scale * v + dx for v in values[0::2]], [scale * v + dy for v in values[1::2]]
            boxes[name] = [round(min(xs), 2), round(min(ys), 2), round(max(xs) - min(xs), 2),
                           round(max(ys) - min(ys), 2)]
    graph_title = root.find(f"{{{SVG}}}g/{{{SVG}}}title")
    if graph_title is not None:  # "inspectlab": no tooltip over the whole drawing
        root.find(f"{{{SVG}}}g").remove(graph_title)  # type: ignore[union-attr]
    return ET.tostring(root, encoding="unicode"), boxes


def _join_runs(node: ET.Element, centre: float | None) -> None:
    """Graphviz writes each run of a label line (bold type, name, ...) as its own <text> at an x computed with its
    own font metrics, so in a browser with another font the runs drift apart or overlap. Each line becomes one
    <text> centred on the node (`centre`; None: starting where its first run starts, as a frame's title does),
    its runs <tspan>s that the browser lays out one after the other."""
    texts = [child for child in node if child.tag == f"{{{SVG}}}text"]
    lines: dict[str, list[ET.Element]] = {}
    for text in texts:
        lines.setdefault(text.get("y", ""), []).append(text)
    for y, runs in lines.items():
        if len(runs) < 2:
            continue
        anchor = ("middle", f"{centre:.2f}") if centre is not None else ("start", runs[0].get("x", "0"))
        line = ET.Element(f"{{{SVG}}}text", {"text-anchor": anchor[0], "x": anchor[1], "y": y,
                                            "font-family": runs[0].get("font-family", ""), "style": "white-space: pre"})
        for run in runs:
            span = ET.SubElement(line, f"{{{SVG}}}tspan", {k: v for k, v in run.attrib.items()
                                                           if k in ("font-weight", "font-size", "fill")})
            span.text = run.text
        position = list(node).index(runs[0])
        for run in runs:
            node.remove(run)
        node.insert(position, line)


def _asset(name: str) -> str:
    return resources.files("inspectlab.render").joinpath(name).read_text(encoding="utf-8")


def _inline_json(data: Any) -> str:
    """JSON safe inside <script>: no "</" (which would end the element), no HTML comment openers."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/").replace("<!--", "<\\!--")


def render_page(title: str, summary: Sequence[tuple[str, str]], notes: Sequence[str], svgs: Sequence[str],
                data: Mapping[str, Any], initial: int) -> str:
    """The page: `summary` (label, text) pairs in the header, `notes` below it, one drawing per level (in
    level order), the data of explorer_data.explorer_data, and the level shown first."""
    levels = "\n".join(f'<div class="level" data-depth="{level["depth"]}" hidden>{svg}</div>'
                       for level, svg in zip(data["levels"], svgs, strict=True))
    facts = "".join(f"<span><b>{html.escape(label)}</b> {html.escape(text)}</span>" for label, text in summary)
    remarks = "".join(f"<li>{html.escape(note)}</li>" for note in notes)
    buttons = "".join(f'<button type="button" data-level="{level["depth"]}">{level["depth"]}</button>'
                      for level in data["levels"])
    replacements = {
        "__CSP__": html.escape(CSP, quote=True), "__TITLE__": html.escape(title), "__SUMMARY__": facts,
        "__NOTES__": f'<ul class="notes">{remarks}</ul>' if remarks else "", "__LEVEL_BUTTONS__": buttons,
        "__LEVELS__": levels, "__VERSION__": html.escape(__version__),
        "__DATA__": _inline_json({**data, "initial": initial}), "__SCRIPT__": _asset("explorer.js"),
    }
    page = _asset("explorer_page.html")
    return re.sub("|".join(replacements), lambda found: replacements[found[0]], page)
