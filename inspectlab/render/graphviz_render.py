"""Draw an architecture Graph (inspectlab.analysis.graph) with graphviz: dot source, SVG, PNG or PDF.

Boxes are module calls coloured by kind, ellipses the functional ops and the input/output tensors, a 3-D box
a run of k identical blocks (×k); dashed rounded frames are the module levels above the chosen depth.
Making the dot source needs only the `graphviz` Python package; SVG/PNG/PDF need Graphviz's `dot` program.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Collection
from html import escape
from typing import TYPE_CHECKING

from inspectlab.analysis.graph import Cluster, Graph, GraphEdge, GraphNode
from inspectlab.core.errors import InspectlabError
from inspectlab.core.shapes import shape_text
from inspectlab.render.formats import human_count

if TYPE_CHECKING:
    import graphviz

RENDERED_FORMATS = ("svg", "png", "pdf")
FORMATS = (*RENDERED_FORMATS, "dot")
RANKDIRS = ("TB", "LR", "BT", "RL")
PNG_DPI = 150
MISSING_DOT = ("the Graphviz `dot` program is not installed (needed for {fmt}); install it with "
               "`apt-get install graphviz` (or `brew install graphviz`, `conda install graphviz`), or use --format dot")

COLOURS = {
    "input": "#ffffff", "output": "#ffffff", "conv": "#cfe2f3", "norm": "#d9ead3", "activation": "#fff2cc",
    "pool": "#f4cccc", "resample": "#d9d2e9", "merge": "#fce5cd", "head": "#ead1dc", "block": "#e8e8e8",
    "other": "#f3f3f3",
}
_CLUSTER_FILL = ("#fafafa", "#f2f2f2", "#eaeaea", "#e2e2e2")
_REPEAT_FILL = "#fff8e1"
_SHAPES_SHOWN = 4
# A 3-D box (a run ×k) draws its lip inside the top of the box while graphviz centres the label in the whole box:
# a thin first line moves the title down by about the lip, so that it clears the front face's top edge as much
# as a rounded box's title clears its own (tests/test_pictures.py measures both).
_LIP_SPACER = '<FONT POINT-SIZE="4"> </FONT>'
# The initial size of a drawing wider than this (points) is scaled down to it, at most halving it: a browser
# at 1400 px (1050 pt) then opens a wide graph (HRNet at depth 3) showing its whole width, not a blank corner.
SVG_FIT_WIDTH = 1000.0
SVG_MIN_SCALE = 0.5


def dot_available() -> bool:
    """Whether Graphviz's `dot` program is on the PATH."""
    return shutil.which("dot") is not None


def require_dot(fmt: str) -> None:
    """Raise a one-line user error naming how to install Graphviz when `fmt` needs `dot` and it is missing."""
    if fmt in RENDERED_FORMATS and not dot_available():
        raise InspectlabError(MISSING_DOT.format(fmt=fmt.upper()))


def _shapes(node: GraphNode) -> list[str]:
    """The output shapes, joined: "1×32×56×56, 1×64×28×28" (at most four, then a count)."""
    texts = [shape_text(list(shape)) or "scalar" for shape in node.shapes[:_SHAPES_SHOWN]]
    if len(node.shapes) > _SHAPES_SHOWN:
        texts.append(f"+{len(node.shapes) - _SHAPES_SHOWN} more")
    return [", ".join(texts)] if texts else []


def node_label(node: GraphNode, show: Collection[str]) -> str:
    """HTML-like label, two or three short lines: type (×k) and name; output shape(s) with params / MACs as
    asked; the receptive field when asked."""
    title = f"<B>{escape(node.type)}{f' ×{node.repeat}' if node.repeat > 1 else ''}</B>"
    if node.name:
        title += f' <FONT POINT-SIZE="9" COLOR="#333333">{escape(node.name)}</FONT>'
    facts = _shapes(node)
    if not facts and node.calls:  # a module whose output is no tensor (an object holding them: an ImageList)
        facts.append("output is not a tensor")
    if "params" in show and node.params:
        facts.append(f"{human_count(node.params)} params")
    if "flops" in show and node.macs:
        facts.append(f"{human_count(node.macs)} MACs")
    lines = [_LIP_SPACER, title] if node.repeat > 1 and node.calls else [title]
    if facts:  # graphviz refuses an empty <FONT></FONT>
        lines.append(f'<FONT POINT-SIZE="9">{escape(" · ".join(facts))}</FONT>')
    if "rf" in show and node.rf:
        lines.append(f'<FONT POINT-SIZE="8" COLOR="#555555">{escape(node.rf)}</FONT>')
    return "<" + "<BR/>".join(lines) + ">"


def _node_attributes(node: GraphNode) -> dict[str, str]:
    attributes = {"fillcolor": COLOURS.get(node.kind, COLOURS["other"])}
    if node.kind in ("input", "output"):
        attributes.update(shape="ellipse", style="filled,bold")
    elif not node.calls:  # a functional op
        attributes.update(shape="ellipse", style="filled", margin="0.04,0.02")
    elif node.repeat > 1:
        attributes.update(shape="box3d", style="filled")
    return attributes


