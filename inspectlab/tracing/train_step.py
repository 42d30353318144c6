"""One steady-state training step recorded as a Trace: forward, loss, backward, `optimizer.step()`,
`zero_grad(set_to_none=True)`, with the optimizer state already there (made by a warm-up step first).

The step runs inside a wrapper module (`_Step`) recorded by `recorder.record`, so the Trace holds every op of
it, on the meta device (autograd and torch.optim run on meta tensors). Each part of the step is a child call
of the wrapper whose outputs name the tensors it is about, so the Trace itself says which tensors they are:
`warmup` returns the optimizer state, `model` is the model's forward, `saved` returns the tensors autograd
saved for backward (seen by `torch.autograd.graph.saved_tensors_hooks`), `loss` the loss, `backward` the
parameters' gradients, `step` the state after the update. The model's own modules appear under `model.`.

`checkpoint`: module names whose forward runs under `torch.utils.checkpoint.checkpoint(use_reentrant=False)`
(their activations are not saved, and are recomputed during backward); the modules are put back in `finally`.

`autocast`: the forward runs under `torch.autocast("cpu", dtype)`. Autocast casts only tensors of its own
device type, never meta ones, so such a step is recorded on fake CPU tensors instead (`FakeTensorMode`:
shapes and dtypes, no memory): the model's parameters and buffers are swapped for fake stand-ins for the
pass and put back in `finally`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from inspectlab.core.errors import InspectlabError
from inspectlab.tracing.failures import ModelRejectedInput, NeedsRealRun
from inspectlab.tracing.recorder import record
from inspectlab.tracing.records import ModuleCall, Trace

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
PARTS = ("warmup", "model", "saved", "loss", "backward", "step", "zero")
MODEL = "model"  # the name of the user's model inside the wrapper


def make_optimizer(name: str, params: Sequence[torch.Tensor]) -> torch.optim.Optimizer:
    """The optimizer of a step: SGD (no state), SGD with momentum 0.9 (one buffer per parameter), Adam or
    AdamW (two, and a step count), each with torch's defaults otherwise."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.01)
    if name == "momentum":
        return torch.optim.SGD(params, lr=0.01, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params)
    if name == "adamw":
        return torch.optim.AdamW(params)
    raise InspectlabError(f"unknown optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")


def training_loss(output: Any, name: str | None = None) -> torch.Tensor:
    """The step's loss: the sum of every floating output that requires grad (`t.float().sum()` each), or of
    the one output `name` (a dict key, a tuple index, an attribute)."""
    if name is not None:
        output = _named_output(output, name)
    leaves = [t for t in tree_leaves(output) if isinstance(t, torch.Tensor) and t.requires_grad]
    if not leaves:
        raise InspectlabError("--train: no output requires grad (are all parameters frozen?)")
    total = leaves[0].float().sum()
    for tensor in leaves[1:]:
        total = total + tensor.float().sum()
    return total


def _on_fake_cpu(values: Any) -> Any:
    """Fake CPU tensors of the tensors' shapes and dtypes (call inside the FakeTensorMode)."""
    from torch.utils._pytree import tree_map

    def fake(value: Any) -> Any:
        return torch.empty(value.shape, dtype=value.dtype, device="cpu") if isinstance(value, torch.Tensor) else value

    return tree_map(fake, values)


def _needs_values(error: BaseException | None) -> bool:
    from torch._subclasses.fake_tensor import DataDependentOutputException, DynamicOutputShapeException

    return isinstance(error, (DataDependentOutputException, DynamicOutputShapeException)) or (
        error is not None and "_local_scalar_dense" in str(error))


def _named_output(output: Any, name: str) -> Any:
    if isinstance(output, Mapping) and name in output:
        return output[name]
    if isinstance(output, (tuple, list)) and name.lstrip("-").isdigit() and -len(output) <= int(name) < len(output):
        return output[int(name)]
    if hasattr(output, name) and not callable(getattr(output, name)):
        return getattr(output, name)
    keys = list(output) if isinstance(output, Mapping) else None
    raise InspectlabError(f"--loss {name!r}: the model's output has no such entry"
                          + (f" (its keys: {', '.join(map(str, keys))})" if keys else ""))


