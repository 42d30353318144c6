"""Report: the result of an analysis as rows + totals, with DataFrame / dict / JSON exports."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1


@dataclass
class Report:
    """What an analysis returns: one row per layer (or model), totals, and context.

    `to_dict()` is the stable JSON document (with `schema`); `to_dataframe()` has the same row keys.
    """

    model: str
    inputs: list[list[int]]
    layers: list[dict[str, Any]]
    totals: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. uncounted_ops, breakdown, notes

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, "model": self.model, "inputs": self.inputs, "totals": self.totals,
                "layers": self.layers, **self.extra}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=str)

    def to_dataframe(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.layers)
