"""Compare models side by side, and sweep one model over input sizes: one row per model (or per size).

Each model is traced once (meta device): its summary totals, its FLOPs under a counting convention and the
receptive field of its final feature map come from that one Trace; latency, when asked, is a timed run
(`inspectlab.runtime.latency.measure`). A model or size that fails gets a row with its error, and the
others still run.

Model specs may carry builder arguments: `deeplabv3plus_resnet50:output_stride=16,num_classes=19`. The
arguments start after the first colon that is directly followed by `name=`, so `tv:resnet50`,
`file.py:factory` and `file.py:factory:depth=3` all read as expected; a value may hold colons and commas
(`sizes=(1,2)`) but the next `,name=` starts a new argument.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from inspectlab.errors import InspectlabError

if TYPE_CHECKING:
    import pandas as pd

    from inspectlab.tracing.records import Trace

Progress = Callable[[str, float], None]  # (what is running, fraction done in [0, 1])
Shape = tuple[int, ...]

_ARGS_START = re.compile(r":(?=\s*[A-Za-z_]\w*\s*=)")
_NEXT_ARG = re.compile(r",(?=\s*[A-Za-z_]\w*\s*=)")

# Columns of the frames, in order; nullable integer columns stay integers when an error row has no value.
COMPARE_KEYS = (
    "model", "input", "output_shape", "params", "trainable_params", "macs", "flops", "other_flops", "param_bytes",
    "activation_bytes", "peak_bytes", "output_stride", "rf", "rf_global", "latency_p50_ms", "latency_p90_ms",
    "macs_per_param", "macs_per_output_pixel", "notes", "error",
)
SWEEP_KEYS = (
    "size", "height", "width", "pixels", "input", "macs", "flops", "other_flops", "activation_bytes", "peak_bytes",
    "latency_p50_ms", "latency_p90_ms", "notes", "error",
)
INT_KEYS = frozenset({"params", "trainable_params", "macs", "flops", "other_flops", "param_bytes", "activation_bytes",
                      "peak_bytes", "rf", "height", "width", "pixels"})
FITTED_KEYS = ("macs", "other_flops", "activation_bytes", "peak_bytes", "latency_p50_ms")


@dataclass(frozen=True)
class ModelChoice:
    """One model to compare: how the user wrote it, the spec (or module) to build, its builder arguments."""

    label: str
    model: Any  # a spec string or an nn.Module
    args: dict[str, Any] = field(default_factory=dict)


def parse_model(text: str) -> ModelChoice:
    """"deeplabv3plus_resnet50:output_stride=16" -> spec and arguments (see the module docstring)."""
    from inspectlab.models.registry import parse_builder_args

    text = text.strip()
    match = _ARGS_START.search(text)
    if match is None:
        if not text:
            raise InspectlabError("empty model spec")
        return ModelChoice(text, text)
    spec = text[: match.start()].strip()
    if not spec:
        raise InspectlabError(f"malformed model spec {text!r}: no model before the arguments")
    pairs = [pair.strip() for pair in _NEXT_ARG.split(text[match.end():])]
    return ModelChoice(text, spec, parse_builder_args(pairs))


def _choice(model: Any) -> ModelChoice:
    if isinstance(model, ModelChoice):
        return model
    if isinstance(model, str):
        return parse_model(model)
    return ModelChoice(type(model).__name__, model)


def describe_error(exc: BaseException) -> str:
    """One line: a user error's message, else the exception type and message."""
    message = str(exc) if isinstance(exc, InspectlabError) else f"{type(exc).__name__}: {exc}"
    return message.splitlines()[0] if message.strip() else type(exc).__name__


# the static columns --------------------------------------------------------------------------------------------
def output_pixels(shape: Sequence[int]) -> int:
    """Positions of an output: N·H·W for N×C×H×W (the two last dims; leading dims before C multiply),
    N·L for N×C×L, N for N×K (a classifier makes one prediction per image)."""
    if len(shape) >= 4:
        return math.prod(shape[:-3]) * shape[-2] * shape[-1]
    if len(shape) == 3:
        return shape[0] * shape[2]
    return shape[0] if shape else 1


def _number(value: Fraction | float | None) -> int | float | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else round(float(value), 4)


