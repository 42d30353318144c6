"""Shapes and input specs: the `Shape` type, the `InputSpec` of one model input (shape, dtype, keyword name),
"--input 1,3,480,480" / "--input input_ids=1,128:int64" parsing, and the "1×3×480×480" text of a shape."""

from __future__ import annotations

import operator
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


# ------------------------------------------------------------------------------------------------ input specs
FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")
INPUT_DTYPES = (*FLOAT_DTYPES, "int64", "int32", "int16", "int8", "uint8", "bool")
DTYPE_ALIASES = {"fp32": "float32", "float": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16",
                 "fp64": "float64", "double": "float64", "long": "int64", "int": "int32", "short": "int16"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)


def dtype_name(text: str, what: str = "dtype") -> str:
    """The canonical name of an input dtype ("fp16" -> "float16", "long" -> "int64"); unknown ones raise."""
    canonical = DTYPE_ALIASES.get(text.strip().lower(), text.strip().lower())
    if canonical not in INPUT_DTYPES:
        raise InspectlabError(f"unknown {what} {quoted(text.strip())}; choose one of {', '.join(INPUT_DTYPES)}")
    return canonical


@dataclass(frozen=True)
class InputSpec:
    """One input of the model's forward, to be made up: its shape, its dtype (None: the command's own, float32
    unless --dtype says otherwise) and the keyword it is passed under (None: positional, in order).

    Floating inputs are standard-normal (seeded) on a real device, shape-only on meta; integer and bool inputs
    are zeros (a valid index of any embedding, a mask that masks nothing)."""

    shape: Shape
    dtype: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        given = tuple(self.shape)
        try:
            shape = tuple(operator.index(d) for d in given if not isinstance(d, bool))
        except TypeError:
            shape = ()
        if len(shape) != len(given) or not all(d >= 1 for d in shape):
            raise InspectlabError(f"input {list(given)}: every dimension must be an integer of at least 1")
        object.__setattr__(self, "shape", shape)
        if self.dtype is not None:
            object.__setattr__(self, "dtype", dtype_name(self.dtype, "input dtype"))
        if self.name is not None and not _NAME.fullmatch(self.name):
            raise InspectlabError(f"input name {quoted(str(self.name))} is not a keyword argument name")

    @property
    def floating(self) -> bool:
        """Whether the input is made of floats (and so may be resized, cast, drawn at random)."""
        return self.dtype is None or self.dtype in FLOAT_DTYPES

    @property
    def plain(self) -> bool:
        """A bare shape: positional, of the command's dtype."""
        return self.dtype is None and self.name is None

    def resized(self, shape: Sequence[int]) -> InputSpec:
        return replace(self, shape=tuple(shape))

    def text(self) -> str:
        """"1×3×224×224", "input_ids=1×128:int64": the --input syntax, with × for the separators."""
        name = f"{self.name}=" if self.name else ""
        return name + shape_text(self.shape) + (f":{self.dtype}" if self.dtype else "")


# What the API takes as `input_size`: one shape, one InputSpec, or a list of shapes and specs.
InputSize = Sequence[int] | InputSpec | Sequence[Sequence[int] | InputSpec]


def parse_input(text: str) -> InputSpec:
    """Parse one --input: `[NAME=]SHAPE[:DTYPE]`, e.g. "1,3,224,224", "1,128:int64",
    "attention_mask=1,128:bool" (dtypes: INPUT_DTYPES and DTYPE_ALIASES)."""
    body = text.strip() if text else ""
    name = None
    head, sep, rest = body.partition("=")
    if sep:
        if not _NAME.fullmatch(head.strip()):
            raise InspectlabError(f"malformed --input {quoted(text)}: {quoted(head.strip())} is not a keyword "
                                  "argument name (give NAME=SHAPE[:DTYPE], e.g. input_ids=1,128:int64)")
        name, body = head.strip(), rest
    shape_part, sep, dtype_part = body.partition(":")
    dtype = None
    if sep:
        canonical = DTYPE_ALIASES.get(dtype_part.strip().lower(), dtype_part.strip().lower())
        if canonical not in INPUT_DTYPES:
            raise InspectlabError(f"malformed --input {quoted(text)}: unknown dtype {quoted(dtype_part.strip())}; "
                                  f"choose one of {', '.join(INPUT_DTYPES)}")
        dtype = canonical
    return InputSpec(_dims(shape_part, text), dtype, name)


