"""Shared parameters count once: in every summary row, in the totals and in the module tree."""

from __future__ import annotations

import torch
from torch import nn

from inspectlab import api
from inspectlab.analysis.params import count_params, count_params_of_node
from inspectlab.tracing.recorder import record

LINEAR = 8 * 8 + 8  # one Linear(8, 8): weight + bias


class TiedPair(nn.Module):
    """Two Linear(8, 8) sharing one weight (their biases are their own)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)
        self.b.weight = self.a.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


class TwoNames(nn.Module):
    """One Linear registered in two parents (first.0 and second.1), and `first` again at the root."""

    def __init__(self) -> None:
        super().__init__()
        shared = nn.Linear(8, 8)
        self.first = nn.Sequential(shared, nn.ReLU())
        self.second = nn.Sequential(nn.Linear(8, 8), shared)
        self.alias = self.first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.alias(self.second(self.first(x)))


def rows_by_name(model: nn.Module, depth: int) -> dict[str, int]:
    return {row["name"]: row["params"] for row in api.summary(model, (2, 8), depth=depth).layers}


def tree_by_name(model: nn.Module) -> dict[str, int]:
    return {node.name: node.total_params for node in api.tree(model)}


def test_two_linears_sharing_a_weight_count_it_once() -> None:
    model = nn.Sequential(TiedPair(), nn.Linear(8, 2))
    block, head = 8 * 8 + 8 + 8, 8 * 2 + 2  # the shared weight once, two biases
    assert rows_by_name(model, depth=1) == {"0": block, "1": head}
    assert rows_by_name(model, depth=2) == {"0": block, "0.a": LINEAR, "0.b": LINEAR, "1": head}
    report = api.summary(model, (2, 8), depth=1)
    assert report.totals["params"] == report.totals["trainable_params"] == block + head
    assert tree_by_name(model) == {"(root)": block + head, "0": block, "0.a": LINEAR, "0.b": LINEAR, "1": head}
    assert count_params(model).total == block + head


def test_a_module_under_two_names_counts_once_in_each_subtree() -> None:
    model = TwoNames()
    total = 2 * LINEAR  # the shared Linear and second's own
    assert rows_by_name(model, depth=1) == {"first": LINEAR, "second": 2 * LINEAR, "first#1": LINEAR}
    assert api.summary(model, (2, 8), depth=1).totals["params"] == total
    tree = tree_by_name(model)
    assert tree["(root)"] == total and tree["first"] == LINEAR and tree["second"] == 2 * LINEAR
    assert "alias" not in tree  # named_children() lists a module once


def test_trainable_counts_follow_the_shared_tensor() -> None:
    model = nn.Sequential(TiedPair(), nn.Linear(8, 2))
    model[0].a.weight.requires_grad_(False)
    report = api.summary(model, (2, 8), depth=1)
    rows = {row["name"]: row for row in report.layers}
    assert rows["0"]["params"] == 8 * 8 + 16 and rows["0"]["trainable_params"] == 16
    assert report.totals["trainable_params"] == 16 + 18 and report.totals["non_trainable_params"] == 64
    node = {n.name: n for n in api.tree(model)}["0"]
    assert (node.total_params, node.trainable_params) == (80, 16)


def test_each_module_records_the_tensor_id_of_its_parameters() -> None:
    model = nn.Sequential(TiedPair(), nn.Linear(8, 2))
    trace = record(model, [torch.empty(2, 8, device="meta")])
    a, b = trace.modules["0.a"], trace.modules["0.b"]
    assert a.param_ids["weight"] == b.param_ids["weight"] and a.param_ids["bias"] != b.param_ids["bias"]
    assert trace.tensors[a.param_ids["weight"]].kind == "param"
    assert trace.modules[""].children == ("0", "1") and trace.modules["0"].children == ("0.a", "0.b")
    assert count_params_of_node(trace)[""] == (98, 98)


def test_a_trace_without_ids_counts_by_name() -> None:
    """A hand-made tree (no param_ids, no children recorded) counts each parameter as its own tensor."""
    trace = record(nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2)), [torch.empty(2, 8, device="meta")])
    for node in trace.modules.values():
        node.param_ids, node.children = {}, None
    assert count_params_of_node(trace) == {"": (LINEAR + 18, LINEAR + 18), "0": (LINEAR, LINEAR), "1": (18, 18)}
