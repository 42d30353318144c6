"""Parameter counts, the one home: of an nn.Module (`count_params`, `module_tree`) and of every module of
a Trace's tree (`count_params_of_node`). Every count is over unique tensors: a tensor shared by two
modules, or a module registered under two names, counts once in each subtree that holds it."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parameter import is_lazy

from inspectlab.core.errors import InspectlabError
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

    @property
    def state_bytes(self) -> int:
        """Bytes of the parameters and buffers together."""
        return self.bytes + self.buffer_bytes


def _sum_params(params: Iterable[tuple[int, bool]]) -> tuple[int, int]:
    """(total, trainable) of (numel, requires_grad) pairs, one pair per unique tensor."""
    total = trainable = 0
    for numel, requires_grad in params:
        total += numel
        trainable += numel if requires_grad else 0
    return total, trainable


def count_params(module: nn.Module, recurse: bool = True, device: torch.device | str | None = None) -> ParamCounts:
    """Count a module's parameters (each tensor once, even if registered twice) and buffers.

    With `device`, only the tensors whose `.device` equals it count (e.g. what already sits on a GPU).
    """
    where = torch.device(device) if isinstance(device, str) else device
    params = [p for p in module.parameters(recurse=recurse) if where is None or p.device == where]
    buffers = [b for b in module.buffers(recurse=recurse) if where is None or b.device == where]
    if any(is_lazy(t) for t in (*params, *buffers)):
        raise InspectlabError("the model has lazy modules (nn.LazyLinear, nn.LazyConv2d, ...): their parameters have "
                              "no shape until a first forward; summary and flops count them on a materialised "
                              "copy, other commands need the model called once first")
    total, trainable = _sum_params((p.numel(), p.requires_grad) for p in params)
    return ParamCounts(
        total=total,
        trainable=trainable,
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
    """The hierarchy from `children()`, depth-first, down to `max_depth` (root = depth 0), counted by
    `count_params`."""
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
    """(total, trainable) parameters of every module of a Trace's tree ("" is the model: its totals).

    A module's count is the union of the tensors of its subtree, by the Trace's tensor id of each
    parameter (`ModuleNode.param_ids`): two modules sharing a weight, or a module registered under two
    names (in the tree once, under its first name, and a child of each parent), count it once.
    """
    sizes: dict[Hashable, tuple[int, bool]] = {}
    own: dict[str, set[Hashable]] = {}
    for name, node in trace.modules.items():
        own[name] = set()
        for param, (_, numel, requires_grad) in node.params.items():
            key: Hashable = node.param_ids.get(param, (name, param))  # no id recorded: a tensor of its own
            sizes[key] = (numel, requires_grad)
            own[name].add(key)
    subtrees = _subtrees(own, _children(trace))
    return {name: _sum_params(sizes[key] for key in subtrees[name]) for name in trace.modules}


def _children(trace: Trace) -> dict[str, tuple[str, ...]]:
    """Each module's direct submodules: as recorded (`ModuleNode.children`), else by name."""
    by_name: dict[str, list[str]] = {name: [] for name in trace.modules}
    for name in trace.modules:
        parent = name.rpartition(".")[0]
        if name and parent in by_name:
            by_name[parent].append(name)
    return {name: node.children if node.children is not None else tuple(by_name[name])
            for name, node in trace.modules.items()}


def _subtrees(own: Mapping[str, set[Hashable]], children: Mapping[str, tuple[str, ...]]) -> dict[str, set[Hashable]]:
    """Per module, the union of its own keys and its descendants' (iterative post-order, each once)."""
    done: dict[str, set[Hashable]] = {}
    entered: set[str] = set()
    for start in own:
        stack = [(start, False)]
        while stack:
            name, expanded = stack.pop()
            if expanded:
                union = set(own[name])
                for child in children[name]:
                    union |= done.get(child, set())
                done[name] = union
            elif name not in entered:
                entered.add(name)
                stack.append((name, True))
                stack.extend((child, False) for child in children[name] if child in own and child not in entered)
    return done
