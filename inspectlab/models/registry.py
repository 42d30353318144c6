"""The registry of model names, and the loader of model specs: what builds a model, not the building.

A spec is one of:
- a zoo name or alias (`unet`, `deeplabv3plus_resnet50`), built by its registered builder;
- `tv:NAME`, any torchvision model, built without weights (nothing is ever downloaded);
- `timm:NAME` and `smp:ARCH`, a timm model or a segmentation_models_pytorch network, likewise
  (`inspectlab.models.sources`: optional extras, imported only when such a spec is built);
- `hf:MODEL_TYPE`, a Hugging Face transformers model built from its config (`inspectlab.models.hf`, an
  optional extra too);
- `path/to/file.py:factory` or `package.module:factory`, a user's own model;
- `path/to/model.pt2` (`torch.export.save`) or a TorchScript archive (`torch.jit.save`), a saved model
  (`inspectlab.models.saved`: what a file holds is read from its zip entries; no code in it runs).

The table below is plain data, so that looking a name up does not import torch. `recipe(spec, args)` says
which callable builds a spec with which arguments; `inspectlab.tracing.build.run_builder` runs it (on the
meta device by default) and `inspectlab.workflows.models` puts the two together.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspectlab.core.errors import InspectlabError
from inspectlab.core.naming import did_you_mean
from inspectlab.core.shapes import IMAGENET, SEGMENTATION, InputSpec, Shape
from inspectlab.models import hf, saved, sources

if TYPE_CHECKING:
    from torch import nn



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


def lookup(name: str) -> ModelEntry:
    """The zoo entry for a name or alias; unknown names raise with the closest matches."""
    entry = _BY_NAME.get(name.lower())
    if entry is None:
        raise InspectlabError(f"unknown model {name!r}{did_you_mean(name, _BY_NAME)}")
    return entry


def default_input(spec: str, args: Mapping[str, Any] | None = None) -> Shape | list[InputSpec]:
    """The input a spec is analysed at when the user gives none: the zoo entry's shape, a timm model's own
    (its pretrained config), smp's 1×3×512×512 (DPT: its ViT encoder's size), an hf model's named main input
    (input specs: `pixel_values` from its config, `input_ids` 1×128 int64, ...; `args` is its config), else
    1×3×224×224; a `.pt2` file's example inputs. The timm, smp, hf and file ones import torch; zoo names import
    nothing."""
    if saved.is_model_file(spec):
        return saved.default_input(spec)
    if _is_zoo_name(spec):
        return lookup(spec).default_input
    if spec.startswith("timm:"):
        return sources.timm_default_input(spec[5:], spec)
    if spec.startswith("smp:"):
        return sources.smp_default_input(spec[4:], spec)
    if spec.startswith("hf:"):
        return hf.hf_default_input(spec[3:], args, spec)
    return IMAGENET


def _is_zoo_name(spec: str) -> bool:
    return ":" not in spec


@dataclass(frozen=True)
class Recipe:
    """How to build a spec: the callable, its keyword arguments, and the spec as the user wrote it. `loader`: the
    builder reads a saved model, places its tensors itself and returns (module, notes): `saved.load_model_file`."""

    builder: Callable[..., Any]
    kwargs: dict[str, Any]
    spec: str
    loader: bool = False


def recipe(spec: str, kwargs: Mapping[str, Any] | None = None) -> Recipe:
    """The builder of a zoo name, `tv:NAME`, `timm:NAME`, `smp:ARCH`, `hf:MODEL_TYPE` or `file.py:factory`, with
    its arguments checked (and those that would download weights refused); a saved model file's loader."""
    kwargs = dict(kwargs or {})
    if saved.is_model_file(spec):
        if kwargs:
            raise InspectlabError(f"{spec} is a saved model: it takes no --arg (got {', '.join(kwargs)})")
        saved.file_kind(spec)  # refuses what is no saved model before anything is built
        return Recipe(functools.partial(saved.load_model_file, spec), {}, spec, loader=True)
    if spec.startswith("tv:"):
        builder = _torchvision_builder(spec[3:], kwargs)
    elif spec.startswith("timm:"):
        builder = sources.timm_builder(spec[5:], kwargs, spec)
    elif spec.startswith("smp:"):
        builder = sources.smp_builder(spec[4:], kwargs, spec)
    elif spec.startswith("hf:"):
        builder = hf.hf_builder(spec[3:], kwargs, spec)
    elif _is_zoo_name(spec):
        entry = lookup(spec)
        builder, kwargs = entry.load_builder(), {**entry.kwargs, **kwargs}
    else:
        builder = _load_factory(spec)
    _check_kwargs(builder, kwargs, spec)
    return Recipe(builder, kwargs, spec)


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


def _torchvision_builder(name: str, kwargs: dict[str, Any]) -> Callable[..., Any]:
    from torchvision import models

    available = models.list_models()
    if name not in available:
        hint = "torchvision.models.list_models() names them all"
        raise InspectlabError(f"unknown torchvision model {name!r}{did_you_mean(name, available, hint)}")
    builder = models.get_model_builder(name)
    kwargs.setdefault("weights", None)  # nothing is ever downloaded
    if "weights_backbone" in inspect.signature(builder).parameters:
        kwargs.setdefault("weights_backbone", None)
    return builder


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
    """Import a user's file under a name unique to its path (two `net.py` in two folders do not collide),
    with its folder on sys.path only while it is imported, so that it imports its neighbours as
    `python file.py` would."""
    path = Path(location).expanduser()
    if not path.is_file():
        raise InspectlabError(f"no such file: {location}")
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    module_name = f"inspectlab_user_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"
    module_spec = importlib.util.spec_from_file_location(module_name, resolved)
    if module_spec is None or module_spec.loader is None:
        raise InspectlabError(f"cannot import {location}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module  # dataclasses and pickling look a module up by name
    try:
        with _on_path(str(resolved.parent)):
            module_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise InspectlabError(f"importing {location} failed: {type(exc).__name__}: {exc}") from exc
    return module


@contextlib.contextmanager
def _on_path(folder: str) -> Iterator[None]:
    """`folder` first on sys.path inside the block, and sys.path as it was afterwards."""
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)


def _import_module(location: str) -> Any:
    try:
        return importlib.import_module(location)
    except Exception as exc:
        raise InspectlabError(f"cannot import module {location!r}: {exc}") from exc
