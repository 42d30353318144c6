"""The recorder: one pass of a model under module hooks and a TorchDispatchMode builds a Trace.

The pass runs on the meta device by default: parameters and inputs are replaced by meta tensors
through `torch.func.functional_call`, so the user's model is not modified and no activation memory
is used. Hooks are removed in `finally`, also when the forward raises.

A ScriptModule takes no hooks and no stand-ins (torch supports neither): it is recorded as one call whose ops
are all the dispatch mode sees, with the parameters it holds (a copy loaded on meta: `tracing.build`).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from inspectlab.core.errors import InspectlabError
from inspectlab.core.naming import depth_of
from inspectlab.core.shapes import shape_text
from inspectlab.tracing.failures import ModelRejectedInput as ModelRejectedInput  # re-exported: the recorder's errors
from inspectlab.tracing.failures import NeedsRealRun as NeedsRealRun
from inspectlab.tracing.failures import classify, refuse_stand_ins
from inspectlab.tracing.implicit_calls import add_implicit_calls
from inspectlab.tracing.meta_shortcuts import SHORTCUTS, on_meta
from inspectlab.tracing.records import ModuleCall, ModuleNode, OpRecord, TensorInfo, Trace


class _TensorIds:
    """Tensor object -> tensor id, by identity, without keeping activations alive.

    A dict keyed by `id(tensor)` holding a weak reference: an entry whose tensor died (and whose id
    Python reused) fails the identity check and counts as unknown. Leaner than WeakIdKeyDictionary,
    which this replaces on the hot path (hundreds of lookups per traced forward).
    """

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref, int]] = {}

    def get(self, tensor: torch.Tensor) -> int | None:
        entry = self._entries.get(id(tensor))
        if entry is not None and entry[0]() is tensor:
            return entry[1]
        return None

    def set(self, tensor: torch.Tensor, tensor_id: int) -> None:
        self._entries[id(tensor)] = (weakref.ref(tensor), tensor_id)


class _OpPlan:
    """What record_op needs of an op's schema, computed once per op overload."""

    __slots__ = ("name", "arguments", "written", "return_sources", "shortcut")

    def __init__(self, func: Any) -> None:
        schema = func._schema
        self.name = str(func)
        self.arguments = [argument.name for argument in schema.arguments]
        self.written = [argument.name for argument in schema.arguments
                        if argument.alias_info is not None and argument.alias_info.is_write]
        self.return_sources = [_aliased_argument(schema, result.alias_info) if result.alias_info is not None else None
                               for result in schema.returns]
        self.shortcut = SHORTCUTS.lookup(*self.name.rsplit(".", 1))  # ("aten.add", "Tensor")


_PLANS: dict[Any, _OpPlan] = {}


def _plan(func: Any) -> _OpPlan:
    plan = _PLANS.get(func)
    if plan is None:
        plan = _PLANS[func] = _OpPlan(func)
    return plan


def _tensors_in(structure: Any, found: list[torch.Tensor]) -> list[torch.Tensor]:
    """The tensors in nested tuples/lists/dicts, in order; other containers go through torch's pytree."""
    if isinstance(structure, torch.Tensor):
        found.append(structure)
    elif isinstance(structure, (tuple, list)):
        for item in structure:
            _tensors_in(item, found)
    elif isinstance(structure, dict):
        for item in structure.values():
            _tensors_in(item, found)
    elif structure is not None and not isinstance(structure, (bool, int, float, str)):
        leaves, _ = tree_flatten(structure)
        if leaves != [structure]:
            for item in leaves:
                _tensors_in(item, found)
    return found


