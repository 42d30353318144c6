"""Saved models as model specs: a `torch.export` archive (`model.pt2`, `torch.export.save`), a TorchScript archive
(`torch.jit.save`), and the one-line refusal of anything else (a pickled whole module, a state_dict, ...).

What a file is, is read from its zip entries before anything is loaded, and no code in it runs:

- a PT2 archive (`<root>/archive_format` holds "pt2") is loaded with `torch.export.load`, after checking that
  nothing in it would be unpickled with `weights_only=False` (torch.export.load falls back to full pickle for
  tensor subclasses, custom objects and sample inputs that a restricted load refuses: such a file is refused).
  It is unflattened (`torch.export.unflatten`): one submodule per module of the exported model, called as the
  model called them, so every hook-based analysis sees the model's own hierarchy; each submodule is given the
  class name its nodes' `nn_module_stack` records (`Conv2d`, `BasicBlock`), not torch's `InterpreterModule`.
  Its example inputs (`data/sample_inputs/`, read with `weights_only=True`) are the default `--input`.
- a TorchScript archive (`<root>/constants.pkl` and `<root>/code/`) is loaded with `torch.jit.load`, on the
  device asked for (the meta device included: a ScriptModule runs there, without hooks, as a whole).
- a `torch.save` file (`<root>/data.pkl`, or a bare pickle) is read with `torch.load(weights_only=True)` only to
  say what it holds: a state_dict (give the model and `--weights`) or a pickled object, such as a whole module
  saved with `torch.save(model)`, which only a full unpickling (running code from the file) could load.

torch (and zipfile, json, logging) are imported inside the functions: `registry` imports this module, and
`inspectlab list` and `--help` must stay torch-free and fast.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspectlab.core.errors import InspectlabError, first_line
from inspectlab.core.shapes import IMAGENET, INPUT_DTYPES, InputSpec

if TYPE_CHECKING:
    from torch import nn

# The suffixes a spec names a saved model by (a zoo name has none; `file.py:factory` has a colon).
MODEL_FILE_SUFFIXES = (".pt2", ".pt", ".pth", ".ts", ".jit", ".ckpt", ".bin", ".pkl", ".safetensors")
_PICKLE_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_RESAVE = ("Save the model with torch.export.save (a .pt2 file) or torch.jit.save, or give its factory "
           "(file.py:factory) and --weights with its state_dict.")


def is_model_file(spec: str) -> bool:
    """Whether a spec names a saved model: a path ending in one of MODEL_FILE_SUFFIXES, with no colon."""
    return ":" not in spec and spec.lower().endswith(MODEL_FILE_SUFFIXES)


def file_kind(spec: str) -> str:
    """"export" (a PT2 archive) or "torchscript", from the file's zip entries; anything else is refused in one
    line saying what it holds."""
    import zipfile

    path = Path(spec).expanduser()
    if not path.is_file():
        raise InspectlabError(f"no such model file: {spec}")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            records = _records(archive)
            if records.get("archive_format") is not None and archive.read(records["archive_format"]) == b"pt2":
                if not any(name.startswith("models/") and name.endswith(".json") for name in records):
                    raise InspectlabError(f"{spec} is a PT2 archive without an exported program (an AOTInductor "
                                          "package holds compiled code only): give the torch.export.save file")
                return "export"
            if "constants.pkl" in records and any(name.startswith("code/") for name in records):
                return "torchscript"
    if path.suffix.lower() == ".safetensors":
        raise InspectlabError(f"{spec} holds weights only, not a model: give the model's spec and this file as "
                              "--weights")
    raise _what_it_holds(spec)


def _records(archive: Any) -> dict[str, str]:
    """A torch archive's records by name, without the folder every entry is in (the archive's root)."""
    return {name.split("/", 1)[1]: name for name in archive.namelist() if "/" in name}


def _what_it_holds(spec: str) -> InspectlabError:
    """The refusal of a file that is no saved model, read with `torch.load(weights_only=True)` (no code runs)."""
    import pickle

    import torch

    try:
        value = torch.load(Path(spec).expanduser(), map_location="cpu", weights_only=True)
    except Exception as exc:
        found = _PICKLE_GLOBAL.search(str(exc)) if isinstance(exc, pickle.UnpicklingError) else None
        if found:  # the restricted unpickler met a class or function it does not allow
            return InspectlabError(f"{spec} is a pickled {found.group(1)} (torch.save(model)): loading it would run "
                                   "code from the file; save it with torch.export.save or torch.jit.save. Or give its "
                                   "factory (file.py:factory) and its state_dict as --weights.")
        return InspectlabError(f"{spec} is not a model file inspectlab reads (a torch.export .pt2 or a TorchScript "
                               "archive), nor a torch.save file")
    if isinstance(value, Mapping):
        return InspectlabError(f"{spec} holds a state_dict (weights), not a model: give the model's spec and this "
                               "file as --weights")
    return InspectlabError(f"{spec} holds a {type(value).__name__}, not a model. {_RESAVE}")


def load_model_file(spec: str, device: str = "meta") -> tuple[nn.Module, list[str]]:
    """The module a saved model file holds, and notes on what its analysis cannot see. A TorchScript archive is
    loaded on `device`; an exported program's weights are read on the CPU (a pass on meta replaces them with meta
    stand-ins) and moved to another real device."""
    if file_kind(spec) == "torchscript":
        return _load_torchscript(spec, device), []
    return _load_exported(spec, device)


@contextlib.contextmanager
def _quiet_jit() -> Iterator[None]:
    """torch.jit.load warns that TorchScript is deprecated: it is still what reads the archive."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.", FutureWarning)
        yield