@dataclass
class StepTrace:
    """The Trace of one step and where its parts are."""

    trace: Trace
    parts: dict[str, ModuleCall]  # PARTS -> the wrapper's call of that part
    saved: list[tuple[int, str]]  # (tensor id, the innermost module running when autograd saved it)
    params: list[int]  # the trainable parameters, in the optimizer's order
    grads: list[int | None]  # their gradients after backward (None: no gradient reached it)
    state: list[int]  # the optimizer state tensors (made by the warm-up)
    state_owner: dict[int, int]  # each state tensor -> the parameter it belongs to
    optimizer: str
    checkpointed: list[str]

    def ops_of(self, *parts: str) -> range:
        """The op indices from the first op of the first part to the end of the last."""
        return range(self.parts[parts[0]].first_op, self.parts[parts[-1]].end_op)


class _Part(nn.Module):
    """One part of the step: its forward runs `job` and returns the tensors the Trace should name."""

    def __init__(self, job: Callable[..., Any]) -> None:
        super().__init__()
        self.job = job

    def forward(self, *args: Any) -> Any:
        return self.job(*args)


class _Step(nn.Module):
    """The step as one module: its forward runs the parts (each a child call) around the model's forward."""

    def __init__(self, model: nn.Module, optimizer: str, loss: str | None, autocast: torch.dtype | None) -> None:
        super().__init__()
        self.model = model
        self.optimizer_name, self.loss_name, self.autocast = optimizer, loss, autocast
        self.packed: list[tuple[torch.Tensor, str]] = []
        self.running: list[str] = []
        for part in PARTS[:1] + PARTS[2:]:
            self.add_module(part, _Part(getattr(self, f"_{part}")))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise InspectlabError("--train: the model has no trainable parameter")
        self.params = params
        self.opt = make_optimizer(self.optimizer_name, params)
        with torch.enable_grad():
            self.warmup(*params)
            with self._saving(), self._autocast():
                output = self.model(*args, **kwargs)
            self.saved()
            loss = self.loss(output)
            self.backward(loss)
            self.step()
            self.zero()
        return output, loss

    def _warmup(self, *params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            for param in params:
                param.grad = torch.zeros_like(param)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return self._state()

    def _state(self) -> tuple[torch.Tensor, ...]:
        """The optimizer's state tensors, parameter by parameter (`state_counts`: how many each)."""
        per_param = [[v for v in self.opt.state.get(p, {}).values() if isinstance(v, torch.Tensor)]
                     for p in self.params]
        self.state_counts = [len(tensors) for tensors in per_param]
        return tuple(t for tensors in per_param for t in tensors)

    def _saved(self) -> tuple[torch.Tensor, ...]:
        return tuple(tensor for tensor, _ in self.packed)

    def _loss(self, output: Any) -> torch.Tensor:
        return training_loss(output, self.loss_name)

    def _backward(self, loss: torch.Tensor) -> tuple[torch.Tensor, ...]:
        loss.backward()
        return tuple(p.grad if p.grad is not None else p for p in self.params)  # the parameter: no gradient

    def _step(self) -> tuple[torch.Tensor, ...]:
        self.opt.step()
        return self._state()

    def _zero(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    @contextlib.contextmanager
    def _saving(self) -> Iterator[None]:
        """Autograd's saved tensors (pack hook), each with the innermost module running when it was saved."""
        names = {module: name for name, module in self.model.named_modules()}

        def enter(module: nn.Module, args: Any) -> None:
            self.running.append(names[module])

        def leave(module: nn.Module, args: Any, output: Any) -> None:
            self.running.pop()

        handles = []
        for module in names:
            handles.append(module.register_forward_pre_hook(enter))
            handles.append(module.register_forward_hook(leave))

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            self.packed.append((tensor, self.running[-1] if self.running else ""))
            return tensor

        try:
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
                yield
        finally:
            for handle in handles:
                handle.remove()

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cpu", dtype=self.autocast)


@contextlib.contextmanager
def checkpointed(model: nn.Module, names: Sequence[str]) -> Iterator[None]:
    """Run the forward of the named modules under non-reentrant activation checkpointing; put them back.
    The recomputation runs the whole forward again (`set_checkpoint_early_stop(False)`: an early stop would
    leave the recomputed modules' calls open in the Trace)."""
    from torch.utils.checkpoint import checkpoint, set_checkpoint_early_stop

    modules = dict(model.named_modules())
    patched = []
    try:
        for name in names:
            module = modules[name]
            had = "forward" in vars(module)
            original = module.forward
            module.forward = functools.partial(checkpoint, original, use_reentrant=False)  # type: ignore[method-assign]
            patched.append((module, had, original))
        with set_checkpoint_early_stop(False):
            yield
    finally:
        for module, had, original in reversed(patched):
            if had:
                module.forward = original  # type: ignore[method-assign]
            else:
                del module.forward


@contextlib.contextmanager
def fake_stand_ins(model: nn.Module, mode: Any) -> Iterator[None]:
    """Swap every parameter and buffer of `model` for a fake CPU tensor of its shape and dtype (made in the
    FakeTensorMode `mode`); put the originals back."""
    swapped = []
    try:
        for module in model.modules():
            for table in (module._parameters, module._buffers):
                for name, tensor in list(table.items()):
                    if tensor is None:
                        continue
                    with mode:
                        stand_in = torch.empty(tensor.shape, dtype=tensor.dtype, device="cpu")
                    if isinstance(tensor, nn.Parameter):
                        stand_in = nn.Parameter(stand_in, requires_grad=tensor.requires_grad)
                    swapped.append((table, name, tensor))
                    table[name] = stand_in
        yield
    finally:
        for table, name, tensor in reversed(swapped):
            table[name] = tensor


def record_step(model: nn.Module, args: Sequence[Any], kwargs: Mapping[str, Any] | None = None, *,
                optimizer: str = "sgd", loss: str | None = None, autocast: torch.dtype | None = None,
                checkpoint: Sequence[str] = ()) -> StepTrace:
    """Record one steady-state training step of `model` on `args` (meta tensors), on the meta device (fake CPU
    tensors under `autocast`)."""
    step = _Step(model, optimizer, loss, autocast)
    with contextlib.ExitStack() as stack:
        stack.enter_context(checkpointed(model, checkpoint))
        device = "meta"
        if autocast is not None:
            from torch._subclasses.fake_tensor import FakeTensorMode

            mode = FakeTensorMode()
            stack.enter_context(fake_stand_ins(model, mode))
            stack.enter_context(mode)
            args, kwargs = _on_fake_cpu((args, kwargs or {}))
            device = "cpu"
        try:
            trace = record(step, args, kwargs, device=device)
        except ModelRejectedInput as error:
            if autocast is not None and _needs_values(error.__cause__):  # fake tensors, like meta ones, have none
                raise NeedsRealRun(str(error)) from error
            raise
    parts = {call.name: call for call in trace.calls if call.depth == 1 and call.name in PARTS}
    saved_call = parts["saved"]
    saved = list(zip(saved_call.outputs, (name for _, name in step.packed), strict=True))
    params = list(parts["warmup"].inputs)  # an in-place update gives a parameter a new id: compare storages
    storage = {tensor_id: trace.tensors[tensor_id].storage for tensor_id in (*params, *parts["backward"].outputs)}
    grads = [None if storage[grad] == storage[param] else grad
             for grad, param in zip(parts["backward"].outputs, params, strict=True)]
    state = list(parts["warmup"].outputs)
    owners = [param for param, count in zip(params, step.state_counts, strict=True) for _ in range(count)]
    return StepTrace(trace=trace, parts=parts, saved=saved, params=params, grads=grads, state=state,
                     state_owner=dict(zip(state, owners, strict=True)), optimizer=optimizer,
                     checkpointed=list(checkpoint))
