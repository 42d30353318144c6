"""`inspectlab list` and `inspectlab tree`: the zoo and the module hierarchy."""

from __future__ import annotations

from typing import Annotated

import typer

from inspectlab.cli.common import ArgsOption, DepthOption, ModelArg, TableFormat, app, emit, guarded, parse_args


@app.command("list")
def list_command(
    fmt: Annotated[TableFormat, typer.Option("--format", "-f", help="Output format.")] = TableFormat.table,
) -> None:
    """List the zoo: name, family, params, default input, description."""

    def body() -> None:
        from inspectlab import api
        from inspectlab.render.formats import Column, shape_text, thousands

        rows = api.list_models()
        columns = [
            Column("name", "name"), Column("family", "family"),
            Column("params", "params", thousands, numeric=True),
            Column("default_input", "default input", shape_text), Column("description", "description"),
        ]
        emit(fmt.value, rows, columns, title="inspectlab zoo")

    guarded(body)


@app.command("tree")
def tree_command(
    model: ModelArg,
    depth: DepthOption = 2,
    fmt: Annotated[TableFormat, typer.Option("--format", "-f", help="Output format.")] = TableFormat.table,
    args: ArgsOption = None,
) -> None:
    """Show the module hierarchy (from children()) with type and own/total params per node."""

    def body() -> None:
        from dataclasses import asdict

        from inspectlab import api
        from inspectlab.render.formats import Column, thousands

        nodes = api.tree(model, depth, parse_args(args))
        rows = [
            {**asdict(node), "label": "  " * node.depth + node.name.rsplit(".", 1)[-1]} for node in nodes
        ]
        columns = [
            Column("label", "module"), Column("type", "type"),
            Column("own_params", "own params", thousands, numeric=True),
            Column("total_params", "total params", thousands, numeric=True),
        ]
        emit(fmt.value, rows, columns, title=f"{model} (depth {depth})",
             document=[asdict(node) for node in nodes])

    guarded(body)
