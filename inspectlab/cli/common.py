"""The Typer app and what every command shares: options, error handling, output."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import Annotated, Any

import typer

from inspectlab.errors import InspectlabError

app = typer.Typer(
    name="inspectlab",
    help="Everything about a PyTorch network: params, FLOPs/MACs, shapes, receptive fields, latency, "
    "memory, graphs and feature dumps.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_state = {"debug": False}


class TableFormat(str, Enum):
    table = "table"
    json = "json"


class ExportFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"
    html = "html"


ModelArg = Annotated[
    str, typer.Argument(help="Zoo name (see `inspectlab list`), tv:NAME, or path/to/file.py:factory.")
]
ArgsOption = Annotated[list[str] | None, typer.Option("--arg", help="Builder argument key=value (repeatable).")]
DepthOption = Annotated[int, typer.Option("--depth", "-d", min=0, help="Deepest module level shown.")]


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    _state["debug"] = debug


def guarded(command: Callable[[], None]) -> None:
    """Run a command body: user errors and failures become one line on stderr, exit code 2."""
    try:
        command()
    except (typer.Exit, typer.Abort):
        raise
    except BrokenPipeError:  # the reader (`| head`) went away: stop quietly, as other tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    except Exception as exc:
        if _state["debug"]:
            raise
        message = str(exc) if isinstance(exc, InspectlabError) else f"{type(exc).__name__}: {exc}"
        typer.echo(f"error: {message.splitlines()[0] if message else type(exc).__name__}", err=True)
        raise typer.Exit(2) from None


def emit(fmt: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[Any], title: str = "",
         document: Any = None, output: str | None = None, force: bool = False,
         footer: Any = None, csv_keys: Sequence[str] | None = None) -> None:
    """Print or write rows in the chosen format; json writes `document`, csv `csv_keys`, when given."""
    from inspectlab.render import formats

    if fmt == "table" and output is None:
        from rich.console import Console

        console = Console(width=None if sys.stdout.isatty() else 200)
        console.print(formats.rich_table(rows, columns, title))
        if footer is not None:
            console.print(footer)
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
        formats.write_atomic(output, text, force)
        typer.echo(f"wrote {output}", err=True)


def parse_args(pairs: list[str] | None) -> dict[str, Any]:
    from inspectlab.models.registry import parse_builder_args

    return parse_builder_args(pairs or [])
