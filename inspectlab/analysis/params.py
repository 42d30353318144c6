"""Parameter counts and the module hierarchy, from `named_modules()` / `children()` alone."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from inspectlab.tracing.records import Trace


@dataclass(frozen=True)
class ParamCounts:
    """Parameter totals of a module: shared tensors counted once."""

    total: int
    trainable: int
    bytes: int
    buffers: int
    buffer_bytes: int

    @property
    def non_trainable(self) -> int:
        return self.total - self.trainable


def count_params(module: nn.Module, recurse: bool = True) -> ParamCounts:
    """Count a module's parameters (each tensor once, even if registered twice) and buffers."""
    params = list(module.parameters(recurse=recurse))
    buffers = list(module.buffers(recurse=recurse))
    return ParamCounts(
        total=sum(p.numel() for p in params),
        trainable=sum(p.numel() for p in params if p.requires_grad),
        bytes=sum(p.numel() * p.element_size() for p in params),
        buffers=sum(b.numel() for b in buffers),
        buffer_bytes=sum(b.numel() * b.element_size() for b in buffers),
    )


@dataclass(frozen=True)
class TreeNode:
    """One module of the hierarchy."""

    name: str
    type: str
    depth: int
    own_params: int
    total_params: int
    trainable_params: int
    children: int


def module_tree(model: nn.Module, max_depth: int | None = None) -> list[TreeNode]:
    """The hierarchy from `children()`, depth-first, down to `max_depth` (root = depth 0)."""
    nodes: list[TreeNode] = []

    def visit(module: nn.Module, name: str, depth: int) -> None:
        counts = count_params(module)
        nodes.append(TreeNode(
            name=name or "(root)",
            type=type(module).__name__,
            depth=depth,
            own_params=count_params(module, recurse=False).total,
            total_params=counts.total,
            trainable_params=counts.trainable,
            children=len(list(module.children())),
        ))
        if max_depth is not None and depth >= max_depth:
            return
        for child_name, child in module.named_children():
            visit(child, f"{name}.{child_name}" if name else child_name, depth + 1)

    visit(model, "", 0)
    return nodes


def count_params_of_node(trace: Trace) -> dict[str, tuple[int, int]]:
    """(total, trainable) parameters of every module of a Trace's tree, each tensor counted once.

    A module's parameters are its own plus its descendants'; a module registered under two names is
    in the tree once (named_modules() removes duplicates), so its parameters count once.
    """
    totals: dict[str, tuple[int, int]] = {}
    for name in sorted(trace.modules, key=lambda n: -trace.modules[n].depth):
        node = trace.modules[name]
        own = sum(numel for _, numel, _ in node.params.values())
        own_trainable = sum(numel for _, numel, grad in node.params.values() if grad)
        totals[name] = (own, own_trainable)
    for name in sorted(trace.modules, key=lambda n: -trace.modules[n].depth):
        if name:
            parent = name.rpartition(".")[0]
            if parent in totals:
                total, trainable = totals[parent]
                child_total, child_trainable = totals[name]
                totals[parent] = (total + child_total, trainable + child_trainable)
    return totals
