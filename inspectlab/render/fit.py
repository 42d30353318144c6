"""A table fitted to a terminal's width without cutting a number or a name (docs/cli.md, "Tables on a terminal").

`fit_table(rows, columns, width)` gives way in this order, each step only while the table is still too wide:

1. shorten: the shape columns write a batch of 1 away and a square H×W as H² (`1×64×112×112` → `64×112²`), and
   a header wider than its column's values breaks at a space onto two lines;
2. drop columns, the lowest `Column.priority` first (the rightmost of equal ones), never the first column (a
   table's name) nor one of priority KEEP; a footnote names them;
3. wrap the `wraps` columns (names, prose: the first column always) onto several lines, at a dot, an underscore
   or a space where one is near, each line of a name continuing the one above it.

No cell is ever cut short ("…"). A table whose numbers alone are wider than the terminal is printed whole, wider
than the terminal. `width=None` (`--wide`, or output that is not a terminal) keeps every column as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from inspectlab.render.formats import KEEP, Column, cell

MIN_WRAP = 8  # a wrapped column keeps at least this many characters per line
_BREAKS = ".-_/ "  # where a wrapped line prefers to end (after the character)


def text_width(text: str) -> int:
    """The terminal cells of the widest line of `text` (× and ² take one, a CJK character two)."""
    from rich.cells import cell_len

    return max((cell_len(line) for line in text.split("\n")), default=0)


def table_width(widths: Sequence[int]) -> int:
    """The width of a rich table with the default box: one space each side of a cell, a border between and
    around the columns."""
    return sum(w + 3 for w in widths) + 1 if widths else 0


class _Part:
    """A column while it is fitted: its header and cell texts, and their width (kept, as texts change rarely)."""

    def __init__(self, column: Column, cells: list[str], wraps: bool) -> None:
        self.column, self.wraps, self.shortened, self.header = column, wraps, False, column.header
        self._cells = cells
        self._cells_width = max((text_width(c) for c in cells), default=0)

    @property
    def cells(self) -> list[str]:
        return self._cells

    @cells.setter
    def cells(self, texts: list[str]) -> None:
        self._cells = texts
        self._cells_width = max((text_width(c) for c in texts), default=0)

    @property
    def cells_width(self) -> int:
        return self._cells_width

    @property
    def width(self) -> int:
        return max(text_width(self.header), self._cells_width)


@dataclass
class Fitted:
    """The columns a table keeps, their header and cell texts (with line breaks where wrapped), and notes."""

    columns: list[Column]
    headers: list[str]
    cells: list[list[str]]  # per row, per kept column
    widths: list[int]
    dropped: list[Column] = field(default_factory=list)
    shortened: bool = False  # some shape was shortened
    wrapped: bool = False  # some cell was wrapped onto more lines
    limit: int | None = None  # the width fitted to

    @property
    def width(self) -> int:
        return table_width(self.widths)

    def notes(self) -> list[str]:
        """The footnotes under the table: the columns left out, the shortened shapes."""
        lines = []
        if self.dropped:
            lines.append(f"{', '.join(c.header for c in self.dropped)} not shown at {self.limit} columns: --wide "
                         "shows every column (or widen the terminal, or use --format json).")
        if self.shortened:
            lines.append("Shapes shortened to fit: a batch of 1 left out, a square H×W written H².")
        return lines


def fit_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], width: int | None) -> Fitted:
    """The table of `rows` in `columns` made no wider than `width` by the steps of this module's docstring
    (`width=None`: as it is)."""
    parts = [_Part(c, [cell(c, row) for row in rows], c.wraps or i == 0) for i, c in enumerate(columns)]
    fitted = Fitted(list(columns), [], [], [], limit=width)
    if width is not None and _width(parts) > width:
        _shorten(parts, rows, width)
    if width is not None and _width(parts) > width:
        fitted.dropped = _drop(parts, width)
    if width is not None and _width(parts) > width:
        fitted.wrapped = _wrap(parts, width)
    fitted.shortened = any(p.shortened for p in parts)
    fitted.columns = [p.column for p in parts]
    fitted.headers = [p.header for p in parts]
    fitted.cells = [[p.cells[r] for p in parts] for r in range(len(rows))]
    fitted.widths = [p.width for p in parts]
    return fitted


def _width(parts: Sequence[_Part]) -> int:
    return table_width([p.width for p in parts])


def _shorten(parts: list[_Part], rows: Sequence[Mapping[str, Any]], width: int) -> None:
    """Step 1: short shapes in every shape column, then headers over two lines where that narrows a column."""
    for part in parts:
        short = part.column.short
        if short is None:
            continue
        cells = ["" if row.get(part.column.key) is None else short(row[part.column.key]) for row in rows]
        part.shortened = cells != part.cells
        part.cells = cells
    for part in parts:
        if _width(parts) <= width:
            break
        if text_width(part.header) > part.cells_width:
            part.header = _two_lines(part.header)


def _two_lines(header: str) -> str:
    """The header broken at the space that makes its wider line the narrowest (as it is without a space)."""
    words = header.split(" ")
    best = header
    for at in range(1, len(words)):
        candidate = " ".join(words[:at]) + "\n" + " ".join(words[at:])
        if text_width(candidate) < text_width(best):
            best = candidate
    return best


def _drop(parts: list[_Part], width: int) -> list[Column]:
    """Step 2: drop the lowest-priority columns (rightmost first among equals) until the table fits."""
    columns_in_order = [p.column for p in parts]
    order = sorted((p for i, p in enumerate(parts) if i and p.column.priority < KEEP),
                   key=lambda p: (p.column.priority, -parts.index(p)))
    dropped = []
    for part in order:
        if _width(parts) <= width:
            break
        parts.remove(part)
        dropped.append(part.column)
    return [c for c in columns_in_order if c in dropped]


def _wrap(parts: list[_Part], width: int) -> bool:
    """Step 3: lower the width of the wrapping columns, widest first, to what leaves the table `width` wide
    (each keeps MIN_WRAP characters, or its own width when narrower), and wrap their cells to it."""
    wrapping = [p for p in parts if p.wraps]
    room = width - 1 - sum(p.width + 3 for p in parts if not p.wraps) - 3 * len(wrapping)
    natural = {id(p): p.width for p in wrapping}
    floors = {id(p): min(natural[id(p)], max(MIN_WRAP, text_width(p.header.replace(" ", "\n")))) for p in wrapping}

    def widths(cap: int) -> dict[int, int]:
        return {id(p): max(floors[id(p)], min(natural[id(p)], cap)) for p in wrapping}

    cap = max(natural.values())
    while cap > 1 and sum(widths(cap).values()) > room:
        cap -= 1
    changed = False
    for part in wrapping:
        limit = widths(cap)[id(part)]
        if limit < natural[id(part)]:
            part.cells = ["\n".join(wrap_text(c, limit)) for c in part.cells]
            if text_width(part.header) > limit:
                part.header = "\n".join(piece for line in part.header.split("\n") for piece in wrap_text(line, limit))
            changed = True
    return changed


def wrap_text(text: str, width: int) -> list[str]:
    """`text` in lines of at most `width` cells, each ending after a dot, dash, underscore, slash or space where
    one is in the last third of the line, else cut at `width`. An indented name's continuation lines are
    indented two more; joined without the indentation, the lines give `text` back."""
    from rich.cells import cell_len

    if cell_len(text) <= width:
        return [text]
    indent = len(text) - len(text.lstrip(" "))
    body = text[indent:]
    lines = []
    prefix = " " * indent
    while body:
        room = max(1, width - cell_len(prefix))
        if cell_len(body) <= room:
            lines.append(prefix + body)
            break
        cut = room
        while cell_len(body[:cut]) > room:
            cut -= 1
        soft = max((body.rfind(mark, 0, cut) for mark in _BREAKS), default=-1) + 1
        if soft >= max(1, cut * 2 // 3):
            cut = soft
        lines.append(prefix + body[:cut])
        body = body[cut:]
        continuation = " " * (indent + 2)
        prefix = continuation if width - len(continuation) >= MIN_WRAP // 2 else ""
    return lines


def rich_table(fitted: Fitted, title: str = "") -> Any:
    """A rich Table of a fitted table: every column exactly as wide as its widest line, so that nothing is cut."""
    from rich.table import Table

    table = Table(title=title or None, header_style="bold", show_lines=fitted.wrapped)
    for column, header, width in zip(fitted.columns, fitted.headers, fitted.widths, strict=True):
        table.add_column(header, justify="right" if column.numeric else "left", no_wrap=True, width=width,
                         overflow="fold")  # exactly as wide as its widest line: "fold" never folds, never cuts
    for cells in fitted.cells:
        table.add_row(*cells)
    return table


class FittingTable:
    """A rich renderable that fits its table to the console it is drawn on, then prints its notes and the
    lines below it (`__rich__` of the result objects)."""

    def __init__(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], title: str = "",
                 below: str = "") -> None:
        self.rows, self.columns, self.title, self.below = rows, columns, title, below

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.text import Text

        fitted = fit_table(self.rows, self.columns, options.max_width)
        yield rich_table(fitted, self.title)
        for line in fitted.notes():
            yield Text(line, style="dim")
        if self.below:
            yield Text(self.below)
