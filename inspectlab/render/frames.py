"""Rows ⇄ pandas DataFrames for the compare and sweep tables: integer columns kept as integers (nullable)
where an error row has no value, and plain Python values back out for the renderers."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def to_frame(rows: Iterable[Mapping[str, Any]], keys: Sequence[str], attrs: Mapping[str, Any],
             int_keys: Iterable[str] = ()) -> pd.DataFrame:
    """A DataFrame with `keys` first (extra keys after), `int_keys` and "*_macs"/"*_flops" columns as nullable
    Int64, and `attrs`."""
    import pandas as pd

    rows = list(rows)
    int_keys = set(int_keys)
    extra = [k for row in rows for k in row if k not in keys]
    columns = [*keys, *dict.fromkeys(extra)]
    frame = pd.DataFrame(rows, columns=columns)
    for key in columns:
        if key in int_keys or key.endswith(("_macs", "_flops")):
            frame[key] = frame[key].astype("Int64")
    frame.attrs.update(attrs)
    return frame


def frame_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The frame's rows as plain Python values (None for missing)."""
    import pandas as pd

    return [{key: _plain(value, pd) for key, value in record.items()}
            for record in frame.astype(object).to_dict("records")]


def _plain(value: Any, pd: Any) -> Any:
    if isinstance(value, (list, tuple, dict)):
        return value
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value
