"""The registry of model names, and the loader of model specs.

A spec is one of:
- a zoo name or alias (`unet`, `deeplabv3plus_resnet50`), built by its registered builder;
- `tv:NAME`, any torchvision model, built without weights (nothing is ever downloaded);
- `path/to/file.py:factory` or `package.module:factory`, a user's own model.

The table below is plain data, so that looking a name up does not import torch.
"""

from __future__ import annotations

import ast
import difflib
import functools
import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspectlab.errors import InspectlabError

if TYPE_CHECKING:
    from torch import nn

Shape = tuple[int, ...]
IMAGENET: Shape = (1, 3, 224, 224)
SEGMENTATION: Shape = (1, 3, 512, 512)


@dataclass(frozen=True)
class ModelEntry:
    """One zoo model: its name, where its builder lives, and the arguments the name fixes."""

    name: str
    family: str
    builder: str  # "module:function"
    default_input: Shape
    description: str
    aliases: tuple[str, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def load_builder(self) -> Callable[..., nn.Module]:
        module_name, function_name = self.builder.split(":")
        return getattr(importlib.import_module(module_name), function_name)


def _entry(name: str, family: str, builder: str, shape: Shape, description: str, *aliases: str,
           **kwargs: Any) -> ModelEntry:
    return ModelEntry(name, family, f"inspectlab.models.{builder}", shape, description, aliases, kwargs)


def _deeplab_entries() -> list[ModelEntry]:
    backbones = {
        "resnet50": "ResNet-50", "resnet101": "ResNet-101", "mobilenet_v3_large": "MobileNetV3-Large",
        "hrnetv2_w32": "HRNetV2-W32", "hrnetv2_w48": "HRNetV2-W48",
    }
    entries = []
    for head, title, detail in (
        ("deeplabv3", "DeepLabV3", "ASPP head"),
        ("deeplabv3plus", "DeepLabV3+", "ASPP + low-level decoder"),
    ):
        for backbone, backbone_title in backbones.items():
            entries.append(_entry(
                f"{head}_{backbone}", "deeplab", f"deeplab:{head}", SEGMENTATION,
                f"{title} on {backbone_title}, {detail}, 21 classes", backbone=backbone,
            ))
    return entries


ZOO: tuple[ModelEntry, ...] = (
    _entry("lenet5", "lenet", "lenet:lenet5", (1, 1, 32, 32), "LeNet-5, the smallest example (LeCun 1998)",
           "lenet"),
    *(
        _entry(f"resnet{depth}", "resnet", f"resnet:resnet{depth}", IMAGENET,
               f"ResNet-{depth} classifier (He et al. 2016), torchvision-compatible")
        for depth in (18, 34, 50, 101, 152)
    ),
    _entry("mobilenet_v3_large", "mobilenetv3", "mobilenetv3:mobilenet_v3_large", IMAGENET,
           "MobileNetV3-Large classifier (Howard et al. 2019), torchvision-compatible", "mobilenetv3_large"),
    _entry("mobilenet_v3_small", "mobilenetv3", "mobilenetv3:mobilenet_v3_small", IMAGENET,
           "MobileNetV3-Small classifier (Howard et al. 2019), torchvision-compatible", "mobilenetv3_small"),
    _entry("lraspp_mobilenet_v3_large", "mobilenetv3", "mobilenetv3:lraspp_mobilenet_v3_large", SEGMENTATION,
           "Lite R-ASPP segmentation on MobileNetV3-Large, 21 classes", "lraspp"),
    *(
        _entry(f"hrnetv2_w{width}", "hrnet", f"hrnet:hrnetv2_w{width}", IMAGENET,
               f"HRNetV2-W{width} classifier (Wang et al. 2020)", f"hrnet_w{width}")
        for width in (18, 32, 48)
    ),
    _entry("unet", "unet", "unet:unet", SEGMENTATION,
           "UNet, bilinear upsampling, 2 classes (Ronneberger et al. 2015)"),
    _entry("unet_transposed", "unet", "unet:unet", SEGMENTATION,
           "UNet, transposed-conv upsampling, 2 classes", bilinear=False),
    *_deeplab_entries(),
    _entry("matting_mobilenetv3", "matting", "matting:matting_network", SEGMENTATION,
           "Robust Video Matting style network, MobileNetV3-Large encoder (Lin et al. 2022)",
           "matting", "rvm", "rvm_mobilenetv3", variant="mobilenetv3"),
    _entry("matting_resnet50", "matting", "matting:matting_network", SEGMENTATION,
           "Robust Video Matting style network, ResNet-50 encoder", "rvm_resnet50", variant="resnet50"),
)

_BY_NAME: dict[str, ModelEntry] = {
    key: entry for entry in ZOO for key in (entry.name, *entry.aliases)
}


def list_entries() -> tuple[ModelEntry, ...]:
    """Every zoo entry, in display order."""
    return ZOO


def zoo_rows() -> list[dict[str, Any]]:
    """One row per zoo model: name, family, params, default input, description, aliases.

    Params are counted on the meta device (no weights allocated) and remembered in the user's cache
    folder, keyed by the zoo's source and torch's version: a later call needs no torch import.
    """
    params = _zoo_param_counts()
    return [
        {
            "name": entry.name,
            "family": entry.family,
            "params": params[entry.name],
            "default_input": list(entry.default_input),
            "description": entry.description,
            "aliases": list(entry.aliases),
        }
        for entry in ZOO
    ]


def cache_dir() -> Path:
    """Where inspectlab keeps derived data: $XDG_CACHE_HOME/inspectlab, else ~/.cache/inspectlab."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "inspectlab"


def _zoo_param_counts() -> dict[str, int]:
    path = cache_dir() / "zoo_params.json"
    key = _zoo_fingerprint()
    try:
        stored = json.loads(path.read_text())
        if stored["key"] == key and all(isinstance(stored["params"][e.name], int) for e in ZOO):
            return stored["params"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no cache yet, or a stale or damaged one: count again
    from inspectlab.analysis.params import count_params
    from inspectlab.render.formats import write_atomic

    counts = {entry.name: count_params(build_model(entry.name)).total for entry in ZOO}
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


def lookup(name: str) -> ModelEntry:
    """The zoo entry for a name or alias; unknown names raise with the closest matches."""
    entry = _BY_NAME.get(name.lower())
    if entry is None:
        raise InspectlabError(f"unknown model {name!r}{did_you_mean(name, _BY_NAME)}")
    return entry


def did_you_mean(word: str, candidates: Iterable[str],
                 hint: str = "run `inspectlab list` for the zoo, or use tv:NAME or file.py:factory") -> str:
    """A "; did you mean X?" suffix naming the closest candidates, else "; " + hint."""
    close = difflib.get_close_matches(word.lower(), list(candidates), n=3, cutoff=0.5)
    if close:
        return "; did you mean " + " or ".join(close) + "?"
    return f"; {hint}"


def parse_builder_args(pairs: Iterable[str]) -> dict[str, Any]:
    """Parse ["num_classes=21", "bilinear=false"] into keyword arguments (Python literals, else strings)."""
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip().isidentifier():
            raise InspectlabError(f"malformed --arg {pair!r}: expected key=value")
        kwargs[key.strip()] = _literal(raw.strip())
    return kwargs


def _literal(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def default_input(spec: str) -> Shape:
    """The input shape a spec is analysed at when the user gives none."""
    if _is_zoo_name(spec):
        return lookup(spec).default_input
    return IMAGENET


def _is_zoo_name(spec: str) -> bool:
    return ":" not in spec


def build_model(spec: str, kwargs: Mapping[str, Any] | None = None, device: str = "meta") -> nn.Module:
    """Build the model named by a spec on `device` (meta: no weights allocated), in eval mode."""
    kwargs = dict(kwargs or {})
    if spec.startswith("tv:"):
        model = _build_torchvision(spec[3:], kwargs, device)
    elif _is_zoo_name(spec):
        entry = lookup(spec)
        model = _call_builder(entry.load_builder(), {**entry.kwargs, **kwargs}, device, spec)
    else:
        model = _call_builder(_load_factory(spec), kwargs, device, spec)
    return model.eval()


def _call_builder(builder: Callable[..., Any], kwargs: dict[str, Any], device: str, spec: str) -> nn.Module:
    from torch import nn

    _check_kwargs(builder, kwargs, spec)
    try:
        with _build_context(device):
            model = builder(**kwargs)
    except InspectlabError:
        raise
    except Exception as exc:  # the user's factory: report its message, not our traceback
        if device == "meta":
            return _call_builder(builder, kwargs, "cpu", spec)
        raise InspectlabError(f"building {spec!r} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise InspectlabError(f"{spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


# In-place ops that change a tensor's metadata (shape, storage, autograd flag), not its values:
# they must run on meta tensors too.
_METADATA_OPS = frozenset({
    "requires_grad_", "resize_", "resize_as_", "set_", "squeeze_", "unsqueeze_", "t_", "transpose_",
    "swapdims_", "swapaxes_", "as_strided_", "detach_", "rename_",
})


@functools.lru_cache(maxsize=1)
def _build_context_class() -> type:
    from torch.utils._device import DeviceContext, _device_constructors

    class BuildContext(DeviceContext):
        """`with torch.device(d)` in one torch-function mode, plus: in-place ops that only set values
        (initialisers) do nothing on meta tensors. A meta tensor has no values, and some initialisers
        (normal_) would make torch import its decompositions (a second). One mode, not two stacked:
        building the zoo makes ~90k torch calls, each paying every active mode."""

        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            if func in _device_constructors():
                if kwargs.get("device") is None:
                    kwargs["device"] = self.device
                return func(*args, **kwargs)
            name = getattr(func, "__name__", "")
            if name.endswith("_") and not name.startswith("__") and name not in _METADATA_OPS:
                target = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
                if getattr(target, "is_meta", False):
                    return target
            return func(*args, **kwargs)

    return BuildContext


def _build_context(device: str) -> Any:
    """The context a builder runs in: new tensors on `device`, no initialisation of meta tensors."""
    return _build_context_class()(device)


def _check_kwargs(builder: Callable[..., Any], kwargs: Mapping[str, Any], spec: str) -> None:
    try:
        parameters = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    for key in kwargs:
        if key not in parameters:
            valid = ", ".join(parameters) or "none"
            raise InspectlabError(f"{spec!r} takes no argument {key!r}; its arguments: {valid}")


def _build_torchvision(name: str, kwargs: dict[str, Any], device: str) -> nn.Module:
    from torchvision import models

    available = models.list_models()
    if name not in available:
        hint = "torchvision.models.list_models() names them all"
        raise InspectlabError(f"unknown torchvision model {name!r}{did_you_mean(name, available, hint)}")
    builder = models.get_model_builder(name)
    kwargs.setdefault("weights", None)
    if "weights_backbone" in inspect.signature(builder).parameters:
        kwargs.setdefault("weights_backbone", None)
    return _call_builder(builder, kwargs, device, f"tv:{name}")


def _load_factory(spec: str) -> Callable[..., Any]:
    location, _, attribute = spec.rpartition(":")
    if not location or not attribute.isidentifier():
        raise InspectlabError(f"malformed model spec {spec!r}: expected path/to/file.py:factory")
    module = _load_file(location) if location.endswith(".py") else _import_module(location)
    factory = getattr(module, attribute, None)
    if factory is None or not callable(factory):
        raise InspectlabError(f"{location} has no callable {attribute!r}")
    return factory


def _load_file(location: str) -> Any:
    path = Path(location).expanduser()
    if not path.is_file():
        raise InspectlabError(f"no such file: {location}")
    module_name = f"inspectlab_user_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise InspectlabError(f"cannot import {location}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    folder = str(path.resolve().parent)
    if folder not in sys.path:  # so that the file imports its neighbours, as `python file.py` would
        sys.path.insert(0, folder)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        raise InspectlabError(f"importing {location} failed: {type(exc).__name__}: {exc}") from exc
    return module


def _import_module(location: str) -> Any:
    try:
        return importlib.import_module(location)
    except Exception as exc:
        raise InspectlabError(f"cannot import module {location!r}: {exc}") from exc
