"""One model through inspectlab's analyses, as a user runs them from Python: the check behind
`benchmarks/coverage.py` (the table in docs/coverage.md) and `tests/test_coverage_sample.py` (its sample).

For one `Entry` (a spec, its builder arguments, its input), `check` runs, each in turn and each apart (one
failing does not stop the next):

- `summary`: `inspectlab.summary(spec, input, args=..., depth=2)`: ok when it returns a table;
- `flops`: `inspectlab.flops(spec, input, args=..., compare=True)`: ok when it returns, and its inspectlab total
  equals the summary's (both count the same command); then one outcome per peer convention, `torch`
  (FlopCounterMode), `fvcore` and `torchinfo`: ok when the convention's total equals the peer's own number;
- `rf`: `inspectlab.rf(spec, input, args=..., depth=1)`: ok when the model output's field is known; for a small
  model (`EMPIRICAL_PARAMS`, `EMPIRICAL_MACS`) with `empirical=True`, every row measured by autograd must agree;
- `graph`: `inspectlab.graph(spec, input, args=...)`: ok when it returns a Digraph, and, where Graphviz's `dot`
  is installed, when `dot` renders its source to SVG.

A failure has a cause, told from evidence rather than guessed:

- `model`: the model itself cannot run this input or cannot be built (its library refuses the configuration).
  A "rejected input" from a meta trace is checked by running the same model and input for real on the CPU: if
  the real run fails too, the model rejects it; if it runs, the failure is inspectlab's.
- `inspectlab`: a bug in inspectlab: an exception that is not inspectlab's one-line error (with the innermost
  inspectlab frame), a failure on meta where a real run works, a convention that does not reproduce its peer,
  summary and flops disagreeing, autograd disagreeing with a field, a field the walk found inconsistent, a
  graph `dot` cannot draw.
- `limitation`: inspectlab says "unknown, because ..." where it has no rule (the model output's receptive field
  after an op with no rule for that use): no wrong number, but no number.
- `peer`: the peer library itself fails on the model (fvcore's JIT trace of a model with dict outputs, ...).
- `machine`: refused as too big for this machine's memory.
- `timeout`: set by the runner (benchmarks/coverage.py) when a model runs out of time.
"""

from __future__ import annotations

import shutil
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

ANALYSES = ("summary", "flops", "torch", "fvcore", "torchinfo", "rf", "graph")
PEERS = ("torch", "fvcore", "torchinfo")
# rf's autograd check runs on models at most this big (at the entry's input): it runs a float64 copy backwards
# once per row.
EMPIRICAL_PARAMS = 15_000_000
EMPIRICAL_MACS = 600_000_000
_LIBRARIES = ("torchvision", "timm", "segmentation_models_pytorch", "transformers", "fvcore", "torchinfo")


@dataclass(frozen=True)
class Entry:
    """One model of the table: where it comes from, the spec and arguments a user would give, its input
    (None: the registry's default) and why that input."""

    source: str  # torchvision, timm, smp, transformers
    spec: str
    args: Mapping[str, Any] = field(default_factory=dict)
    input: Sequence[Sequence[int]] | None = None
    why: str = ""

    @property
    def label(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.args.items())
        return f"{self.spec} {extra}".strip()


