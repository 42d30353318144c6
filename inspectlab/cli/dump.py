"""`inspectlab dump`: capture selected layers' outputs (and gradients) for an input, write them with a manifest."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from inspectlab import api
from inspectlab.cli.common import (
    ArgsOption,
    InputFileOption,
    ModelArg,
    NonStrictOption,
    TableFormat,
    WeightsOption,
    command,
    emit,
    input_file,
    input_sizes,
    parse_args,
)
from inspectlab.core.arguments import parse_bytes, parse_floats
from inspectlab.core.shapes import inputs_text, shape_text
from inspectlab.render.formats import Column, human_bytes


@command("dump")
def dump_command(
    model: ModelArg,
    layers: Annotated[list[str] | None, typer.Option(
        "--layers", "-l", help="Glob on qualified module names (fnmatch: * crosses dots), or re:REGEX; repeatable.")
    ] = None,
    types: Annotated[list[str] | None, typer.Option(
        "--type", "-t", help="Module type (class name or glob, e.g. Conv2d); repeatable; combines with --layers.")
    ] = None,
    input_size: Annotated[list[str] | None, typer.Option(
        "--input", "-i", help="Input shape such as 1,3,224,224 (with --image: the H, W the images are cropped to); "
        "[NAME=]SHAPE[:DTYPE] as elsewhere (input_ids=1,128:int64).")
    ] = None,
    inputs_file: InputFileOption = None,
    images: Annotated[list[str] | None, typer.Option(
        "--image", help="Image file (PIL); repeat to make a batch. Default input: random (--seed).")] = None,
    grads: Annotated[bool, typer.Option("--grads", help="Also keep the gradient of the objective w.r.t. each output.")
                     ] = False,
    target: Annotated[int | None, typer.Option(
        "--target", help="With --grads: the objective is this class's logit (summed over batch and pixels) "
        "instead of the sum of the output.")] = None,
    out: Annotated[str | None, typer.Option(
        "--out", "-o", help="Write the tensors to FILE.safetensors, FILE.npz or FILE.pt, and FILE.json beside it.")
    ] = None,
    png: Annotated[str | None, typer.Option("--png", help="Folder for one picture per output: top-k channels.")
                   ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Channels drawn per picture (--png).")] = 16,
    stats_only: Annotated[bool, typer.Option(
        "--stats-only", help="Keep no tensors: statistics only (with --out, only the manifest is written).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
    max_bytes: Annotated[str, typer.Option(
        "--max-bytes", help="Refuse a dump larger than this (estimated from the trace first).")] = "2GB",
    mean: Annotated[str | None, typer.Option("--mean", help="Per-channel mean for --image (default ImageNet's).")
                    ] = None,
    std: Annotated[str | None, typer.Option("--std", help="Per-channel std for --image (default ImageNet's).")
                   ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda (cuda:N).")] = "cpu",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random input and of a spec-built model's init.")] = 0,
    fmt: Annotated[TableFormat, typer.Option("--format", "-f", help="table, or json (the manifest).")
                   ] = TableFormat.table,
    args: ArgsOption = None,
    weights: WeightsOption = None,
    non_strict: NonStrictOption = False,
) -> None:
    """Dump selected layers' outputs and gradients: safetensors/npz/pt + JSON manifest, pictures, statistics.

    Each output is copied the moment it is produced (an in-place op after it cannot change it); every call
    of a reused module is kept (`name#k`). See docs/dump.md."""
    data = input_file(inputs_file, input_size)
    result = api.dump(
        model, input_sizes(input_size), input_data=data, images=images, layers=layers, types=types,
        grads=grads, target=target, out=out, png=png, stats_only=stats_only, force=force,
        max_bytes=parse_bytes(max_bytes), mean=parse_floats(mean, "--mean") if mean else None,
        std=parse_floats(std, "--std") if std else None, args=parse_args(args), weights=weights,
        strict=not non_strict, device=device, top_k=top_k,
        seed=seed,
    )
    for path in result.written + result.pngs:
        typer.echo(f"wrote {path}", err=True)
    if fmt is TableFormat.json:
        emit("json", [], [], document=result.manifest)
        return
    manifest = result.manifest
    shown = inputs_text(manifest.get("input_details"), manifest["inputs"], separator=", ")
    emit("table", manifest["entries"], _columns(grads), title=f"{model} · input {shown}",
         footer=_footer(result))


def _columns(grads: bool) -> list[Any]:

    def number(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    def axes(value: Any) -> str:
        return shape_text(value) if isinstance(value, list) else ""

    columns = [
        Column("key", "output"), Column("type", "type"), Column("shape", "shape", shape_text),
        Column("bytes", "bytes", human_bytes, numeric=True),
        *(Column(key, key, number, numeric=True) for key in ("min", "max", "mean", "std")),
        Column("zero_fraction", "zeros", lambda v: f"{100 * v:.1f}%", numeric=True),
        Column("rf", "rf", axes, numeric=True), Column("stride", "stride", axes, numeric=True),
    ]
    if grads:
        columns.append(Column("grad", "grad min / max",
                              lambda g: f"{number(g['min'])} / {number(g['max'])}" if g else "", numeric=True))
    return columns


def _footer(result: Any) -> str:

    manifest = result.manifest
    outputs = len(manifest["entries"])
    grads = manifest["tensors"] - outputs
    lines = [f"{outputs} outputs{f' + {grads} gradients' if grads else ''}, {human_bytes(manifest['total_bytes'])} "
             f"(estimated from the trace: {human_bytes(result.estimate)})"]
    if manifest.get("objective"):
        lines.append(f"gradients of: {manifest['objective']}")
    if not result.written and not result.pngs:
        lines.append("nothing written: add --out FILE.safetensors (or .npz, .pt) or --png DIR")
    lines += [f"note: {note}" for note in manifest.get("notes", [])]
    return "\n".join(lines)
