"""graph: the architecture of one Trace as a graphviz Digraph (docs/graphs.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from inspectlab.analysis.graph import build_graph, parse_show
from inspectlab.analysis.summary import input_details
from inspectlab.core.shapes import InputSize, inputs_text
from inspectlab.render.graphviz_render import to_digraph
from inspectlab.workflows.models import ModelOrSpec, model_name
from inspectlab.workflows.summary import seeded_builds
from inspectlab.workflows.trace import trace

if TYPE_CHECKING:
    import graphviz


def graph(model_or_spec: ModelOrSpec, input_size: InputSize | None = None, *, depth: int = 2,
          input_data: Any = None, args: Mapping[str, Any] | None = None,
          rankdir: str = "TB", collapse_repeats: bool = True, show: str | Sequence[str] = "params",
          weights: str | None = None, strict: bool = True) -> graphviz.Digraph:
    """Module calls at `depth`, the functional ops that carry structure (add, cat, mul, interpolate), tensors
    as shape-labelled edges, runs of identical blocks collapsed to ×k; `show` adds labels."""
    chosen = parse_show(show)
    with seeded_builds():  # the Trace summary and flops record (a detection model's boxes depend on the weights)
        recorded = trace(model_or_spec, input_size, input_data=input_data, args=args, weights=weights, strict=strict)
    drawn = build_graph(recorded, depth, collapse_repeats, receptive_field="rf" in chosen)
    details = input_details(recorded)
    shown = inputs_text(details, recorded.shapes(recorded.inputs), separator=", ")
    title = f"{model_name(model_or_spec)} · input {shown} · depth {depth}"
    return to_digraph(drawn, chosen, rankdir, title)
