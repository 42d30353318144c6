"""The public Python API: what the CLI calls, and what users call from their own code."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from inspectlab.analysis.conventions import CONVENTIONS, DESCRIPTIONS, UNITS, convention_total
from inspectlab.analysis.flops import count_flops
from inspectlab.analysis.params import TreeNode, module_tree
from inspectlab.analysis.report import Report
from inspectlab.analysis.summary import summarize
from inspectlab.inputs import Shape, example_inputs, torch_dtype
from inspectlab.models import registry
from inspectlab.tracing.recorder import NeedsRealRun, record
from inspectlab.tracing.records import Trace

InputSize = Sequence[int] | Sequence[Sequence[int]]


def build_model(spec: str, args: Mapping[str, Any] | None = None, device: str = "meta") -> nn.Module:
    """Build a zoo model, `tv:NAME` or `file.py:factory` on `device` (meta allocates no weights)."""
    return registry.build_model(spec, args, device)


def list_models() -> list[dict[str, Any]]:
    """One row per zoo model: name, family, params (counted on the meta device), default input, description,
    aliases."""
    return registry.zoo_rows()


def tree(model_or_spec: nn.Module | str, depth: int | None = None,
         args: Mapping[str, Any] | None = None) -> list[TreeNode]:
    """The module hierarchy from `children()`, with own and total params per node."""
    model = resolve_model(model_or_spec, args)
    return module_tree(model, depth)


def resolve_model(model_or_spec: nn.Module | str, args: Mapping[str, Any] | None = None,
                  device: str = "meta") -> nn.Module:
    """A user's module as it is, or the model a spec names, built on `device`."""
    if isinstance(model_or_spec, nn.Module):
        return model_or_spec
    return build_model(model_or_spec, args, device)


def input_shapes(model_or_spec: nn.Module | str, input_size: InputSize | None) -> list[Shape]:
    """Normalise one shape or a list of shapes; default: the zoo entry's input (else 1x3x224x224)."""
    if input_size is None:
        spec = model_or_spec if isinstance(model_or_spec, str) else ""
        return [registry.default_input(spec) if spec else registry.IMAGENET]
    if input_size and isinstance(input_size[0], int):
        return [tuple(input_size)]  # type: ignore[arg-type]
    return [tuple(s) for s in input_size]  # type: ignore[union-attr]


def trace(model_or_spec: nn.Module | str, input_size: InputSize | None = None, *,
          input_data: Sequence[Any] | None = None, args: Mapping[str, Any] | None = None,
          device: str = "meta", dtype: str = "float32", backward: bool = False) -> Trace:
    """Record one pass of the model (the Trace of DESIGN.md): module tree, calls, ops and tensors.

    Runs on the meta device by default, so its cost does not depend on the input size; a model whose
    forward needs real values falls back to a real run on the CPU, and the Trace's notes say so.
    The user's model is never modified.
    """
    model = resolve_model(model_or_spec, args, device)
    data = list(input_data) if input_data is not None else None
    shapes = [tuple(t.shape) for t in data] if data is not None else input_shapes(model_or_spec, input_size)
    try:
        inputs = _on_device(data, device) if data is not None else example_inputs(shapes, dtype, device)
        return record(model, inputs, device=device, backward=backward, dtype=torch_dtype(dtype))
    except NeedsRealRun as reason:
        real_device = "cpu" if device == "meta" else device
        if isinstance(model_or_spec, str):
            model = build_model(model_or_spec, args, real_device)
        else:
            real_device = next((p.device.type for p in model.parameters()), "cpu")
        inputs = _on_device(data, real_device) if data is not None else example_inputs(shapes, dtype, real_device)
        result = record(model, inputs, device=real_device, backward=backward, dtype=torch_dtype(dtype))
        result.notes.append(f"the forward cannot run on the meta device ({reason}); ran on {real_device} instead")
        return result


def summary(model_or_spec: nn.Module | str, input_size: InputSize | None = None, *,
            input_data: Sequence[Any] | None = None, args: Mapping[str, Any] | None = None, depth: int = 2,
            device: str = "meta", dtype: str = "float32", backward: bool = False) -> Report:
    """Params, MACs/FLOPs, shapes and memory per module call (down to `depth`) and in total."""
    recorded = trace(model_or_spec, input_size, input_data=input_data, args=args, device=device, dtype=dtype,
                     backward=backward)
    return summarize(recorded, _model_name(model_or_spec), depth=depth, backward=backward)


def flops(model_or_spec: nn.Module | str, input_size: InputSize | None = None, *,
          input_data: Sequence[Any] | None = None, args: Mapping[str, Any] | None = None,
          backward: bool = False, compare: bool = False) -> Report:
    """Totals under every counting convention, the category breakdown, and (compare) each peer's own number."""
    recorded = trace(model_or_spec, input_size, input_data=input_data, args=args, backward=backward)
    count = count_flops(recorded)
    peers: dict[str, Any] = {}
    if compare:
        from inspectlab.runtime.peers import peer_totals

        real_model = resolve_model(model_or_spec, args, device="cpu")
        inputs = _on_device(input_data, "cpu") if input_data is not None else example_inputs(
            [tuple(s) for s in recorded.shapes(recorded.inputs)], "float32", "cpu")
        peers = peer_totals(real_model, inputs, backward)
    rows = []
    for name in CONVENTIONS:
        if backward and name in ("fvcore", "torchinfo"):
            continue
        rows.append({"convention": name, "unit": UNITS[name], "total": convention_total(count, name, backward),
                     "peer": peers.get(name), "counts": DESCRIPTIONS[name]})
    for row in rows:
        row["match"] = (row["peer"] == row["total"]) if isinstance(row["peer"], int) else None
    report = summarize(recorded, _model_name(model_or_spec), depth=0, backward=backward, count=count)
    report.layers = rows
    return report


def _model_name(model_or_spec: nn.Module | str) -> str:
    return model_or_spec if isinstance(model_or_spec, str) else type(model_or_spec).__name__


def _on_device(tensors: list[Any], device: str) -> list[Any]:
    import torch

    def move(value: Any) -> Any:
        if not isinstance(value, torch.Tensor):
            return value
        return torch.empty_like(value, device="meta") if device == "meta" else value.to(device)

    return [move(t) for t in tensors]
