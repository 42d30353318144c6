"""Models and their inputs: a spec built through the registry's recipe, a user's module as it is, the
default inputs (shapes, or input specs with a dtype and a keyword), the inputs read from a file, and the zoo's
table (with its parameter counts cached)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspectlab.core.checkpoints import load_into
from inspectlab.core.errors import InspectlabError
from inspectlab.core.io import cache_dir, write_atomic
from inspectlab.core.shapes import IMAGENET, InputSize, InputSpec, Shape, as_specs, check_size
from inspectlab.models import registry
from inspectlab.tracing.build import Built, paused_gc, run_builder
from inspectlab.tracing.inputs import CallInputs, load_inputs

if TYPE_CHECKING:
    from torch import nn

ModelOrSpec = Any  # an nn.Module or a spec string (kept loose so that this module does not import torch)


def build(spec: str, args: Mapping[str, Any] | None = None, device: str = "meta", weights: str | None = None,
          strict: bool = True) -> Built:
    """Build the model a spec names on `device` (meta allocates no weights), with the build's notes;
    `weights`: a state_dict file loaded into it (`core.checkpoints.load_into`; on meta only checked)."""
    recipe = registry.recipe(spec, args)
    with paused_gc():
        built = run_builder(recipe.builder, recipe.kwargs, device, spec, recipe.loader)
    if weights is not None:
        built.notes += load_into(built.module, weights, strict)
    return built


def build_model(spec: str, args: Mapping[str, Any] | None = None, device: str = "meta") -> nn.Module:
    """Build a zoo model, `tv:NAME`, `file.py:factory`, a `.pt2` or TorchScript file, ... on `device`, in eval
    mode."""
    return build(spec, args, device).module


def resolve(model_or_spec: ModelOrSpec, args: Mapping[str, Any] | None = None, device: str = "meta",
            weights: str | None = None, strict: bool = True) -> Built:
    """A user's module as it is (never moved, copied or changed), or the model a spec names, built on `device`
    with its `weights`."""
    if isinstance(model_or_spec, str):
        return build(model_or_spec, args, device, weights, strict)
    if weights is not None:
        raise InspectlabError("weights= loads a file into a model built from a spec; load it into your own module "
                              "with load_state_dict")
    return Built(model_or_spec)


def input_specs(model_or_spec: ModelOrSpec, input_size: InputSize | None,
                args: Mapping[str, Any] | None = None) -> list[InputSpec]:
    """Normalise one shape, one spec or a list of them into specs; default: the spec's own input (the zoo
    entry's, a timm/smp/hf model's; `args` may change an hf model's), else 1x3x224x224."""
    if input_size is None:
        default = registry.default_input(model_or_spec, args) if isinstance(model_or_spec, str) and model_or_spec \
            else IMAGENET
        return as_specs(default)
    specs = as_specs(input_size)
    for spec in specs:
        check_size(spec.shape, f"input {list(spec.shape)}")
    return specs


def input_shapes(model_or_spec: ModelOrSpec, input_size: InputSize | None,
                 args: Mapping[str, Any] | None = None) -> list[Shape]:
    """The shapes of `input_specs` (one shape or a list of shapes; default: the spec's own input)."""
    return [spec.shape for spec in input_specs(model_or_spec, input_size, args)]


def read_inputs(path: str) -> CallInputs:
    """The inputs saved in a file (`--input-file`): read with `torch.load(weights_only=True)`."""
    return load_inputs(path)


def model_name(model_or_spec: ModelOrSpec) -> str:
    """The spec as written, or a module's class name."""
    return model_or_spec if isinstance(model_or_spec, str) else type(model_or_spec).__name__


def zoo_rows() -> list[dict[str, Any]]:
    """One row per zoo model: name, family, params, default input, description, aliases.

    Params are counted on the meta device (no weights allocated) and remembered in the user's cache
    folder, keyed by the zoo's source and torch's version: a later call needs no torch import.
    """
    params = _zoo_param_counts()
    return [
        {"name": entry.name, "family": entry.family, "params": params[entry.name],
         "default_input": list(entry.default_input), "description": entry.description,
         "aliases": list(entry.aliases)}
        for entry in registry.list_entries()
    ]


def _zoo_param_counts() -> dict[str, int]:
    entries = registry.list_entries()
    path = cache_dir() / "zoo_params.json"
    key = _zoo_fingerprint()
    try:
        stored = json.loads(path.read_text())
        if stored["key"] == key and all(isinstance(stored["params"][e.name], int) for e in entries):
            return stored["params"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no cache yet, or a stale or damaged one: count again
    from inspectlab.analysis.params import count_params

    counts = {entry.name: count_params(build_model(entry.name)).total for entry in entries}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps({"key": key, "params": counts}), force=True)
    except (OSError, InspectlabError):
        pass  # a read-only home: count every time
    return counts


def _zoo_fingerprint() -> str:
    """A digest of what the zoo's counts depend on: the zoo's source, the counting code, torch's version."""
    package = Path(__file__).resolve().parent.parent
    sources = sorted((package / "models").glob("*.py")) + [package / "analysis" / "params.py"]
    torch_spec = importlib.util.find_spec("torch")
    if torch_spec is not None and torch_spec.origin:
        sources.append(Path(torch_spec.origin).parent / "version.py")
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.name.encode())
        digest.update(source.read_bytes() if source.is_file() else b"")
    return digest.hexdigest()


def model_names() -> list[str]:
    """The zoo's names and aliases, in display order (torch-free: shell completion of MODEL)."""
    return [name for entry in registry.list_entries() for name in (entry.name, *entry.aliases)]
