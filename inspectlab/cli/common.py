"""The Typer app and what every command shares: options, error handling, output."""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from enum import Enum
from typing import Annotated, Any

import typer

from inspectlab.cli.usage import OneLineUsageErrors
from inspectlab.core.arguments import parse_builder_args
from inspectlab.core.errors import InspectlabError, describe_error
from inspectlab.core.io import write_atomic
from inspectlab.core.shapes import InputSpec, parse_inputs, simplest
from inspectlab.render import formats
from inspectlab.render.fit import fit_table, rich_table

app = typer.Typer(
    name="inspectlab",
    help="Everything about a PyTorch network: params, FLOPs/MACs, shapes, receptive fields, latency, "
    "memory, graphs and feature dumps.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion, --show-completion; MODEL completes from the zoo
    pretty_exceptions_enable=False,
    cls=OneLineUsageErrors,  # usage errors (bad choice, unknown option, missing MODEL) in one line too
)

_state = {"debug": False, "wide": False}
PIPE_WIDTH = 200  # the width of text that is not for a terminal (a table is never cut to it: see emit)
# The commands that print tables: the `command` decorator gives each a --wide flag.
TABLE_COMMANDS = frozenset({"summary", "flops", "compare", "sweep", "rf", "stages", "latency", "list", "tree",
                            "memory"})
WideOption = Annotated[bool, typer.Option(
    "--wide", help="On a terminal, show every column in full even when the table is wider than the terminal.")]


def complete_model(incomplete: str) -> list[str]:
    """Shell completion of MODEL: the zoo's names and aliases, and the spec prefixes (tv:, timm:, smp:, hf:)."""
    from inspectlab import api

    names = [*api.model_names(), "tv:", "timm:", "smp:", "hf:"]
    return [name for name in names if name.startswith(incomplete)]


class TableFormat(str, Enum):
    table = "table"
    json = "json"


class TextFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


class ExportFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"
    html = "html"


ModelArg = Annotated[
    str, typer.Argument(help="Zoo name (see `inspectlab list`), tv:NAME, timm:NAME, smp:ARCH, hf:MODEL_TYPE, or "
                        "path/to/file.py:factory.", autocompletion=complete_model)
]
ArgsOption = Annotated[list[str] | None, typer.Option("--arg", help="Builder argument key=value (repeatable).")]
DepthOption = Annotated[int, typer.Option("--depth", "-d", min=0, help="Deepest module level shown.")]
InputOption = Annotated[
    list[str] | None,
    typer.Option("--input", "-i", help="Input [NAME=]SHAPE[:DTYPE]: a shape B,C,H,W or B,T,C,H,W; a dtype after a "
                 "colon (1,128:int64 token ids are zeros; bool, float16, ...); a keyword argument of forward before "
                 "'=' (input_ids=1,128:int64). Repeat for several inputs (unnamed ones positional, in order). "
                 "Default: the model's own (zoo, timm, hf) default input, else 1,3,224,224 (smp: 1,3,512,512)."),
]
InputFileOption = Annotated[str | None, typer.Option(
    "--input-file", help="The inputs themselves, a torch.save file (read with weights_only=True): a tensor, a "
    "tuple/list of positional arguments, or a dict of keyword arguments; used as they are (real values, real "
    "shapes), instead of --input.")]
OutputOption = Annotated[str | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")]
ForceOption = Annotated[bool, typer.Option("--force", help="Overwrite existing output files.")]
WeightsOption = Annotated[str | None, typer.Option(
    "--weights", help="state_dict file loaded into the model (.pt/.pth read with weights_only=True, or "
    ".safetensors; a checkpoint's state_dict/model/model_state_dict; module./_orig_mod. prefixes stripped).")]
NonStrictOption = Annotated[bool, typer.Option(
    "--non-strict", help="Load the --weights keys that match; list the missing and unexpected ones.")]


def input_sizes(texts: list[str] | None) -> list[tuple[int, ...]] | list[InputSpec] | None:
    """The repeated --input options: bare shapes when none has a name or a dtype (as before input specs existed),
    else input specs; None when none was given (the model's default input)."""

    return simplest(parse_inputs(texts)) if texts else None


def input_file(path: str | None, texts: Any = None) -> Any:
    """The inputs of --input-file (None without one); it cannot go with --input."""
    if path is None:
        return None
    if texts:
        raise InspectlabError("--input and --input-file both give the input: choose one")
    from inspectlab import api

    return api.load_inputs(path)


@contextlib.contextmanager
def progress_bar() -> Iterator[Any]:
    """A rich progress bar on stderr while the run lasts (only on a terminal); yields the callback, or None."""
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console,
                  transient=True, auto_refresh=False) as bar:
        task = bar.add_task("starting", total=1.0)
        shown = [0.0]

        def update(description: str, fraction: float) -> None:
            # redrawn here, between timed iterations, never by a thread competing with the forward
            bar.update(task, description=description, completed=fraction)
            now = time.monotonic()
            if now - shown[0] > 0.2 or fraction >= 1.0:
                shown[0] = now
                bar.refresh()

        yield update


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    _state["debug"] = debug


