"""Writing what the renderers made: every target checked first, then each file written all or nothing."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from inspectlab.core.errors import InspectlabError
from inspectlab.core.io import check_writable, write_atomic
from inspectlab.render.report_files import plan_reports

Content = str | bytes | Callable[[], str | bytes]  # a callable is drawn only once every target is checked


def write_files(planned: Sequence[tuple[str | Path, Content]], force: bool = False) -> list[Path]:
    """Write every (path, content); nothing is written unless every target may be (new, or `force`)."""
    for path, _ in planned:
        check_writable(path, force)
    return [write_atomic(path, content() if callable(content) else content, force) for path, content in planned]


def write_reports(rows: Sequence[Mapping[str, Any]], attrs: Mapping[str, Any], paths: Sequence[str | Path], *,
                  force: bool = False, bubble: str | None = None, title: str | None = None,
                  command: str | None = None) -> list[Path]:
    """Write a compare/sweep report in each path's format (.md with its PNGs beside it, .html, .csv, .json)."""
    return write_files(plan_reports(rows, attrs, paths, bubble=bubble, title=title, command=command), force)


def write_into_folder(folder: str | Path, planned: Sequence[tuple[str, Content]], force: bool = False) -> list[str]:
    """Write files named in `planned` into `folder`, created if missing (its parent must exist)."""
    target = Path(folder)
    if not target.parent.exists():
        raise InspectlabError(f"folder {target.parent} does not exist")
    target.mkdir(exist_ok=True)
    return [str(path) for path in write_files([(target / name, content) for name, content in planned], force)]