def _cluster_label(cluster: Cluster) -> str:
    repeat = f" ×{cluster.repeat}" if cluster.repeat > 1 else ""
    return f"<<B>{escape(cluster.name)}</B> · {escape(cluster.type)}{repeat}>"


def to_digraph(graph: Graph, show: Collection[str] = ("params",), rankdir: str = "TB",
               title: str = "") -> graphviz.Digraph:
    """The graphviz Digraph of an architecture Graph: nested clusters, coloured nodes, shape-labelled edges."""
    import graphviz

    if rankdir not in RANKDIRS:
        raise InspectlabError(f"unknown rankdir {rankdir!r}; choose from {', '.join(RANKDIRS)}")
    digraph = graphviz.Digraph(
        "inspectlab",
        graph_attr={"rankdir": rankdir, "newrank": "true", "nodesep": "0.25", "ranksep": "0.12",
                    "fontname": "Helvetica", "fontsize": "11", **({"label": title, "labelloc": "t"} if title else {})},
        node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica", "fontsize": "10",
                   "margin": "0.08,0.02", "height": "0.3", "color": "#666666"},
        edge_attr={"fontname": "Helvetica", "fontsize": "8", "fontcolor": "#555555", "color": "#555555",
                   "arrowsize": "0.6"},
    )
    frames = frame_order(graph)
    tree = _drawing_tree(graph)

    def fill(target: graphviz.Digraph, key: str | None, level: int) -> None:
        for item_key, node in tree.get(key, []):
            if node is not None:
                target.node(node.id, node_label(node, show), **_node_attributes(node))
                continue
            cluster = graph.clusters[item_key]
            sub = graphviz.Digraph(name=f"cluster_{frames.index(item_key)}")
            repeated = cluster.repeat > 1
            sub.attr(label=_cluster_label(cluster), labeljust="l", fontsize="9", style="rounded,filled",
                     color="#b38f00" if repeated else "#999999", penwidth="1.5" if repeated else "1",
                     fillcolor=_REPEAT_FILL if repeated else _CLUSTER_FILL[level % len(_CLUSTER_FILL)])
            fill(sub, item_key, level + 1)
            target.subgraph(sub)

    fill(digraph, None, 0)
    labelled = set(graph.edges) if "shapes" in show else informative_edges(graph)
    floating = floating_edges(graph)
    for edge in graph.edges:
        text = shape_text(list(edge.shape))
        digraph.edge(edge.source, edge.target, label=text if edge in labelled else None, tooltip=text,
                     **({"constraint": "false"} if edge in floating else {}))
    return digraph


def _drawing_tree(graph: Graph) -> dict[str | None, list[tuple[str, GraphNode | None]]]:
    """Per frame key (None: the top level) its nodes and child frames, in drawing order: by the first node in
    execution order that each holds. A child frame is (key, None)."""
    children: dict[str | None, list[str]] = {}
    for cluster in graph.clusters.values():
        children.setdefault(cluster.parent, []).append(cluster.key)
    members: dict[str | None, list[GraphNode]] = {}
    for node in graph.nodes:
        members.setdefault(node.clusters[-1] if node.clusters else None, []).append(node)
    order = {node.id: index for index, node in enumerate(graph.nodes)}

    def first_position(key: str) -> int:
        positions = [order[n.id] for n in members.get(key, [])]
        positions += [first_position(child) for child in children.get(key, [])]
        return min(positions, default=len(order))

    tree: dict[str | None, list[tuple[str, GraphNode | None]]] = {}
    for key in [None, *graph.clusters]:
        items: list[tuple[int, str, GraphNode | None]] = [(order[n.id], n.id, n) for n in members.get(key, [])]
        items += [(first_position(child), child, None) for child in children.get(key, [])]
        tree[key] = [(item_key, node) for _, item_key, node in sorted(items, key=lambda item: item[0])]
    return tree


def frame_order(graph: Graph) -> list[str]:
    """The frame (cluster) keys in the order they are drawn: frame k is `cluster_k` in the dot source, and the
    `<title>` of its group in the SVG."""
    tree = _drawing_tree(graph)
    found: list[str] = []

    def walk(key: str | None) -> None:
        for item_key, node in tree.get(key, []):
            if node is None:
                found.append(item_key)
                walk(item_key)

    walk(None)
    return found


FLOAT_SLACK = 4  # ranks a branch could move down before its entering edge floats (fewer barely stretch a frame)


