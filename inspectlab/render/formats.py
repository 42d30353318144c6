"""Number formatting and tabular exports (json, csv, markdown, html): text only, no files."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from inspectlab.core.shapes import shape_text

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


KEEP = 100  # a column of this priority stays on the narrowest terminal (render/fit.py)


@dataclass(frozen=True)
class Column:
    """A column of a table: the row key, its header, how a value is shown, and how the column gives way on a
    narrow terminal (render/fit.py): `short` is a shorter text of a value (shapes: 64×112²), a lower
    `priority` is dropped sooner (KEEP: never), and a `wraps` column (names, prose) may wrap onto more lines."""

    key: str
    header: str
    show: Callable[[Any], str] = str
    numeric: bool = False
    priority: int = 50
    short: Callable[[Any], str] | None = None
    wraps: bool = False


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
    if isinstance(value, dict):  # a window (summary's kernel): its JSON
        return json.dumps(value, separators=(",", ":"))
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
