"""How the walk stores the per-unit tables of receptive_field.py: a (6, n) float64 table packed losslessly,
unpacked on each read.

A unit's six numbers are its field's first and last pixel through all paths (rows 0, 1), through the shortest
path (rows 2, 3) and the pixels it actually reads (rows 4, 5). Rows 2-5 mostly repeat rows 0-1 (a plain
convolution stack has one path; padding matters only at the borders), and the numbers are pixel coordinates,
whole numbers that float32 holds exactly. So a row is kept either as a patch of row 0 or 1 (the positions where
it differs, and its values there) or densely, in float32 where that round-trips bit for bit, else in float64.
A UNet's tables take 4 to 16 bytes a unit instead of 48 (12 on average: 2.7 MB for all of them at 16384²,
where H and W share theirs); every read gives back the very bits that were packed.
"""

from __future__ import annotations

import numpy as np

_DENSE, _PATCH = 0, 1


class PackedTable:
    """A (6, n) float64 table, packed. `unpack()` returns a new array equal to the packed one, bit for bit."""

    __slots__ = ("_rows", "n")

    def __init__(self, table: np.ndarray) -> None:
        table = np.asarray(table, dtype=np.float64)
        assert table.ndim == 2 and table.shape[0] == 6, table.shape
        self.n = int(table.shape[1])
        bits = table.view(np.int64)  # compare bits: -0.0 is not 0.0, as for the unpacked copy
        rows: list[tuple[int, object, object, object]] = []
        for r in range(6):
            row = table[r]
            if r > 0:
                ref = r % 2 if r >= 2 else 0
                differ = np.flatnonzero(bits[r] != bits[ref])
                if differ.size * 3 < self.n:  # 12 bytes a patched unit, 4 a float32 one
                    rows.append((_PATCH, ref, differ.astype(np.int32), table[r, differ]))
                    continue
            narrow = row.astype(np.float32)
            exact = np.array_equal(narrow.astype(np.float64).view(np.int64), bits[r])
            rows.append((_DENSE, narrow if exact else row.copy(), None, None))
        self._rows = tuple(rows)

    @property
    def shape(self) -> tuple[int, int]:
        return (6, self.n)

    @property
    def nbytes(self) -> int:
        return sum(sum(a.nbytes for a in entry[1:] if isinstance(a, np.ndarray)) for entry in self._rows)

    def unpack(self) -> np.ndarray:
        out = np.empty((6, self.n), dtype=np.float64)
        for r, (kind, data, positions, values) in enumerate(self._rows):
            if kind == _DENSE:
                out[r] = data
            else:
                out[r] = out[data]  # type: ignore[index]
                out[r, positions] = values
        return out

    def value(self, row: int, position: int) -> float:
        """table[row, position], without unpacking."""
        kind, data, positions, values = self._rows[row]
        if kind == _DENSE:
            return float(data[position])  # type: ignore[index]
        at = int(np.searchsorted(positions, position))  # type: ignore[arg-type]
        if at < len(positions) and positions[at] == position:  # type: ignore[arg-type, index]
            return float(values[at])  # type: ignore[index]
        return self.value(data, position)  # type: ignore[arg-type]