class _TraceBuilder:
    """Accumulates records during the pass."""

    def __init__(self) -> None:
        self.tensors: dict[int, TensorInfo] = {}
        self.ops: list[OpRecord] = []
        self.calls: list[ModuleCall] = []
        self.stack: list[int] = []
        self.functions: list[str] = []
        self.phase = "forward"
        self._ids = _TensorIds()
        self._keep: list[torch.Tensor] = []  # inputs/params stay alive so their ids stay unique
        self.failure: Exception | None = None  # the exception of the op that failed, if one did

    # tensors -------------------------------------------------------------------------------
    def register(self, tensor: torch.Tensor, kind: str, name: str | None = None, producer: int | None = None,
                 alias_of: int | None = None) -> int:
        tensor_id = len(self.tensors)
        storage = self.tensors[alias_of].storage if alias_of is not None else tensor_id
        self.tensors[tensor_id] = TensorInfo(
            id=tensor_id, shape=tuple(tensor.shape), dtype=str(tensor.dtype).removeprefix("torch."),
            element_size=tensor.element_size(), kind=kind, producer=producer, name=name,
            alias_of=alias_of, storage=storage,
        )
        self._ids.set(tensor, tensor_id)
        if kind in ("input", "param", "buffer"):
            self._keep.append(tensor)
        return tensor_id

    def known(self, tensor: torch.Tensor) -> bool:
        return self._ids.get(tensor) is not None

    def id_of(self, tensor: torch.Tensor) -> int:
        known = self._ids.get(tensor)
        return known if known is not None else self.register(tensor, "constant")

    def ids_in(self, *structures: Any) -> list[int]:
        return [self.id_of(tensor) for tensor in _tensors_in(structures, [])]

    # ops -----------------------------------------------------------------------------------
    def record_op(self, plan: _OpPlan, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
        index = len(self.ops)
        named: dict[str, Any] = dict(zip(plan.arguments, args, strict=False))
        if kwargs:
            for name in plan.arguments[len(args):]:
                if name in kwargs:
                    named[name] = kwargs[name]
        plain: dict[str, Any] = {}
        tensor_args: dict[str, int | list[int] | None] = {}
        reads: list[int] = []
        for name, value in named.items():
            if isinstance(value, torch.Tensor):
                tensor_id = tensor_args[name] = self.id_of(value)
                reads.append(tensor_id)
            elif isinstance(value, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in value):
                ids = [self.id_of(v) for v in value if isinstance(v, torch.Tensor)]
                tensor_args[name] = ids
                reads.extend(ids)
            else:
                plain[name] = _plain_value(value)
        for tensor_id in reads:
            self.tensors[tensor_id].consumers.append(index)

        # arguments the op writes (in-place, out=): their tensors get a new version
        written: dict[int, int] = {}  # python id of the tensor object -> new tensor id
        for name in plan.written:
            value = named.get(name)
            if isinstance(value, torch.Tensor):
                old = self._ids.get(value)
                written[id(value)] = self.register(value, "activation", producer=index, alias_of=old)
        outputs: list[int] = []
        results = (out,) if len(plan.return_sources) == 1 else out if isinstance(out, (tuple, list)) else ()
        for result, source_name in zip(results, plan.return_sources, strict=False):
            source = named.get(source_name) if source_name is not None else None
            source_id = self._ids.get(source) if isinstance(source, torch.Tensor) else None
            for value in (result if isinstance(result, (tuple, list)) else (result,)):  # Tensor[] results: split
                if not isinstance(value, torch.Tensor):
                    continue
                if id(value) in written:
                    outputs.append(written[id(value)])
                else:
                    outputs.append(self.register(value, "activation", producer=index, alias_of=source_id))
        self.ops.append(OpRecord(
            index=index, name=plan.name, args=plain, tensor_args=tensor_args, inputs=reads,
            outputs=outputs, module_call=self.stack[-1] if self.stack else None,
            function=self.functions[0] if self.functions else None, phase=self.phase,
            inplace=bool(written),
        ))

    # module calls ---------------------------------------------------------------------------
    def enter(self, name: str, module: nn.Module, args: Any, kwargs: Any, call_count: int) -> None:
        index = len(self.calls)
        self.calls.append(ModuleCall(
            index=index, name=name, type=type_name(module),
            depth=depth_of(name), call=call_count,
            parent=self.stack[-1] if self.stack else None,
            inputs=self.ids_in(args, kwargs), first_op=len(self.ops),
        ))
        self.stack.append(index)

    def leave(self, output: Any) -> None:
        call = self.calls[self.stack.pop()]
        call.outputs = self.ids_in(output)
        call.end_op = len(self.ops)


def _plain_value(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain_value(v) for v in value]
    return str(value)


def _aliased_argument(schema: Any, alias: Any) -> str | None:
    """The name of the argument whose alias set a result shares (a view's base), if any.

    A list of views (`Tensor(a)[]`: split, chunk, unbind) shows an empty alias set on the list itself;
    its pieces are views of the argument that may alias anything (`Tensor(a -> *)`).
    """
    for argument in schema.arguments:
        info = argument.alias_info
        if info is None:
            continue
        if info.before_set & alias.before_set or (not alias.before_set and "*" in info.after_set):
            return argument.name
    return None


class _DispatchRecorder(TorchDispatchMode):
    def __init__(self, builder: _TraceBuilder) -> None:
        super().__init__()
        self.builder = builder

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        plan = _plan(func)
        out = NotImplemented
        if plan.shortcut is not None and on_meta(args):
            out = plan.shortcut(*args, **kwargs)
        if out is NotImplemented:
            try:
                out = func(*args, **kwargs)
            except Exception as exc:  # kept: TorchScript reraises it without its message
                self.builder.failure = exc
                raise
        self.builder.record_op(plan, args, kwargs, out)
        return out


def _skip_dynamo_import(mode: type[TorchDispatchMode]) -> None:
    """torch wraps __torch_dispatch__ to disable dynamo, importing torch._dynamo (1-2 s) on first call.

    The trace never runs under torch.compile, so mark the raw handler as already disabled.
    """
    raw = getattr(mode.__dict__.get("__torch_dispatch__"), "__wrapped__", None)
    if raw is not None and not hasattr(raw, "__dynamo_disable"):
        raw.__dynamo_disable = raw


_skip_dynamo_import(_DispatchRecorder)


class _FunctionRecorder(TorchFunctionMode):
    """Remembers the outermost torch-level function running (F.interpolate, torch.cat, Tensor.add)."""

    def __init__(self, builder: _TraceBuilder) -> None:
        super().__init__()
        self.builder = builder

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        # an aten op called as such (an exported graph calls `torch.ops.aten.conv2d.default`): its packet's name
        name = getattr(func, "__name__", str(func)).partition(".")[0]
        self.builder.functions.append(name + _string_padding(name, args, kwargs))
        try:
            return func(*args, **(kwargs or {}))
        finally:
            self.builder.functions.pop()


def _string_padding(name: str, args: Any, kwargs: Any) -> str:
    """".padding" for a convolution given its padding as a string ("same", "valid"): aten's overload name for
    it (`aten::conv2d.padding`, which torch runs as `_convolution_mode`; fvcore has no handle for it)."""
    if name not in ("conv1d", "conv2d", "conv3d"):
        return ""
    padding = (kwargs or {}).get("padding", args[4] if len(args) > 4 else None)
    return ".padding" if isinstance(padding, str) else ""


def _state_on(model: nn.Module, device: str, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor] | None:
    """Stand-ins for the parameters and buffers not already on `device` (and in `dtype`, for floats).

    None when every tensor is already there: the model then runs as it is.
    """
    tensors = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(model.named_buffers(remove_duplicate=False))

    def fits(tensor: torch.Tensor) -> bool:
        on_device = tensor.device.type == torch.device(device).type
        return on_device and (dtype is None or not tensor.is_floating_point() or tensor.dtype == dtype)

    if all(fits(t) for t in tensors.values()):
        return None
    moved: dict[int, torch.Tensor] = {}
    state = {}
    for name, tensor in tensors.items():
        if id(tensor) not in moved:
            kind = dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype
            if device == "meta":
                copy = torch.empty_like(tensor, device="meta", dtype=kind)
            else:
                copy = tensor.detach().to(device=device, dtype=kind, copy=True)
            moved[id(tensor)] = copy.requires_grad_(tensor.requires_grad) if copy.is_floating_point() else copy
        state[name] = moved[id(tensor)]
    return state


def is_script(module: nn.Module) -> bool:
    """Whether a module is TorchScript (`torch.jit.script`, `torch.jit.trace`, `torch.jit.load`)."""
    return isinstance(module, torch.jit.ScriptModule)


def type_name(module: nn.Module) -> str:
    """A module's class name; a ScriptModule's is the class it was scripted from (`original_name`)."""
    original = getattr(module, "original_name", None) if is_script(module) else None
    return str(original) if original else type(module).__name__


def module_nodes(model: nn.Module, param_ids: Mapping[str, int] | None = None) -> dict[str, ModuleNode]:
    """The module tree with each module's own parameters and buffers, and its children's tree names.

    `param_ids` (full parameter name -> tensor id, any of a shared tensor's names) gives each parameter
    the identity of its tensor.
    """
    param_ids = param_ids or {}
    named = list(model.named_modules())
    tree_names = {module: name for name, module in named}
    nodes = {}
    for name, module in named:
        own = dict(module.named_parameters(recurse=False))
        prefix = f"{name}." if name else ""
        nodes[name] = ModuleNode(
            name=name, type=type_name(module), depth=depth_of(name),
            params={n: (tuple(p.shape), p.numel(), p.requires_grad) for n, p in own.items()},
            buffers={n: tuple(b.shape) for n, b in module.named_buffers(recurse=False)},
            is_leaf=next(module.children(), None) is None,
            param_ids={n: param_ids[prefix + n] for n in own if prefix + n in param_ids},
            children=tuple(tree_names[child] for child in module.children()),
        )
    return nodes


def record(model: nn.Module, args: Sequence[Any], kwargs: Mapping[str, Any] | None = None,
           device: str = "meta", backward: bool = False, dtype: torch.dtype | None = None) -> Trace:
    """Run `model(*args, **kwargs)` once under hooks and a dispatch mode, and return its Trace.

    `args` must already be on `device`; `dtype` casts the floating parameters (of stand-ins, never the
    model's own). Raises NeedsRealRun when the meta pass fails for a reason of
    the meta device, and ModelRejectedInput when the model rejects its input.
    """
    kwargs = dict(kwargs or {})
    builder = _TraceBuilder()
    names = {module: name for name, module in model.named_modules()}
    call_counts: dict[str, int] = {}
    handles = []

    def pre_hook(module: nn.Module, hook_args: Any, hook_kwargs: Any) -> None:
        name = names[module]
        builder.enter(name, module, hook_args, hook_kwargs, call_counts.get(name, 0))
        call_counts[name] = call_counts.get(name, 0) + 1

    def post_hook(module: nn.Module, hook_args: Any, hook_kwargs: Any, output: Any) -> None:
        builder.leave(output)

    state = _state_on(model, device, dtype)
    scripted = [name for module, name in names.items() if is_script(module)]
    if state is not None and scripted:
        held = next((f"{t.dtype} on {t.device}" for t in (*model.parameters(), *model.buffers())), "none")
        refuse_stand_ins(scripted[0], device, held.replace("torch.", ""))
    param_ids = _register_state(builder, model, state)
    input_ids = builder.ids_in(args, kwargs)
    for tensor_id in input_ids:
        builder.tensors[tensor_id].kind = "input"
    try:
        for module in names:
            if not is_script(module):
                handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
                handles.append(module.register_forward_hook(post_hook, with_kwargs=True))
        with _FunctionRecorder(builder), _DispatchRecorder(builder):
            if is_script(model):  # no hooks: the root's call is recorded here
                builder.enter("", model, args, kwargs, 0)
            if state is None:
                output = model(*args, **kwargs)
            else:
                output = torch.func.functional_call(model, state, tuple(args), kwargs, strict=False)
            if is_script(model):
                builder.leave(output)
            output_ids = builder.ids_in(output)
            if backward:
                _run_backward(builder, output)
    except Exception as exc:
        raise classify(exc, device, _where(builder), builder.failure) from exc
    finally:
        for handle in handles:
            handle.remove()
    modules = module_nodes(model, param_ids)
    calls = add_implicit_calls(builder.calls, builder.ops, builder.tensors, modules, output_ids)
    return Trace(
        model_type=type_name(model), device=device, modules=modules, calls=calls,
        ops=builder.ops, tensors=builder.tensors, inputs=input_ids, outputs=output_ids, training=model.training,
    )


def _register_state(builder: _TraceBuilder, model: nn.Module, state: Mapping[str, torch.Tensor] | None,
                    ) -> dict[str, int]:
    """Register parameters (kind "param") and buffers once each, under their first name; return every
    parameter name (shared tensors under each of their names) -> its tensor id."""
    param_ids: dict[str, int] = {}
    for kind, named in (("param", model.named_parameters(remove_duplicate=False)),
                        ("buffer", model.named_buffers(remove_duplicate=False))):
        for name, original in named:
            tensor = state[name] if state is not None else original
            if not builder.known(tensor):
                tensor_id = builder.register(tensor, kind, name=name)
                builder.tensors[tensor_id].requires_grad = original.requires_grad
            if kind == "param":
                param_ids[name] = builder.id_of(tensor)
    return param_ids


def _run_backward(builder: _TraceBuilder, output: Any) -> None:
    leaves, _ = tree_flatten(output)
    differentiable = [t for t in leaves if isinstance(t, torch.Tensor) and t.requires_grad]
    if not differentiable:
        raise InspectlabError("--backward: no output requires grad (are all parameters frozen?)")
    builder.phase = "objective"
    objective = sum(t.float().sum() for t in differentiable)
    builder.phase = "backward"
    objective.backward()  # type: ignore[union-attr]


def _where(builder: _TraceBuilder) -> str | None:
    """The innermost module running when the forward failed, and its input shapes."""
    if not builder.stack:
        return None
    call = builder.calls[builder.stack[-1]]
    shapes = shape_text([builder.tensors[t].shape for t in call.inputs]) or "no tensor"
    return f"layer {call.label} ({call.type}) rejected input {shapes}"
