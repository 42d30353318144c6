"""Feature capture: forward hooks keep a copy of selected modules' outputs, tensor hooks their gradients.

- A forward hook clones each output tensor at the moment the module returns it, so an in-place op that
  follows (BatchNorm, then ReLU(inplace=True)) cannot change what was kept.
- Every call of a module is kept: the k-th call (from 0) of module `name` is `name#k` (`(root)#k` for
  the model itself). Dict/list/tuple outputs are flattened, each tensor under its key path:
  `(root)#0[out]`, `block#1[0][2]`.
- Gradients: in the same forward hook each output tensor gets a tensor hook (`Tensor.register_hook`),
  which receives the gradient of the objective with respect to that tensor, as it was when the module
  returned it (a later in-place op does not change which version is differentiated). Module full
  backward hooks are not used: on an output that a later op modifies in place they make autograd raise
  ("Output 0 of BackwardHookFunction is a view and is being modified inplace"), which is exactly the
  BatchNorm + inplace ReLU case, and they cannot tell which call of a reused module a gradient is for.
- Hooks are removed when the `with` block ends, also when the forward raises.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import GetAttrKey, MappingKey, SequenceKey, tree_flatten_with_path, tree_map, tree_unflatten

from inspectlab.core.display import Displayable
from inspectlab.core.errors import InspectlabError
from inspectlab.core.naming import ROOT, nearest, select
from inspectlab.runtime import dump_writer

_KEY = re.compile(r"^(?P<name>.*?)(?:#(?P<call>\d+))?$")


# --------------------------------------------------------------------------------------------------
# layer selection


def select_modules(model: nn.Module, layers: Sequence[str] | None = None,
                   types: Sequence[str] | None = None) -> dict[str, nn.Module]:
    """The modules whose qualified name matches one of `layers` (`inspectlab.core.naming.select`: globs, or
    `re:` regular expressions; the model itself is `(root)`) and whose type matches one of `types` (either
    may be left out), in `named_modules()` order. A type is a class name, a glob on it, or a dotted
    `module.Class` path. A pattern or type that matches nothing raises, naming the nearest.
    """
    if not layers and not types:
        raise InspectlabError("select layers with --layers GLOB (or re:REGEX) or --type NAME")
    modules = dict(model.named_modules())
    by_name = set(select(layers, modules))
    by_type = set(modules)
    if types:
        by_type = set()
        for wanted in types:
            matched = {name for name, module in modules.items() if _type_matches(wanted, module)}
            if not matched:
                known = sorted({type(m).__name__ for m in modules.values()})
                raise InspectlabError(f"no module of type {wanted!r}{nearest(wanted, known, 'types')}")
            by_type |= matched
    chosen = {name: module for name, module in modules.items() if name in by_name and name in by_type}
    if not chosen:
        raise InspectlabError(f"no module matches both --layers {', '.join(layers or ())} and "
                              f"--type {', '.join(types or ())}")
    return chosen


def _type_matches(wanted: str, module: nn.Module) -> bool:
    kind = type(module)
    dotted = {f"{kind.__module__}.{kind.__qualname__}"}
    if kind.__module__.startswith("torch.nn"):
        dotted |= {f"nn.{kind.__name__}", f"torch.nn.{kind.__name__}"}
    return fnmatch.fnmatchcase(kind.__name__, wanted) or wanted in dotted


# --------------------------------------------------------------------------------------------------
# the capture


@dataclass
class Entry:
    """One output tensor of one module call: its copy (or, without `keep`, only its statistics) and its
    gradient."""

    key: str  # "layer1.0.relu#1", "(root)#0[out]"
    layer: str  # qualified module name, "" for the model itself
    type: str
    call: int  # 0 for the module's first call
    path: str  # key path inside the call's output, "" for a plain tensor output
    position: int  # index among the tensors of the call's output (tree_flatten order)
    shape: tuple[int, ...]
    dtype: str
    value: torch.Tensor | None = None
    grad: torch.Tensor | None = None
    stats: dict[str, Any] | None = None  # filled in the hook when tensors are not kept
    grad_stats: dict[str, Any] | None = None
    wants_grad: bool = False  # the tensor was differentiable: it gets a gradient (zero off the objective's path)

    @property
    def bytes(self) -> int:
        numel = 1
        for dim in self.shape:
            numel *= dim
        return numel * getattr(torch, self.dtype).itemsize


@dataclass
class _Call:
    spec: Any
    leaves: list[Any]  # the output's leaves, each tensor replaced by its Entry
    entries: list[Entry] = field(default_factory=list)


class Capture(Displayable):
    """Forward hooks on the selected modules of `model` while the `with` block runs; the kept outputs
    afterwards: `cap["layer1"]` (first call), `cap["layer1.0.relu#2"]`, `cap.grad("layer1")`, `cap.save(path)`.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str] | None = None, *, types: Sequence[str] | None = None,
                 grads: bool = False, keep: bool = True) -> None:
        self.model = model
        self.modules = select_modules(model, layers, types)
        self.grads = grads
        self.keep = keep
        self.entries: list[Entry] = []
        self._by_key: dict[str, Entry] = {}
        self._calls: dict[tuple[str, int], _Call] = {}
        self._counts: dict[str, int] = {}
        self._handles: list[Any] = []
        self._roots: list[torch.Tensor] = []

    # hooks ---------------------------------------------------------------------------------------
    def __enter__(self) -> Capture:
        try:
            for name, module in self.modules.items():
                self._handles.append(module.register_forward_hook(self._hook_for(name)))
            if self.grads:
                self._handles.append(self.model.register_forward_pre_hook(self._differentiable_inputs,
                                                                          with_kwargs=True))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every hook this capture registered (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook_for(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self._keep(name, module, output)

        return hook

    def _differentiable_inputs(self, module: nn.Module, args: Any, kwargs: Any) -> tuple[Any, Any]:
        """With gradients asked for, inputs that do not require grad are replaced by detached copies that do
        (the caller's tensors are not touched), so that every selected output is differentiable."""
        if not torch.is_grad_enabled():
            return args, kwargs

        def swap(value: Any) -> Any:
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                if not value.requires_grad:
                    value = value.detach().requires_grad_()
                self._roots.append(value)
            return value

        return tree_map(swap, args), tree_map(swap, kwargs)

    def _keep(self, name: str, module: nn.Module, output: Any) -> None:
        call = self._counts.get(name, 0)
        self._counts[name] = call + 1
        flat, spec = tree_flatten_with_path(output)
        record = _Call(spec, [])
        for path, leaf in flat:
            if not isinstance(leaf, torch.Tensor):
                record.leaves.append(leaf)
                continue
            suffix = _path_text(path)
            entry = Entry(key=f"{name or ROOT}#{call}{suffix}", layer=name, type=type(module).__name__, call=call,
                          path=suffix, position=len(record.entries), shape=tuple(leaf.shape),
                          dtype=str(leaf.dtype).removeprefix("torch."))
            if self.keep:
                entry.value = leaf.detach().clone(memory_format=torch.contiguous_format)
            else:
                entry.stats = dump_writer.tensor_stats(leaf)
            if self.grads and leaf.requires_grad:
                entry.wants_grad = True
                leaf.register_hook(self._grad_hook(entry))
            record.leaves.append(entry)
            record.entries.append(entry)
            self.entries.append(entry)
            self._by_key[entry.key] = entry
        self._calls[(name, call)] = record

    def _grad_hook(self, entry: Entry) -> Callable[[torch.Tensor], None]:
        def hook(grad: torch.Tensor) -> None:
            self._set_grad(entry, grad.detach())

        return hook

    def _set_grad(self, entry: Entry, grad: torch.Tensor) -> None:
        if self.keep:
            entry.grad = grad.clone(memory_format=torch.contiguous_format)
        else:
            entry.grad_stats = dump_writer.tensor_stats(grad)

    # gradients -----------------------------------------------------------------------------------
    def backward(self, objective_value: torch.Tensor) -> None:
        """Differentiate `objective_value` (a scalar computed from the model's output) back to the inputs; the
        tensor hooks keep the gradient of every selected output. Parameters' `.grad` are not touched."""
        if not self.grads:
            raise InspectlabError("this capture was made with grads=False")
        if not objective_value.requires_grad:
            raise InspectlabError("the objective does not require grad: run the forward with gradients enabled "
                                  "inside the capture")
        roots = [t for t in self._roots if t.requires_grad]
        roots = roots or [p for p in self.model.parameters() if p.requires_grad]
        if not roots:
            raise InspectlabError("nothing to differentiate with respect to: no input or parameter requires grad")
        torch.autograd.grad(objective_value, roots, allow_unused=True)
        for entry in self.entries:  # off the objective's path: the gradient is zero
            if entry.wants_grad and entry.grad is None and entry.grad_stats is None:
                self._set_grad(entry, torch.zeros(entry.shape, dtype=getattr(torch, entry.dtype)))

    # access --------------------------------------------------------------------------------------
    @property
    def called(self) -> set[str]:
        """The selected modules that ran (through their forward) while the capture was on."""
        return set(self._counts)

    def keys(self) -> list[str]:
        return [entry.key for entry in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._resolve(key, quiet=True) is not None

    def __getitem__(self, key: str) -> Any:
        """A kept output: an entry key, or `name` / `name#k` for a whole call's output (rebuilt dict/list/tuple
        for a structured output); `name` alone is its first call."""
        return self._value(key, "value")

    def grad(self, key: str) -> Any:
        """The gradient of the objective with respect to a kept output (same keys as `cap[key]`)."""
        return self._value(key, "grad")

    def calls(self, name: str) -> list[Any]:
        """Every call's output of module `name`, in call order."""
        layer = "" if name == ROOT else name
        return [self[f"{name}#{call}"] for (module, call) in self._calls if module == layer]

    def tensors(self, grads: bool = True) -> dict[str, torch.Tensor]:
        """Every kept tensor by key, gradients under key + ".grad"."""
        if not self.keep:
            raise InspectlabError("this capture kept statistics only (keep=False)")
        result = {entry.key: entry.value for entry in self.entries if entry.value is not None}
        if grads:
            suffix = dump_writer.GRAD_SUFFIX
            result.update({entry.key + suffix: entry.grad for entry in self.entries if entry.grad is not None})
        return result

    def save(self, path: str, force: bool = False, manifest: bool = True, header: Mapping[str, Any] | None = None,
             fields: Mapping[tuple[str, int, int], Any] | None = None) -> list[str]:
        """Write the kept tensors (safetensors, npz or pt, from the suffix) and, beside them, the JSON
        manifest (`path` + ".json"; `header` adds top-level items, `fields` the receptive fields from
        `dump_writer.receptive_field_lookup`), as one unit (`dump_writer.write_dump`: the manifest records the
        tensor file's size and sha256, `dump_writer.read_dump` checks them); returns the paths written."""
        tensors = self.tensors()
        document = dump_writer.build_manifest(self.entries, header or {}, path, fields) if manifest else None
        return dump_writer.write_dump(tensors, document, path, force)

    def _resolve(self, key: str, quiet: bool = False) -> tuple[_Call, Entry | None] | None:
        entry = self._by_key.get(key)
        if entry is not None:
            return self._calls[(entry.layer, entry.call)], entry
        match = _KEY.match(key)
        name = match.group("name") if match else key
        call = int(match.group("call")) if match and match.group("call") else 0
        record = self._calls.get(("" if name == ROOT else name, call))
        if record is not None or quiet:
            return (record, None) if record is not None else None
        close = difflib.get_close_matches(key, self.keys(), n=3, cutoff=0.4)
        raise KeyError(f"{key!r} was not captured" + (f"; nearest: {', '.join(close)}" if close else ""))

    def _value(self, key: str, attribute: str) -> Any:
        resolved = self._resolve(key)
        assert resolved is not None
        record, entry = resolved
        if entry is None and len(record.entries) == 1 and not record.entries[0].path:
            entry = record.entries[0]
        if entry is not None:
            return self._checked(entry, attribute)
        leaves = [self._checked(leaf, attribute) if isinstance(leaf, Entry) else leaf for leaf in record.leaves]
        return tree_unflatten(leaves, record.spec)

    def _checked(self, entry: Entry, attribute: str) -> torch.Tensor | None:
        if not self.keep:
            raise InspectlabError("this capture kept statistics only (keep=False)")
        if attribute == "grad" and not self.grads:
            raise InspectlabError("this capture was made with grads=False")
        return getattr(entry, attribute)


def capture(model: nn.Module, layers: Sequence[str] | None = None, *, types: Sequence[str] | None = None,
            grads: bool = False, keep: bool = True) -> Capture:
    """`with capture(model, ["layer1", "layer2.*"]) as cap: model(x)`, then `cap["layer1"]`, `cap.save(path)`.

    `keep=False` keeps only each tensor's statistics (computed in the hook), not the tensor."""
    return Capture(model, layers, types=types, grads=grads, keep=keep)


def _path_text(path: Sequence[Any]) -> str:
    parts = []
    for key in path:
        if isinstance(key, MappingKey):
            parts.append(f"[{key.key}]")
        elif isinstance(key, SequenceKey):
            parts.append(f"[{key.idx}]")
        elif isinstance(key, GetAttrKey):
            parts.append(f"[{key.name}]")
        else:
            parts.append(f"[{key}]")
    return "".join(parts)


# --------------------------------------------------------------------------------------------------
# objective


def primary_output(output: Any) -> torch.Tensor:
    """The tensor an objective is taken on: the output itself, its "out" entry, else its first tensor."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping) and isinstance(output.get("out"), torch.Tensor):
        return output["out"]
    flat, _ = tree_flatten_with_path(output)
    for _, leaf in flat:
        if isinstance(leaf, torch.Tensor) and leaf.is_floating_point():
            return leaf
    raise InspectlabError("the model's output holds no floating-point tensor to differentiate")


def objective(output: Any, target: int | None = None) -> torch.Tensor:
    """The scalar the gradients are taken of: the sum of the primary output, or the logit of class `target`
    (dim 1) summed over the batch and, for a segmentation output N×K×H×W, over the pixels."""
    primary = primary_output(output)
    if target is None:
        return primary.sum()
    if primary.dim() < 2:
        raise InspectlabError(f"--target needs an output with a class dim (N×K...), got {list(primary.shape)}")
    if not 0 <= target < primary.shape[1]:
        raise InspectlabError(f"--target {target} is out of range: the output has {primary.shape[1]} classes")
    return primary[:, target].sum()


# --------------------------------------------------------------------------------------------------
# the dump: plan from the Trace, capture, write
