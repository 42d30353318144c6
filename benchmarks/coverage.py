"""docs/coverage.md: every analysis of inspectlab on the models users have (issue 15, section 5).

    python benchmarks/coverage.py [--sample] [--only torchvision,timm,smp,transformers] [--jobs 1]
                                  [--timeout 900] [--threads 1] [--limit N] [--match TEXT]
                                  [--output docs/coverage.md] [--json results.json]

The models (the rule for each source is written at the top of the table, and here):

- torchvision: every name of `torchvision.models.list_models()` (classification, quantizable, segmentation,
  detection, video, optical flow), as `tv:NAME`, at the registry's default input (1×3×224×224; detection models
  resize it to their own 800-pixel size inside), except where that input is not the model's kind: video models
  get a clip (1×3×16×112×112; 1×3×16×224×224 for MViT and S3D, which need it; 1×3×8×112×112 for the Swin3D, a
  small valid size), RAFT two 1×3×128×128 frames.
- timm: one architecture per timm module (`timm.list_modules()`: resnet, efficientnet, vision_transformer, ...,
  98 in timm 1.0.31): the module's model with the fewest parameters (counted on the meta device; tiny `test_*`
  models left out), as `timm:NAME` at the model's own default input (its pretrained config's size). Counting
  builds every timm model (minutes), so the choice is kept in benchmarks/coverage_timm.json with the timm
  version that made it, and made again for another version (or with --refresh-timm).
- smp: each architecture of segmentation_models_pytorch × 5 encoders (`ENCODERS`: resnet34, efficientnet-b0,
  mobilenet_v2, mit_b0, tu-convnext_atto; DPT takes only ViT encoders, so it gets 5 ViTs, `DPT_ENCODERS`),
  `encoder_weights=None`, at 1×3×256×256 (a multiple of 32, smaller than the registry's 512 for speed; DPT at its
  encoder's 224).
- transformers: the configs of `HF` (`hf:MODEL_TYPE`, transformers' default config, random init), at the
  registry's default inputs (input_ids 1×128, pixel_values at the config's image size, 16000 audio samples).

Each model runs in a worker process (`--jobs` of them, each using `--threads` threads) through
`benchmarks/coverage_check.check`, which runs summary, flops --compare (every convention against its peer), rf
(checked by autograd on small models) and graph (drawn by Graphviz's `dot` when installed), each apart. A model
that takes longer than `--timeout` seconds is stopped (its analyses done so far are kept, the rest marked), and
a worker that crashes is replaced: one model never stops the run. `--sample` runs coverage_check.SAMPLE (the
models `make test` checks) instead. The table is written atomically (all or nothing).
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from coverage_check import ANALYSES, SAMPLE, Entry, Outcome, serve  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TIMM_CHOICE = Path(__file__).resolve().parent / "coverage_timm.json"
SOURCES = ("torchvision", "timm", "smp", "transformers")
ENCODERS = ("resnet34", "efficientnet-b0", "mobilenet_v2", "mit_b0", "tu-convnext_atto")
DPT_ENCODERS = ("tu-vit_base_patch16_224.augreg_in21k", "tu-vit_tiny_patch16_224", "tu-vit_small_patch16_224",
                "tu-deit_tiny_patch16_224", "tu-vit_base_patch32_224")
SMP_INPUT = (1, 3, 256, 256)
HF: tuple[tuple[str, dict[str, Any]], ...] = (
    ("hf:bert", {}), ("hf:gpt2", {}), ("hf:t5", {}), ("hf:vit", {}),
    ("hf:segformer", {"task": "semantic-segmentation"}), ("hf:detr", {}), ("hf:clip", {}), ("hf:swin", {}),
    ("hf:convnext", {}), ("hf:wav2vec2", {}), ("hf:whisper", {}), ("hf:mobilevit", {}),
)
VIDEO_INPUTS = {"mvit_v1_b": (1, 3, 16, 224, 224), "mvit_v2_s": (1, 3, 16, 224, 224), "s3d": (1, 3, 16, 224, 224),
                "swin3d_t": (1, 3, 8, 112, 112), "swin3d_s": (1, 3, 8, 112, 112), "swin3d_b": (1, 3, 8, 112, 112)}
RECYCLE = 20  # a worker is replaced after this many models (memory a model left behind is given back)
PARTIAL_EVERY = 10  # models between two writes of the partial table
STARTUP = 600  # seconds a worker may take to import torch and inspectlab (not counted in any model's time)
MARKS = {"ok": "✓", "fail": "✗", "n/a": "–"}


# --------------------------------------------------------------------------------------------------
# the models


def torchvision_entries() -> list[Entry]:
    import torchvision

    video = set(torchvision.models.list_models(module=torchvision.models.video))
    flow = set(torchvision.models.list_models(module=torchvision.models.optical_flow))
    entries = []
    for name in torchvision.models.list_models():
        if name in video:
            shape = VIDEO_INPUTS.get(name, (1, 3, 16, 112, 112))
            entries.append(Entry("torchvision", f"tv:{name}", input=[shape], why="a video clip"))
        elif name in flow:
            entries.append(Entry("torchvision", f"tv:{name}", input=[(1, 3, 128, 128)] * 2, why="two frames"))
        else:
            entries.append(Entry("torchvision", f"tv:{name}"))
    return entries


def timm_entries(progress: bool = True, refresh: bool = False) -> list[Entry]:
    """One per timm module: its model with the fewest parameters (meta device), `test_*` models aside. Counting
    builds all of timm's ~1,400 models (minutes), so the choice is kept in TIMM_CHOICE for the timm version that
    made it, and made again for another version or with `refresh`."""
    import timm

    try:
        kept = json.loads(TIMM_CHOICE.read_text())
    except (OSError, ValueError):
        kept = {}
    if refresh or kept.get("timm") != timm.__version__:
        kept = {"timm": timm.__version__, "rule": "the model with the fewest parameters of each timm module",
                "choice": _timm_choice(progress)}
        write(TIMM_CHOICE, json.dumps(kept, indent=1) + "\n")
    return [Entry("timm", f"timm:{name}", why=f"smallest of timm's {module}")
            for module, name in kept["choice"].items()]


def _timm_choice(progress: bool) -> dict[str, str]:
    import timm
    import torch

    chosen_by_module = {}
    for module in timm.list_modules():
        counted = []
        for name in timm.list_models(module=module):
            if name.startswith("test_"):
                continue
            try:
                with torch.device("meta"):
                    model = timm.create_model(name, pretrained=False)
                counted.append((sum(p.numel() for p in model.parameters()), name))
            except Exception:  # cannot be built on meta: not counted (the chosen model says how it fares)
                continue
        names = [n for n in timm.list_models(module=module) if not n.startswith("test_")]
        chosen = min(counted)[1] if counted else (names[0] if names else None)
        if chosen is None:
            continue
        if progress:
            print(f"timm {module}: {chosen}", file=sys.stderr, flush=True)
        chosen_by_module[module] = chosen
    return chosen_by_module


def smp_entries() -> list[Entry]:
    import segmentation_models_pytorch as smp

    mapping = getattr(smp, "MODEL_ARCHITECTURES_MAPPING", {})
    entries = []
    for cls in mapping.values():
        arch = cls.__name__
        if arch == "DPT":
            entries += [Entry("smp", "smp:DPT", {"encoder_name": e}, input=[(1, 3, 224, 224)]) for e in DPT_ENCODERS]
        else:
            entries += [Entry("smp", f"smp:{arch}", {"encoder_name": e}, input=[SMP_INPUT]) for e in ENCODERS]
    return entries


def hf_entries() -> list[Entry]:
    return [Entry("transformers", spec, args) for spec, args in HF]


def all_entries(sources: Sequence[str], refresh_timm: bool = False) -> list[Entry]:
    makers = {"torchvision": torchvision_entries, "timm": lambda: timm_entries(refresh=refresh_timm),
              "smp": smp_entries, "transformers": hf_entries}
    return [entry for source in sources for entry in makers[source]()]


# --------------------------------------------------------------------------------------------------
# running them, each in a worker process


@dataclass
class Result:
    """One model's row: its outcomes and time (wall, from the runner's side)."""

    entry: Entry
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    def of(self, analysis: str) -> Outcome | None:
        return next((o for o in self.outcomes if o.analysis == analysis), None)


class _Worker:
    def __init__(self, context: Any, threads: int) -> None:
        self.connection, child = context.Pipe()
        self.process = context.Process(target=serve, args=(child, threads), daemon=True)
        self.process.start()
        child.close()
        self.result: Result | None = None
        self.started = 0.0
        self.done = 0
        self.ready = False
        self.born = time.perf_counter()

    def send(self, entry: Entry) -> None:
        self.result = Result(entry)
        self.started = time.perf_counter()
        self.connection.send({"source": entry.source, "spec": entry.spec, "args": dict(entry.args),
                              "input": entry.input, "why": entry.why})

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.connection.close()


def run(entries: Sequence[Entry], jobs: int, timeout: float, threads: int,
        progress: Callable[[list[Result]], None] | None = None) -> list[Result]:
    """Every entry through `check` in `jobs` workers, in order; a timeout or a crash ends that model only.
    `progress` gets the results so far (in order) after each model."""
    context = multiprocessing.get_context("spawn")
    pending = list(entries)
    results: dict[int, Result] = {}
    order = {id(entry): k for k, entry in enumerate(entries)}
    workers: list[_Worker] = []
    start = time.perf_counter()

    def finish(worker: _Worker, why: str | None = None) -> None:
        result = worker.result
        assert result is not None
        result.seconds = time.perf_counter() - worker.started
        if why is not None:
            _close(result, why)
        results[order[id(result.entry)]] = result
        worker.result = None
        worker.done += 1
        marks = "".join(MARKS.get(o.status, "?") for o in result.outcomes)
        print(f"[{len(results)}/{len(entries)} {time.perf_counter() - start:6.0f}s] {result.entry.label}: {marks} "
              f"{result.seconds:.1f}s{' ' + why if why else ''}", file=sys.stderr, flush=True)
        if progress is not None:
            progress([results[k] for k in sorted(results)])

    while pending or any(w.result is not None for w in workers):
        while len(workers) < jobs:
            workers.append(_Worker(context, threads))
        for worker in workers:
            if worker.ready and worker.result is None and pending:
                worker.send(pending.pop(0))
        listening = {w.connection: w for w in workers if w.result is not None or not w.ready}
        for connection in wait(list(listening), timeout=1.0):
            worker = listening[connection]
            try:
                kind, payload = connection.recv()
            except (EOFError, OSError) as exc:
                worker.process.join(5)
                if worker.result is None:
                    raise RuntimeError(f"a worker died while starting (exit code {worker.process.exitcode})") from exc
                finish(worker, f"the worker process died (exit code {worker.process.exitcode})")
                worker.stop()
                workers.remove(worker)
                continue
            if kind == "ready":
                worker.ready = True
            elif kind == "outcome":
                worker.result.outcomes.append(Outcome(**payload))  # type: ignore[union-attr]
            else:
                finish(worker)
                if worker.done >= RECYCLE:
                    worker.connection.send(None)
                    worker.stop()
                    workers.remove(worker)
        for worker in list(workers):
            if not worker.ready and time.perf_counter() - worker.born > STARTUP:
                raise RuntimeError(f"a worker did not start within {STARTUP} s")
            if worker.result is not None and time.perf_counter() - worker.started > timeout:
                finish(worker, f"timeout: stopped after {timeout:.0f} s")
                worker.stop()
                workers.remove(worker)
    for worker in workers:
        worker.connection.send(None)
        worker.stop()
    return [results[k] for k in sorted(results)]


def _close(result: Result, why: str) -> None:
    """Mark the analyses a stopped model did not finish: the running one failed (timeout or crash), the rest
    not run."""
    cause = "timeout" if why.startswith("timeout") else "crash"
    done = {o.analysis for o in result.outcomes}
    first = True
    for analysis in ANALYSES:
        if analysis in done:
            continue
        if first:
            result.outcomes.append(Outcome(analysis, "fail", cause=cause, reason=why))
            first = False
        else:
            result.outcomes.append(Outcome(analysis, "n/a", reason=f"not run ({cause})"))


# --------------------------------------------------------------------------------------------------
# the table


def markdown(results: Sequence[Result], command: str, seconds: float, note: str = "") -> str:
    """docs/coverage.md: how it was made, totals per source, the ✗ by cause, one row per model."""
    lines = ["# Coverage: inspectlab on the models users have", "",
             "<!-- generated by benchmarks/coverage.py: do not edit by hand; `make coverage` regenerates it -->", "",
             f"Generated by `{command}` on {datetime.date.today().isoformat()} in {seconds / 60:.0f} min, on "
             f"{_machine()}.", "", f"Versions: {_versions()}.", ""]
    if note:
        lines += [note, ""]
    sources = [s for s in SOURCES if any(r.entry.source == s for r in results)]
    lines += ["## Totals", "", "| source | models | summary | flops | torch = FlopCounterMode | fvcore | torchinfo "
              "| rf | graph | every analysis ✓ |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for source in sources:
        rows = [r for r in results if r.entry.source == source]
        cells = [f"{sum(_ok(r, a) for r in rows)}/{sum(_applies(r, a) for r in rows)}" for a in ANALYSES]
        every = sum(all(o.status != "fail" for o in r.outcomes) for r in rows)
        lines.append(f"| {source} | {len(rows)} | {' | '.join(cells)} | {every} |")
    lines += ["", "A cell counts the models where the analysis is ✓, out of those where it applies (rf does not "
              "apply to inputs that are not images: token ids, audio).", ""]
    lines += _rules(), ""
    lines += _causes(results)
    for source in sources:
        lines += ["", f"## {source}", "", "| model | input | params | MACs | " + " | ".join(ANALYSES) +
                  " | time | why ✗ |", "|---|---|---:|---:|" + "---|" * len(ANALYSES) + "---:|---|"]
        for result in (r for r in results if r.entry.source == source):
            lines.append(_row(result))
    return "\n".join(lines) + "\n"


def _rules() -> str:
    return """## How the table is made

