"""The public Python API: what the CLI calls, and what users call from their own code."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from inspectlab.analysis.params import TreeNode, count_params, module_tree
from inspectlab.models import registry


def build_model(spec: str, args: Mapping[str, Any] | None = None, device: str = "meta") -> nn.Module:
    """Build a zoo model, `tv:NAME` or `file.py:factory` on `device` (meta allocates no weights)."""
    return registry.build_model(spec, args, device)


def list_models() -> list[dict[str, Any]]:
    """One row per zoo model: name, family, params (counted on the meta device), default input, description."""
    rows = []
    for entry in registry.list_entries():
        counts = count_params(registry.build_model(entry.name))
        rows.append({
            "name": entry.name,
            "family": entry.family,
            "params": counts.total,
            "default_input": list(entry.default_input),
            "description": entry.description,
            "aliases": list(entry.aliases),
        })
    return rows


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


def _shapes(input_size: Sequence[int] | Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    if input_size and isinstance(input_size[0], int):
        return [tuple(input_size)]  # type: ignore[arg-type]
    return [tuple(s) for s in input_size]  # type: ignore[union-attr]
