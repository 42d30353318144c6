"""The `memory` command's outputs: its table columns, the lines under the table, and the Markdown and HTML
documents (the HTML with the timeline picture inline). Formatting only: the document is a MemoryReport's
plain parts (`to_dict()`), the picture PNG bytes."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

from inspectlab.render.formats import Column, human_bytes, percent, rows_to_html, rows_to_markdown, thousands

TRAIN_COLUMNS = (
    Column("name", "module", wraps=True, priority=100),
    Column("type", "type", priority=60),
    Column("saved_bytes", "saved for backward", human_bytes, numeric=True, priority=100),
    Column("saved_tensors", "tensors", thousands, numeric=True, priority=40),
    Column("share", "% saved", lambda v: percent(100 * v), numeric=True, priority=70),
    Column("param_bytes", "trainable params", human_bytes, numeric=True, priority=50),
)
INFERENCE_COLUMNS = (
    Column("name", "module", wraps=True, priority=100),
    Column("type", "type", priority=60),
    Column("peak_bytes", "peak while running", human_bytes, numeric=True, priority=100),
    Column("workspace_bytes", "kernel workspace then", human_bytes, numeric=True, priority=50),
    Column("created_bytes", "tensors created", human_bytes, numeric=True, priority=70),
    Column("peak_op", "op at that peak", priority=30, wraps=True),
)
CATEGORY_NAMES = {"parameter": "parameters", "param": "parameters", "buffer": "buffers", "constant": "constants",
                  "input": "inputs", "gradient": "gradients", "optimizer": "optimizer state",
                  "activation": "activations", "temporary": "temporaries", "workspace": "kernel workspace",
                  "weight copy": "low-precision weight copies"}


def columns_of(document: Mapping[str, Any]) -> tuple[Column, ...]:
    return TRAIN_COLUMNS if document.get("mode") == "train" else INFERENCE_COLUMNS


def title_of(document: Mapping[str, Any], inputs: str) -> str:
    if document.get("mode") == "train":
        how = [f"training step, {document.get('optimizer')}"]
        if document.get("amp"):
            how.append(f"autocast {document['amp']}")
        if document.get("grad_checkpoint"):
            how.append(f"checkpointed: {', '.join(document['grad_checkpoint'])}")
        return f"{document['model']} · memory · input {inputs} · " + " · ".join(how)
    return f"{document['model']} · memory · input {inputs} · inference (no_grad)"


def footer_lines(document: Mapping[str, Any]) -> list[str]:
    """The totals, the peak and what it is made of, the budget's answer, and what is not modelled (short
    lines: a terminal wraps none)."""
    t = document["totals"]
    kernels = document.get("kernels") or {}
    where = f"{t['peak_op']}" + (f" in {document['peak_module']}" if document.get("peak_module") else "")
    parts = ", ".join(f"{CATEGORY_NAMES.get(k, k)} {human_bytes(v)}"
                      for k, v in sorted((document.get("at_peak") or {}).items(), key=lambda kv: -kv[1]) if v)
    block = kernels.get("block")
    cpu = (f"Kernel buffers: this process's CPU, {kernels.get('threads')} threads, oneDNN block "
           f"{block if block else 'unknown'}.")
    if document.get("mode") == "train":
        lines = ["One steady-state step: forward, loss, backward, optimizer.step(), zero_grad(set_to_none=True).",
                 cpu,
                 f"Parameters {human_bytes(t['params_bytes'])} · gradients {human_bytes(t['grads_bytes'])} · "
                 f"optimizer state {human_bytes(t['optimizer_bytes'])} · saved for backward "
                 f"{human_bytes(t['activations_bytes'])}",
                 f"Peak {human_bytes(t['peak_bytes'])} in the {t['peak_phase']} phase, at {where}"]
    else:
        lines = ["One forward under no_grad.", cpu,
                 f"Parameters {human_bytes(t['params_bytes'])} · buffers {human_bytes(t['buffers_bytes'])} · "
                 f"inputs {human_bytes(t['inputs_bytes'])}",
                 f"Peak {human_bytes(t['peak_bytes'])} at {where}"]
    lines.append(f"  made of: {parts}")
    budget = document.get("budget")
    if budget:
        lines.append(_budget_line(t, budget))
    for reason, ops in (document.get("unmodelled") or {}).items():
        names = sorted(set(ops))
        counted = "its outputs" if len(ops) == 1 else "their outputs"
        lines.append(f"Not modelled ({len(ops)} op{'s' if len(ops) != 1 else ''}, counted as {counted} only): {reason}")
        lines.append(f"  in {', '.join(names[:4])}{', ...' if len(names) > 4 else ''}")
    lines.extend(f"Note: {note}" for note in document.get("notes") or [])
    return lines


def _budget_line(totals: Mapping[str, Any], budget: Mapping[str, Any]) -> str:
    what = "batch" if budget["solve"] == "batch" else "square side"
    answer = totals.get("max_batch", totals.get("max_size"))
    estimates = "; ".join(f"{human_bytes(v)} at {what} {k}" for k, v in budget["estimates"].items())
    verdict = "" if budget["confirmed"] else " (the confirming traces disagree with the fit: an approximation)"
    if not answer:
        return (f"Budget {human_bytes(budget['budget_bytes'])}: even {what} {budget['step']} does not fit "
                f"({estimates}){verdict}.")
    return (f"Budget {human_bytes(budget['budget_bytes'])}: largest {what} {answer} ({estimates}; "
            f"{budget['traces']} traces){verdict}.")


def markdown_document(document: Mapping[str, Any], title: str) -> str:
    lines = rows_to_markdown(document["layers"], columns_of(document), title)
    return lines + "\n" + "\n".join(f"- {line}" for line in footer_lines(document)) + "\n"


def html_document(document: Mapping[str, Any], title: str, png: bytes | None) -> str:
    """One self-contained page: the table, the lines under it, the timeline picture inline."""
    parts = [f"<h1>{html.escape(title)}</h1>", rows_to_html(document["layers"], columns_of(document)),
             "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in footer_lines(document)) + "</ul>"]
    if png is not None:
        data = base64.b64encode(png).decode("ascii")
        parts.append(f'<figure><img alt="memory timeline" src="data:image/png;base64,{data}"><figcaption>Live '
                     "memory by category while each op runs; dashed lines: phase boundaries.</figcaption></figure>")
    style = ("body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1.5em;color:#222}"
             "table{border-collapse:collapse;font-size:.85em}th,td{border-bottom:1px solid #ddd;padding:.3em .5em}"
             "th{background:#f4f4f4;text-align:left}figure img{max-width:100%}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{style}</style></head>\n<body>\n" + "\n".join(parts) + "\n</body></html>\n")


def plot_points(moments: Sequence[Any]) -> list[tuple[int, dict[str, int]]]:
    """(op index, bytes by category) of a MemoryReport's moments."""
    return [(moment.op, dict(moment.by_category)) for moment in moments]
