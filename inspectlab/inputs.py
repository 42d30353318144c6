"""Input specifications: "--input 1,3,480,480" parsing and example tensors built from them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from inspectlab.errors import InspectlabError

if TYPE_CHECKING:
    import torch

Shape = tuple[int, ...]

_DIM = re.compile(r"^\s*(\d+)\s*$")
DTYPES = ("float32", "float16", "bfloat16", "float64")


def parse_shape(text: str) -> Shape:
    """Parse "1,3,480,480" (or "1x3x480x480") into a shape of positive integers."""
    parts = re.split(r"[,x×]", text.strip()) if text and text.strip() else []
    if not parts:
        raise InspectlabError("empty --input: give a shape such as 1,3,224,224")
    dims = []
    for part in parts:
        match = _DIM.match(part)
        if not match:
            raise InspectlabError(f"malformed --input {text!r}: {part.strip()!r} is not a positive integer")
        dims.append(int(match.group(1)))
    if any(d == 0 for d in dims):
        raise InspectlabError(f"malformed --input {text!r}: every dimension must be at least 1")
    if len(dims) > 6:
        raise InspectlabError(f"malformed --input {text!r}: at most 6 dimensions")
    return tuple(dims)


def parse_shapes(texts: Sequence[str]) -> list[Shape]:
    """Parse each repeated --input option."""
    return [parse_shape(text) for text in texts]


def torch_dtype(name: str) -> torch.dtype:
    """Map a dtype name ("float16", "fp16", "half", ...) to a torch dtype."""
    import torch

    aliases = {"fp32": "float32", "float": "float32", "fp16": "float16", "half": "float16",
               "bf16": "bfloat16", "fp64": "float64", "double": "float64"}
    canonical = aliases.get(name.lower(), name.lower())
    if canonical not in DTYPES:
        raise InspectlabError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return getattr(torch, canonical)


def example_inputs(shapes: Sequence[Shape], dtype: str = "float32", device: str = "meta") -> list[torch.Tensor]:
    """Random (or, on meta, shape-only) tensors with the given shapes."""
    import torch

    kind = torch_dtype(dtype)
    return [torch.randn(shape, dtype=kind, device=device) for shape in shapes]
