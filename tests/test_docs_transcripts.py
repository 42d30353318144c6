"""Every command transcript in README.md and docs/*.md prints today what the page shows (`make docs` writes
them; docs/transcripts.py explains the markers). Timing transcripts are compared with their numbers masked;
slow ones run with the slow tests only."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("docs_transcripts", ROOT / "docs" / "transcripts.py")
transcripts = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = transcripts  # dataclasses look their module up there
_spec.loader.exec_module(transcripts)

ALL = [t for path in transcripts.documents() for t in transcripts.transcripts(path) if "skip" not in t.marks]


def _check(transcript) -> None:
    printed = transcripts.run_block([c.text for c in transcript.commands])
    for command, out in zip(transcript.commands, printed, strict=True):
        shown = [line.rstrip() for line in command.shown]
        if "timing" in transcript.marks:
            assert transcripts.masked(shown) == transcripts.masked(out), f"{transcript.where}: $ {command.text}"
        else:
            assert shown == out, f"{transcript.where}: $ {command.text}: run `make docs`"


@pytest.mark.parametrize("transcript", [t for t in ALL if "slow" not in t.marks], ids=lambda t: t.where)
def test_transcript_matches_the_code(transcript) -> None:
    _check(transcript)


@pytest.mark.slow
@pytest.mark.parametrize("transcript", [t for t in ALL if "slow" in t.marks], ids=lambda t: t.where)
def test_slow_transcript_matches_the_code(transcript) -> None:
    _check(transcript)


def test_the_parser_finds_commands_and_their_output(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("text\n\n<!-- transcript: timing (measured) -->\n```\n$ inspectlab list -f csv\nname\n"
                    "$ echo hi\nhi\n```\n\n```python\n$ not a transcript\n```\n")
    [found] = transcripts.transcripts(page)
    assert found.marks == {"timing"} and [c.text for c in found.commands] == ["inspectlab list -f csv", "echo hi"]
    assert [c.shown for c in found.commands] == [["name"], ["hi"]]
    assert transcripts.run_block(["echo hi", "false", "echo $?"]) == [["hi"], [], ["1"]]
    assert transcripts.masked(["p50 12.5 ms │ 3,001"]) == transcripts.masked(["p50 9.75 ms │ 12"])


def test_a_command_may_go_on_over_lines(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```\n$ echo one \\\n    two\none two\n```\n")
    [found] = transcripts.transcripts(page)
    assert [c.text for c in found.commands] == ["echo one \\\n    two"]
    assert transcripts.run_block([found.commands[0].text]) == [["one two"]]
