"""Usage errors (a bad choice, a negative --depth, an unknown option, a missing MODEL) as one line on stderr
with exit code 2, in the style of the tool's own errors: `error: --format: 'bogus' is not one of table, json`.

Typer parses the command line with (its copy of) click, whose errors are otherwise drawn as a box of five or
six lines. `OneLineUsageErrors` is the app's group class: the parse of the group (`make_context`) and of the
command (inside `invoke`) both run under `one_line_usage_errors`. Both `app()` (the console script) and
`CliRunner().invoke(app, ...)` go through them. `inspectlab` alone still prints the help.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import typer
from typer.core import TyperGroup

from inspectlab.cli.help_text import plain_metavars

try:  # typer >= 0.25 carries its own copy of click
    from typer._click import exceptions as _click_errors
except ImportError:  # pragma: no cover - a typer built on click
    from click import exceptions as _click_errors  # type: ignore[no-redef]

ClickException = _click_errors.ClickException
NoArgsIsHelpError = getattr(_click_errors, "NoArgsIsHelpError", ())  # `inspectlab` alone: the help, as before

_QUOTED = re.compile(r"'([^']*)'")


def _param_name(param: Any) -> str:
    """--format for an option (its longest name), MODEL for an argument."""
    if param is None:
        return ""
    if getattr(param, "param_type_name", "") == "argument":
        return str(param.name or "").upper()
    names = [opt for opt in getattr(param, "opts", []) if opt.startswith("--")] or list(getattr(param, "opts", []))
    return max(names, key=len) if names else str(param.name or "")


def _sentence(text: str) -> str:
    """One line, lower-case first letter, no final full stop."""
    text = " ".join(text.split()).rstrip(".")
    return text[:1].lower() + text[1:]


def _bad_value(error: Any) -> str:
    """What is wrong with the value: typer's own message, or the first error of the validation behind it
    (pydantic: its input and message), worded as `'bogus' is not one of a, b` or `'-1' should be ...`."""
    detail = _sentence(error.message).removeprefix("value error, ")
    cause = error.__cause__
    errors = cause.errors() if hasattr(cause, "errors") else []
    if errors and isinstance(errors[0], dict) and "input" in errors[0]:
        first = errors[0]
        message = _sentence(str(first.get("msg", "")))
        if message.startswith("input should be "):
            clause = message.removeprefix("input should be ").split(", ")[0]
            detail = f"{first['input']!r} should be {clause}"
    head, sep, choices = detail.partition(" is not one of ")
    if sep:  # 'bogus' is not one of 'table', 'json'. -> ... one of table, json
        detail = f"{head} is not one of " + _QUOTED.sub(r"\1", choices)
    return detail


def usage_line(error: Any) -> str:
    """The one line (without "error: ") of a click usage error."""
    ctx = getattr(error, "ctx", None)
    help_hint = f"; see `{ctx.command_path} --help`" if ctx is not None else ""
    param = getattr(error, "param", None)
    name = _param_name(param)
    if isinstance(error, _click_errors.MissingParameter):
        kind = "" if getattr(param, "param_type_name", "") == "argument" else "option "
        return f"missing {kind}{name or 'argument'}{help_hint}"
    if isinstance(error, _click_errors.NoSuchOption):
        possible = sorted(error.possibilities or [])
        guess = f"; did you mean {' or '.join(possible)}?" if possible else help_hint
        return f"unknown option {error.option_name}{guess}"
    if isinstance(error, _click_errors.BadParameter) and (name or error.param_hint):
        return f"{name or _sentence(str(error.param_hint))}: {_bad_value(error)}"
    if isinstance(error, _click_errors.BadParameter):
        return _bad_value(error)
    line = _sentence(error.format_message()).replace(". Did you mean", "; did you mean") or type(error).__name__
    return line if "did you mean" in line.lower() else line + help_hint


@contextlib.contextmanager
def one_line_usage_errors() -> Iterator[None]:
    """Print a click usage error (any ClickException) as `error: ...` on stderr and exit with its code (2)."""
    try:
        yield
    except ClickException as error:
        if NoArgsIsHelpError and isinstance(error, NoArgsIsHelpError):
            raise
        typer.echo(f"error: {usage_line(error)}", err=True)
        raise typer.Exit(getattr(error, "exit_code", 2)) from None


class OneLineUsageErrors(TyperGroup):
    """The app's group: its own parse and each command's parse give one-line usage errors; each command it
    hands out has plain metavars in its help (`cli/help_text.py`)."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        plain_metavars(self)
        with one_line_usage_errors():
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        with one_line_usage_errors():
            return super().invoke(ctx)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        return plain_metavars(super().get_command(ctx, cmd_name))
