"""`inspectlab list` and `inspectlab tree`: the zoo and the module hierarchy."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from inspectlab import api
from inspectlab.cli.common import ArgsOption, DepthOption, ExportFormat, ModelArg, command, emit, parse_args
from inspectlab.core.naming import leaf_label
from inspectlab.core.shapes import shape_text
from inspectlab.render.columns import short_shape
from inspectlab.render.formats import KEEP, Column, thousands

# on a narrow terminal the description goes first, then the family (render/fit.py)
ZOO_COLUMNS = (
    Column("name", "name", priority=KEEP, wraps=True), Column("family", "family", priority=40),
    Column("params", "params", thousands, numeric=True, priority=KEEP),
    Column("default_input", "default input", shape_text, priority=60, short=short_shape),
    Column("description", "description", priority=30, wraps=True),
)


@command("list")
def list_command(
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="Output format.")] = ExportFormat.table,
) -> None:
    """List the zoo: name, family, params, default input, description."""
    # with the param counts cached, `list` needs no torch import
    emit(fmt.value, api.list_models(), ZOO_COLUMNS, title="inspectlab zoo")


@command("tree")
def tree_command(
    model: ModelArg,
    depth: DepthOption = 2,
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="Output format.")] = ExportFormat.table,
    args: ArgsOption = None,
) -> None:
    """Show the module hierarchy (from children()) with type and own/total params per node."""
    nodes = api.tree(model, depth, parse_args(args))
    rows = [
        {**asdict(node), "label": "  " * node.depth + leaf_label(node.name)} for node in nodes
    ]
    columns = [
        Column("label", "module", priority=KEEP, wraps=True), Column("type", "type", priority=70, wraps=True),
        Column("own_params", "own params", thousands, numeric=True, priority=60),
        Column("total_params", "total params", thousands, numeric=True, priority=KEEP),
    ]
    emit(fmt.value, rows, columns, title=f"{model} (depth {depth})",
         document=[asdict(node) for node in nodes], csv_keys=list(asdict(nodes[0])) if nodes else None)
