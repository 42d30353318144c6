"""`inspectlab graph`: draw the architecture with graphviz (dot source, SVG, PNG or PDF)."""

from __future__ import annotations

import re
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from inspectlab import api
from inspectlab.cli.common import (
    ArgsOption,
    DepthOption,
    ForceOption,
    InputFileOption,
    InputOption,
    ModelArg,
    NonStrictOption,
    WeightsOption,
    command,
    input_file,
    input_sizes,
    parse_args,
)
from inspectlab.core.io import check_writable, write_atomic


class GraphFormat(str, Enum):
    svg = "svg"
    png = "png"
    pdf = "pdf"
    dot = "dot"


STDOUT = "-"  # `-o -`: write to stdout instead of a file


class RankDir(str, Enum):
    TB = "TB"
    LR = "LR"


def default_output(model: str, fmt: str) -> str:
    """MODEL.FORMAT in the current folder: "tv:resnet50" -> "resnet50.svg", "net.py:build" -> "build.svg"."""
    stem = Path(model.rsplit(":", 1)[-1]).name or "model"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem) + f".{fmt}"


@command("graph")
def graph_command(
    model: ModelArg,
    inputs: InputOption = None,
    inputs_file: InputFileOption = None,
    depth: DepthOption = 2,
    fmt: Annotated[GraphFormat, typer.Option("--format", "-f", help="svg, png, pdf (these need Graphviz's `dot` "
                                             "program) or dot (the source; needs nothing).")] = GraphFormat.svg,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", help="File to write, or - for stdout. Default: MODEL.FORMAT in the current folder (e.g. "
        "resnet50.svg); with --format dot and no -o, the dot source goes to stdout.")] = None,
    rankdir: Annotated[RankDir, typer.Option("--rankdir", help="Layout direction: TB (top to bottom) or LR.")]
    = RankDir.TB,
    collapse: Annotated[bool, typer.Option("--collapse-repeats/--no-collapse-repeats",
                                           help="Draw a chain of k identical blocks once, marked ×k.")] = True,
    show: Annotated[str, typer.Option("--show", help="Extra labels, comma-separated: shapes (on every edge; by "
                                      "default only where the shape is new), params, flops (MACs), rf (receptive "
                                      "field).")] = "params",
    force: ForceOption = False,
    args: ArgsOption = None,
    weights: WeightsOption = None,
    non_strict: NonStrictOption = False,
) -> None:
    """Draw the architecture: module calls at --depth, the add/cat/mul/interpolate between them, tensors as edges."""
    from inspectlab.render.graphviz_render import render_bytes, require_dot  # imports torch: not at --help

    require_dot(fmt.value)
    target = output if output is not None or fmt is GraphFormat.dot else default_output(model, fmt.value)
    if target == STDOUT:
        target = None
    if target is not None:
        check_writable(target, force)
    data = input_file(inputs_file, inputs)
    digraph = api.graph(model, input_sizes(inputs), input_data=data, depth=depth, args=parse_args(args),
                        weights=weights, strict=not non_strict, rankdir=rankdir.value,
                        collapse_repeats=collapse, show=show)
    if target is None:
        if fmt is GraphFormat.dot:
            sys.stdout.write(digraph.source)
        elif fmt is GraphFormat.svg:
            sys.stdout.write(render_bytes(digraph, fmt.value).decode("utf-8"))
        else:  # png, pdf: the bytes, for a pipe
            sys.stdout.flush()
            sys.stdout.buffer.write(render_bytes(digraph, fmt.value))
        return
    write_atomic(target, render_bytes(digraph, fmt.value), force)
    typer.echo(f"wrote {target}", err=True)
