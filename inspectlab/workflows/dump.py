"""dump: the Trace plans the dump (its size, refused above a limit or the free disk; the receptive field of
every output), a Capture keeps the selected outputs (and gradients) of one real forward, then the tensors,
the JSON manifest and the pictures are written (docs/dump.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from inspectlab.analysis.memory import estimate_memory
from inspectlab.analysis.summary import input_details
from inspectlab.core.errors import InspectlabError
from inspectlab.core.io import check_writable
from inspectlab.core.naming import ROOT
from inspectlab.core.shapes import InputSize
from inspectlab.core.version import __version__
from inspectlab.render.feature_png import feature_pngs, input_pictures
from inspectlab.runtime import dump_writer
from inspectlab.runtime.capture import Capture, objective, primary_output
from inspectlab.runtime.images import IMAGENET_MEAN, IMAGENET_STD, load_images
from inspectlab.runtime.memory import check_fits
from inspectlab.tracing.inputs import CallInputs, as_call, example_call, on_device
from inspectlab.workflows.files import write_into_folder
from inspectlab.workflows.guard import hands_off
from inspectlab.workflows.models import ModelOrSpec, input_specs, model_name, resolve
from inspectlab.workflows.trace import trace


@dataclass
class DumpResult:
    """What `dump` did: the manifest (also when nothing was written), the capture, the files written."""

    manifest: dict[str, Any]
    capture: Capture
    written: list[str]
    pngs: list[str]
    estimate: int


def dump(model_or_spec: ModelOrSpec, input_size: InputSize | None = None, *, images: Sequence[str] | None = None,
         layers: Sequence[str] | None = None, types: Sequence[str] | None = None, grads: bool = False,
         target: int | None = None, out: str | None = None, png: str | None = None, stats_only: bool = False,
         force: bool = False, max_bytes: int | None = None, mean: Sequence[float] | None = None,
         std: Sequence[float] | None = None, args: Mapping[str, Any] | None = None, device: str = "cpu",
         top_k: int = 16, seed: int = 0, train: bool = False, weights: str | None = None,
         strict: bool = True, input_data: Any = None) -> DumpResult:
    """Capture the selected outputs for one input (random with `seed`, or `images`) and write them. A model
    built from a spec is initialised under `torch.manual_seed(seed)` (the global RNG is left as it was). The
    forward runs in eval mode unless `train`, and leaves a user's module as it was (`workflows.guard`).

    The Trace (a meta-device pass) comes first: it gives the size of the dump, refused above `max_bytes`
    (default 2 GB) or the free disk, and the receptive field of every output for the manifest. Tensors are
    kept only when something needs them (`out` without `stats_only`, `png`); otherwise only statistics.
    `input_size`: shapes or input specs (dtype, keyword); `input_data`: the inputs themselves (a tensor, a list
    of positional arguments, a dict of keyword arguments; `tracing.inputs.as_call`).
    """
    if target is not None and not grads:
        raise InspectlabError("--target chooses the logit the gradients are taken of: add --grads")
    if stats_only and png:
        raise InspectlabError("--png draws the kept tensors: it cannot go with --stats-only")
    keep = bool(png) or (out is not None and not stats_only)
    if out is not None:
        if not stats_only:
            check_writable(out, force)
            dump_writer.format_of(out)
        check_writable(dump_writer.manifest_path(out), force)
    mean, std = tuple(mean or IMAGENET_MEAN), tuple(std or IMAGENET_STD)
    with torch.random.fork_rng(devices=[]):  # a model built here gets the same weights for the same seed
        torch.manual_seed(seed)
        built = resolve(model_or_spec, args, device, weights, strict)
    model = built.module
    if images and input_data is not None:
        raise InspectlabError("--image and --input-file both give the input: choose one")
    specs = input_specs(model_or_spec, input_size, args) if input_data is None else []
    pictures = None
    if images:
        shapes = [spec.shape for spec in specs]
        if len(specs) != 1 or len(shapes[0]) != 4 or not specs[0].floating:
            raise InspectlabError(f"--image makes one N×C×H×W input; the input given is {shapes}")
        batch = load_images(images, (shapes[0][2], shapes[0][3]), shapes[0][1], mean, std)
        name = specs[0].name
        inputs = CallInputs([batch.tensor], {}) if name is None else CallInputs([], {name: batch.tensor})
        pictures = batch.pictures
    elif input_data is not None:
        inputs = on_device(as_call(input_data), "cpu")
    else:
        inputs = example_call(specs, "float32", "cpu", seed=seed)
    cap = Capture(model, layers, types=types, grads=grads, keep=keep)

    recorded = trace(model, input_data=inputs)
    fmt = dump_writer.format_of(out) if out is not None and not stats_only else None
    estimate = dump_writer.estimate_bytes(recorded, cap.modules, grads, fmt)
    if keep:
        folder = Path(out).resolve().parent if fmt is not None else None  # type: ignore[arg-type]
        dump_writer.check_size(estimate, dump_writer.DEFAULT_MAX_BYTES if max_bytes is None else max_bytes, folder)
    fields, notes = dump_writer.receptive_field_lookup(recorded)
    notes = built.notes + notes + recorded.notes

    where = next((p.device for p in model.parameters()), torch.device(device))
    memory = estimate_memory(recorded)  # the forward's peak, the kept copies, and what a backward keeps
    needed = memory.peak_bytes + (estimate if keep else 0) + (memory.activation_bytes if grads else 0)
    check_fits(needed, where, f"dumping {model_name(model_or_spec)}")
    real_inputs = on_device(inputs, str(where))
    with hands_off(model, real=True, train=train, owned=isinstance(model_or_spec, str)), cap, \
            torch.set_grad_enabled(grads):
        output = model(*real_inputs.args, **real_inputs.kwargs)
        if grads:
            cap.backward(objective(output, target))
    never = [name or ROOT for name in cap.modules if name not in cap.called]
    if never:
        notes.append(f"selected but never called through forward: {', '.join(never)}")
    header = {
        "model": model_name(model_or_spec), "inputs": [list(t.shape) for t in inputs.tensors()],
        **({"input_details": details} if (details := input_details(recorded)) is not None else {}),
        "images": list(images) if images else None,
        "normalisation": {"mean": list(mean), "std": list(std)} if images else None,
        "seed": None if images else seed, "weights": weights, "device": str(where), "training": train,
        "objective": _objective_text(output, target) if grads else None,
        "estimated_bytes": estimate, "inspectlab": __version__, "torch": torch.__version__, "notes": notes,
    }
    document = dump_writer.build_manifest(cap.entries, header, out if fmt else None, fields)
    written: list[str] = []
    if out is not None:
        if stats_only:
            written.append(str(dump_writer.write_manifest(document, dump_writer.manifest_path(out), force)))
        else:
            written = dump_writer.write_dump(cap.tensors(), document, out, force)
    pngs: list[str] = []
    if png:
        first = next(iter(inputs.tensors()), None)
        shown = pictures if pictures is not None else (
            input_pictures(first) if first is not None and first.is_floating_point() else None)
        pngs = write_into_folder(png, feature_pngs(cap.entries, shown, top_k), force)
    return DumpResult(document, cap, written, pngs, estimate)


def _objective_text(output: Any, target: int | None) -> str:
    if target is None:
        return "sum of the model's output"
    pixels = " and pixels" if primary_output(output).dim() > 2 else ""
    return f"logit of class {target}, summed over the batch{pixels}"
