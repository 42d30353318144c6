"""The op registry: one value per op packet, every key a real aten op, and the tables built on it."""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from inspectlab.analysis.conventions import FVCORE, TORCH_COUNTED
from inspectlab.analysis.costs import COSTS, OpCost, op_cost
from inspectlab.analysis.rf_rules import RULES
from inspectlab.core.op_registry import OpRegistry
from inspectlab.tracing.meta_shortcuts import SHORTCUTS
from inspectlab.tracing.records import OpRecord

REGISTRIES = {"costs": COSTS, "rf_rules": RULES, "meta_shortcuts": SHORTCUTS, "torch_convention": TORCH_COUNTED,
              "fvcore_convention": FVCORE}


def test_a_key_registered_twice_raises() -> None:
    registry: OpRegistry[int] = OpRegistry("demo")
    registry.add(1, "aten.relu", "aten.relu_")
    with pytest.raises(ValueError, match=r"demo.*'aten\.relu'"):
        registry.add(2, "aten.relu")
    with pytest.raises(ValueError, match="twice"):
        registry.add(3, "aten.tanh", "aten.tanh")

    @registry.register("aten.cat")
    def formula() -> int:
        return 0

    with pytest.raises(ValueError, match="aten.cat"):
        registry.register("aten.stack", "aten.cat")(formula)
    assert registry.get("aten.relu") == 1 and registry.get("aten.cat") is formula


@pytest.mark.parametrize("key", ["aten.add.Tensor", "cat", "", "aten.", ".cat", "aten::cat", "aten.cat "])
def test_a_key_not_in_packet_form_raises(key: str) -> None:
    registry: OpRegistry[int] = OpRegistry("demo")
    with pytest.raises(ValueError, match="not an op packet"):
        registry.add(1, key)
    with pytest.raises(ValueError, match="not an op packet"):
        registry.register(key)(1)
    assert registry.keys() == []


def test_lookup_respects_overload_restrictions() -> None:
    registry: OpRegistry[str] = OpRegistry("demo")
    registry.add("binary", "aten.add", overloads=("Tensor", "Scalar"))
    registry.add("any", "aten.cat")
    assert registry.lookup("aten.add", "Tensor") == "binary"
    assert registry.lookup("aten.add", "out") is None
    assert registry.lookup("aten.cat", "names") == "any"
    assert registry.lookup("aten.mul", "Tensor") is None
    assert registry.get("aten.add") == "binary"  # by packet, whatever the overload
    assert registry.overloads("aten.add") == {"Tensor", "Scalar"} and registry.overloads("aten.cat") is None
    assert registry["aten.add.Scalar"] == "binary" and registry["aten.cat"] == "any"
    with pytest.raises(KeyError):
        registry["aten.add.out"]
    assert "aten.add" in registry and "aten.add.Tensor" not in registry and "aten.mul" not in registry
    assert registry.keys() == ["aten.add", "aten.cat"] and len(registry) == 2
    with pytest.raises(ValueError, match="overloads"):
        registry.add("bad", "aten.mul", overloads=("Tensor.out",))


@pytest.mark.parametrize("registry", list(REGISTRIES.values()), ids=list(REGISTRIES))
def test_every_key_names_a_real_op(registry: OpRegistry) -> None:
    """A typo in any table fails here: each key is an aten packet, each restricted overload exists."""
    assert len(registry) > 0
    for key in registry.keys():
        namespace, name = key.split(".")
        assert namespace == "aten", key
        assert hasattr(torch.ops.aten, name), f"{registry.name}: torch.ops.aten has no {name!r}"
        allowed = registry.overloads(key)
        if allowed is not None:
            missing = allowed - set(getattr(torch.ops.aten, name).overloads())
            assert not missing, f"{registry.name}: {key} has no overloads {sorted(missing)}"


def test_core_registry_is_torch_free() -> None:
    source = (Path(__file__).parents[1] / "inspectlab" / "core" / "op_registry.py").read_text()
    imported = {alias.name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)}
    assert not any(m.split(".")[0] == "torch" for m in imported)
    assert all(m.startswith("inspectlab.core") for m in imported if m.startswith("inspectlab"))


