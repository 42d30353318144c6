"""The one column catalogue: how every table shows each quantity (header, formatter, alignment).

A name of the catalogue picks a Column; a Column reads one row key. Where two tables show one quantity in two
ways (exact parameter counts in `summary`, 25.56M in `compare`), the catalogue holds both under two names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from inspectlab.core.errors import InspectlabError
from inspectlab.core.shapes import quoted, shape_text
from inspectlab.render.formats import Column, human_bytes, human_count, percent, thousands


def duration(ms: float) -> str:
    """9162.0 -> "9.16 s", 123.4 -> "123 ms", 0.35 -> "0.350 ms"."""
    if ms >= 1000:
        return f"{ms / 1000:.3g} s"
    return f"{ms:.3g} ms" if ms >= 1 else f"{ms:.3f} ms"


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _ratio(value: Any) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def input_text(value: Any) -> str:
    """The input shapes of a compare/sweep row: one shape alone, several joined by ", "."""
    return shape_text(value[0] if value and len(value) == 1 else value)


CATALOGUE: dict[str, Column] = {
    # the summary's per-layer table (`summary --columns`)
    "name": Column("label", "layer"),
    "type": Column("type", "type"),
    "input_shapes": Column("input_shapes", "input shape", shape_text),
    "output_shapes": Column("output_shapes", "output shape", shape_text),
    "params": Column("params", "params", thousands, numeric=True),
    "trainable_params": Column("trainable_params", "trainable", thousands, numeric=True),
    "macs": Column("macs", "MACs", human_count, numeric=True),
    "flops": Column("flops", "FLOPs", human_count, numeric=True),
    "other_flops": Column("other_flops", "other FLOPs", human_count, numeric=True),
    "output_bytes": Column("output_bytes", "output mem", human_bytes, numeric=True),
    "macs_pct": Column("macs_pct", "% MACs", percent, numeric=True),
    "rf": Column("rf", "RF", shape_text, numeric=True),
    "stride": Column("stride", "stride", shape_text, numeric=True),
    # the compare and sweep tables
    "model": Column("model", "model"),
    "size": Column("size", "size"),
    "input": Column("input", "input", input_text),
    "params_compact": Column("params", "params", human_count, numeric=True),
    "activation_bytes": Column("activation_bytes", "activations", human_bytes, numeric=True),
    "peak_bytes": Column("peak_bytes", "peak mem", human_bytes, numeric=True),
    "output_stride": Column("output_stride", "out stride", _number, numeric=True),
    "rf_output": Column("rf", "RF (px)", _number, numeric=True),
    "rf_global": Column("rf_global", "global", lambda v: "yes" if v else "no"),
    "latency_p50_ms": Column("latency_p50_ms", "p50", duration, numeric=True),
    "latency_p90_ms": Column("latency_p90_ms", "p90", duration, numeric=True),
    "macs_per_param": Column("macs_per_param", "MACs/param", _ratio, numeric=True),
    "macs_per_output_pixel": Column("macs_per_output_pixel", "MACs/out px", human_count, numeric=True),
    "error": Column("error", "error"),
    # the stages table (`inspectlab stages`)
    "stage": Column("name", "stage"),
    "stage_stride": Column("stride", "stride", _number, numeric=True),
    "channels": Column("channels", "channels", thousands, numeric=True),
    "output_shape": Column("output_shape", "output shape", shape_text),
    "cumulative_macs": Column("cumulative_macs", "MACs so far", human_count, numeric=True),
    "cumulative_params": Column("cumulative_params", "params so far", human_count, numeric=True),
}
SUMMARY_COLUMNS = ("name", "type", "input_shapes", "output_shapes", "params", "trainable_params", "macs", "flops",
                   "other_flops", "output_bytes", "macs_pct", "rf", "stride")
SUMMARY_ALIASES = {"input": "input_shapes", "output": "output_shapes", "trainable": "trainable_params",
                   "memory": "output_bytes", "pct": "macs_pct"}
COMPARE_TABLE = ("model", "params_compact", "macs", "other_flops", "activation_bytes", "peak_bytes", "output_stride",
                 "rf_output", "rf_global", "latency_p50_ms", "latency_p90_ms", "macs_per_param",
                 "macs_per_output_pixel", "error")
STAGES_TABLE = ("stage", "type", "stage_stride", "channels", "output_shape", "rf", "rf_global", "cumulative_macs",
                "cumulative_params")
# `compare --stages`: these columns of the model, then `stage_columns` (s4 ch, s4 MACs, s4 RF, s8 ch, ...)
COMPARE_STAGES_TABLE = ("model", "params_compact", "macs")
STAGE_COLUMN = re.compile(r"^s(\d+(?:\.\d+)?)_(name|channels|macs|rf)$")
_STAGE_PARTS = {"channels": ("ch", thousands), "macs": ("MACs", human_count), "rf": ("RF", _number)}
SWEEP_TABLE = ("size", "input", "macs", "other_flops", "activation_bytes", "peak_bytes", "latency_p50_ms",
               "latency_p90_ms", "error")


def stage_columns(rows: Sequence[Mapping[str, Any]]) -> list[Column]:
    """The per-stride columns of `compare --stages` that some row has, by stride then channels, MACs, RF
    (the stage's name stays in csv/json)."""
    found: dict[tuple[float, int], Column] = {}
    for row in rows:
        for key, value in row.items():
            match = STAGE_COLUMN.match(key)
            if match is None or value is None or match.group(2) == "name":
                continue
            part = match.group(2)
            header, show = _STAGE_PARTS[part]
            found[(float(match.group(1)), list(_STAGE_PARTS).index(part))] = Column(
                key, f"s{match.group(1)} {header}", show, numeric=True)
    return [found[k] for k in sorted(found)]


def summary_columns(selection: str) -> list[Column]:
    """`summary --columns name,type,...` (aliases: input, output, trainable, memory, pct)."""
    chosen = []
    for name in (k.strip() for k in selection.split(",") if k.strip()):
        name = SUMMARY_ALIASES.get(name, name)
        if name not in SUMMARY_COLUMNS:
            raise InspectlabError(f"unknown column {quoted(name)}; choose from {', '.join(SUMMARY_COLUMNS)}")
        chosen.append(CATALOGUE[name])
    if not chosen:
        raise InspectlabError(f"empty --columns {quoted(selection)}; choose from {', '.join(SUMMARY_COLUMNS)}")
    return chosen


def table_columns(names: Sequence[str]) -> list[Column]:
    """The catalogue's columns of `names`; a name it lacks (a convention's total) shows as a count."""
    return [CATALOGUE.get(name) or Column(name, name.replace("_", " "), human_count, numeric=True) for name in names]
