"""Models from other libraries: `timm:NAME` and `smp:ARCH`, random init, and never a download.

Each library is an optional extra (`pip install 'inspectlab[timm]'`, `[smp]`), imported only inside these
functions, so that `import inspectlab`, `--help` and `inspectlab list` import neither it nor torch; a
missing one is one line naming its extra.

Nothing is downloaded, by construction of the arguments: timm's `create_model` gets `pretrained=False`, an
smp network gets `encoder_weights=None`, and an argument that would fetch a checkpoint (`pretrained=True`,
`encoder_weights=imagenet`, any `*weights*` argument naming a hub checkpoint, an `hf-hub:` name) is refused
in one line. A local file is the exception: timm loads `checkpoint_path=FILE` itself (`weights_only=True`),
and `encoder_weights=FILE` is loaded into the smp encoder after it is built. `tests/test_sources.py` builds
models with the network cut off.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from inspectlab.core.checkpoints import load_into, quiet_meta_loads
from inspectlab.core.errors import InspectlabError
from inspectlab.core.naming import did_you_mean
from inspectlab.core.shapes import IMAGENET, Shape

# smp's encoders downsample five times and its decoders add the skips back by shape, so H and W must be
# divisible by 32; 512 is such a size, and the zoo's segmentation default.
SMP_INPUT: Shape = (1, 3, 512, 512)

# What each spec's library is called on PyPI and which extra installs it.
_EXTRAS = {"timm": ("timm", "timm"), "segmentation_models_pytorch": ("segmentation-models-pytorch", "smp")}
_HUB_PREFIXES = ("hf-hub:", "hf_hub:")
_WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".npz")


def _require(module: str, spec: str) -> Any:
    """Import a source's library, or say in one line which extra installs it."""
    library, extra = _EXTRAS[module]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise InspectlabError(f"{spec} needs {library}: pip install 'inspectlab[{extra}]'") from exc
    except Exception as exc:  # installed but broken (a torch it was not built for, ...)
        raise InspectlabError(f"{spec}: importing {library} failed: {type(exc).__name__}: {exc}") from exc


def _is_local_file(value: Any) -> bool:
    return isinstance(value, (str, Path)) and Path(value).expanduser().is_file()


def _refuse_downloads(spec: str, kwargs: Mapping[str, Any], hint: str) -> None:
    """Refuse, in one line, any argument that would make the library fetch weights."""
    for key, value in kwargs.items():
        if value is None or value is False:
            continue
        if key == "pretrained":
            raise InspectlabError(f"{spec}: --arg pretrained={value!r} would download weights, and inspectlab "
                                  f"never downloads; {hint}")
        if (key == "checkpoint_path" or "weights" in key) and not _is_local_file(value):
            raise _weights_error(spec, key, value, hint)


def _weights_error(spec: str, key: str, value: Any, hint: str) -> InspectlabError:
    """"not a local file" for what reads as a path (a file suffix, or starting with / . ~), else the refusal
    (a hub name: `imagenet`, `org/repo`, True)."""
    looks_like_path = isinstance(value, (str, Path)) and (
        str(value).startswith(("/", ".", "~")) or Path(value).suffix in _WEIGHT_SUFFIXES)
    if key == "checkpoint_path" or looks_like_path:
        return InspectlabError(f"{spec}: --arg {key}={str(value)!r} is not a local file")
    return InspectlabError(f"{spec}: --arg {key}={value!r} names a checkpoint to download, and inspectlab never "
                           f"downloads; {hint}")


# ---------------------------------------------------------------------------------------------------- timm

_TIMM_HINT = "give a local file (--arg checkpoint_path=PATH) or none (random init counts the same)"


def timm_builder(name: str, kwargs: dict[str, Any], spec: str) -> Callable[..., Any]:
    """`timm.create_model` for `timm:NAME`; sets `pretrained=False` in `kwargs` (checked, never a download)."""
    if name.startswith(_HUB_PREFIXES):
        raise InspectlabError(f"{spec} names a Hugging Face Hub repository, and inspectlab never downloads; use a "
                              "timm architecture name (timm.list_models() names them all)")
    timm = _require("timm", spec)
    if not timm.is_model(name):
        hint = "timm.list_models() names them all"
        raise InspectlabError(f"unknown timm model {name!r}{did_you_mean(name, timm.list_models(), hint)}")
    _refuse_downloads(spec, kwargs, _TIMM_HINT)
    kwargs["pretrained"] = False
    return functools.partial(_create_timm, name)


