"""Builder arguments: `--arg num_classes=21` and `deeplabv3plus_resnet50:output_stride=16` specs."""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from inspectlab.core.errors import InspectlabError
from inspectlab.core.shapes import quoted

_ARGS_START = re.compile(r":(?=\s*[A-Za-z_]\w*\s*=)")
_NEXT_ARG = re.compile(r",(?=\s*[A-Za-z_]\w*\s*=)")


def parse_builder_args(pairs: Iterable[str] | None) -> dict[str, Any]:
    """Parse ["num_classes=21", "bilinear=false"] into keyword arguments (Python literals, else strings)."""
    kwargs: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip().isidentifier():
            raise InspectlabError(f"malformed --arg {quoted(pair)}: expected key=value")
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
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):  # deep nesting: MemoryError
        return text


@dataclass(frozen=True)
class ModelChoice:
    """One model as a user wrote it: the label, the spec (or module) to build, its builder arguments."""

    label: str
    model: Any  # a spec string or an nn.Module
    args: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None  # a state_dict file for a spec's model


def parse_model(text: str) -> ModelChoice:
    """"deeplabv3plus_resnet50:output_stride=16" -> spec and arguments.

    The arguments start after the first colon that is directly followed by `name=`, so `tv:resnet50`,
    `file.py:factory` and `file.py:factory:depth=3` all read as expected; a value may hold colons and commas
    (`sizes=(1,2)`) but the next `,name=` starts a new argument.
    """
    text = text.strip()
    match = _ARGS_START.search(text)
    if match is None:
        if not text:
            raise InspectlabError("empty model spec")
        return ModelChoice(text, text)
    spec = text[: match.start()].strip()
    if not spec:
        raise InspectlabError(f"malformed model spec {text!r}: no model before the arguments")
    pairs = [pair.strip() for pair in _NEXT_ARG.split(text[match.end():])]
    return ModelChoice(text, spec, parse_builder_args(pairs))


def as_choice(model: Any) -> ModelChoice:
    """A ModelChoice from a spec string, a module, or a ModelChoice."""
    if isinstance(model, ModelChoice):
        return model
    if isinstance(model, str):
        return parse_model(model)
    return ModelChoice(type(model).__name__, model)







_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


def parse_floats(text: str, option: str) -> tuple[float, ...]:
    """"0.485,0.456,0.406" -> (0.485, 0.456, 0.406): finite numbers in ASCII digits (float() also takes
    "nan", "inf", "1_0" and Unicode digits)."""
    values = []
    for part in text.split(","):
        value = float(part) if _FLOAT.fullmatch(part.strip()) else math.nan
        if not math.isfinite(value):
            raise InspectlabError(f"malformed {option} {quoted(text)}: give numbers such as 0.485,0.456,0.406")
        values.append(value)
    return tuple(values)


_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?(?:e[0-9]+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE | re.ASCII)
MAX_BYTES = 2**63 - 1


def parse_bytes(text: str, option: str = "--max-bytes") -> int:
    """"2GB" -> 2_000_000_000, "1.5GiB" -> 1_610_612_736, "123456" -> 123456 (SI or binary prefixes), at
    most 2**63 - 1 bytes."""
    match = _SIZE.match(text)
    if not match:
        raise InspectlabError(f"malformed {option} {quoted(text)}: give bytes such as 2GB, 500MB, 1GiB or 123456")
    number, prefix, binary = match.groups()
    power = "kmgt".find(prefix.lower()) + 1 if prefix else 0
    value = float(number) * ((1024 if binary else 1000) ** power)
    if not value < MAX_BYTES:  # also inf (1e999)
        raise InspectlabError(f"{option} {quoted(text.strip())} is too large: at most {MAX_BYTES} bytes (8 EiB)")
    return int(value)
