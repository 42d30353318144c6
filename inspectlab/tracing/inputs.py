"""Example inputs: the one builder of the tensors a model is traced, timed or dumped with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from inspectlab.core.errors import InspectlabError
from inspectlab.core.shapes import Shape

if TYPE_CHECKING:
    import torch

DTYPES = ("float32", "float16", "bfloat16", "float64")
_ALIASES = {"fp32": "float32", "float": "float32", "fp16": "float16", "half": "float16",
            "bf16": "bfloat16", "fp64": "float64", "double": "float64"}


def torch_dtype(name: str) -> torch.dtype:
    """Map a dtype name ("float16", "fp16", "half", ...) to a torch dtype."""
    import torch

    canonical = _ALIASES.get(name.lower(), name.lower())
    if canonical not in DTYPES:
        raise InspectlabError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return getattr(torch, canonical)


def example_inputs(shapes: Sequence[Shape], dtype: str = "float32", device: str = "meta", *,
                   seed: int | torch.Generator | None = None, channels_last: bool = False) -> list[torch.Tensor]:
    """Standard-normal tensors of the given shapes (shape-only on meta). With `seed` (or a CPU generator to
    draw on from), drawn from a private generator: the same values every time, the global RNG untouched;
    `channels_last` lays 4-d ones out NHWC."""
    import torch

    kind = torch_dtype(dtype)
    if seed is not None and device != "meta":
        generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
        inputs = [torch.randn(shape, generator=generator, dtype=kind).to(device) for shape in shapes]
    else:
        inputs = [torch.randn(shape, dtype=kind, device=device) for shape in shapes]
    if channels_last:
        inputs = [t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in inputs]
    return inputs


def on_device(values: Sequence[Any], device: str) -> list[Any]:
    """The user's input tensors on `device` (meta: shape-only copies); other values as they are."""
    import torch

    def move(value: Any) -> Any:
        if not isinstance(value, torch.Tensor):
            return value
        return torch.empty_like(value, device="meta") if device == "meta" else value.to(device)

    return [move(v) for v in values]