- **Models.** torchvision: every name of `torchvision.models.list_models()`, at the registry's default input
  1×3×224×224 (detection models resize it to 800 pixels inside), except video models (a clip, 1×3×16×112×112;
  1×3×16×224×224 for MViT and S3D, which need it; 1×3×8×112×112 for Swin3D) and RAFT (two 1×3×128×128 frames).
  timm: for each timm module (`timm.list_modules()`), its model with the fewest parameters (`test_*` models
  aside), at the model's own default input. smp: each architecture × resnet34, efficientnet-b0, mobilenet_v2,
  mit_b0, tu-convnext_atto (DPT, which takes only ViT encoders: × 5 ViTs), `encoder_weights=None`, at
  1×3×256×256 (DPT at 224). transformers: default configs, random init, at the registry's default inputs.
- **Analyses**, through the public API, each apart: `summary` (depth 2); `flops` (`compare=True`: ✓ when it
  runs and its inspectlab total equals the summary's); `torch`, `fvcore`, `torchinfo`: ✓ when the convention's
  total equals the peer library's own number on the same model and input; `rf` (depth 1: ✓ when the output's
  field is known; models of at most 15 M parameters and 0.6 GMACs are also checked by autograd, and every
  measured field must agree); `graph` (✓ when the Digraph is made and Graphviz's `dot` draws it as SVG).
- **Why ✗**, with its cause: **model** (the model cannot run this input or cannot be built in this
  configuration: a "rejected input" is confirmed by a real CPU run of the same model and input), **inspectlab**
  (a bug: an exception that is not a one-line error, a failure where a real run works, a convention that does
  not reproduce its peer, summary and flops disagreeing, autograd disagreeing with a field, a field the walk
  found inconsistent, a graph `dot` cannot draw), **limitation** (inspectlab says "unknown" where it has no
  rule: the output's receptive field after an op it has no rule for), **peer** (the peer library fails on
  the model), **machine** (too big for this machine's memory), **timeout**, **crash** (the worker died).
- `–`: not applicable, or not run after a timeout. `time`: the model's wall time for every analysis, on one
  thread, on a machine shared with other work (the real runs of flops' peers and rf's autograd check dominate)."""


def _causes(results: Sequence[Result]) -> list[str]:
    counts: Counter[str] = Counter()
    by_cause: dict[str, list[str]] = {}
    for result in results:
        for outcome in result.outcomes:
            if outcome.status == "fail":
                cause = outcome.cause or "unknown"
                counts[cause] += 1
                by_cause.setdefault(cause, []).append(f"`{result.entry.label}` {outcome.analysis}")
    lines = ["## ✗ by cause", ""]
    if not counts:
        return [*lines, "None."]
    lines += [f"- **{cause}**: {n} ({', '.join(by_cause[cause][:12])}{' …' if n > 12 else ''})"
              for cause, n in counts.most_common()]
    return lines


def _row(result: Result) -> str:
    summary = result.of("summary")
    detail = summary.detail if summary is not None else {}
    given = result.entry.input
    inputs = detail.get("inputs") or (", ".join("×".join(map(str, shape)) for shape in given) if given else "default")
    cells = []
    for analysis in ANALYSES:
        outcome = result.of(analysis)
        cells.append(MARKS.get(outcome.status, "?") if outcome is not None else "")
    reasons = [f"{o.analysis}: **{o.cause}** {o.reason}" for o in result.outcomes if o.status == "fail"]
    params, macs = detail.get("params"), detail.get("macs")
    return (f"| `{result.entry.label}` | {inputs} | {_short(params)} | {_short(macs)} | {' | '.join(cells)} | "
            f"{result.seconds:.1f} s | {_cell('; '.join(reasons))} |")


def _ok(result: Result, analysis: str) -> bool:
    outcome = result.of(analysis)
    return outcome is not None and outcome.status == "ok"


def _applies(result: Result, analysis: str) -> bool:
    outcome = result.of(analysis)
    return outcome is not None and (outcome.status != "n/a" or outcome.reason.startswith("not run"))


def _short(value: Any) -> str:
    if not isinstance(value, int):
        return ""
    for limit, suffix in ((10**9, "G"), (10**6, "M"), (10**3, "K")):
        if value >= limit:
            return f"{value / limit:.4g}{suffix}"
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _versions() -> str:
    from importlib import metadata

    names = ("torch", "torchvision", "timm", "segmentation-models-pytorch", "transformers", "fvcore",
             "torchinfo", "graphviz")
    found = [f"inspectlab {_inspectlab_version()}"]
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    dot = shutil.which("dot")
    if dot is not None:
        run = subprocess.run([dot, "-V"], capture_output=True, text=True, check=False)
        found.append(run.stderr.strip().replace("dot - graphviz version", "Graphviz dot") or "Graphviz dot")
    else:
        found.append("no Graphviz dot (graphs not drawn)")
    return ", ".join(found)


def _inspectlab_version() -> str:
    """The version, the commit and whether the working tree had changes (what the table was made from)."""
    import inspectlab

    where = Path(inspectlab.__file__).resolve().parent.parent
    git = ["git", "-C", str(where)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    if commit.returncode != 0:
        return inspectlab.__version__
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "inspectlab"], capture_output=True, text=True,
                           check=False).stdout.strip()
    return f"{inspectlab.__version__} (commit {commit.stdout.strip()}{' + uncommitted changes' if dirty else ''})"


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB RAM"
    except (ValueError, OSError, AttributeError):
        pass
    return f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores{memory}, Python " \
           f"{platform.python_version()}"


def write(path: Path, text: str) -> None:
    """All or nothing: the table replaces the old one only once it is complete."""
    from inspectlab.core.io import write_atomic

    write_atomic(path, text, force=True)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", action="store_true", help="only coverage_check.SAMPLE (what make test checks)")
    parser.add_argument("--only", default=",".join(SOURCES), help="comma-separated sources: " + ", ".join(SOURCES))
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per model")
    parser.add_argument("--limit", type=int, default=None, help="the first N models of each source")
    parser.add_argument("--match", default=None, help="only the models whose spec contains this text")
    parser.add_argument("--output", default=str(ROOT / "docs" / "coverage.md"), help="the Markdown table")
    parser.add_argument("--json", default=None, help="also write every outcome as JSON here")
    parser.add_argument("--refresh-timm", action="store_true",
                        help=f"choose the timm models again (kept in {TIMM_CHOICE.name})")
    parser.add_argument("--note", default="", help="a paragraph to put under the header (a subset run: why)")
    options = parser.parse_args(list(argv) if argv is not None else None)
    sources = [s.strip() for s in options.only.split(",") if s.strip()]
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        parser.error(f"unknown source {', '.join(unknown)}; choose from {', '.join(SOURCES)}")
    if options.sample:
        entries = [e for e in SAMPLE if e.source in sources]
    else:
        entries = all_entries(sources, options.refresh_timm)
    if options.match:
        entries = [e for e in entries if options.match in e.spec]
    if options.limit is not None:
        entries = [e for s in sources for e in [x for x in entries if x.source == s][: options.limit]]
    print(f"{len(entries)} models", file=sys.stderr, flush=True)
    given = list(argv) if argv is not None else sys.argv[1:]
    command = "python benchmarks/coverage.py" + "".join(f" {shlex.quote(a)}" for a in given)
    start = time.perf_counter()

    def partial(done: list[Result]) -> None:  # a stopped run leaves a table of what it did, saying so
        if len(done) % PARTIAL_EVERY == 0 and len(done) < len(entries):
            note = (f"**Partial**: {len(done)} of {len(entries)} models so far (the run was still going)."
                    + (f" {options.note}" if options.note else ""))
            write(Path(options.output), markdown(done, command, time.perf_counter() - start, note))

    results = run(entries, options.jobs, options.timeout, options.threads, partial)
    seconds = time.perf_counter() - start
    write(Path(options.output), markdown(results, command, seconds, options.note))
    if options.json:
        data = [{"entry": {"source": r.entry.source, "spec": r.entry.spec, "args": dict(r.entry.args),
                           "input": r.entry.input}, "seconds": r.seconds, "outcomes": [o.as_dict() for o in r.outcomes]}
                for r in results]
        write(Path(options.json), json.dumps(data, indent=1, default=str))
    print(f"wrote {options.output} ({len(results)} models, {seconds / 60:.1f} min)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