def _load_torchscript(spec: str, device: str) -> nn.Module:
    import torch

    with _quiet_jit():
        return torch.jit.load(str(Path(spec).expanduser()), map_location=device)


# ---------------------------------------------------------------------------------------------- torch.export


@contextlib.contextmanager
def _quiet_export_log() -> Iterator[None]:
    """torch.export.load logs a whole traceback before it raises on a file it cannot read: the error is one line."""
    import logging

    logger = logging.getLogger("torch.export")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _load_exported(spec: str, device: str) -> tuple[nn.Module, list[str]]:
    import torch

    _refuse_pickles(spec)
    try:
        with _quiet_export_log():
            program = torch.export.load(str(Path(spec).expanduser()))
    except Exception as exc:
        raise InspectlabError(f"torch.export.load cannot read {spec}: {type(exc).__name__}: "
                              f"{first_line(str(exc))}") from exc
    notes: list[str] = []
    try:
        module: nn.Module = torch.export.unflatten(program)
        _name_types(module, program)
    except Exception as exc:  # the flat graph: totals right, one row
        module = program.module(check_guards=False)
        for name in ("train", "eval"):  # torch refuses both on the flat graph, whose behaviour is fixed anyway
            vars(module).pop(name, None)
        _name_types(module, program)
        notes.append(f"torch.export.unflatten cannot rebuild {spec}'s module hierarchy ({type(exc).__name__}: "
                     f"{first_line(str(exc))}): analysed as one flat graph (its totals, no per-layer rows)")
    if device not in ("meta", "cpu"):
        module = module.to(device)
    return module, notes


def _name_types(module: nn.Module, program: Any) -> None:
    """Give each unflattened submodule the class name of the module it stands for, from the `nn_module_stack` of
    the graph's nodes ("torchvision.models.resnet.BasicBlock" -> BasicBlock), as a subclass of its own class."""
    types: dict[str, str] = {}
    for node in program.graph.nodes:
        for path, kind in (node.meta.get("nn_module_stack") or {}).values():
            types.setdefault(str(path), str(getattr(kind, "__name__", kind)).rsplit(".", 1)[-1])
    for name, submodule in module.named_modules():
        kind = types.get(name)
        if kind and kind.isidentifier() and kind != type(submodule).__name__:
            submodule.__class__ = _named_class(type(submodule), kind)


_NAMED: dict[tuple[type, str], type] = {}