def floating_edges(graph: Graph) -> set[GraphEdge]:
    """Edges that enter a frame to reach a node with slack (it could sit FLOAT_SLACK or more ranks lower without
    lengthening any path: a branch that rejoins the main path much later, such as DeepLabV3+'s low-level
    projection of layer1). They are drawn with constraint=false, so that the branch sits just above where it
    rejoins instead of beside its source: its frame then does not stretch up along the whole backbone, empty."""
    successors: dict[str, list[str]] = {node.id: [] for node in graph.nodes}
    indegree = Counter(edge.target for edge in graph.edges)
    for edge in graph.edges:
        successors[edge.source].append(edge.target)
    ordered, ready = [], [n.id for n in graph.nodes if indegree[n.id] == 0]
    remaining = dict(indegree)
    while ready:  # topological order (Kahn); the graph of one forward pass has no cycle
        current = ready.pop()
        ordered.append(current)
        for target in successors[current]:
            remaining[target] -= 1
            if remaining[target] == 0:
                ready.append(target)
    earliest = dict.fromkeys(ordered, 0)
    for current in ordered:
        for target in successors[current]:
            earliest[target] = max(earliest[target], earliest[current] + 1)
    last = max(earliest.values(), default=0)
    latest = dict.fromkeys(ordered, last)
    for current in reversed(ordered):
        for target in successors[current]:
            latest[current] = min(latest[current], latest[target] - 1)
    frames = {node.id: set(node.clusters) for node in graph.nodes}
    entering: dict[str, list[GraphEdge]] = {}
    for edge in graph.edges:
        if edge.target in latest and latest[edge.target] - earliest[edge.target] >= FLOAT_SLACK \
                and frames[edge.target] - frames[edge.source]:
            entering.setdefault(edge.target, []).append(edge)
    # a node is anchored when a path of constraining edges leads from it to a node without slack: only an edge
    # into an anchored node floats (a branch whose every way down floats would be ranked on its own, at the top)
    floating: set[GraphEdge] = set()
    outgoing: dict[str, list[GraphEdge]] = {}
    for edge in graph.edges:
        outgoing.setdefault(edge.source, []).append(edge)
    anchored: dict[str, bool] = {}
    for current in reversed(ordered):
        anchored[current] = latest[current] == earliest[current] or any(
            anchored.get(edge.target, False) for edge in outgoing.get(current, []) if edge not in floating)
        if anchored[current]:
            floating.update(entering.get(current, []))
    return floating


def informative_edges(graph: Graph) -> set[GraphEdge]:
    """The edges whose shape the picture does not already say: all but the links of plain chains (one edge
    out of a node with one output, carrying that output unchanged, into a node with one edge in)."""
    out_degree = Counter(edge.source for edge in graph.edges)
    in_degree = Counter(edge.target for edge in graph.edges)
    shapes = {node.id: node.shapes for node in graph.nodes}
    return {
        edge for edge in graph.edges
        if not (shapes[edge.source] == [edge.shape] and out_degree[edge.source] == 1 and in_degree[edge.target] == 1)
    }


def render_bytes(digraph: graphviz.Digraph, fmt: str) -> bytes:
    """The drawing as SVG, PNG (at PNG_DPI) or PDF bytes, or the dot source for "dot"."""
    if fmt == "dot":
        return digraph.source.encode()
    if fmt not in RENDERED_FORMATS:
        raise InspectlabError(f"unknown graph format {fmt!r}; choose from {', '.join(FORMATS)}")
    require_dot(fmt)
    if fmt == "png":
        digraph = digraph.copy()
        digraph.graph_attr["dpi"] = str(PNG_DPI)
    try:
        drawn = digraph.pipe(format=fmt, quiet=True)
    except subprocess.CalledProcessError as exc:  # dot's own complaint, first line, instead of the command
        raise InspectlabError(f"Graphviz `dot` failed to draw the {fmt.upper()}: {_dot_complaint(exc.stderr)}") from exc
    except OSError as exc:  # dot vanished, or cannot be run
        raise InspectlabError(f"Graphviz `dot` cannot run: {exc}") from exc
    return fit_svg(drawn) if fmt == "svg" else drawn


_SVG_SIZE = re.compile(rb'<svg width="([0-9.]+)pt" height="([0-9.]+)pt"\s+viewBox="([^"]+)"')


def fit_svg(svg: bytes) -> bytes:
    """The SVG with its viewBox kept and its initial size scaled down to SVG_FIT_WIDTH points wide (never below
    SVG_MIN_SCALE of its natural size), and shrunk further to fit a narrower window (max-width: 100%)."""
    found = _SVG_SIZE.search(svg)
    if found is None:
        return svg
    width, height = float(found[1]), float(found[2])
    scale = max(min(1.0, SVG_FIT_WIDTH / width), SVG_MIN_SCALE) if width > 0 else 1.0
    opening = (f'<svg width="{width * scale:.0f}pt" height="{height * scale:.0f}pt" '
               f'style="max-width: 100%; height: auto" viewBox="{found[3].decode()}"').encode()
    return svg[:found.start()] + opening + svg[found.end():]


def _dot_complaint(stderr: bytes | str | None) -> str:
    """The first line of what dot wrote ("Error: syntax error in line 1 ... in label of node c1"), in one line."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr or ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines[:3])[:300] if lines else "no message"