def final_field(trace: Trace) -> dict[str, Any]:
    """Output stride (the coarsest stride of any feature map that still has its H and W axes; maps
    pooled to a fixed grid, and maps computed from them alone, do not count: their stride follows the
    input size) and the receptive field of the model's output (largest over the axes, local part;
    `rf_global` when some path sees the whole input)."""
    from inspectlab.analysis.receptive_field import call_field, receptive_fields

    try:
        fields = receptive_fields(trace)
    except InspectlabError as exc:
        return {"output_stride": None, "rf": None, "rf_global": None, "notes": f"receptive field: {exc}"}
    pooled = _pooled_to_a_grid(trace)
    strides = [max(info.stride) for tensor, info in fields.items()
               if tensor not in pooled and info.axes and not info.unknown and all(d is not None for d in info.dims)]
    root = next(call for call in trace.calls if call.parent is None)
    info = call_field(fields, root)
    sizes = [s for s in (info.size or ()) if s is not None] if info is not None else []
    note = f"receptive field unknown: {info.unknown}" if info is not None and info.unknown else None
    return {
        "output_stride": _number(max(strides)) if strides else None,
        "rf": int(max(sizes)) if sizes and not note else None,
        "rf_global": bool(info.is_global) if info is not None and not note else None,
        "notes": note,
    }


def _pooled_to_a_grid(trace: Trace) -> set[int]:
    """Tensors made by adaptive pooling, or by ops whose activation inputs all are such tensors (a classifier
    head after `AdaptiveAvgPool2d(8)`); a merge with an unpooled map (x · SE(x)) is not."""
    pooled: set[int] = set()
    for op in trace.ops:
        activations = [t for t in op.inputs if trace.tensors[t].kind in ("activation", "input")]
        if "adaptive_" in op.name or (activations and all(t in pooled for t in activations)):
            pooled.update(op.outputs)
    return pooled


def static_columns(choice: ModelChoice, shapes: Sequence[Shape] | None, convention: str = "inspectlab",
                   with_field: bool = True) -> dict[str, Any]:
    """Totals of api.summary, the convention's total, the final feature map's field and the ratios."""
    from inspectlab import api
    from inspectlab.analysis.conventions import convention_total
    from inspectlab.analysis.flops import count_flops
    from inspectlab.analysis.summary import summarize

    recorded = api.trace(choice.model, list(shapes) if shapes else None, args=choice.args)
    count = count_flops(recorded)
    totals = summarize(recorded, choice.label, depth=0, count=count).totals
    row: dict[str, Any] = {key: totals[key] for key in (
        "params", "trainable_params", "macs", "flops", "other_flops", "param_bytes", "activation_bytes", "peak_bytes")}
    row["input"] = [list(s) for s in recorded.shapes(recorded.inputs)]
    root = next(call for call in recorded.calls if call.parent is None)
    output = list(recorded.tensors[root.outputs[0]].shape) if root.outputs else None
    row["output_shape"] = output
    if convention != "inspectlab":
        row[convention_key(convention)] = convention_total(count, convention)
    if with_field:
        row.update(final_field(recorded))
    row["macs_per_param"] = row["macs"] / row["params"] if row["params"] else None
    row["macs_per_output_pixel"] = row["macs"] / output_pixels(output) if output is not None else None
    notes = [n for n in (row.get("notes"), *recorded.notes) if n]
    row["notes"] = "; ".join(notes) or None
    return row


