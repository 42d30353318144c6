"""`inspectlab compare` and `inspectlab sweep`: models side by side, one model across input sizes; tables on the
terminal, reports (Markdown + PNGs, self-contained HTML, csv, json) in files."""

from __future__ import annotations

import sys
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any

import typer

from inspectlab import api
from inspectlab.cli.common import (
    ArgsOption,
    ForceOption,
    InputOption,
    ModelArg,
    TextFormat,
    WeightsOption,
    command,
    complete_model,
    input_sizes,
    parse_args,
    print_table,
    progress_bar,
)
from inspectlab.core.arguments import parse_model
from inspectlab.core.conventions import CONVENTIONS
from inspectlab.core.errors import InspectlabError
from inspectlab.core.shapes import check_size, parse_input, parse_sizes, quoted
from inspectlab.render import report_files
from inspectlab.render.frames import frame_rows
from inspectlab.render.report_files import report_format

ConventionChoice = Enum("ConventionChoice", {name: name for name in CONVENTIONS}, type=str)  # type: ignore[misc]


class BubbleChoice(str, Enum):
    auto = "auto"
    peak = "peak"
    activation = "activation"
    latency = "latency"


_BUBBLE_KEYS = {"peak": "peak_bytes", "activation": "activation_bytes", "latency": "latency_p50_ms"}

LatencyFlag = Annotated[bool, typer.Option("--latency", help="Also time the forward (p50/p90).")]
DeviceOption = Annotated[str, typer.Option("--device", help="Where latency runs: cpu or cuda (cuda:N).")]
WarmupOption = Annotated[int, typer.Option("--warmup", min=0, help="Untimed iterations before timing.")]
ItersOption = Annotated[int | None, typer.Option("--iters", "-n", min=1, help="Timed iterations per model/size.")]
MinTimeOption = Annotated[float | None, typer.Option(
    "--min-time", help="Time at least this many seconds (and 10 iterations) per model/size; default 2 s.")]
ThreadsOption = Annotated[int | None, typer.Option("--threads", min=1, help="torch intra-op threads for latency.")]
FormatOption = Annotated[TextFormat, typer.Option("--format", "-f", help="Format printed to stdout.")]
OutputsOption = Annotated[list[str] | None, typer.Option(
    "--output", "-o", help="Write a report: .md (PNGs beside it), .html (one self-contained file), .csv or .json. "
    "Repeatable.")]
TitleOption = Annotated[str | None, typer.Option("--title", help="Heading of the report.")]


def _run_report(make_frame: Callable[[Any], Any], fmt: TextFormat, outputs: list[str] | None, force: bool,
                bubble: str | None, title: str | None, command: str) -> None:
    """What compare and sweep share: check the report paths' formats first, run `make_frame(progress)` under
    a progress bar, then write the reports or print the table."""
    for path in outputs or []:
        report_format(path)
    with progress_bar() as progress:
        frame = make_frame(progress)
    _finish(frame, fmt, outputs, force, bubble, title, command)


def _command_text(name: str, words: list[str], options: dict[str, Any]) -> str:
    """The command line a report says it was made with (its own options, not the output files)."""
    parts = ["inspectlab", name, *words]
    for option, value in options.items():
        if value is True:
            parts.append(option)
        elif value not in (None, False, [], ()):
            parts += [option, *([str(v) for v in value] if isinstance(value, list) else [str(value)])]
    return " ".join(parts)


def _finish(frame: Any, fmt: TextFormat, outputs: list[str] | None, force: bool, bubble: str | None,
            title: str | None, command: str) -> None:
    """Write the reports, else print the frame; every row failed: one error line."""
    rows = frame_rows(frame)
    if rows and all(row.get("error") and row.get("macs") is None for row in rows):
        what = "model" if frame.attrs.get("kind") == "compare" else "size"
        first = rows[0]
        raise InspectlabError(f"every {what} failed; {first.get('model') or first.get('size')}: {first['error']}")
    if outputs:
        for path in api.write_reports(rows, frame.attrs, outputs, force=force, bubble=bubble, title=title,
                                        command=command):
            typer.echo(f"wrote {path}", err=True)
        return
    _print(rows, frame.attrs, fmt)


def _print(rows: list[dict[str, Any]], attrs: dict[str, Any], fmt: TextFormat) -> None:
    if fmt is TextFormat.json:
        sys.stdout.write(report_files.render_json(rows, attrs))
    elif fmt is TextFormat.csv:
        sys.stdout.write(report_files.render_csv(rows))
    elif fmt is TextFormat.markdown:
        sys.stdout.write(report_files.render_markdown(rows, attrs, []))
    else:
        columns = report_files.report_columns(rows, attrs.get("kind", "compare"), report_files.convention_keys(rows))
        print_table(rows, columns, report_files.report_title(attrs, None), _footer(rows, attrs))


def _footer(rows: list[dict[str, Any]], attrs: dict[str, Any]) -> str:
    lines = []
    names = {"macs": "MACs", "other_flops": "other FLOPs", "activation_bytes": "activation memory",
             "peak_bytes": "peak memory", "latency_p50_ms": "latency p50"}
    exponents = {k: v for k, v in (attrs.get("exponents") or {}).items() if v is not None}
    if exponents:
        lines.append("Fitted exponent b of value ∝ pixels^b: "
                     + ", ".join(f"{names.get(k, k)} {v:.4f}" for k, v in exponents.items()))
    lines += [line.replace("`", "") for line in report_files.context_lines(attrs, None)[1:]]
    errors, notes = report_files.issues(rows)
    lines += [f"error: {e}" for e in errors] + [f"note: {n}" for n in notes]
    return "\n".join(lines)


