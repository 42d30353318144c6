"""`inspectlab explore`: one self-contained HTML page to browse a model: its graph at every depth, each node's
numbers, a search box and a sortable layer table (docs/explore.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from inspectlab import api
from inspectlab.cli.common import (
    ArgsOption,
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
    progress_bar,
)
from inspectlab.cli.graph import default_output
from inspectlab.core.errors import InspectlabError
from inspectlab.core.io import check_writable
from inspectlab.render.formats import human_bytes


@command("explore")
def explore_command(
    model: ModelArg,
    inputs: InputOption = None,
    inputs_file: InputFileOption = None,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", help="The page to write (.html). Default: MODEL.html in the current folder.")] = None,
    depth: Annotated[int, typer.Option("--depth", "-d", min=0, help="Deepest level the page can open "
                                       "(each level from 0 to N is laid out once).")] = 3,
    latency: Annotated[bool, typer.Option("--latency", help="Also time each module (a real run, per-layer hooks; "
                                          "docs/latency.md).")] = False,
    device: Annotated[str, typer.Option("--device", help="Where --latency runs: cpu or cuda (cuda:N).")] = "cpu",
    min_time: Annotated[float | None, typer.Option(
        "--min-time", help="With --latency: time at least this many seconds per pass; default 2 s.")] = None,
    force: ForceOption = False,
    args: ArgsOption = None,
    weights: WeightsOption = None,
    non_strict: NonStrictOption = False,
) -> None:
    """Write one self-contained HTML page to browse the model: graph, per-node numbers, search, layer table."""
    target = output if output is not None else default_output(model, "html")
    if Path(target).suffix.lower() not in (".html", ".htm"):
        raise InspectlabError(f"--output {target}: the explorer is an HTML page; name it .html")
    check_writable(target, force)
    data = input_file(inputs_file, inputs)
    with progress_bar() as progress:
        page = api.explore(model, input_sizes(inputs), input_data=data, output=target, depth=depth,
                           args=parse_args(args), weights=weights, strict=not non_strict, latency=latency,
                           device=device, min_time=min_time, force=force, progress=progress)
    depths = f"depths {page.depths[0]}–{page.depths[-1]}" if len(page.depths) > 1 else f"depth {page.depths[0]}"
    typer.echo(f"wrote {page.path} ({depths}, {page.nodes} boxes, {human_bytes(len(page.html.encode()))})", err=True)
