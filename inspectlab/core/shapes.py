"""Shapes and input specs: the `Shape` type, the `InputSpec` of one model input (shape, dtype, keyword name),
"--input 1,3,480,480" / "--input input_ids=1,128:int64" parsing, and the "1×3×480×480" text of a shape."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from inspectlab.core.errors import InspectlabError

Shape = tuple[int, ...]

IMAGENET: Shape = (1, 3, 224, 224)
SEGMENTATION: Shape = (1, 3, 512, 512)

# "Too large": every dimension below 2**31 (what int32 index arithmetic holds) and at most 2**50 elements
# (≈1.1e15). A meta pass costs nothing per element, so 1×3×30000×30000 (2.7e9) is fine; the element cap
# leaves 2**13 of headroom for the activations (64 channels of float64 from 3 input channels, say) before a
# byte count outgrows int64, which is where torch gives up ("Storage size calculation overflowed").
MAX_DIM = 2**31 - 1
MAX_ELEMENTS = 2**50
_ASCII_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_TOO_MANY_DIGITS = 20  # past MAX_DIM and MAX_ELEMENTS; int() of thousands of digits would refuse, or be slow


def quoted(text: str, limit: int = 40) -> str:
    """repr(text) for an error message, cut to `limit` characters (a 5000-digit --input stays one short line)."""
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def ascii_int(text: str) -> int | None:
    """The non-negative integer that `text` spells in ASCII digits 0-9 (surrounding blanks allowed), else None.

    int() and str.isdigit() also take '²', '٣' and other Unicode digits; a number of the command line must
    not. A number of more than 20 digits is returned as 10**20 (larger than any limit here)."""
    digits = text.strip()
    if not _ASCII_DIGITS.fullmatch(digits):
        return None
    digits = digits.lstrip("0") or "0"
    return 10**_TOO_MANY_DIGITS if len(digits) > _TOO_MANY_DIGITS else int(digits)


def check_size(shape: Sequence[int], what: str) -> None:
    """Refuse a shape with a dimension of 2**31 or more, or more than 2**50 elements, naming `what`."""
    if any(d > MAX_DIM for d in shape):
        raise InspectlabError(f"{what} is too large: every dimension must be below 2**31 = {MAX_DIM + 1}")
    count = 1
    for d in shape:
        count *= d
    if count > MAX_ELEMENTS:
        raise InspectlabError(f"{what} is too large: {count:.3g} elements, at most 2**50 ≈ {MAX_ELEMENTS:.3g}")


def parse_shape(text: str) -> Shape:
    """Parse "1,3,480,480" (or "1x3x480x480") into a shape of positive integers (ASCII digits, see
    check_size for "too large")."""
    return _dims(text, text)


def _dims(shape: str, text: str) -> Shape:
    """The shape `shape` spells; errors quote the whole --input `text` it came from."""
    parts = re.split(r"[,x×]", shape.strip()) if shape and shape.strip() else []
    if not parts:
        if text and text.strip():
            raise InspectlabError(f"malformed --input {quoted(text)}: give a shape such as 1,3,224,224")
        raise InspectlabError("empty --input: give a shape such as 1,3,224,224")
    dims = []
    for part in parts:
        value = ascii_int(part)
        if value is None:
            raise InspectlabError(f"malformed --input {quoted(text)}: {quoted(part.strip())} is not a positive integer")
        dims.append(value)
    if any(d == 0 for d in dims):
        raise InspectlabError(f"malformed --input {quoted(text)}: every dimension must be at least 1")
    if len(dims) > 6:
        raise InspectlabError(f"malformed --input {quoted(text)}: at most 6 dimensions")
    check_size(dims, f"--input {quoted(text.strip())}")
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
        values = [ascii_int(d) for d in re.split(r"[x×]", part)]
        dims = [d for d in values if d is not None and d > 0]
        if not part or len(values) > 2 or len(dims) != len(values):
            raise InspectlabError(f"malformed --sizes {quoted(text)}: give sizes such as 224,512 or 512x1024")
        check_size((dims[0], dims[-1]), f"--sizes {quoted(part)}")
        sizes.append((dims[0], dims[-1]))
    if not sizes:
        raise InspectlabError("--sizes is empty")
    return sizes


def parse_batches(text: str | None) -> list[int] | None:
    """`--batch 1,8,32` -> [1, 8, 32] (positive integers in ASCII digits, each below 2**31); None stays None."""
    if text is None:
        return None
    sizes = []
    for part in text.split(","):
        value = ascii_int(part)
        if value is None or value < 1:
            raise InspectlabError(f"malformed --batch {quoted(text)}: give positive integers such as 1,8,32")
        check_size((value,), f"--batch {quoted(part.strip())}")
        sizes.append(value)
    return sizes
