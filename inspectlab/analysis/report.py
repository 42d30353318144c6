"""Report: the result of an analysis as rows + totals, with DataFrame / dict / JSON exports.

Rows are dataclasses deriving from `Row`: typed attributes for code, and a read-only mapping over the
present fields (`row["macs"]`, `{**row}`, `row.get("rf")`) for tables and exports. A field holding
`ABSENT` is not a key: a column that only some reports carry (the summary's "rf") stays out of the JSON.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any, Generic, TypeVar

from inspectlab.core.display import Displayable

SCHEMA_VERSION = 1


class Absent(enum.Enum):
    """The type of `ABSENT`: a row field left out of the row's mapping and JSON."""

    ABSENT = "absent"

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = Absent.ABSENT


@cache
def _layout(cls: type) -> tuple[tuple[str, str], ...]:
    """(key, attribute) per dataclass field, in order; a field's metadata "key" renames it (`global`)."""
    return tuple((f.metadata.get("key", f.name), f.name) for f in fields(cls))


@cache
def _attributes(cls: type) -> dict[str, str]:
    return dict(_layout(cls))


class Row(Mapping[str, Any]):
    """Base of a report row dataclass: a read-only mapping over its fields that are not `ABSENT`.

    Declare subclasses with `@dataclass(eq=False)`: rows then compare as mappings (equal to a dict with
    the same items). Derive a changed row with `dataclasses.replace`.
    """

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        attribute = _attributes(type(self)).get(key)
        value = getattr(self, attribute) if attribute is not None else ABSENT
        if value is ABSENT:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return (key for key, attribute in _layout(type(self)) if getattr(self, attribute) is not ABSENT)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def to_dict(self) -> dict[str, Any]:
        """The row as the plain dict of the JSON document (present fields, in field order)."""
        return {key: value for key, attribute in _layout(type(self))
                if (value := getattr(self, attribute)) is not ABSENT}


RowT = TypeVar("RowT", bound=Mapping[str, Any])


def plain_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows as plain dicts (a `Row` by `to_dict()`, another mapping copied)."""
    return [row.to_dict() if isinstance(row, Row) else dict(row) for row in rows]


@dataclass
class Report(Displayable, Generic[RowT]):
    """What an analysis returns: one row per layer (or model), totals, and context.

    `to_dict()` is the stable JSON document (with `schema`); `to_dataframe()` has the same row keys.
    """

    model: str
    inputs: list[list[int]]
    layers: list[RowT]
    totals: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. uncounted_ops, breakdown, notes

    def to_dict(self) -> dict[str, Any]:
        """The JSON document: schema, model, inputs, totals, layers (plain dicts), then the extra items."""
        return {"schema": SCHEMA_VERSION, "model": self.model, "inputs": self.inputs, "totals": self.totals,
                "layers": plain_rows(self.layers), **self.extra}

    def to_json(self, indent: int | None = 2) -> str:
        """`to_dict()` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, default=str)

    def to_dataframe(self) -> Any:
        """The rows as a pandas DataFrame (one column per row key)."""
        import pandas as pd

        return pd.DataFrame(plain_rows(self.layers))