@dataclass
class Outcome:
    """One analysis of one model: ok, failed (with its cause and one-line reason), or not applicable."""

    analysis: str
    status: str  # "ok", "fail", "n/a"
    seconds: float = 0.0
    cause: str | None = None  # model, inspectlab, peer, machine, timeout
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check(entry: Entry, report: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Every analysis of one model, in order; `report` gets each outcome as soon as it is known."""
    outcomes: list[Outcome] = []
    context = _Context(entry)

    def emit(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if report is not None:
            report(outcome)

    summary = _timed("summary", context, _summary, emit)
    _flops(context, summary, emit)
    _timed("rf", context, _rf, emit)
    _timed("graph", context, _graph, emit)
    return outcomes


class _Context:
    """What the analyses of one model share: the entry, the summary's totals, the CPU run's verdict."""

    def __init__(self, entry: Entry) -> None:
        self.entry = entry
        self.input = [tuple(shape) for shape in entry.input] if entry.input is not None else None
        self.args = dict(entry.args)
        self.totals: dict[str, Any] = {}
        self._real_run: str | None | bool = False  # False: not tried; None: it ran; str: why it failed

    def real_run_failure(self) -> str | None:
        """None when the model runs this input for real on the CPU (no grad), else the one-line reason."""
        if self._real_run is False:
            self._real_run = _real_run(self)
        return self._real_run  # type: ignore[return-value]


def _timed(name: str, context: _Context, run: Callable[[_Context], Outcome], emit: Callable[[Outcome], None]
           ) -> Outcome:
    start = time.perf_counter()
    try:
        outcome = run(context)
    except Exception as exc:  # the analysis failed: why, in one line, with its cause
        outcome = _failure(name, exc, context)
    outcome.seconds = time.perf_counter() - start
    emit(outcome)
    return outcome


def _summary(context: _Context) -> Outcome:
    import inspectlab

    report = inspectlab.summary(context.entry.spec, context.input, args=context.args, depth=2)
    context.totals = dict(report.totals)
    notes = [text for text in map(_note_text, report.extra.get("notes", [])) if "CPU" in text or "meta" in text]
    return Outcome("summary", "ok", detail={"params": report.totals.get("params"), "macs": report.totals.get("macs"),
                                            "rows": len(report.layers), "notes": notes[:2],
                                            "inputs": _inputs_text(report)})


def _inputs_text(report: Any) -> str:
    """The inputs as the reports show them: "1×3×224×224", "input_ids=1×128:int64", shapes joined by ", "."""
    details = report.extra.get("input_details")
    if details:
        return ", ".join(f"{d['name'] + '=' if d.get('name') else ''}{'×'.join(map(str, d['shape']))}"
                         f"{':' + d['dtype'] if d.get('dtype') not in (None, 'float32') else ''}" for d in details)
    return ", ".join("×".join(map(str, shape)) for shape in report.inputs)


def _flops(context: _Context, summary: Outcome, emit: Callable[[Outcome], None]) -> None:
    """flops --compare: the report (against the summary's total), then one outcome per peer convention."""
    import inspectlab

    start = time.perf_counter()
    try:
        report = inspectlab.flops(context.entry.spec, context.input, args=context.args, compare=True)
    except Exception as exc:
        outcome = _failure("flops", exc, context)
        outcome.seconds = time.perf_counter() - start
        emit(outcome)
        for peer in PEERS:
            emit(Outcome(peer, "n/a", reason="flops failed"))
        return
    seconds = time.perf_counter() - start
    rows = {row.convention: row for row in report.layers}
    own = rows["inspectlab"].total if "inspectlab" in rows else None
    outcome = Outcome("flops", "ok", seconds, detail={"flops": own})
    macs = context.totals.get("macs")
    if summary.status == "ok" and own is not None and macs is not None and own != 2 * macs:
        outcome = Outcome("flops", "fail", seconds, "inspectlab",
                          f"summary and flops disagree: summary {macs:,} MACs, flops {own // 2:,} MACs "
                          f"({own:,} FLOPs)", outcome.detail)
    emit(outcome)
    for peer in PEERS:
        emit(_peer_outcome(peer, rows.get(peer)))


def _peer_outcome(peer: str, row: Any) -> Outcome:
    if row is None:
        return Outcome(peer, "n/a", reason="no row for this convention")
    detail = {"total": row.total, "peer": row.peer, "unit": row.unit}
    note = next((str(getattr(row, name)) for name in ("reason", "note", "difference", "why")
                 if getattr(row, name, None)), "")
    if isinstance(row.peer, str):
        return Outcome(peer, "fail", cause="peer", reason=f"{_PEER_NAMES[peer]}: {row.peer}", detail=detail)
    if row.peer is None:
        return Outcome(peer, "n/a", reason="not compared", detail=detail)
    if row.match:
        return Outcome(peer, "ok", reason=note, detail=detail)
    difference = row.total - row.peer
    return Outcome(peer, "fail", cause="inspectlab",
                   reason=f"{peer} convention {row.total:,} ≠ {_PEER_NAMES[peer]} {row.peer:,} {row.unit} "
                          f"({difference:+,}{'; ' + note if note else ''})", detail=detail)


_PEER_NAMES = {"torch": "FlopCounterMode", "fvcore": "fvcore", "torchinfo": "torchinfo"}


def _rf(context: _Context) -> Outcome:
    import inspectlab

    macs, params = context.totals.get("macs"), context.totals.get("params")
    empirical = macs is not None and params is not None and macs <= EMPIRICAL_MACS and params <= EMPIRICAL_PARAMS
    try:
        result = inspectlab.rf(context.entry.spec, context.input, args=context.args, depth=1, empirical=empirical)
    except Exception as exc:
        if "token ids or a mask" in str(exc):  # rf measures pixels: not for text models
            return Outcome("rf", "n/a", reason="the input is not an image (token ids)")
        if "need an input with spatial dims" in str(exc):  # nor for audio samples
            return Outcome("rf", "n/a", reason="the input is not an image (no H and W)")
        raise
    totals = result.report.totals
    notes = [_note_text(note) for note in result.report.extra.get("notes", [])]
    detail: dict[str, Any] = {"rf": totals.get("rf"), "stride": totals.get("stride"), "empirical": empirical}
    if not totals or totals.get("rf") is None:
        why = next((n for n in notes if "no rule" in n or "inconsistent" in n), notes[0] if notes else "")
        # "inconsistent": a field broke an invariant of the walk (a bug, caught); "no rule": an op inspectlab has
        # no receptive-field rule for here, so it says "unknown" rather than guess
        cause = "inspectlab" if "inconsistent" in why or not why else "limitation"
        return Outcome("rf", "fail", cause=cause, reason=f"the output's field is unknown: {_one_line(why)}",
                       detail=detail)
    if result.check is not None:
        detail.update(measured=result.check.measured, differ=result.check.differ,
                      unmeasurable=result.check.unmeasurable)
        if result.check.differ:
            wrong = [row["name"] for row in result.report.layers if row.get("check") == "✗"][:3]
            return Outcome("rf", "fail", cause="inspectlab",
                           reason=f"autograd disagrees on {result.check.differ} of {result.check.measured} fields "
                                  f"({', '.join(wrong)})", detail=detail)
    return Outcome("rf", "ok", detail=detail)


def _note_text(note: Any) -> str:
    """A report note as one line (a note is a string, or a dict with its `text`)."""
    return str(note.get("text", note)) if isinstance(note, Mapping) else str(note)


def _graph(context: _Context) -> Outcome:
    import inspectlab

    digraph = inspectlab.graph(context.entry.spec, context.input, args=context.args)
    source = digraph.source
    detail: dict[str, Any] = {"nodes": source.count("[label="), "dot_bytes": len(source), "rendered": False}
    if shutil.which("dot") is not None:
        import graphviz

        try:
            digraph.pipe(format="svg", quiet=True)
        except graphviz.CalledProcessError as exc:
            stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else str(exc.stderr)
            return Outcome("graph", "fail", cause="inspectlab",
                           reason=f"dot cannot draw the source: {_one_line(stderr)}", detail=detail)
        detail["rendered"] = True
    return Outcome("graph", "ok", detail=detail)


def serve(connection: Any, threads: int = 1) -> None:
    """A worker process of benchmarks/coverage.py: once its imports are done it sends ("ready", None), then
    checks each entry it receives (as a dict of Entry's fields; None ends it), sending ("outcome", Outcome as a
    dict) as soon as each is known, then ("done", None)."""
    import torch
    import torchvision  # noqa: F401  (the imports every model needs, before the first model's clock starts)

    from inspectlab import api  # noqa: F401
    from inspectlab.workflows import graph, receptive_field, summary  # noqa: F401

    torch.set_num_threads(threads)
    connection.send(("ready", None))
    while True:
        job = connection.recv()
        if job is None:
            return
        check(Entry(**job), report=lambda outcome: connection.send(("outcome", outcome.as_dict())))
        connection.send(("done", None))


# --------------------------------------------------------------------------------------------------
# why it failed


def _failure(analysis: str, exc: BaseException, context: _Context) -> Outcome:
    from inspectlab.core.errors import InspectlabError, describe_error

    message = _one_line(describe_error(exc))
    if isinstance(exc, MemoryError) or ("(estimated peak) but" in message and " free;" in message):
        return Outcome(analysis, "fail", cause="machine", reason=message)
    if isinstance(exc, InspectlabError):
        if type(exc).__name__ == "ModelRejectedInput" or "rejected input" in message:
            failure = context.real_run_failure()
            if failure is not None:
                return Outcome(analysis, "fail", cause="model",
                               reason=f"the model rejects this input (a real CPU run too): {failure}")
            return Outcome(analysis, "fail", cause="inspectlab",
                           reason=f"fails in inspectlab, but a real CPU run of the model works: {message}")
        origin = _origin(exc)
        if origin is not None and origin[0] != "inspectlab":
            return Outcome(analysis, "fail", cause="model", reason=f"{message} (raised in {origin[0]})")
        return Outcome(analysis, "fail", cause="inspectlab", reason=message)
    where = _inspectlab_frame(exc)
    origin = _origin(exc)
    inside = f"; raised in {origin[0]}" if origin is not None and origin[0] != "inspectlab" else ""
    return Outcome(analysis, "fail", cause="inspectlab",
                   reason=f"not a one-line error: {message}{f' (at {where}{inside})' if where else inside}")


def _origin(exc: BaseException) -> tuple[str, str] | None:
    """The library (first package of the path) and file:line of the innermost frame of the exception's
    root cause."""
    root = exc
    while root.__cause__ is not None or (root.__context__ is not None and not root.__suppress_context__):
        root = root.__cause__ or root.__context__  # type: ignore[assignment]
    frames = traceback.extract_tb(root.__traceback__)
    if not frames:
        return None
    path = frames[-1].filename.replace("\\", "/")
    for library in ("inspectlab", *_LIBRARIES, "torch"):
        if f"/{library}/" in path:
            return library, f"{path.rsplit('/', 1)[-1]}:{frames[-1].lineno}"
    return "other", f"{path.rsplit('/', 1)[-1]}:{frames[-1].lineno}"


def _inspectlab_frame(exc: BaseException) -> str | None:
    """file:line of the innermost frame in inspectlab's own code."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/inspectlab/" in f.filename.replace("\\", "/")]
    if not frames:
        return None
    path = frames[-1].filename.replace("\\", "/")
    return f"{path.split('/inspectlab/', 1)[1]}:{frames[-1].lineno}"


def _real_run(context: _Context) -> str | None:
    """Run the model for real on the CPU, without grad, on the inputs inspectlab would make: None when it runs,
    else its one-line reason. Only tried when a trace says the model rejected its input."""
    import torch

    from inspectlab import api
    from inspectlab.core.errors import describe_error

    try:
        model = api.build_model(context.entry.spec, context.args, device="cpu")
        specs = api.input_specs(context.entry.spec, context.input, context.args)
    except Exception as exc:  # it cannot even be built on the CPU
        return _one_line(describe_error(exc))
    generator = torch.Generator().manual_seed(0)
    positional, named = [], {}
    for spec in specs:
        dtype = getattr(torch, spec.dtype) if spec.dtype else torch.float32
        tensor = (torch.randn(spec.shape, generator=generator, dtype=dtype) if dtype.is_floating_point
                  else torch.zeros(spec.shape, dtype=dtype))
        if spec.name:
            named[spec.name] = tensor
        else:
            positional.append(tensor)
    try:
        with torch.no_grad():
            model(*positional, **named)
    except Exception as exc:
        return _one_line(describe_error(exc))
    return None


def _one_line(text: str, limit: int = 220) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------------
# the sample that `make test` runs (tests/test_coverage_sample.py): small models of every source, small inputs

SAMPLE: tuple[Entry, ...] = (
    Entry("torchvision", "tv:resnet18", input=[(1, 3, 64, 64)]),
    Entry("torchvision", "tv:mobilenet_v3_small", input=[(1, 3, 64, 64)]),
    Entry("torchvision", "tv:squeezenet1_1", input=[(1, 3, 64, 64)]),
    Entry("torchvision", "tv:shufflenet_v2_x0_5", input=[(1, 3, 64, 64)]),
    Entry("torchvision", "tv:efficientnet_b0", input=[(1, 3, 64, 64)]),
    Entry("torchvision", "tv:regnet_x_400mf", input=[(1, 3, 64, 64)]),
    Entry("torchvision", "tv:lraspp_mobilenet_v3_large", input=[(1, 3, 64, 64)]),
    Entry("torchvision", "tv:r3d_18", input=[(1, 3, 4, 32, 32)]),
    Entry("timm", "timm:resnet10t", input=[(1, 3, 64, 64)]),
    Entry("timm", "timm:mobilenetv3_small_050", input=[(1, 3, 64, 64)]),
    Entry("timm", "timm:convnext_atto", input=[(1, 3, 64, 64)]),
    Entry("timm", "timm:efficientvit_m0", input=[(1, 3, 64, 64)]),
    Entry("timm", "timm:vit_tiny_patch16_224", {"img_size": 64}, input=[(1, 3, 64, 64)]),
    Entry("timm", "timm:ghostnet_050", input=[(1, 3, 64, 64)]),
    Entry("smp", "smp:Unet", {"encoder_name": "resnet18"}, input=[(1, 3, 64, 64)]),
    Entry("smp", "smp:FPN", {"encoder_name": "mobilenet_v2"}, input=[(1, 3, 64, 64)]),
    Entry("smp", "smp:DeepLabV3Plus", {"encoder_name": "efficientnet-b0"}, input=[(1, 3, 64, 64)]),
    Entry("smp", "smp:Linknet", {"encoder_name": "tu-resnet10t"}, input=[(1, 3, 64, 64)]),
    Entry("transformers", "hf:bert", {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2,
                                      "intermediate_size": 128}, input=None),
    Entry("transformers", "hf:vit", {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2,
                                     "intermediate_size": 128, "image_size": 64}, input=None),
)

# What the sample gives where it is not ✓, with its cause and a fragment of its reason; everything else must be
# ✓. A bug fixed makes tests/test_coverage_sample.py fail until its line here goes: the table stays true.
SAMPLE_EXPECTED: dict[tuple[str, str], tuple[str, str]] = {
    ("hf:bert", "rf"): ("n/a", "not an image"),
    ("tv:squeezenet1_1", "rf"): ("inspectlab", "autograd disagrees on 2 of 3 fields ((root), classifier)"),
}