def convention_key(convention: str) -> str:
    """The column of a convention's total: "fvcore_macs", "torch_flops", ..."""
    from inspectlab.analysis.conventions import CONVENTIONS, UNITS

    if convention not in CONVENTIONS:
        raise InspectlabError(f"unknown convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    return f"{convention}_{UNITS[convention].lower()}"


def latency_columns(choice: ModelChoice, shapes: Sequence[Shape], timing: Mapping[str, Any],
                    progress: Progress | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """p50/p90 of a timed run, and the run's conditions."""
    from dataclasses import asdict

    from inspectlab.runtime.latency import measure

    report = measure(choice.model, list(shapes), args=choice.args, progress=progress, **timing)
    stats = report.results[0].stats
    conditions = asdict(report.conditions)
    conditions.pop("model", None)
    conditions.update(cpu_load())
    return {"latency_p50_ms": stats.p50_ms, "latency_p90_ms": stats.p90_ms}, conditions


def cpu_load() -> dict[str, Any]:
    """The 1-minute load average and the CPU count (empty where the system has no load average): a load
    well above the CPU count while timing means other processes competed with the timed runs."""
    import os

    try:
        return {"load_average": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
    except (AttributeError, OSError):
        return {}


# rows, frames, progress ----------------------------------------------------------------------------------------
def _measured_row(row: dict[str, Any], choice: ModelChoice, shapes: Sequence[Shape] | None, convention: str,
                  timing: Mapping[str, Any] | None, with_field: bool, context: dict[str, Any],
                  progress: Progress | None) -> dict[str, Any]:
    """Fill a row in place; a failure ends it with its error (static part first, then latency)."""
    try:
        row.update(static_columns(choice, shapes, convention, with_field))
    except Exception as exc:  # the row says what failed; the other rows go on
        row["error"] = describe_error(exc)
        return row
    if timing is not None:
        try:
            measured, conditions = latency_columns(choice, [tuple(s) for s in row["input"]], timing, progress)
            row.update(measured)
            context.setdefault("latency", conditions)
            if conditions.get("load_average", 0) > context["latency"].get("load_average", 0):
                context["latency"]["load_average"] = conditions["load_average"]  # the highest seen
        except Exception as exc:
            row["error"] = "latency: " + describe_error(exc)
    return row


def _stepper(progress: Progress | None, total: int) -> Callable[[int, str], Progress | None]:
    """For step k of `total`, a callback mapping that step's own fraction into the overall one."""

    def step(index: int, label: str) -> Progress | None:
        if progress is None:
            return None
        progress(label, index / total)
        return lambda what, fraction: progress(f"{label}: {what}", (index + min(max(fraction, 0.0), 1.0)) / total)

    return step


def to_frame(rows: Iterable[Mapping[str, Any]], keys: Sequence[str], attrs: Mapping[str, Any]) -> pd.DataFrame:
    """A DataFrame with `keys` first (extra keys after), integer columns as nullable Int64, and `attrs`."""
    import pandas as pd

    rows = list(rows)
    extra = [k for row in rows for k in row if k not in keys]
    columns = [*keys, *dict.fromkeys(extra)]
    frame = pd.DataFrame(rows, columns=columns)
    for key in columns:
        if key in INT_KEYS or key.endswith(("_macs", "_flops")):
            frame[key] = frame[key].astype("Int64")
    frame.attrs.update(attrs)
    return frame


def frame_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The frame's rows as plain Python values (None for missing)."""
    import pandas as pd

    rows = []
    for record in frame.astype(object).to_dict("records"):
        rows.append({key: _plain(value, pd) for key, value in record.items()})
    return rows


def _plain(value: Any, pd: Any) -> Any:
    if isinstance(value, (list, tuple, dict)):
        return value
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


# compare ------------------------------------------------------------------------------------------------------
def compare_models(models: Sequence[Any], input_size: Shape | Sequence[Shape] | None = None, *,
                   convention: str = "inspectlab", timing: Mapping[str, Any] | None = None,
                   progress: Progress | None = None) -> pd.DataFrame:
    """One row per model (COMPARE_KEYS, plus `<convention>_<unit>` for another convention).

    `timing`: None for no latency, else the options of `measure` (device, warmup, iters, min_time, ...).
    `attrs`: kind, input, convention, latency conditions (of the first timed model).
    """
    if not models:
        raise InspectlabError("compare needs at least one model")
    if convention != "inspectlab":
        convention_key(convention)  # validates
    shapes = _shapes(input_size)
    choices = [_choice(m) for m in models]
    context: dict[str, Any] = {"kind": "compare", "input": [list(s) for s in shapes] if shapes else None,
                               "convention": convention}
    step = _stepper(progress, len(choices))
    rows = []
    for index, choice in enumerate(choices):
        row: dict[str, Any] = {"model": choice.label, "input": [list(s) for s in shapes] if shapes else None}
        rows.append(_measured_row(row, choice, shapes, convention, timing, True, context,
                                  step(index, f"{choice.label} ({index + 1}/{len(choices)})")))
    if progress is not None:
        progress("done", 1.0)
    keys = COMPARE_KEYS if convention == "inspectlab" else (*COMPARE_KEYS[:8], convention_key(convention),
                                                              *COMPARE_KEYS[8:])
    if timing is None:
        keys = tuple(k for k in keys if not k.startswith("latency_"))
    return to_frame(rows, keys, context)


def _shapes(input_size: Shape | Sequence[Shape] | None) -> list[Shape] | None:
    """One shape or a list of shapes as a list; None stays None (each model's default input)."""
    from inspectlab import api

    return None if input_size is None else api.input_shapes("", input_size)


# sweep --------------------------------------------------------------------------------------------------------
def parse_sizes(text: str) -> list[tuple[int, int]]:
    """"224,512,1024x2048" -> [(224, 224), (512, 512), (1024, 2048)] (H×W; one number: a square)."""
    sizes = []
    for part in (p.strip() for p in text.split(",")):
        dims = re.split(r"[x×]", part)
        if not part or not all(d.strip().isdigit() and int(d) > 0 for d in dims) or len(dims) > 2:
            raise InspectlabError(f"malformed --sizes {text!r}: give sizes such as 224,512 or 512x1024")
        height, width = int(dims[0]), int(dims[-1])
        sizes.append((height, width))
    if not sizes:
        raise InspectlabError("--sizes is empty")
    return sizes


def fit_exponent(x: Sequence[float], y: Sequence[float | None]) -> float | None:
    """The slope b of the least-squares fit log y = a + b·log x over the points with positive x and y;
    None with fewer than two distinct x."""
    points = [(math.log(a), math.log(b)) for a, b in zip(x, y, strict=True)
              if a is not None and b is not None and a > 0 and b > 0 and math.isfinite(b)]
    if len({p[0] for p in points}) < 2:
        return None
    mean_x = math.fsum(p[0] for p in points) / len(points)
    mean_y = math.fsum(p[1] for p in points) / len(points)
    covariance = math.fsum((px - mean_x) * (py - mean_y) for px, py in points)
    variance = math.fsum((px - mean_x) ** 2 for px, _ in points)
    return covariance / variance


def sized(template: Shape, height: int, width: int) -> Shape:
    """The template input with its two last dims replaced by height and width."""
    if len(template) < 3:
        raise InspectlabError(f"a size sweep needs an input with spatial dims such as N×C×H×W, got {list(template)}")
    return (*template[:-2], height, width)


def sweep_model(model: Any, sizes: Sequence[tuple[int, int]], *, input_size: Shape | None = None,
                args: Mapping[str, Any] | None = None, timing: Mapping[str, Any] | None = None,
                progress: Progress | None = None) -> pd.DataFrame:
    """One row per input size (SWEEP_KEYS); `attrs["exponents"]`: the fitted exponent of each of FITTED_KEYS
    against the pixels (H·W), e.g. MACs ∝ pixels^1 for a fully convolutional network."""
    from inspectlab import api

    choice = _choice(model)
    if args:
        choice = ModelChoice(choice.label, choice.model, {**choice.args, **args})
    if not sizes:
        raise InspectlabError("a sweep needs at least one size")
    template = tuple(input_size) if input_size else api.input_shapes(choice.model, None)[0]
    sized(template, 1, 1)  # a template without spatial dims fails here, not once per size
    context: dict[str, Any] = {"kind": "sweep", "model": choice.label, "input": list(template)}
    step = _stepper(progress, len(sizes))
    rows = []
    for index, (height, width) in enumerate(sizes):
        label = f"{height}×{width}"
        shape = sized(template, height, width)
        row: dict[str, Any] = {"size": label, "height": height, "width": width, "pixels": height * width,
                               "input": [list(shape)]}
        _measured_row(row, choice, [shape], "inspectlab", timing, False, context,
                      step(index, f"{choice.label} {label} ({index + 1}/{len(sizes)})"))
        rows.append(row)
    if progress is not None:
        progress("done", 1.0)
    frame_keys = SWEEP_KEYS if timing is not None else tuple(k for k in SWEEP_KEYS if not k.startswith("latency_"))
    kept = [{k: v for k, v in row.items() if k in frame_keys} for row in rows]
    pixels = [row["pixels"] for row in rows]
    context["exponents"] = {key: fit_exponent(pixels, [row.get(key) for row in rows])
                            for key in FITTED_KEYS if key in frame_keys}
    return to_frame(kept, frame_keys, context)
