"""Example inputs: the one builder of the tensors a model is traced, timed or dumped with, and the one reader of
the inputs a user gives (`input_data`, `--input-file`): a tensor, positional arguments, keyword arguments, or
any nesting of lists, tuples, dicts and namedtuples with non-tensor values (strings, None, numbers) in them."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from inspectlab.core.errors import InspectlabError, first_line
from inspectlab.core.shapes import FLOAT_DTYPES, InputSpec, Shape, dtype_name

if TYPE_CHECKING:
    import torch

DTYPES = FLOAT_DTYPES
_ALIASES = {"fp32": "float32", "float": "float32", "fp16": "float16", "half": "float16",
            "bf16": "bfloat16", "fp64": "float64", "double": "float64"}


def torch_dtype(name: str) -> torch.dtype:
    """Map a floating dtype name ("float16", "fp16", "half", ...) to a torch dtype (a model's --dtype)."""
    import torch

    canonical = _ALIASES.get(name.lower(), name.lower())
    if canonical not in DTYPES:
        raise InspectlabError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return getattr(torch, canonical)


def input_dtype(name: str) -> torch.dtype:
    """Map an input dtype name (a float one, or int64/int32/.../bool) to a torch dtype."""
    import torch

    return getattr(torch, dtype_name(name, "input dtype"))


@dataclass
class CallInputs:
    """The arguments of one forward call: `model(*args, **kwargs)`."""

    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor in the arguments, in the order the recorder finds them (positional first)."""
        return [tensor for _, tensor in named_tensors(self)]


def as_call(data: Any) -> CallInputs:
    """What `input_data` means: a CallInputs as it is; a tensor (or a namedtuple, a string, any other single
    value): one positional argument; a list or a plain tuple: the positional arguments; a dict: the keyword
    arguments (wrap a dict in a list to pass it as one positional argument, as torchinfo does)."""
    if isinstance(data, CallInputs):
        return data
    if isinstance(data, Mapping):
        if not all(isinstance(key, str) for key in data):
            raise InspectlabError("input_data as a dict gives keyword arguments: its keys must be strings (wrap "
                                  "the dict in a list to pass it as one positional argument)")
        return CallInputs([], dict(data))
    if isinstance(data, (list, tuple)) and not hasattr(data, "_fields"):
        return CallInputs(list(data), {})
    return CallInputs([data], {})


def named_tensors(call: CallInputs) -> list[tuple[str | None, torch.Tensor]]:
    """(name, tensor) of every tensor in the call, in the recorder's order (`tracing.recorder._tensors_in`): a
    top-level positional tensor is unnamed; a keyword argument is its keyword; a tensor inside a structure is
    named by its path: "[0]['a']", "mask[1]", "[0].boxes" (a namedtuple field)."""
    import torch
    from torch.utils._pytree import tree_flatten_with_path

    found: list[tuple[str | None, torch.Tensor]] = []

    def walk(value: Any, path: str | None) -> None:
        if isinstance(value, torch.Tensor):
            found.append((path, value))
        elif isinstance(value, (tuple, list)):
            fields = getattr(value, "_fields", None)
            for index, item in enumerate(value):
                walk(item, f"{path or ''}.{fields[index]}" if fields else f"{path or ''}[{index}]")
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path or ''}[{key!r}]")
        elif value is not None and not isinstance(value, (bool, int, float, str)):
            leaves, _ = tree_flatten_with_path(value)
            if [leaf for _, leaf in leaves] != [value]:
                for key_path, leaf in leaves:
                    walk(leaf, (path or "") + "".join(str(k) for k in key_path))

    for index, value in enumerate(call.args):
        if isinstance(value, torch.Tensor):
            found.append((None, value))
        else:
            walk(value, f"[{index}]")
    for key, value in call.kwargs.items():
        walk(value, key)
    return found


def positional(model: Any, call: CallInputs, what: str) -> list[Any]:
    """The call as positional arguments only, for a tool that runs `model(*inputs)` (`what`: the peers of
    `flops --compare`, `latency --per-layer`): each keyword argument goes to its place in the forward's signature,
    the parameters between them get their defaults. A keyword-only parameter cannot: one line says so."""
    if not call.kwargs:
        return list(call.args)
    try:
        signature = inspect.signature(model.forward)
        signature.bind(*call.args, **call.kwargs)
    except (TypeError, ValueError) as exc:
        raise InspectlabError(f"the inputs do not fit {type(model).__name__}.forward: {exc}") from None
    ordered = [p for p in signature.parameters.values()
               if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    names = [p.name for p in ordered]
    last = max((names.index(k) for k in call.kwargs if k in names), default=-1)
    others = [k for k in call.kwargs if k not in names[: last + 1]]
    if others or len(call.args) > len(ordered):
        raise InspectlabError(f"{what} passes inputs by position, and {type(model).__name__}.forward takes "
                              f"{', '.join(others) or 'them'} only as keywords")
    values = list(call.args)
    for parameter in ordered[len(values): last + 1]:
        if parameter.name in call.kwargs:
            values.append(call.kwargs[parameter.name])
        elif parameter.default is not inspect.Parameter.empty:
            values.append(parameter.default)
    return values


def example_inputs(shapes: Sequence[Shape | InputSpec], dtype: str = "float32", device: str = "meta", *,
                   seed: int | torch.Generator | None = None, channels_last: bool = False) -> list[torch.Tensor]:
    """One tensor per shape or spec, in order: floats standard-normal (shape-only on meta), integers and bools
    zeros. A spec's own dtype wins over `dtype`. With `seed` (or a CPU generator to draw on from), drawn from a
    private generator: the same values every time, the global RNG untouched; `channels_last` lays 4-d floating
    ones out NHWC."""
    import torch

    default = torch_dtype(dtype)
    generator = None
    if seed is not None and device != "meta":
        generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    inputs = []
    for item in shapes:
        spec = item if isinstance(item, InputSpec) else InputSpec(tuple(item))
        kind = input_dtype(spec.dtype) if spec.dtype is not None else default
        if not kind.is_floating_point:
            inputs.append(torch.zeros(spec.shape, dtype=kind, device=device))
        elif generator is not None:
            inputs.append(torch.randn(spec.shape, generator=generator, dtype=kind).to(device))
        else:
            inputs.append(torch.randn(spec.shape, dtype=kind, device=device))
    if channels_last:
        inputs = [t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 and t.is_floating_point() else t
                  for t in inputs]
    return inputs


def example_call(specs: Sequence[Shape | InputSpec], dtype: str = "float32", device: str = "meta", *,
                 seed: int | torch.Generator | None = None, channels_last: bool = False) -> CallInputs:
    """The call the specs describe (`example_inputs`): unnamed ones positional, in order; named ones keywords."""
    tensors = example_inputs(specs, dtype, device, seed=seed, channels_last=channels_last)
    call = CallInputs()
    for item, tensor in zip(specs, tensors, strict=True):
        name = item.name if isinstance(item, InputSpec) else None
        if name is None:
            call.args.append(tensor)
        else:
            call.kwargs[name] = tensor
    return call


def on_device(values: Any, device: str) -> Any:
    """The user's inputs with every tensor on `device` (meta: shape-only copies), at any depth of lists,
    tuples, dicts, namedtuples (`torch.utils._pytree.tree_map`); every other value as it is. A CallInputs
    gives a CallInputs."""
    import torch
    from torch.utils._pytree import tree_map

    def move(value: Any) -> Any:
        if not isinstance(value, torch.Tensor):
            return value
        return torch.empty_like(value, device="meta") if device == "meta" else value.to(device)

    if isinstance(values, CallInputs):
        return CallInputs(list(tree_map(move, list(values.args))), dict(tree_map(move, dict(values.kwargs))))
    return tree_map(move, values)


def load_inputs(path: str) -> CallInputs:
    """The inputs saved in a file (`torch.save`; read with `torch.load(weights_only=True)`, so no code in it
    runs): a tensor, a tuple or list (positional arguments) or a dict (keyword arguments), nesting allowed."""
    import torch

    if not os.path.isfile(path):
        raise InspectlabError(f"no such input file: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InspectlabError(f"cannot read inputs from {path}: {type(exc).__name__}: {first_line(str(exc))}") \
            from exc
    call = as_call(data)
    if not call.tensors():
        raise InspectlabError(f"{path} holds no tensor: save a tensor, a tuple/list of tensors or a dict of them")
    return call
