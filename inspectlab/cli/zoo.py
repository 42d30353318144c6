"""`inspectlab list` and `inspectlab tree`: the zoo and the module hierarchy."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from typing import Annotated, Any

import typer

from inspectlab import api
from inspectlab.cli.common import ArgsOption, DepthOption, ExportFormat, ModelArg, command, emit, parse_args
from inspectlab.core.naming import leaf_label
from inspectlab.core.shapes import shape_text
from inspectlab.render.formats import Column, cell, thousands


@command("list")
def list_command(
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="Output format.")] = ExportFormat.table,
) -> None:
    """List the zoo: name, family, params, default input, description."""

    # with the param counts cached, `list` needs no torch import

    rows = api.list_models()
    columns = [
        Column("name", "name"), Column("family", "family"),
        Column("params", "params", thousands, numeric=True),
        Column("default_input", "default input", shape_text), Column("description", "description"),
    ]
    width = _terminal_width() if fmt is ExportFormat.table else None
    footer = None
    if width is not None:
        shown = fit_columns(rows, columns, width)
        if len(shown) < len(columns):
            kept = {c.key for c in shown}
            hidden = ", ".join(c.header for c in columns if c.key not in kept)
            footer = f"{hidden} not shown at {width} columns: widen the terminal or use --format json"
        columns = shown
    emit(fmt.value, rows, columns, title="inspectlab zoo", footer=footer)


def _terminal_width() -> int | None:
    """The width the table must fit: $COLUMNS, else the terminal's; None when stdout is not a terminal."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit():
        return int(columns)
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


# Column sets tried in turn until one fits the terminal; the description, when kept, is cut to fit.
_LAYOUTS = (
    ("name", "family", "params", "default_input", "description"),
    ("name", "params", "default_input", "description"),
    ("name", "family", "params", "default_input"),
    ("name", "params", "default_input"),
    ("name", "params"),
)
_MIN_DESCRIPTION = 24


def fit_columns(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], width: int) -> list[Column]:
    """The columns of a one-line-per-row table no wider than `width`: the first layout of _LAYOUTS that
    fits, with the description cut by an ellipsis (at least _MIN_DESCRIPTION characters of it)."""
    widths = {c.key: max(len(c.header), *(len(cell(c, row)) for row in rows)) for c in columns}
    by_key = {c.key: c for c in columns}

    def table_width(keys: tuple[str, ...]) -> int:  # rich's default box: a space each side, a border between
        return sum(widths[k] + 3 for k in keys) + 1

    for layout in _LAYOUTS:
        if table_width(layout) <= width:
            return [by_key[k] for k in layout]
        if layout[-1] == "description":
            room = width - table_width(layout[:-1]) - 3
            if room >= _MIN_DESCRIPTION:
                column = by_key["description"]
                cut = replace(column, show=lambda value, show=column.show, room=room: _ellipsis(show(value), room))
                return [*(by_key[k] for k in layout[:-1]), cut]
    return [by_key[k] for k in _LAYOUTS[-1]]


def _ellipsis(text: str, room: int) -> str:
    return text if len(text) <= room else text[: room - 1] + "…"


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
        Column("label", "module"), Column("type", "type"),
        Column("own_params", "own params", thousands, numeric=True),
        Column("total_params", "total params", thousands, numeric=True),
    ]
    emit(fmt.value, rows, columns, title=f"{model} (depth {depth})",
         document=[asdict(node) for node in nodes], csv_keys=list(asdict(nodes[0])) if nodes else None)
