"""`--help` reads like a man page: plain metavars (`--input B,C,H,W`, `MODEL`, `--depth N`), nothing after a
flag, no Python type names, and no option's default cut short."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from inspectlab.cli import app

COMMANDS = [command.name for command in app.registered_commands if command.name]
TYPE_LABEL = re.compile(r"<(?:bool|str|int|float|list\[[^\]]*\])[^>]*>")


@pytest.fixture(scope="module")
def helps() -> dict[str, str]:
    runner = CliRunner()
    texts = {"": runner.invoke(app, ["--help"], env={"COLUMNS": "100"}).output}
    for name in COMMANDS:
        result = runner.invoke(app, [name, "--help"], env={"COLUMNS": "100"})
        assert result.exit_code == 0, result.output
        texts[name] = result.output
    return texts


def test_no_python_type_labels_and_no_braces(helps: dict[str, str]) -> None:
    assert len(helps) > 10
    for name, text in helps.items():
        assert not TYPE_LABEL.search(text), (name, TYPE_LABEL.search(text))
        assert "{" not in text.splitlines()[1], (name, text.splitlines()[1])


def test_plain_metavars(helps: dict[str, str]) -> None:
    text = helps["summary"]
    assert "Usage: inspectlab summary [OPTIONS] MODEL" in text
    assert re.search(r"--input\s+-i\s+B,C,H,W ", text)
    assert re.search(r"--depth\s+-d\s+N ", text)
    assert re.search(r"--format\s+-f\s+table\|json\|csv\|markdown\|html ", text)
    assert re.search(r"--force\s{10,}Overwrite", text)  # a flag takes no value: nothing between name and help
    assert "MODELS..." in helps["compare"]


def test_columns_help_lists_every_column_without_cutting_it(helps: dict[str, str]) -> None:
    from inspectlab.render.columns import SUMMARY_COLUMNS

    flat = " ".join(helps["summary"].replace("│", " ").split())
    for column in SUMMARY_COLUMNS:
        assert column in flat
    assert "…" not in helps["summary"]
