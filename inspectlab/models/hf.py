"""Hugging Face transformers models: `hf:MODEL_TYPE`, from a config, random init, never a download.

`hf:bert --arg num_hidden_layers=2` is `transformers.AutoConfig.for_model("bert", num_hidden_layers=2)`, then
`AutoModel.from_config(config)`; `--arg task=semantic-segmentation` (image-classification, object-detection,
masked-lm, ...) picks `AutoModelForSemanticSegmentation` instead. Every other `--arg` is a config argument.

transformers is an optional extra (`pip install 'inspectlab[hf]'`), imported only inside these functions, so
that `import inspectlab`, `--help` and `inspectlab list` import neither it nor torch; a missing one is one line
naming its extra.

Nothing is downloaded, by construction: `from_config` reads no checkpoint, and a config whose backbone would
load pretrained weights (DETR's timm backbone, `use_pretrained_backbone`) gets `use_pretrained_backbone=False`;
an argument asking for pretrained weights is refused in one line. `tests/test_hf.py` builds models with the
network cut off.

The default input is the model's main input (`main_input_name` of the class the task picks), named so that it
is passed as a keyword: `pixel_values` 1×C×H×W from the config's `num_channels` and `image_size` (512×512 when
the config has none: SegFormer, DETR), `input_ids` 1×128 int64 (fewer when the model has fewer positions),
`input_values` 1×16000 (one second of 16 kHz audio), Whisper's `input_features`; an encoder-decoder whose forward
takes `decoder_input_ids` gets those too, and a text-image model (CLIP) `pixel_values` from its vision config.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

from inspectlab.core.errors import InspectlabError, first_line
from inspectlab.core.naming import did_you_mean
from inspectlab.core.shapes import SEGMENTATION, InputSpec

TEXT_LENGTH = 128
AUDIO_SAMPLES = 16_000
_BASE_TASKS = ("", "base", "model", "none")
_SPECIAL_WORDS = {"lm": "LM", "ctc": "CTC", "seq2seq": "Seq2Seq", "xvector": "XVector", "rnnt": "RNNT", "tdt": "TDT"}


def _require(spec: str) -> Any:
    """Import transformers, or say in one line which extra installs it."""
    try:
        return importlib.import_module("transformers")
    except ModuleNotFoundError as exc:
        raise InspectlabError(f"{spec} needs transformers: pip install 'inspectlab[hf]'") from exc
    except Exception as exc:  # installed but broken
        raise InspectlabError(f"{spec}: importing transformers failed: {type(exc).__name__}: {exc}") from exc


def _task_key(text: str) -> str:
    return re.sub(r"[-_ ]", "", text.lower())


def _task_name(class_name: str) -> str:
    """"AutoModelForSemanticSegmentation" -> "semantic-segmentation", "AutoModelForMaskedLM" -> "masked-lm"."""
    words = re.findall(r"Seq2Seq|XVector|[A-Z]+(?![a-z])|[A-Z][a-z0-9]*", class_name.removeprefix("AutoModelFor"))
    return "-".join(word.lower() for word in words)


def _auto_classes(transformers: Any) -> dict[str, str]:
    """task name -> Auto class name, for every `AutoModelFor*` of the installed transformers."""
    return {_task_name(name): name for name in dir(transformers) if name.startswith("AutoModelFor")}


def _auto_class(transformers: Any, task: str | None, spec: str) -> Any:
    if task is None or _task_key(str(task)) in _BASE_TASKS:
        return transformers.AutoModel
    classes = _auto_classes(transformers)
    by_key = {_task_key(name): cls for name, cls in classes.items()}
    name = by_key.get(_task_key(str(task)))
    if name is None:
        hint = "its tasks: " + ", ".join(sorted(classes))
        raise InspectlabError(f"{spec}: unknown task {str(task)!r}{did_you_mean(str(task), classes, hint)}")
    return getattr(transformers, name)


def _config(transformers: Any, model_type: str, kwargs: Mapping[str, Any], spec: str) -> Any:
    mapping = transformers.CONFIG_MAPPING
    if model_type not in mapping:
        hint = "transformers.CONFIG_MAPPING names them all"
        raise InspectlabError(f"unknown transformers model type {model_type!r}"
                              f"{did_you_mean(model_type, list(mapping.keys()), hint)}")
    try:
        return transformers.AutoConfig.for_model(model_type, **kwargs)
    except Exception as exc:
        raise InspectlabError(f"{spec}: its config refused the arguments: {type(exc).__name__}: "
                              f"{first_line(str(exc))}") from exc


def _refuse_downloads(spec: str, kwargs: Mapping[str, Any]) -> None:
    for key, value in kwargs.items():
        if value in (None, False):
            continue
        if key in ("use_pretrained_backbone", "pretrained") or key.endswith("pretrained_model_name_or_path"):
            raise InspectlabError(f"{spec}: --arg {key}={value!r} would download weights, and inspectlab never "
                                  "downloads; a random init counts the same (load your own with --weights)")


def _offline(config: Any) -> None:
    """Make a config build without any download: no pretrained backbone, here or in a nested config."""
    for item in (config, getattr(config, "backbone_config", None)):
        if item is not None and getattr(item, "use_pretrained_backbone", False):
            item.use_pretrained_backbone = False
    kwargs = getattr(config, "backbone_kwargs", None)
    if isinstance(kwargs, dict) and kwargs.get("pretrained"):
        kwargs["pretrained"] = False


def _model_class(auto: Any, config: Any, spec: str, task: str | None) -> type:
    """The model class `auto` builds for `config`; one line when the model type has no such model."""
    try:
        return auto._model_mapping[type(config)]
    except KeyError:
        transformers = _require(spec)
        tasks = sorted(name for name, cls in _auto_classes(transformers).items()
                       if type(config) in getattr(transformers, cls)._model_mapping)
        shown = ["base", *tasks]
        listed = ", ".join(shown[:6]) + (f" and {len(shown) - 6} more" if len(shown) > 6 else "")
        raise InspectlabError(f"{spec} has no {task or 'base'} model in transformers; its tasks: {listed}") from None


def hf_builder(model_type: str, kwargs: dict[str, Any], spec: str) -> Callable[..., Any]:
    """The builder of `hf:MODEL_TYPE`: takes the config arguments; `task` (popped from `kwargs`) picks the
    Auto class. Checks the model type, the task and the arguments now, before anything is built."""
    transformers = _require(spec)
    task = kwargs.pop("task", None)
    _refuse_downloads(spec, kwargs)
    auto = _auto_class(transformers, task, spec)
    _model_class(auto, _config(transformers, model_type, kwargs, spec), spec, task)
    return functools.partial(_create, model_type, auto.__name__, spec)


def _create(model_type: str, auto_name: str, spec: str, **kwargs: Any) -> Any:
    transformers = _require(spec)
    config = _config(transformers, model_type, kwargs, spec)
    _offline(config)
    return getattr(transformers, auto_name).from_config(config)


def hf_default_input(model_type: str, args: Mapping[str, Any] | None, spec: str) -> list[InputSpec]:
    """The model's main input, named (a keyword of its forward), at a size its config allows (see the module's
    docstring); an input kind with no sensible default is one line asking for --input."""
    transformers = _require(spec)
    kwargs = dict(args or {})
    task = kwargs.pop("task", None)
    auto = _auto_class(transformers, task, spec)
    config = _config(transformers, model_type, kwargs, spec)
    cls = _model_class(auto, config, spec, task)
    main = getattr(cls, "main_input_name", "input_ids")
    specs = [_main_input(main, config, spec)]
    try:
        takes = inspect.signature(cls.forward).parameters
    except (TypeError, ValueError):
        takes = {}
    if main != "decoder_input_ids" and getattr(config, "is_encoder_decoder", False) and "decoder_input_ids" in takes:
        specs.append(InputSpec((1, _text_length(_decoder_config(config))), "int64", "decoder_input_ids"))
    vision = getattr(config, "vision_config", None)
    if main == "input_ids" and vision is not None and "pixel_values" in takes:  # a text-image model (CLIP)
        specs.append(_main_input("pixel_values", vision, spec))
    return specs


def _main_input(main: str, config: Any, spec: str) -> InputSpec:
    if main == "pixel_values":
        size = getattr(config, "image_size", None)
        if isinstance(size, int):
            height = width = size
        elif isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(n, int) for n in size):
            height, width = size
        else:
            height, width = SEGMENTATION[2:]
        channels = getattr(config, "num_channels", 3)
        return InputSpec((1, channels if isinstance(channels, int) else 3, height, width), None, main)
    if main == "input_ids":
        return InputSpec((1, _text_length(config)), "int64", main)
    if main == "input_values":
        return InputSpec((1, AUDIO_SAMPLES), None, main)
    if main == "input_features" and isinstance(getattr(config, "num_mel_bins", None), int) \
            and isinstance(getattr(config, "max_source_positions", None), int):
        return InputSpec((1, config.num_mel_bins, 2 * config.max_source_positions), None, main)
    raise InspectlabError(f"{spec}: no default for its main input {main!r}; give it with "
                          f"--input {main}=SHAPE[:DTYPE]")


def _text_length(config: Any) -> int:
    """128 tokens, or fewer when the model has fewer positions."""
    text = getattr(config, "text_config", None)
    limits = [getattr(item, key, None) for item in (config, text) if item is not None
              for key in ("max_position_embeddings", "n_positions", "max_target_positions")]
    known = [n for n in limits if isinstance(n, int) and n > 0]
    return min([TEXT_LENGTH, *known])


def _decoder_config(config: Any) -> Any:
    decoder = getattr(config, "decoder", None)
    return decoder if decoder is not None and not isinstance(decoder, (dict, str)) else config