def command(name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register a command on `app` whose failures become one line on stderr and exit code 2 (`--debug`
    shows the traceback, and the rest of a message of many lines). Typer reads the options from the
    wrapped function's signature.

    Any exception becomes that line, also a BaseException of the user's code (a model's forward that calls
    sys.exit); a Ctrl-C (KeyboardInterrupt) keeps its usual exit code 130, and a subclass of SystemExit
    (SIGTERM's `Terminated` during a write) its own status."""
    def register(function: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> None:
            _state["wide"] = bool(kwargs.pop("wide", False))
            try:
                function(*args, **kwargs)
            except (typer.Exit, typer.Abort, KeyboardInterrupt):
                raise
            except BrokenPipeError:  # the reader (`| head`) went away: stop quietly, as other tools do
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise typer.Exit(0) from None
            except BaseException as exc:
                if isinstance(exc, SystemExit) and isinstance(exc.__context__, BrokenPipeError):
                    raise typer.Exit(0) from None  # rich met the closed pipe first (and exits with 1)
                if _state["debug"] or (isinstance(exc, SystemExit) and type(exc) is not SystemExit):
                    raise
                typer.echo(f"error: {error_line(exc)}", err=True)
                raise typer.Exit(2) from None

        if name in TABLE_COMMANDS:
            _add_wide(run, function)
        app.command(name)(run)
        return run

    return register


def _add_wide(run: Callable[..., None], function: Callable[..., None]) -> None:
    """Give the wrapper a `--wide` flag beside the function's own options (Typer reads `__signature__`)."""
    signature = inspect.signature(function, eval_str=True)
    wide = inspect.Parameter("wide", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=WideOption)
    run.__signature__ = signature.replace(parameters=[*signature.parameters.values(), wide])  # type: ignore[attr-defined]
    run.__annotations__ = {**{p.name: p.annotation for p in signature.parameters.values()}, "wide": WideOption}


def error_line(exc: BaseException) -> str:
    """The one line of a failure; a message cut to its first meaningful line says that --debug shows the rest."""
    line = describe_error(exc)
    whole = str(exc) if isinstance(exc, InspectlabError) else f"{type(exc).__name__}: {exc}"
    cut = not isinstance(exc, SystemExit) and str(exc).strip() and " ".join(whole.split()) != " ".join(line.split())
    return f"{line} (--debug shows the rest)" if cut else line


def terminal_width() -> int | None:
    """The width a table must fit: $COLUMNS when set, else the terminal's; None when stdout is not a terminal."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns if sys.stdout.isatty() else None
    except (OSError, ValueError):
        return None


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Any], title: str = "",
                footer: Any = None) -> None:
    """A table on stdout: fitted to the terminal (render/fit.py: nothing is cut, the columns left out are named
    under it); in full with --wide or when stdout is not a terminal (no colours then)."""
    from rich.console import Console

    width = terminal_width()
    fitted = fit_table(rows, columns, None if _state["wide"] else width)
    console = Console(width=max(width or PIPE_WIDTH, fitted.width))
    console.print(rich_table(fitted, title))
    for note in fitted.notes():
        console.print(note, markup=False, highlight=False)
    if footer is not None:
        console.print(footer)


def emit(fmt: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[Any], title: str = "",
         document: Any = None, output: str | None = None, force: bool = False,
         footer: Any = None, csv_keys: Sequence[str] | None = None) -> None:
    """Print or write rows in the chosen format; json writes `document`, csv `csv_keys`, when given."""
    if fmt == "table" and output is None:
        print_table(rows, columns, title, footer)
        return
    if fmt == "json":
        text = formats.to_json(document if document is not None else list(rows))
    elif fmt == "csv":
        text = formats.rows_to_csv(rows, csv_keys or [c.key for c in columns])
    elif fmt == "html":
        text = formats.rows_to_html(rows, columns, title)
    else:  # markdown, and table written to a file
        text = formats.rows_to_markdown(rows, columns, title)
    if output is None:
        sys.stdout.write(text)
    else:
        write_atomic(output, text, force)
        typer.echo(f"wrote {output}", err=True)


def parse_args(pairs: list[str] | None) -> dict[str, Any]:
    return parse_builder_args(pairs or [])
