"""What the CLI tests share: run the app in-process, and check the one-line error contract."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from inspectlab.cli import app

runner = CliRunner()


def run_cli(*args: str) -> Any:
    """`inspectlab ARGS...` through typer's CliRunner; the Result (exit_code, output)."""
    return runner.invoke(app, list(args))


def assert_one_line_error(result: Any, *fragments: str) -> None:
    """Exit code 2, one line starting with "error:", no traceback, and every fragment in it."""
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert len(text.splitlines()) == 1 and text.startswith("error:"), text
    assert "Traceback" not in text
    for fragment in fragments:
        assert fragment in text, text
