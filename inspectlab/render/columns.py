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
from inspectlab.render.formats import KEEP, Column, human_bytes, human_count, percent, thousands


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


def short_shape(value: Any) -> str:
    """The shape text a narrow terminal shows (render/fit.py): a batch of 1 left out of a shape of 3 or more
    dims, a square H×W (other than 1×1) of a shape of 4 or more written H²: [1, 64, 112, 112] -> "64×112²",
    [8, 3, 32, 32] -> "8×3×32²", [1, 512, 1, 1] -> "512×1×1", [1, 197, 768] -> "197×768", [1, 1000] -> "1×1000";
    several shapes joined by ", "."""
    if value is None or isinstance(value, str):
        return shape_text(value)
    if len(value) and isinstance(value[0], (list, tuple)):
        return ", ".join(short_shape(v) for v in value)
    dims = [f"{d:g}" if isinstance(d, float) else str(d) for d in value]
    square = len(dims) >= 4 and dims[-1] == dims[-2] and dims[-1] != "1"
    if square:
        dims[-2:] = [f"{dims[-1]}²"]
    if len(value) >= 3 and value[0] == 1:
        dims = dims[1:]
    return "×".join(dims)


def short_input(value: Any) -> str:
    """`input_text` with short shapes."""
    return short_shape(value[0] if value and len(value) == 1 else value)


def kernel_text(kernel: Mapping[str, Any]) -> str:
    """A window as "3×3/2 d2 g32": kernel size, "/stride" (a transposed conv: "↑stride"), "d" dilation and
    "g" groups, each shown only when it is not 1."""
    def dims(values: Sequence[int]) -> str:
        return str(values[0]) if len(set(values)) == 1 else "×".join(str(v) for v in values)

    text = "×".join(str(k) for k in kernel["size"])
    stride = kernel.get("stride") or []
    if any(s != 1 for s in stride):
        text += ("↑" if kernel.get("transposed") else "/") + dims(stride)
    dilation = kernel.get("dilation") or []
    if any(d != 1 for d in dilation):
        text += f" d{dims(dilation)}"
    if kernel.get("groups", 1) != 1:
        text += f" g{kernel['groups']}"
    return text


def _yes_no(value: Any) -> str:
    return "yes" if value else "no"


# `priority`: on a narrow terminal the lower ones give way first (render/fit.py); the first column of a table
# (its name) and KEEP columns always stay.
CATALOGUE: dict[str, Column] = {
    # the summary's per-layer table (`summary --columns`)
    "name": Column("label", "layer", priority=KEEP, wraps=True),
    "qualified_name": Column("name", "qualified name", priority=10, wraps=True),
    "type": Column("type", "type", priority=70),
    "kernel": Column("kernel", "kernel", kernel_text, priority=65),
    "input_shapes": Column("input_shapes", "input shape", shape_text, priority=45, short=short_shape),
    "output_shapes": Column("output_shapes", "output shape", shape_text, priority=75, short=short_shape),
    "params": Column("params", "params", thousands, numeric=True, priority=KEEP),
    "params_pct": Column("params_pct", "% params", percent, numeric=True, priority=55),
    "trainable_params": Column("trainable_params", "trainable params", thousands, numeric=True, priority=25),
    "trainable": Column("trainable", "trainable", priority=20),
    "macs": Column("macs", "MACs", human_count, numeric=True, priority=KEEP),
    "flops": Column("flops", "FLOPs", human_count, numeric=True, priority=35),
    "other_flops": Column("other_flops", "other FLOPs", human_count, numeric=True, priority=40),
    "output_bytes": Column("output_bytes", "output mem", human_bytes, numeric=True, priority=30),
    "macs_pct": Column("macs_pct", "% MACs", percent, numeric=True, priority=60),
    "rf": Column("rf", "RF", shape_text, numeric=True, priority=50),
    "stride": Column("stride", "stride", shape_text, numeric=True, priority=48),
    # the compare and sweep tables
    "model": Column("model", "model", priority=KEEP, wraps=True),
    "size": Column("size", "size", priority=KEEP),
    "input": Column("input", "input", input_text, priority=70, short=short_input),
    "params_compact": Column("params", "params", human_count, numeric=True, priority=KEEP),
    "activation_bytes": Column("activation_bytes", "activations", human_bytes, numeric=True, priority=40),
    "peak_bytes": Column("peak_bytes", "peak mem", human_bytes, numeric=True, priority=75),
    "train_peak_bytes": Column("train_peak_bytes", "training peak", human_bytes, numeric=True, priority=74),
    "output_stride": Column("output_stride", "out stride", _number, numeric=True, priority=60),
    "rf_output": Column("rf", "RF (px)", _number, numeric=True, priority=55),
    "rf_global": Column("rf_global", "global", _yes_no, priority=45),
    "latency_p50_ms": Column("latency_p50_ms", "p50", duration, numeric=True, priority=90),
    "latency_p90_ms": Column("latency_p90_ms", "p90", duration, numeric=True, priority=65),
    "macs_per_param": Column("macs_per_param", "MACs/param", _ratio, numeric=True, priority=20),
    "macs_per_output_pixel": Column("macs_per_output_pixel", "MACs/out px", human_count, numeric=True, priority=25),
    "error": Column("error", "error", priority=5, wraps=True),  # the footer lists the errors too
    # the stages table (`inspectlab stages`)
    "stage": Column("name", "stage", priority=KEEP, wraps=True),
    "stage_stride": Column("stride", "stride", _number, numeric=True, priority=KEEP),
    "channels": Column("channels", "channels", thousands, numeric=True, priority=90),
    "output_shape": Column("output_shape", "output shape", shape_text, priority=60, short=short_shape),
    "cumulative_macs": Column("cumulative_macs", "MACs so far", human_count, numeric=True, priority=80),
    "cumulative_params": Column("cumulative_params", "params so far", human_count, numeric=True, priority=50),
}
SUMMARY_COLUMNS = ("name", "qualified_name", "type", "kernel", "input_shapes", "output_shapes", "params",
                   "params_pct", "trainable_params", "trainable", "macs", "flops", "other_flops", "output_bytes",
                   "macs_pct", "rf", "stride")
SUMMARY_DEFAULT = ("name", "type", "input_shapes", "output_shapes", "params", "macs", "other_flops", "output_bytes",
                   "macs_pct")
SUMMARY_ALIASES = {"input": "input_shapes", "output": "output_shapes", "memory": "output_bytes", "pct": "macs_pct"}
COMPARE_TABLE = ("model", "params_compact", "macs", "other_flops", "activation_bytes", "peak_bytes",
                 "train_peak_bytes", "output_stride", "rf_output", "rf_global", "latency_p50_ms", "latency_p90_ms",
                 "macs_per_param", "macs_per_output_pixel", "error")
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
    """`summary --columns name,type,...` (aliases: input, output, memory, pct)."""
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