def _create_timm(name: str, **kwargs: Any) -> Any:
    import timm

    with quiet_meta_loads():
        return timm.create_model(name, **kwargs)


def timm_default_input(name: str, spec: str) -> Shape:
    """The model's own input size (its pretrained config's `input_size`, e.g. 3×288×288 for efficientnet_b3)
    with batch 1; 1×3×224×224 when it has none. Building the model then reports an unknown name."""
    if name.startswith(_HUB_PREFIXES):
        return IMAGENET
    timm = _require("timm", spec)
    try:
        config = timm.models.get_pretrained_cfg(name)
    except Exception:  # an unknown tag ("resnet50.nope"): the build says so
        return IMAGENET
    size = getattr(config, "input_size", None)
    if not size or not all(isinstance(n, int) and n > 0 for n in size):
        return IMAGENET
    return (1, *size)


# ----------------------------------------------------------------------------------------------------- smp

_SMP_HINT = "give a local file (--arg encoder_weights=PATH) or none (random init counts the same)"


def smp_builder(arch: str, kwargs: dict[str, Any], spec: str) -> Callable[..., Any]:
    """The smp architecture class for `smp:ARCH` (any case); sets `encoder_weights=None` in `kwargs`. A local
    `encoder_weights` file is loaded into the encoder after it is built."""
    smp = _require("segmentation_models_pytorch", spec)
    architectures = _smp_architectures(smp)
    cls = architectures.get(arch.lower())
    if cls is None:
        names = {lower: architecture.__name__ for lower, architecture in architectures.items()}
        close = [names[n] for n in difflib.get_close_matches(arch.lower(), names, n=3, cutoff=0.5)]
        hint = f"did you mean {' or '.join(close)}?" if close else "its architectures: " + ", ".join(names.values())
        raise InspectlabError(f"unknown segmentation_models_pytorch architecture {arch!r}; {hint}")
    weights = kwargs.pop("encoder_weights", None)
    if weights is not None and weights is not False and not _is_local_file(weights):
        raise _weights_error(spec, "encoder_weights", weights, _SMP_HINT)
    _refuse_downloads(spec, kwargs, _SMP_HINT)
    kwargs["encoder_weights"] = None
    if weights is None or weights is False:
        return cls
    return functools.partial(_smp_with_encoder_file, cls, str(Path(weights).expanduser()))


def smp_default_input(arch: str, spec: str) -> Shape:
    """1×3×512×512 (`SMP_INPUT`), or for an architecture whose default encoder is a timm model (DPT's ViT,
    made for one input size) that model's own input size. Unknown names: the build says so."""
    try:
        cls = _smp_architectures(_require("segmentation_models_pytorch", spec)).get(arch.lower())
        encoder = inspect.signature(cls).parameters["encoder_name"].default if cls is not None else None
    except (InspectlabError, TypeError, ValueError, KeyError):
        return SMP_INPUT
    if isinstance(encoder, str) and encoder.startswith("tu-"):
        return timm_default_input(encoder[3:], spec)
    return SMP_INPUT


def _smp_architectures(smp: Any) -> dict[str, type]:
    mapping = getattr(smp, "MODEL_ARCHITECTURES_MAPPING", None)
    if isinstance(mapping, Mapping) and mapping:
        return dict(mapping)
    names = ("Unet", "UnetPlusPlus", "MAnet", "Linknet", "FPN", "PSPNet", "DeepLabV3", "DeepLabV3Plus", "PAN",
             "UPerNet", "Segformer", "DPT")
    return {name.lower(): getattr(smp, name) for name in names if hasattr(smp, name)}


def _smp_with_encoder_file(cls: type, path: str, **kwargs: Any) -> Any:
    """An smp network whose encoder gets the weights of a local file (strict: every key, every shape)."""
    model = cls(**kwargs)
    load_into(model.encoder, path)
    return model
