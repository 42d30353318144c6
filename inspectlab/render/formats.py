"""Number formatting, tabular exports (json, csv, markdown, html) and atomic file writes."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspectlab.errors import InspectlabError

FORMATS = ("table", "json", "csv", "markdown", "html")


def human_count(value: float) -> str:
    """4_112_000_000 -> "4.112G" (SI prefixes, 4 significant digits)."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= factor:
            return f"{value / factor:.4g}{prefix}"
    return f"{value:g}"


def human_bytes(value: float) -> str:
    """98_566_144 -> "94 MiB" (binary prefixes)."""
    for factor, prefix in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(value) >= factor:
            return f"{value / factor:.4g} {prefix}"
    return f"{int(value)} B"


def shape_text(shape: Any) -> str:
    """[1, 3, 224, 224] -> "1×3×224×224"; nested shapes (several tensors) joined by ", "."""
    if shape is None:
        return ""
    if shape and isinstance(shape[0], (list, tuple)):
        return ", ".join(shape_text(s) for s in shape)
    return "×".join(str(d) for d in shape)


@dataclass(frozen=True)
class Column:
    """A column of a table: the row key, its header, and how the terminal shows a value."""

    key: str
    header: str
    show: Callable[[Any], str] = str
    numeric: bool = False


def thousands(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def percent(value: Any) -> str:
    return f"{value:.2f}%" if isinstance(value, (int, float)) else str(value)


def cell(column: Column, row: Mapping[str, Any]) -> str:
    value = row.get(column.key)
    return "" if value is None else column.show(value)


def to_json(document: Any) -> str:
    return json.dumps(document, indent=2, default=str) + "\n"


def rows_to_csv(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> str:
    """Exact values (shapes as 1x3x224x224), one line per row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(keys)
    for row in rows:
        writer.writerow([_plain(row.get(key)) for key in keys])
    return buffer.getvalue()


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return shape_text(value)
    return "" if value is None else value


def rows_to_markdown(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], title: str = "") -> str:
    lines = [f"### {title}", ""] if title else []
    lines.append("| " + " | ".join(c.header for c in columns) + " |")
    lines.append("|" + "|".join("---:" if c.numeric else "---" for c in columns) + "|")
    for row in rows:
        lines.append("| " + " | ".join(cell(c, row).replace("|", "\\|") for c in columns) + " |")
    return "\n".join(lines) + "\n"


def rows_to_html(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], title: str = "") -> str:
    from html import escape

    head = "".join(f"<th>{escape(c.header)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell(c, row))}</td>" for c in columns) + "</tr>\n" for row in rows
    )
    caption = f"<caption>{escape(title)}</caption>" if title else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>\n"


def rich_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], title: str = "") -> Any:
    from rich.table import Table

    table = Table(title=title or None, header_style="bold", show_lines=False)
    for position, column in enumerate(columns):
        last = position == len(columns) - 1
        table.add_column(column.header, justify="right" if column.numeric else "left", no_wrap=not last,
                         overflow="fold" if last else "ellipsis")
    for row in rows:
        table.add_row(*(cell(c, row) for c in columns))
    return table


def check_writable(path: str | os.PathLike[str], force: bool) -> Path:
    """Refuse to overwrite an existing file unless forced; the folder must exist."""
    target = Path(path)
    if target.exists() and not force:
        raise InspectlabError(f"{target} exists; use --force to overwrite it")
    if not target.parent.exists():
        raise InspectlabError(f"folder {target.parent} does not exist")
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike[str], data: str | bytes, force: bool = False) -> Path:
    """Write to a temporary file beside `path`, then rename: never a half-written file."""
    target = check_writable(path, force)
    mode = "wb" if isinstance(data, bytes) else "w"
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode) as stream:
            stream.write(data)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it 0600; a new file gets the usual mode
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target