def parse_inputs(texts: Sequence[str]) -> list[InputSpec]:
    """Parse each repeated --input; a keyword given twice is an error."""
    specs = [parse_input(text) for text in texts]
    check_names(specs)
    return specs


def check_names(specs: Sequence[InputSpec]) -> None:
    seen: set[str] = set()
    for spec in specs:
        if spec.name is not None and spec.name in seen:
            raise InspectlabError(f"--input {spec.name}= is given twice")
        if spec.name is not None:
            seen.add(spec.name)


def as_specs(input_size: InputSize | Mapping[str, Any]) -> list[InputSpec]:
    """One shape (1, 3, 224, 224), one InputSpec, or a list of shapes and specs, as a list of specs (a shape is
    a plain, positional spec). A mapping {name: shape or spec} names keyword inputs."""
    if isinstance(input_size, InputSpec):
        return [input_size]
    if isinstance(input_size, Mapping):
        specs = [replace(v, name=k) if isinstance(v, InputSpec) else InputSpec(tuple(v), None, k)
                 for k, v in input_size.items()]
    elif input_size and isinstance(input_size[0], int):
        specs = [InputSpec(tuple(input_size))]  # type: ignore[arg-type]
    else:
        specs = [s if isinstance(s, InputSpec) else InputSpec(tuple(s)) for s in input_size]  # type: ignore[union-attr]
    check_names(specs)
    return specs


def as_shapes(input_size: InputSize) -> list[Shape]:
    """One shape (1, 3, 224, 224) or several [(1, 3, 224, 224), (1, 1, 224, 224)] as a list of shapes (of
    specs: their shapes)."""
    if isinstance(input_size, InputSpec):
        return [input_size.shape]
    if input_size and isinstance(input_size[0], int):
        return [tuple(input_size)]  # type: ignore[arg-type]
    return [s.shape if isinstance(s, InputSpec) else tuple(s) for s in input_size]  # type: ignore[union-attr]


def simplest(specs: Sequence[InputSpec]) -> list[InputSpec] | list[Shape]:
    """Plain specs as bare shapes (what every function took before specs existed), others as they are."""
    return [s.shape for s in specs] if all(s.plain for s in specs) else list(specs)


def compute_dtype(specs: Sequence[Any], dtype: str = "float32") -> str:
    """The float dtype a model computes in: `dtype`, or, when that is the default float32, the one floating
    dtype the specs name (`--input 1,3,224,224:float16` traces a half-precision model: a model computes in one
    float dtype, and a float32 convolution refuses a float16 input)."""
    named = {s.dtype for s in specs if isinstance(s, InputSpec) and s.dtype in FLOAT_DTYPES}
    return named.pop() if dtype == "float32" and len(named) == 1 else dtype


def batched(shapes: Sequence[Any], batch: int | None) -> list[Any]:
    """The shapes (or specs) with their first dimension replaced by `batch` (unchanged when None)."""
    def one(item: Any) -> Any:
        if isinstance(item, InputSpec):
            return item if batch is None else item.resized((batch, *item.shape[1:]))
        return tuple(item) if batch is None else (batch, *item[1:])

    return [one(item) for item in shapes]


def inputs_text(details: Sequence[Mapping[str, Any]] | None, shapes: Sequence[Any] = (),
                separator: str = " + ") -> str:
    """The inputs of a report for a title: the shapes ("1×3×224×224 + 1×1×224×224"), or with `details` (a
    report's "input_details": name, shape, dtype of each input tensor) "input_ids=1×128:int64 + ..."."""
    if not details:
        return shape_text(list(shapes), separator)
    parts = []
    for item in details:
        dtype = item.get("dtype")
        suffix = f":{dtype}" if dtype and dtype not in FLOAT_DTYPES else ""
        parts.append((f"{item['name']}=" if item.get("name") else "") + shape_text(item["shape"]) + suffix)
    return separator.join(parts)


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
