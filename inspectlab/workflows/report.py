"""report: `latency`, `compare` and `sweep` JSON files of several machines or conditions merged into one
comparison (docs/report.md), written as HTML, Markdown (+ PNGs), CSV or JSON by each output's suffix."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inspectlab.core.errors import InspectlabError
from inspectlab.render.merged_report import MergedReport, merge, plan, report_format

__all__ = ["MergedReport", "read_document", "report"]
from inspectlab.workflows.files import write_files


def read_document(path: str | Path) -> Any:
    """A JSON file's document; a missing, unreadable or malformed file raises one line naming it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InspectlabError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InspectlabError(f"{path}: cannot be read ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InspectlabError(f"{path} is not JSON (line {exc.lineno}: {exc.msg})") from None


def report(sources: Sequence[str | Path], outputs: Sequence[str | Path] = (), *, force: bool = False,
           title: str | None = None, command: str | None = None) -> MergedReport:
    """Merge the JSON files `sources` into one comparison, one column group per machine/condition, and write it
    to each of `outputs` (.html, .md with PNGs beside it, .csv, .json); nothing is written unless every output
    may be (new, or `force`)."""
    if not sources:
        raise InspectlabError("give at least one JSON file of `inspectlab latency`, `compare` or `sweep`")
    for path in outputs:
        report_format(path)  # before any reading
    merged = merge([(str(path), read_document(path)) for path in sources], title)
    if outputs:
        merged.written = write_files(plan(merged, outputs, command), force)
    return merged
