"""The Trace: what one pass of a model records, as plain data classes (no torch objects kept).

- `ModuleNode`: the module tree from `named_modules()`.
- `ModuleCall`: one record per call of a module (forward pre/post hooks).
- `OpRecord`: one record per aten op (a TorchDispatchMode), with its named arguments.
- `TensorInfo`: one record per tensor version: the dataflow graph (producer op, consumer ops).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

Shape = tuple[int, ...]


@dataclass
class TensorInfo:
    """A tensor (one version of it: an in-place write makes a new version) and its place in the dataflow."""

    id: int
    shape: Shape
    dtype: str
    element_size: int
    kind: str  # "input" | "param" | "buffer" | "activation" | "constant"
    producer: int | None = None  # index of the op that wrote it
    consumers: list[int] = field(default_factory=list)
    name: str | None = None  # parameter / buffer name
    alias_of: int | None = None  # a view, or an in-place version, of this tensor
    storage: int = -1  # id of the root tensor whose memory this one uses
    requires_grad: bool = False

    @property
    def numel(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count

    @property
    def bytes(self) -> int:
        return self.numel * self.element_size


@dataclass
class OpRecord:
    """One aten op: its name, named non-tensor arguments, tensors read and written, and where it ran."""

    index: int
    name: str  # e.g. "aten.convolution.default"
    args: dict[str, Any]  # non-tensor arguments by schema name (stride, padding, ...)
    tensor_args: dict[str, int | list[int] | None]  # tensor arguments by schema name -> tensor ids
    inputs: list[int]  # every tensor id read
    outputs: list[int]  # every tensor id written
    module_call: int | None  # innermost module call running, None outside any module
    function: str | None  # outermost torch-level function that issued it (e.g. "interpolate")
    phase: str = "forward"  # "forward" | "backward"
    inplace: bool = False

    @property
    def packet(self) -> str:
        """The op without its overload: "aten.convolution"."""
        return self.name.rsplit(".", 1)[0] if self.name.count(".") >= 2 else self.name


@dataclass
class ModuleCall:
    """One call of a module's forward."""

    index: int
    name: str  # qualified name, "" for the root
    type: str
    depth: int  # 0 for the root
    call: int  # 0 for the module's first call, 1 for its second, ...
    parent: int | None
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    first_op: int = 0  # ops [first_op, end_op) ran inside this call (its children included)
    end_op: int = 0
    implicit: bool = False  # its forward never ran: a method of it ran its children (implicit_calls.py)

    @property
    def label(self) -> str:
        base = self.name or "(root)"
        return base if self.call == 0 else f"{base}#{self.call}"

    def op_range(self) -> range:
        return range(self.first_op, self.end_op)


@dataclass
class ModuleNode:
    """A module of the tree: its own parameters by name (shape, count, trainable) and its buffers.

    `param_ids` names the tensor behind each own parameter (its TensorInfo id): a weight shared by two
    modules has one id. `children` are the tree names of its direct submodules, a shared one under the
    name it has in the tree (None: unknown, the names below this one's are its children).
    """

    name: str
    type: str
    depth: int
    params: dict[str, tuple[Shape, int, bool]]  # name -> (shape, numel, requires_grad), own only
    buffers: dict[str, Shape]
    is_leaf: bool
    param_ids: dict[str, int] = field(default_factory=dict)  # own parameter name -> tensor id
    children: tuple[str, ...] | None = None


@dataclass
class Trace:
    """Everything one pass recorded. Analyses are pure functions of this object."""

    model_type: str
    device: str  # where the pass ran: "meta" or a real device
    modules: dict[str, ModuleNode]
    calls: list[ModuleCall]
    ops: list[OpRecord]
    tensors: dict[int, TensorInfo]
    inputs: list[int]
    outputs: list[int]
    training: bool = False
    notes: list[str] = field(default_factory=list)  # e.g. why the pass fell back to a real run

    def tensor(self, tensor_id: int) -> TensorInfo:
        return self.tensors[tensor_id]

    def shapes(self, tensor_ids: list[int]) -> list[list[int]]:
        return [list(self.tensors[t].shape) for t in tensor_ids]

    def forward_ops(self) -> Iterator[OpRecord]:
        return (op for op in self.ops if op.phase == "forward")

    def calls_of(self, name: str) -> list[ModuleCall]:
        return [call for call in self.calls if call.name == name]
