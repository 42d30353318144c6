"""Shapes: the `Shape` type, "--input 1,3,480,480" parsing, and the "1×3×480×480" text of a shape."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from inspectlab.core.errors import InspectlabError

Shape = tuple[int, ...]
InputSize = Sequence[int] | Sequence[Sequence[int]]

IMAGENET: Shape = (1, 3, 224, 224)
SEGMENTATION: Shape = (1, 3, 512, 512)

_DIM = re.compile(r"^\s*(\d+)\s*$")


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


def as_shapes(input_size: InputSize) -> list[Shape]:
    """One shape (1, 3, 224, 224) or several [(1, 3, 224, 224), (1, 1, 224, 224)] as a list of shapes."""
    if input_size and isinstance(input_size[0], int):
        return [tuple(input_size)]  # type: ignore[arg-type]
    return [tuple(s) for s in input_size]  # type: ignore[union-attr]


def batched(shapes: Sequence[Shape], batch: int | None) -> list[Shape]:
    """The shapes with their first dimension replaced by `batch` (unchanged when None)."""
    return [tuple(shape) if batch is None else (batch, *shape[1:]) for shape in shapes]


def shape_text(shape: Any, separator: str = ", ") -> str:
    """[1, 3, 224, 224] -> "1×3×224×224"; several shapes joined by `separator`; floats as 2.5."""
    if shape is None:
        return ""
    if isinstance(shape, str):
        return shape
    if len(shape) and isinstance(shape[0], (list, tuple)):
        return separator.join(shape_text(s) for s in shape)
    return "×".join(f"{d:g}" if isinstance(d, float) else str(d) for d in shape)


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """"224,512,1024x2048" -> [(224, 224), (512, 512), (1024, 2048)] (H×W; one number: a square)."""
    sizes = []
    for part in (p.strip() for p in text.split(",")):
        dims = re.split(r"[x×]", part)
        if not part or not all(d.strip().isdigit() and int(d) > 0 for d in dims) or len(dims) > 2:
            raise InspectlabError(f"malformed --sizes {text!r}: give sizes such as 224,512 or 512x1024")
        sizes.append((int(dims[0]), int(dims[-1])))
    if not sizes:
        raise InspectlabError("--sizes is empty")
    return sizes