@command("compare")
def compare_command(
    models: Annotated[list[str], typer.Argument(
        help="Models to compare: zoo names, tv:NAME, path/to/file.py:factory; builder arguments after a colon: "
        "deeplabv3plus_resnet50:output_stride=16,num_classes=19.", autocompletion=complete_model)],
    inputs: InputOption = None,
    latency: LatencyFlag = False,
    device: DeviceOption = "cpu",
    warmup: WarmupOption = 2,
    iters: ItersOption = None,
    min_time: MinTimeOption = None,
    threads: ThreadsOption = None,
    convention: Annotated[ConventionChoice, typer.Option(
        "--convention", help="Add this peer's FLOPs/MACs total as a column.")] = ConventionChoice.inspectlab,
    bubble: Annotated[BubbleChoice, typer.Option(
        "--bubble", help="Bubble area of the MACs-vs-params chart (auto: latency if timed, else peak).")]
    = BubbleChoice.auto,
    fmt: FormatOption = TextFormat.table,
    outputs: OutputsOption = None,
    force: ForceOption = False,
    title: TitleOption = None,
    weights: Annotated[list[str] | None, typer.Option(
        "--weights", help="MODEL=PATH: a state_dict file for one of the models (as written); repeatable.")] = None,
    stages: Annotated[bool, typer.Option(
        "--stages", help="Backbones stage by stage: per stride, the channels, MACs so far and receptive field of "
        "each model's feature map (docs/stages.md).")] = False,
    memory: Annotated[bool, typer.Option(
        "--memory", help="Memory columns: with --train, the peak of one training step at this batch beside the "
        "inference peak (docs/memory.md; meta traces only).")] = False,
    train: Annotated[bool, typer.Option("--train", help="With --memory: the training step's peak.")] = False,
    optimizer: Annotated[str, typer.Option(
        "--optimizer", help="With --memory --train: sgd, momentum, adam or adamw.")] = "adamw",
) -> None:
    """Compare models side by side: params, MACs, memory, output stride, receptive field, latency."""
    if train and not memory:
        raise InspectlabError("--train goes with --memory: compare --memory --train")

    choices = [parse_model(text) for text in models]  # malformed specs fail before any work
    shapes = input_sizes(inputs)
    command = _command_text("compare", list(models), {
        "--input": inputs, "--latency": latency, "--device": device if latency and device != "cpu" else None,
        "--warmup": warmup if latency else None, "--iters": iters if latency else None, "--convention":
        None if convention is ConventionChoice.inspectlab else convention.value, "--stages": stages,
        "--memory": memory, "--train": train, "--optimizer": optimizer if memory and train else None})
    _run_report(
        lambda progress: api.compare(choices, shapes, latency=latency, device=device, convention=convention.value,
                                     warmup=warmup, iters=iters, min_time=min_time, threads=threads,
                                     progress=progress, weights=_weights_by_model(weights), stages=stages,
                                     train_optimizer=optimizer if memory and train else None),
        fmt, outputs, force, _BUBBLE_KEYS.get(bubble.value), title, command)


def _weights_by_model(pairs: list[str] | None) -> dict[str, str]:
    """["unet=unet.pt", "tv:resnet50=r50.pth"] -> {"unet": "unet.pt", ...} (the path after the last '=')."""
    weights = {}
    for pair in pairs or []:
        model, sep, path = pair.rpartition("=")
        if not sep or not model.strip() or not path.strip():
            raise InspectlabError(f"malformed --weights {quoted(pair)}: give MODEL=PATH")
        weights[model.strip()] = path.strip()
    return weights


@command("sweep")
def sweep_command(
    model: ModelArg,
    sizes: Annotated[str, typer.Option(
        "--sizes", "-s", help="Input sizes: 224,512,1024 (squares) or HxW such as 512x1024.")],
    inputs: Annotated[str | None, typer.Option(
        "--input", "-i", help="Template input N,C,H,W whose H and W each size replaces (default: the model's).")]
    = None,
    args: ArgsOption = None,
    weights: WeightsOption = None,
    latency: LatencyFlag = False,
    device: DeviceOption = "cpu",
    warmup: WarmupOption = 2,
    iters: ItersOption = None,
    min_time: MinTimeOption = None,
    threads: ThreadsOption = None,
    fmt: FormatOption = TextFormat.table,
    outputs: OutputsOption = None,
    force: ForceOption = False,
    title: TitleOption = None,
) -> None:
    """MACs, memory and latency of one model across input sizes, with the fitted exponent against pixels."""
    pairs = parse_sizes(sizes)
    template = parse_input(inputs) if inputs is not None else None  # --input '' is an error
    for height, width in pairs if template is not None and len(template.shape) >= 3 else ():
        check_size((*template.shape[:-2], height, width), f"--input {inputs!r} at size {height}×{width}")
    choice = parse_model(model)
    command = _command_text("sweep", [model], {
        "--sizes": sizes, "--input": inputs, "--arg": args, "--latency": latency,
        "--device": device if latency and device != "cpu" else None, "--warmup": warmup if latency else None,
        "--iters": iters if latency else None})
    _run_report(
        lambda progress: api.sweep(choice, pairs, input_size=template, args=parse_args(args), weights=weights,
                                   latency=latency,
                                   device=device, warmup=warmup, iters=iters, min_time=min_time, threads=threads,
                                   progress=progress),
        fmt, outputs, force, None, title, command)