def test_meta_shortcuts_cover_the_same_overloads() -> None:
    assert SHORTCUTS.lookup("aten.add", "Tensor") is SHORTCUTS.lookup("aten.add", "Scalar") is not None
    assert SHORTCUTS.lookup("aten.add", "out") is None
    assert SHORTCUTS.lookup("aten.mean", "dim") is not None and SHORTCUTS.lookup("aten.mean", "default") is None
    assert SHORTCUTS.lookup("aten.relu_", "default") is not None and SHORTCUTS.lookup("aten.relu", "out") is None
    assert SHORTCUTS.lookup("aten.sort", "default") is None


def _trace(*shapes: tuple[int, ...]) -> SimpleNamespace:
    return SimpleNamespace(tensors={i: SimpleNamespace(shape=s, numel=int(torch.Size(s).numel()))
                                    for i, s in enumerate(shapes)})


def _op(name: str, tensor_args: dict, args: dict | None = None, outputs: tuple[int, ...] = (1,)) -> OpRecord:
    inputs = [t for t in tensor_args.values() if isinstance(t, int)]
    return OpRecord(0, name, args or {}, tensor_args, inputs, list(outputs), None, None)


@pytest.mark.parametrize(("name", "tensor_args", "args", "shapes", "expected"), [
    ("aten.relu.default", {"self": 0}, {}, [(2, 3, 4), (2, 3, 4)], OpCost(0, 24, "activation")),
    ("aten.gelu.default", {"self": 0}, {}, [(2, 3, 4), (2, 3, 4)], OpCost(0, 8 * 24, "activation")),
    ("aten.addcmul_.default", {"self": 0}, {}, [(5,), (5,)], OpCost(0, 10, "elementwise")),
    ("aten.add.Tensor", {"self": 0, "other": 0}, {}, [(6,), (6,)], OpCost(0, 6, "elementwise")),
    ("aten.ones_like.default", {"self": 0}, {}, [(6,), (6,)], OpCost(0, 0, "memory")),
    ("aten.cat.default", {"tensors": [0]}, {}, [(6,), (6,)], OpCost(0, 0, "memory")),
    ("aten.mean.dim", {"self": 0}, {}, [(2, 3, 4), (2, 3)], OpCost(0, 24 + 6, "reduction")),
    ("aten.sum.dim_IntList", {"self": 0}, {}, [(2, 3, 4), (2, 3)], OpCost(0, 24, "reduction")),
    ("aten._softmax.default", {"self": 0}, {}, [(2, 3), (2, 3)], OpCost(0, 30, "softmax")),
    ("aten.upsample_bilinear2d.vec", {"input": 0}, {}, [(1, 2, 3, 4), (1, 2, 6, 8)], OpCost(0, 7 * 96, "resample")),
    ("aten.upsample_nearest2d.vec", {"input": 0}, {}, [(1, 2, 3, 4), (1, 2, 6, 8)], OpCost(0, 0, "resample")),
    ("aten.upsample_bicubic2d.default", {"self": 0}, {}, [(1, 1, 2, 2), (1, 1, 4, 4)], OpCost(0, 31 * 16, "resample")),
    ("aten.addmm.default", {"self": 2, "mat1": 0, "mat2": 1}, {}, [(4, 7), (7, 10), (10,), (4, 10)],
     OpCost(4 * 7 * 10, 40, "matmul")),
    ("aten.convolution.default", {"input": 0, "weight": 1, "bias": None}, {"transposed": False},
     [(1, 3, 8, 8), (4, 3, 3, 3), (1, 4, 6, 6)], OpCost(36 * 4 * 27, 0, "conv")),
])
def test_op_cost_numbers(name: str, tensor_args: dict, args: dict, shapes: list, expected: OpCost) -> None:
    trace = _trace(*shapes)
    out = len(shapes) - 1
    assert op_cost(_op(name, tensor_args, args, (out,)), trace) == expected  # type: ignore[arg-type]


def test_op_without_formula_has_no_cost() -> None:
    trace = _trace((2, 8), (2, 8))
    for name in ("aten.sort.default", "aten._upsample_nearest_exact2d.vec", "prims.add.default"):
        assert op_cost(_op(name, {"self": 0}), trace) is None  # type: ignore[arg-type]
