"""Weights files, the one home: read a state_dict (`torch.load(weights_only=True)` — no code runs — or
safetensors) and load it into a module, strict by default, with one-line errors naming the first keys.

torch and safetensors are imported inside the functions: this module is part of core/, which `import
inspectlab` and `--help` load without torch.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

from inspectlab.core.errors import InspectlabError, first_line

_WRAPPERS = ("state_dict", "model", "model_state_dict")  # checkpoint dicts that hold the state_dict
_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DistributedDataParallel, torch.compile


def read_state_dict(path: str) -> dict[str, Any]:
    """The state_dict in a file: a bare one, or a checkpoint dict holding it under state_dict / model /
    model_state_dict; keys lose a leading `module.` or `_orig_mod.` (wrappers' prefixes)."""
    if not os.path.isfile(path):
        raise InspectlabError(f"no such weights file: {path}")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state: Any = load_file(path, device="cpu")
        else:
            import torch

            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InspectlabError(f"cannot read weights from {path}: {type(exc).__name__}: {first_line(str(exc))}") \
            from exc
    for key in _WRAPPERS:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping):
        raise InspectlabError(f"{path} holds a {type(state).__name__}, not a state_dict")
    return {_unprefixed(str(key)): value for key, value in state.items()}


def _unprefixed(key: str) -> str:
    for prefix in _PREFIXES:
        while key.startswith(prefix):
            key = key[len(prefix):]
    return key


def _shape(value: Any) -> str:
    return "×".join(map(str, value.shape)) if hasattr(value, "shape") else type(value).__name__


def _keys(keys: list[str]) -> str:
    return f"{len(keys)} key" + ("" if len(keys) == 1 else "s")


def _first(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")


def load_into(model: Any, path: str, strict: bool = True) -> list[str]:
    """Load the weights file into `model` (in place). Strict: every key of the model, no other, each of the
    same shape, else one error naming the first keys and their shapes. Not strict: the keys that match are
    loaded, and the returned notes list the missing and unexpected ones (a shape mismatch still refuses).
    On the meta device the keys and shapes are checked and nothing is copied (a meta tensor has no values)."""
    state = read_state_dict(path)
    own = model.state_dict()
    wrong = [f"{key} is {_shape(value)} in the file, {_shape(own[key])} in the model" for key, value in state.items()
             if key in own and hasattr(value, "shape") and tuple(value.shape) != tuple(own[key].shape)]
    missing = [f"{key} ({_shape(own[key])})" for key in own if key not in state]
    unexpected = [f"{key} ({_shape(state[key])})" for key in state if key not in own]
    problems = [f"{len(keys)} {what}: {_first(keys)}" for what, keys in (
        ("with another shape", wrong), ("missing", missing), ("unexpected", unexpected))
        if keys and (strict or what == "with another shape")]
    if problems:  # the first keys of each kind, and their shapes, in one line
        raise InspectlabError(f"{path} does not fit the model: {'; '.join(problems)}"
                              + ("" if not strict or wrong else " (--non-strict loads the keys that match)"))
    try:
        with quiet_meta_loads():
            model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=strict)
    except RuntimeError as exc:  # anything else load_state_dict refuses (a value that is not a tensor, ...)
        raise InspectlabError(f"{path} does not fit the model: {first_line(str(exc))}") from exc
    notes = []
    if missing:
        notes.append(f"{path}: {_keys(missing)} of the model not in the file (left as initialised): "
                     f"{_first(missing)}")
    if unexpected:
        notes.append(f"{path}: {_keys(unexpected)} of the file not in the model (ignored): {_first(unexpected)}")
    return notes


@contextlib.contextmanager
def quiet_meta_loads() -> Iterator[None]:
    """Loading into a model on the meta device copies nothing; torch warns once per tensor that it is a no-op."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter", category=UserWarning)
        yield