def _named_class(base: type, name: str) -> type:
    key = (base, name)
    if key not in _NAMED:
        _NAMED[key] = type(name, (base,), {"__module__": base.__module__, "__doc__": f"{name}, from torch.export"})
    return _NAMED[key]


def _refuse_pickles(spec: str) -> None:
    """Refuse a PT2 archive that torch.export.load would unpickle in full (running code from the file): a tensor
    or sample inputs that `torch.load(weights_only=True)` refuses, a custom or opaque object."""
    import json
    import zipfile

    with zipfile.ZipFile(Path(spec).expanduser()) as archive:
        records = _records(archive)
        models = [name[len("models/"):-len(".json")] for name in records
                  if name.startswith("models/") and name.endswith(".json")]
        for model in models:
            pickled = [f"data/sample_inputs/{model}.pt", f"data/weights/{model}.pt", f"data/constants/{model}.pt"]
            for folder, config in (("data/weights/", f"data/weights/{model}_weights_config.json"),
                                   ("data/constants/", f"data/constants/{model}_constants_config.json")):
                entries = json.loads(archive.read(records[config])).get("config", {}) if config in records else {}
                for entry in entries.values():
                    file = str(entry.get("path_name", ""))
                    if file.startswith(("custom_obj_", "opaque_obj_")):
                        raise InspectlabError(f"{spec}: {folder}{file} is a pickled Python object, and loading it "
                                              "would run code from the file. inspectlab refuses such files.")
                    if entry.get("use_pickle"):
                        pickled.append(folder + file)
            for record in pickled:
                if record in records and not _loads_restricted(archive.read(records[record])):
                    raise InspectlabError(f"{spec}: {record} is a pickle that torch.export.load would load in "
                                          "full, running code from the file. inspectlab refuses such files.")


def _loads_restricted(payload: bytes) -> bool:
    import io

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Detected pickle protocol 4": the refusal below says what matters
            torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception:
        return False
    return True


def default_input(spec: str) -> list[InputSpec] | tuple[int, ...]:
    """An exported program's example inputs (positional ones in order, keyword ones by name; a float32 tensor
    follows the command's --dtype), else 1×3×224×224 (a TorchScript archive records none)."""
    if file_kind(spec) != "export":
        return IMAGENET
    args, kwargs = _sample_inputs(spec)
    specs = [_input_spec(value, None, spec, f"input {index}") for index, value in enumerate(args)]
    specs += [_input_spec(value, str(key), spec, f"input {key!r}") for key, value in kwargs.items()]
    return specs


def _sample_inputs(spec: str) -> tuple[list[Any], dict[str, Any]]:
    import io
    import zipfile

    import torch

    with zipfile.ZipFile(Path(spec).expanduser()) as archive:
        records = _records(archive)
        record = next((name for name in records if name.startswith("data/sample_inputs/")), None)
        if record is None:
            raise InspectlabError(f"{spec} records no example inputs: give them with --input or --input-file")
        try:
            loaded = torch.load(io.BytesIO(archive.read(records[record])), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise InspectlabError(f"{spec}: its example inputs cannot be read with weights_only=True "
                                  f"({first_line(str(exc))}): give them with --input or --input-file") from exc
    if not (isinstance(loaded, tuple) and len(loaded) == 2 and isinstance(loaded[1], Mapping)):
        raise InspectlabError(f"{spec}: its example inputs are not (args, kwargs): give them with --input-file")
    return list(loaded[0]), dict(loaded[1])


def _input_spec(value: Any, name: str | None, spec: str, what: str) -> InputSpec:
    import torch

    if not isinstance(value, torch.Tensor):
        raise InspectlabError(f"{spec}: example {what} is a {type(value).__name__}, not a tensor, and --input makes "
                              "up tensors only: give the inputs with --input-file")
    dtype = str(value.dtype).removeprefix("torch.")
    if dtype not in INPUT_DTYPES:
        raise InspectlabError(f"{spec}: example {what} is {dtype}, which --input cannot make up: give the inputs "
                              "with --input-file")
    return InputSpec(tuple(value.shape), None if dtype == "float32" else dtype, name)
