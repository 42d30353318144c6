"""The latency report's tables and lines, for the terminal (cli/latency.py) and the notebook view alike: one row
per batch size, one per timed module, the run's conditions, the per-layer method and the roofline. The report
is read by its attributes (runtime/latency.LatencyReport, duck-typed: render does not import runtime)."""

from __future__ import annotations

from typing import Any

from inspectlab.core.shapes import shape_text
from inspectlab.render.columns import short_input
from inspectlab.render.formats import KEEP, Column, human_bytes, human_count, percent


def _ms(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _bytes(value: Any) -> str:
    return human_bytes(value) if isinstance(value, int) else ""


def _rate(value: Any, unit: str) -> str:
    return f"{human_count(value)}{unit}" if isinstance(value, (int, float)) else ""


def batch_rows(report: Any) -> list[dict[str, Any]]:
    """One row per batch size: its input shapes, timing statistics, measured and estimated memory."""
    rows = []
    for result in report.results:
        memory = result.memory
        rows.append({
            "batch": result.batch, "input": result.input_shapes, **vars(result.stats),
            "measured_bytes": memory.peak_bytes, "reserved_bytes": memory.reserved_bytes,
            "estimated_peak_bytes": memory.estimated_peak_bytes,
            "estimated_activation_bytes": memory.estimated_activation_bytes,
        })
    return rows


_PRIORITY = {"mean": 85, "std": 55, "min": 50, "p50": KEEP, "p90": 80, "p99": 60}


def batch_columns(cuda: bool, csv: bool = False) -> list[Column]:
    """batch, input, mean/std/min/p50/p90/p99 ms (+ max in csv), samples/s, iterations, memory."""
    columns = [
        Column("batch", "batch", numeric=True, priority=KEEP),
        Column("input", "input", shape_text, priority=70, short=short_input),
        *(Column(f"{key}_ms", f"{key} ms", _ms, numeric=True, priority=_PRIORITY[key])
          for key in ("mean", "std", "min", "p50", "p90", "p99")),
        Column("throughput", "samples/s", lambda v: f"{v:,.1f}", numeric=True, priority=75),
        Column("iterations", "iters", numeric=True, priority=40),
    ]
    if csv:
        columns.insert(8, Column("max_ms", "max ms", _ms, numeric=True))
    if cuda:
        columns += [Column("measured_bytes", "peak allocated", _bytes, numeric=True, priority=65),
                    Column("reserved_bytes", "peak reserved", _bytes, numeric=True, priority=35)]
    else:
        columns += [Column("measured_bytes", "peak RSS increase", _bytes, numeric=True, priority=45),
                    Column("estimated_activation_bytes", "est. activations", _bytes, numeric=True, priority=30)]
    columns.append(Column("estimated_peak_bytes", "est. peak (trace)", _bytes, numeric=True, priority=35))
    return columns


def layer_rows(report: Any, totals: bool, only: int | None = None) -> list[dict[str, Any]]:
    """One row per timed module (+ with `totals` the time outside them and the whole hooked forward)."""
    rows: list[dict[str, Any]] = []
    for result in report.results:
        breakdown = result.per_layer
        if breakdown is None or (only is not None and result.batch != only):
            continue
        for layer in breakdown.layers:
            row = {"batch": result.batch, **vars(layer)}
            row["roof_percent"] = None if layer.roof_fraction is None else 100 * layer.roof_fraction
            rows.append(row)
        if totals:
            outside = 100 * breakdown.unattributed_ms / breakdown.total_mean_ms if breakdown.total_mean_ms else None
            rows.append({"label": "(outside timed modules)", "mean_ms": breakdown.unattributed_ms, "share": outside})
            rows.append({"label": "(forward, hooked)", "mean_ms": breakdown.total_mean_ms,
                         "p50_ms": breakdown.total_p50_ms, "share": 100.0})
    return rows


def layer_columns(batch: bool) -> list[Column]:
    """module, type, mean/p50 ms, share, FLOPs, bytes, working set, FLOP/s, FLOP/B, bound, share of the roof."""
    columns = [
        Column("label", "module", priority=KEEP, wraps=True), Column("type", "type", priority=60, wraps=True),
        Column("mean_ms", "mean ms", _ms, numeric=True, priority=KEEP),
        Column("p50_ms", "p50 ms", _ms, numeric=True, priority=80),
        Column("share", "share", percent, numeric=True, priority=90),
        Column("flops", "FLOPs", human_count, numeric=True, priority=50),
        Column("bytes", "bytes", _bytes, numeric=True, priority=35),
        Column("working_set", "working set", _bytes, numeric=True, priority=30),
        Column("flops_per_s", "FLOP/s", lambda v: _rate(v, ""), numeric=True, priority=55),
        Column("intensity", "FLOP/B", lambda v: f"{v:.2f}", numeric=True, priority=45),
        Column("bound", "bound", priority=65), Column("roof_percent", "of roof", percent, numeric=True, priority=40),
    ]
    return [Column("batch", "batch", numeric=True, priority=KEEP), *columns] if batch else columns


def conditions_text(report: Any) -> str:
    """The conditions line (device, torch, threads, dtype, ...) and how memory was measured."""
    c = report.conditions
    parts = [
        f"{c.device} ({c.device_name})", f"torch {c.torch_version}", f"{c.threads} threads", c.dtype,
        f"precision {c.precision}" if c.precision != "none" else "", c.memory_format,
        f"compile={c.compile}" if c.compile else "eager", "CUDA graph" if c.cuda_graph else "",
        f"cudnn.benchmark={c.cudnn_benchmark}" if c.cudnn_benchmark is not None else "",
        f"warm-up {c.warmup}", c.timer,
    ]
    text = "conditions: " + ", ".join(p for p in parts if p)
    if report.results:
        text += f"\nmemory: {report.results[0].memory.method}"
    return text


def per_layer_text(breakdown: Any) -> str:
    """How the per-layer times were taken, what the hooks cost, and the roofline."""
    pairs_ms = breakdown.pair_cost_us * breakdown.hook_pairs / 1e3
    lines = [
        f"method: {breakdown.method}",
        f"overhead: {breakdown.hook_pairs} hook pairs per forward x {breakdown.pair_cost_us:.1f} µs = "
        f"{pairs_ms:.3f} ms ({_percent_of(pairs_ms, breakdown.plain_p50_ms)} of the plain p50); observed: "
        f"hooked p50 {breakdown.total_p50_ms:.3f} ms vs plain {breakdown.plain_p50_ms:.3f} ms "
        f"({_percent_of(breakdown.overhead_ms, breakdown.plain_p50_ms, signed=True)})",
    ]
    peaks = breakdown.peaks
    if peaks is not None:
        lines.extend(roofline_lines(peaks))
    return "\n".join(lines)


def roofline_lines(peaks: Any) -> list[str]:
    """The roofline's numbers and where each comes from: the compute roof (measured and theoretical peak) and
    the bandwidth roof by working-set size."""
    measured, theoretical = peaks.measured_flops_per_s, peaks.theoretical_flops_per_s
    if not peaks.tiers:  # peaks made by hand: one compute and one bandwidth number
        return [f"roofline: {human_count(peaks.flops_per_s)}FLOP/s, {human_count(peaks.bytes_per_s)}B/s, ridge "
                f"{peaks.ridge:.1f} FLOP/B ({peaks.method})"]
    beaten = measured is not None and theoretical is not None and measured > theoretical
    tiers = ", ".join(f"{human_bytes(tier.working_set)} {human_count(tier.bytes_per_s)}" for tier in peaks.tiers)
    return [
        f"roofline: compute {human_count(peaks.flops_per_s)}FLOP/s, the higher of measured "
        f"{_rate(measured, 'FLOP/s') or 'n/a'} and theoretical {_rate(theoretical, 'FLOP/s') or 'unknown'}",
        f"  measured: {peaks.measured}",
        f"  theoretical: {peaks.theoretical}" + ("; the measured peak beats it: the cores run faster than that "
                                                 "clock" if beaten else ""),
        f"roofline: bandwidth (B/s) by working set: {tiers}; a layer's is the highest from the largest size below "
        f"its working set upward",
        f"  method: {peaks.method}",
        "FLOPs, bytes (every op's reads + writes) and working set (the most one op touches, each tensor once) "
        f"from the Trace; ridge at DRAM bandwidth {peaks.ridge:.1f} FLOP/B",
    ]


def _percent_of(part: float, whole: float, signed: bool = False) -> str:
    if not whole:
        return "n/a"
    return f"{100 * part / whole:+.1f}%" if signed else f"{100 * part / whole:.2f}%"
