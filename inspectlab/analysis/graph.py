"""The architecture graph: module calls at a depth, the functional ops that carry structure, and the
tensors between them, built from a Trace (a pure function; rendering lives in render/graphviz_render.py).

- Nodes: the module calls at `depth` (a call with no child calls stops earlier), the free functional ops
  that carry structure (merges such as add/cat/mul with two or more activation inputs, resampling,
  functional convolutions), one node per model input and one per model output. Calls that run no op
  (nn.Identity, Dropout in eval mode) are transparent. An implicit call (tracing/implicit_calls.py) of a
  ModuleList, or one whose span also holds its parent's code, is never one box: its children are drawn.
- Clusters: the module levels above `depth` that contain nodes, nested.
- Edges: producer -> consumer for every activation tensor a node reads from outside itself; a tensor made
  by an op that is no node (view, pad, flatten, a functional relu) is followed back to the nodes that
  made its inputs, in-place versions and views included. Each edge carries the shape it delivers.
- Repeats: a chain of blocks of the same type, with the same parameter shapes (and, for clusters, the same
  insides), each feeding only the next, is drawn once with `repeat` = k (analysis/graph_repeats.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from inspectlab.analysis.costs import op_cost
from inspectlab.analysis.graph_repeats import collapse_repeats
from inspectlab.analysis.params import count_params_of_node
from inspectlab.analysis.receptive_field import field_columns, receptive_fields
from inspectlab.core.errors import InspectlabError
from inspectlab.core.naming import depth_of
from inspectlab.core.shapes import shape_text
from inspectlab.tracing.records import ModuleCall, OpRecord, Shape, Trace

KINDS = ("input", "output", "conv", "norm", "activation", "pool", "resample", "merge", "head", "block")

MERGE_OPS = frozenset({
    "add", "add_", "sub", "sub_", "rsub", "mul", "mul_", "div", "div_", "cat", "stack", "matmul", "mm", "bmm",
    "maximum", "minimum", "where", "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_efficient_attention", "_scaled_dot_product_flash_attention", "addcmul", "lerp",
})
RESAMPLE_FUNCTIONS = frozenset({"interpolate", "upsample", "grid_sample", "pixel_shuffle", "pixel_unshuffle"})
ACTIVATION_TYPES = frozenset({
    "relu", "relu6", "leakyrelu", "prelu", "rrelu", "elu", "selu", "celu", "gelu", "silu", "mish", "sigmoid",
    "tanh", "hardswish", "hardsigmoid", "hardtanh", "softplus", "softsign", "softmax", "logsoftmax", "glu",
    "tanhshrink", "threshold",
})
CONTAINER_TYPES = frozenset({"ModuleList", "ModuleDict", "ParameterList", "ParameterDict"})
HEAD_NAMES = frozenset({"head", "heads", "classifier", "fc", "cls", "out_conv", "logits"})
SHOW_ITEMS = ("shapes", "params", "flops", "rf")


@dataclass
class GraphNode:
    """A box of the picture: a module call (or a run of k identical ones), a functional op, an input or output."""

    id: str
    kind: str  # one of KINDS
    type: str  # module type, function name ("add", "interpolate"), "input" or "output"
    name: str  # qualified module name ("layer3.1–5" for a run); "" for functional ops and tensors
    shapes: list[Shape]  # output shapes
    outputs: list[int] = field(default_factory=list)  # output tensor ids
    clusters: tuple[str, ...] = ()  # keys of the enclosing clusters, outermost first
    repeat: int = 1
    params: int | None = None
    macs: int | None = None
    rf: str | None = None  # receptive field text, when asked for
    calls: list[int] = field(default_factory=list)  # module call indices (several for a run)
    ops: list[int] = field(default_factory=list)  # forward op indices run by this node


@dataclass(frozen=True)
class GraphEdge:
    """Tensor `tensor` (shape `shape`) made by node `source` and read by node `target`."""

    source: str
    target: str
    tensor: int
    shape: Shape


@dataclass(frozen=True)
class Cluster:
    """A module level above the chosen depth, drawn as a box around its nodes (×repeat for a run)."""

    key: str
    name: str
    type: str
    parent: str | None
    repeat: int = 1


@dataclass
class Graph:
    """Nodes in execution order, edges, and the nested clusters."""

    nodes: list[GraphNode]
    edges: list[GraphEdge]
    clusters: dict[str, Cluster]
    depth: int

    def node(self, node_id: str) -> GraphNode:
        return next(n for n in self.nodes if n.id == node_id)


def module_kind(type_name: str, name: str) -> str:
    """Colour class of a module call from its type and name (head, norm, pool, resample, activation, conv...)."""
    lowered = type_name.lower()
    last = name.rsplit(".", 1)[-1].lower()
    if last in HEAD_NAMES or "head" in lowered or "classifier" in lowered or lowered in ("linear", "flatten"):
        return "head"
    if "norm" in lowered:
        return "norm"
    if "pool" in lowered:
        return "pool"
    if "upsampl" in lowered or "pixelshuffle" in lowered or lowered == "interpolate":
        return "resample"
    if lowered in ACTIVATION_TYPES:
        return "activation"
    if "conv" in lowered:
        return "conv"
    return "block"


def _structural_kind(op: OpRecord, trace: Trace) -> str | None:
    """The kind of a free op that carries structure, or None for ops to see through (views, pads, ...)."""
    base = op.packet.removeprefix("aten.")
    if op.function in RESAMPLE_FUNCTIONS or base.startswith("upsample_") or base == "grid_sampler_2d":
        return "resample"
    activations = {t for t in op.inputs if trace.tensors[t].kind in ("activation", "input")}
    if base in MERGE_OPS and len(activations) >= 2:
        return "merge"
    if base == "convolution":
        return "conv"
    cost = op_cost(op, trace)
    return "head" if cost is not None and cost.macs > 0 else None


class _Builder:
    """Builds a Graph from a Trace; one instance per build."""

    def __init__(self, trace: Trace, depth: int) -> None:
        self.trace = trace
        self.depth = depth
        self.children: dict[int, list[ModuleCall]] = {}
        for call in trace.calls:
            if call.parent is not None:
                self.children.setdefault(call.parent, []).append(call)
        self.forward = {op.index for op in trace.forward_ops()}
        self.owner: dict[int, GraphNode] = {}  # op index -> node running it
        self.nodes: list[GraphNode] = []
        self.clusters: dict[str, Cluster] = {}
        self.sources: dict[int, list[str]] = {}
        self.input_nodes: dict[int, GraphNode] = {}

    def expanded(self, call: ModuleCall) -> bool:
        """Drawn as a cluster of its children (else as one node)."""
        if call.index not in self.children:
            return False
        return call.depth < self.depth or (call.implicit and not self.can_be_a_node(call))

    def can_be_a_node(self, call: ModuleCall) -> bool:
        """An implicit call (its forward never ran: a ModuleList, a backbone used through a method) is one box
        only when it is no mere container and its op span holds only its descendants' ops (a ModuleList's
        span also holds the parent's code between its children: HRNet's fusion adds)."""
        if call.type in CONTAINER_TYPES:
            return False
        for index in call.op_range():
            owner = self.trace.ops[index].module_call
            while owner is not None and owner != call.index:
                owner = self.trace.calls[owner].parent
            if owner is None:
                return False
        return True

    def build(self) -> Graph:
        for position, tensor_id in enumerate(self.trace.inputs):
            shape = self.trace.tensors[tensor_id].shape
            node = GraphNode(f"in{position}", "input", "input", "", [shape], [tensor_id])
            self.input_nodes[tensor_id] = node
        roots = [call for call in self.trace.calls if call.parent is None]
        for root in roots:
            self.visit(root)
        self.add_functional_nodes()
        body = sorted(self.nodes, key=lambda n: min(n.ops))
        edges = self.edges(body)
        outputs = []
        for position, tensor_id in enumerate(self.trace.outputs):
            node = GraphNode(f"out{position}", "output", "output", "", [self.trace.tensors[tensor_id].shape],
                             [tensor_id])
            outputs.append(node)
            edges.extend(GraphEdge(source, node.id, tensor_id, node.shapes[0]) for source in self.resolve(tensor_id))
        return Graph([*self.input_nodes.values(), *body, *outputs], _unique(edges), self.clusters, self.depth)

    # nodes --------------------------------------------------------------------------------------------
    def visit(self, call: ModuleCall) -> None:
        if self.expanded(call):
            for child in self.children[call.index]:
                self.visit(child)
            return
        ops = [i for i in call.op_range() if i in self.forward]
        if not ops:
            return  # nn.Identity, eval-mode Dropout: nothing happens, the tensors pass through
        node = GraphNode(
            f"c{call.index}", module_kind(call.type, call.name), call.type, call.label,
            [self.trace.tensors[t].shape for t in call.outputs], list(call.outputs),
            self.cluster_path(call, include_self=False), calls=[call.index], ops=ops,
        )
        self.add(node)

    def add_functional_nodes(self) -> None:
        for op in self.trace.forward_ops():
            if op.index in self.owner:
                continue
            kind = _structural_kind(op, self.trace)
            if kind is None:
                continue
            owner = self.trace.calls[op.module_call] if op.module_call is not None else None
            path = self.cluster_path(owner, include_self=True) if owner is not None else ()
            name = op.function or op.packet.removeprefix("aten.")
            shapes = [self.trace.tensors[t].shape for t in op.outputs[:1]]
            self.add(GraphNode(f"f{op.index}", kind, name, "", shapes, op.outputs[:1], path, ops=[op.index]))

    def add(self, node: GraphNode) -> None:
        self.nodes.append(node)
        for index in node.ops:
            self.owner[index] = node

    def cluster_path(self, call: ModuleCall, include_self: bool) -> tuple[str, ...]:
        """Keys of the module levels above `depth` enclosing a call: called levels keyed by their call label
        (a module called twice gives two boxes), uncalled ones (ModuleList, a backbone used through a
        method) by their name."""
        called: dict[str, ModuleCall] = {}
        ancestor = call if include_self else (self.trace.calls[call.parent] if call.parent is not None else None)
        while ancestor is not None:
            called[ancestor.name] = ancestor
            ancestor = self.trace.calls[ancestor.parent] if ancestor.parent is not None else None
        parts = call.name.split(".") if call.name else []
        prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + (1 if include_self else 0))]
        path: list[str] = []
        for prefix in prefixes:
            if depth_of(prefix) >= self.depth or prefix not in self.trace.modules:
                continue
            key = called[prefix].label if prefix in called else prefix
            if key not in self.clusters:
                self.clusters[key] = Cluster(key, prefix, self.trace.modules[prefix].type, path[-1] if path else None)
            path.append(key)
        return tuple(path)

    # edges --------------------------------------------------------------------------------------------
    def resolve(self, tensor_id: int) -> list[str]:
        """The nodes whose output this tensor is, seeing through ops that are no node."""
        if tensor_id in self.sources:
            return self.sources[tensor_id]
        self.sources[tensor_id] = []  # guards against cycles
        tensor = self.trace.tensors[tensor_id]
        found: list[str] = []
        if tensor_id in self.input_nodes:
            found = [self.input_nodes[tensor_id].id]
        elif tensor.producer is None:
            found = self.resolve(tensor.alias_of) if tensor.alias_of is not None else []
        elif tensor.producer in self.owner:
            found = [self.owner[tensor.producer].id]
        elif tensor.producer in self.forward:
            for read in self.trace.ops[tensor.producer].inputs:
                found.extend(s for s in self.resolve(read) if s not in found)
        self.sources[tensor_id] = found
        return found

    def edges(self, nodes: Iterable[GraphNode]) -> list[GraphEdge]:
        edges: list[GraphEdge] = []
        for node in nodes:
            inside = set(node.ops)
            for index in node.ops:
                for tensor_id in self.trace.ops[index].inputs:
                    tensor = self.trace.tensors[tensor_id]
                    if tensor.producer in inside or tensor.kind in ("param", "buffer"):
                        continue
                    edges.extend(
                        GraphEdge(source, node.id, tensor_id, tensor.shape)
                        for source in self.resolve(tensor_id) if source != node.id
                    )
        return edges


def _unique(edges: list[GraphEdge]) -> list[GraphEdge]:
    return list(dict.fromkeys(edges))


# the whole thing ----------------------------------------------------------------------------------------
def build_graph(trace: Trace, depth: int = 2, collapse: bool = True, receptive_field: bool = False) -> Graph:
    """The architecture graph of a Trace at `depth`: nodes with params and MACs, edges, clusters (see module doc).

    `receptive_field` labels each node with the receptive field of its first output (a run of repeats: its
    last member's), from inspectlab.analysis.receptive_field.
    """
    if depth < 0:
        raise ValueError("depth must be >= 0")
    graph = _Builder(trace, depth).build()
    params = count_params_of_node(trace)
    for node in graph.nodes:
        if node.calls:
            node.params = params.get(trace.calls[node.calls[0]].name, (0, 0))[0]
        if node.ops:
            costs = (op_cost(trace.ops[i], trace) for i in node.ops)
            node.macs = sum(cost.macs for cost in costs if cost is not None)
    if receptive_field:
        fields = receptive_fields(trace)
        for node in graph.nodes:
            node.rf = field_text(fields.of(node.outputs[0])) if node.outputs else None
    return collapse_repeats(graph, trace) if collapse else graph


def field_text(info: Any) -> str | None:
    """"RF 99×99 · stride 8" for a FieldInfo of inspectlab.analysis.receptive_field; "RF global" when some
    path sees the whole input; None for a tensor that does not depend on the input."""
    columns = field_columns(info, digits=None)
    if info.unknown or columns["global"]:
        return "RF unknown" if info.unknown else "RF global"
    if columns["rf"] is None or any(v is None for v in columns["rf"]):
        return None
    strides = columns["stride"]
    return f"RF {shape_text(columns['rf'])} · stride {shape_text(strides[:1] if len(set(strides)) == 1 else strides)}"


def parse_show(text: str | Iterable[str]) -> set[str]:
    """"shapes,params" -> {"shapes", "params"}; unknown items raise an error naming the valid ones."""
    items = re.split(r"[,\s]+", text.strip()) if isinstance(text, str) else list(text)
    chosen = {item.lower() for item in items if item}
    unknown = chosen - set(SHOW_ITEMS) - {"none"}
    if unknown:
        valid = ", ".join(SHOW_ITEMS)
        raise InspectlabError(f"unknown --show item(s) {', '.join(sorted(unknown))}; choose from {valid}")
    return chosen - {"none"}
