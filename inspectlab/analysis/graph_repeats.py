"""Collapsing repeated blocks of an architecture Graph (inspectlab.analysis.graph): a chain of blocks of the
same type, with the same parameter shapes (and, for clusters, the same insides), each feeding only the next,
is drawn once with `repeat` = k.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from inspectlab.tracing.records import Trace

if TYPE_CHECKING:
    from inspectlab.analysis.graph import Graph, GraphNode


def _param_shapes(trace: Trace, module_name: str) -> tuple:
    """The parameter shapes of a module and its descendants, by name relative to the module."""
    shapes = []
    for name, module in trace.modules.items():
        if name == module_name or name.startswith(module_name + "."):
            shapes.extend((name[len(module_name):], key, value[0]) for key, value in sorted(module.params.items()))
    return tuple(sorted(shapes))


def _run_name(first: str, last: str) -> str:
    """"layer3.1", "layer3.5" -> "layer3.1–5"."""
    head_a, _, tail_a = first.rpartition(".")
    head_b, _, tail_b = last.rpartition(".")
    if head_a == head_b and tail_a.isdigit() and tail_b.isdigit():
        return f"{head_a}.{tail_a}–{tail_b}" if head_a else f"{tail_a}–{tail_b}"
    return f"{first} … {last}"


def _total(values: list[int | None]) -> int | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


@dataclass
class _Unit:
    """A candidate member of a run: one node, or one cluster with the nodes inside it."""

    key: str
    nodes: list[GraphNode]
    signature: tuple | None


class _Collapser:
    """Finds chains of identical units level by level (outer clusters first) and keeps one of each."""

    def __init__(self, graph: Graph, trace: Trace) -> None:
        self.graph = graph
        self.trace = trace
        self.nodes = list(graph.nodes)
        self.edges = list(graph.edges)
        self.clusters = dict(graph.clusters)

    def run(self) -> Graph:
        pending: list[str | None] = [None]
        while pending:
            parent = pending.pop(0)
            if parent is not None and parent not in self.clusters:
                continue  # dropped with its run
            units = self.units(parent)
            for chain in self.chains(units):
                self.collapse(chain)
            pending.extend(unit.key for unit in self.units(parent) if unit.key in self.clusters)
        return replace(self.graph, nodes=self.nodes, edges=list(dict.fromkeys(self.edges)),
                       clusters=self.clusters)

    def units(self, parent: str | None) -> list[_Unit]:
        """The children of a cluster (or of the top level) in execution order: nodes and clusters."""
        grouped: dict[str, list[GraphNode]] = {}
        for node in self.nodes:
            if parent is None:
                inner = node.clusters
            elif parent in node.clusters:
                inner = node.clusters[node.clusters.index(parent) + 1:]
            else:
                continue
            grouped.setdefault(inner[0] if inner else node.id, []).append(node)
        return [_Unit(key, members, self.signature(key, members)) for key, members in grouped.items()]

    def signature(self, key: str, members: list[GraphNode]) -> tuple | None:
        if key not in self.clusters:
            node = members[0]
            if not node.calls:
                return None  # functional ops and tensors never collapse
            return ("node", node.type, node.repeat, _param_shapes(self.trace, self.trace.calls[node.calls[0]].name))
        cluster = self.clusters[key]
        inside = tuple(
            (n.type, n.kind, n.repeat, tuple(self.clusters[k].name[len(cluster.name):]
                                             for k in n.clusters[n.clusters.index(key) + 1:]))
            for n in members
        )
        return ("cluster", cluster.type, _param_shapes(self.trace, cluster.name), inside)

    def chains(self, units: list[_Unit]) -> list[list[_Unit]]:
        """Runs of 2+ consecutive units with equal signatures where each feeds only the next."""
        unit_of = {node.id: unit for unit in units for node in unit.nodes}
        chains: list[list[_Unit]] = []
        taken: set[str] = set()
        for unit in units:
            if unit.key in taken or unit.signature is None:
                continue
            chain = [unit]
            while True:
                current = {n.id for n in chain[-1].nodes}
                targets = {e.target for e in self.edges if e.source in current and e.target not in current}
                following = {unit_of[t].key if t in unit_of else None for t in targets}
                if len(following) != 1 or None in following:
                    break
                candidate = unit_of[next(iter(targets))]
                inner = {n.id for n in candidate.nodes}
                sources = {e.source for e in self.edges if e.target in inner and e.source not in inner}
                if not sources <= current or candidate.signature != unit.signature or candidate.key in taken:
                    break
                chain.append(candidate)
            if len(chain) > 1:
                chains.append(chain)
                taken.update(member.key for member in chain)
        return chains

    def collapse(self, chain: list[_Unit]) -> None:
        """Keep the first unit (marked ×k), drop the others; the last one's outgoing edges leave the first."""
        first, last = chain[0], chain[-1]
        dropped = {n.id for unit in chain[1:] for n in unit.nodes}
        kept = {n.id for n in first.nodes}
        moved = {n.id: f.id for n, f in zip(last.nodes, first.nodes, strict=True)}
        last_rf = {f.id: n.rf for n, f in zip(last.nodes, first.nodes, strict=True)}
        edges = []
        for edge in self.edges:
            inside_source = edge.source in dropped or edge.source in kept
            inside_target = edge.target in dropped or edge.target in kept
            if inside_source and inside_target:
                if edge.source in kept and edge.target in kept:
                    edges.append(edge)
                continue
            edges.append(replace(edge, source=moved.get(edge.source, edge.source)))
        self.edges = edges
        if first.key in self.clusters:
            cluster = self.clusters[first.key]
            self.clusters[first.key] = replace(cluster, repeat=len(chain),
                                               name=_run_name(cluster.name, self.clusters[last.key].name))
            gone = {key for unit in chain[1:] for n in unit.nodes for key in n.clusters} - set(first.nodes[0].clusters)
            for key in gone:
                self.clusters.pop(key, None)
            replacements = {n.id: replace(n, rf=last_rf[n.id]) for n in first.nodes}
        else:
            members = [unit.nodes[0] for unit in chain]
            replacements = {first.key: replace(
                first.nodes[0], repeat=len(chain) * first.nodes[0].repeat,
                name=_run_name(first.nodes[0].name, last.nodes[0].name), shapes=last.nodes[0].shapes,
                outputs=last.nodes[0].outputs,
                rf=last.nodes[0].rf, calls=[c for m in members for c in m.calls],
                ops=[i for m in members for i in m.ops], params=_total([m.params for m in members]),
                macs=_total([m.macs for m in members]),
            )}
        self.nodes = [replacements.get(n.id, n) for n in self.nodes if n.id not in dropped]


def collapse_repeats(graph: Graph, trace: Trace) -> Graph:
    """Keep one of each chain of identical blocks (same type, same parameter shapes, same inner structure,
    each feeding only the next), marked ×k: a node gets `repeat` = k, a cluster gets `repeat` = k and keeps
    the first block's insides. The edges leaving the chain leave the kept block."""
    return _Collapser(graph, trace).run()
