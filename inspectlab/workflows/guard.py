"""Hands off the user's model: every pass of inspectlab over a module goes through `hands_off`, which leaves
the module as it found it, bit for bit, whether the pass returns or raises.

What can change during a pass, and what is kept to put it back:

- `training` flags (a real run is in eval mode unless asked otherwise), `requires_grad`, the hooks of every
  module: kept by reference, restored on the way out;
- plain tensor attributes in each module's `__dict__` (a forward that caches `self.last = x` — on the meta
  device that is a meta tensor): the entries are kept by reference; entries a pass adds or rebinds are put
  back, so no meta tensor stays in the model;
- `.grad` of every parameter (a backward accumulates into it): the reference, and a copy of an existing one;
- for a real run only, the values of parameters and buffers (BatchNorm's running statistics and
  `num_batches_tracked` in train mode, a user's in-place update): a copy of each; a tensor is copied back only
  when its version counter shows that it was written.

A real run also runs under `torch.random.fork_rng` (the process's CPU and CUDA generators are as they were) and
keeps grad mode as it was.

Cost: a meta pass keeps references only (a few dictionaries per module: microseconds per module). A real run
also copies the parameters and buffers once, on their own device: memory equal to the model's state (ResNet-50:
98 MiB) and the time of one memcpy of it (~20 ms on a CPU), small beside the forward it guards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from inspectlab.core.errors import InspectlabError
from inspectlab.tracing.build import has_lazy, lazy_modules

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
               "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called",
               "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
               "_load_state_dict_post_hooks")


@dataclass
class _ModuleState:
    training: bool
    tensors: dict[str, Any]  # plain __dict__ entries holding tensors (a list as (list, its items))
    hooks: dict[str, dict[Any, Any]]


@dataclass
class _Snapshot:
    modules: dict[nn.Module, _ModuleState] = field(default_factory=dict)
    requires_grad: dict[torch.Tensor, bool] = field(default_factory=dict)
    grads: dict[torch.Tensor, tuple[torch.Tensor | None, torch.Tensor | None]] = field(default_factory=dict)
    values: dict[torch.Tensor, tuple[int, torch.Tensor | None]] = field(default_factory=dict)  # version, copy


def _plain_tensors(module: nn.Module) -> dict[str, Any]:
    """The public `__dict__` entries holding a tensor or a list/tuple of tensors (torchvision's
    `AnchorGenerator.cell_anchors`, which its forward moves to the input's device)."""
    return {key: value for key, value in vars(module).items() if not key.startswith("_") and (
        isinstance(value, torch.Tensor) or (isinstance(value, (list, tuple)) and value
                                            and all(isinstance(item, torch.Tensor) for item in value)))}


def _kept(value: Any) -> Any:
    """What restore needs of an entry: a list by its object and its items (a forward may fill it in place)."""
    return (value, list(value)) if isinstance(value, list) else value


def snapshot(model: nn.Module, real: bool, copies: bool = True) -> _Snapshot:
    """What a pass over `model` may change (see the module docstring); `real` adds the values (their version
    counters only, without `copies`)."""
    taken = _Snapshot()
    for module in model.modules():
        hooks = {name: dict(getattr(module, name)) for name in _HOOK_DICTS if hasattr(module, name)}
        tensors = {key: _kept(value) for key, value in _plain_tensors(module).items()}
        taken.modules[module] = _ModuleState(module.training, tensors, hooks)
    for param in model.parameters():
        taken.requires_grad[param] = param.requires_grad
        grad = param.grad
        taken.grads[param] = (grad, grad.detach().clone() if grad is not None and real else None)
    if real:
        with torch.no_grad():
            for tensor in (*model.parameters(), *model.buffers()):
                if not tensor.is_meta:
                    taken.values[tensor] = (tensor._version, tensor.detach().clone() if copies else None)
    return taken


def restore(taken: _Snapshot) -> None:
    """Put back everything `snapshot` kept."""
    written = False
    with torch.no_grad():
        for tensor, (version, copy) in taken.values.items():
            if tensor._version != version:
                if copy is None:
                    written = True
                else:
                    tensor.copy_(copy)
    for param, wanted in taken.requires_grad.items():
        if param.requires_grad != wanted:
            param.requires_grad_(wanted)
    for param, (grad, copy) in taken.grads.items():
        if grad is not None and copy is not None and not torch.equal(grad, copy):
            with torch.no_grad():
                grad.copy_(copy)
        param.grad = grad
    for module, state in taken.modules.items():
        module.training = state.training
        current = _plain_tensors(module)
        for key in current.keys() - state.tensors.keys():
            delattr(module, key)
        for key, kept in state.tensors.items():
            value = kept[0] if isinstance(kept, tuple) and isinstance(kept[0], list) else kept
            if isinstance(value, list) and (len(value) != len(kept[1]) or any(
                    now is not then for now, then in zip(value, kept[1], strict=False))):
                value[:] = kept[1]
            if current.get(key) is not value:
                object.__setattr__(module, key, value)
        for name, hooks in state.hooks.items():
            live = getattr(module, name)
            if dict(live) != hooks:
                live.clear()
                live.update(hooks)
    if written:
        raise InspectlabError("the model wrote its own parameters or buffers during a timed run (which keeps no "
                              "copy of them, so as not to change the memory it measures)")


def _devices(model: nn.Module) -> list[int]:
    return sorted({t.device.index or 0 for t in (*model.parameters(), *model.buffers()) if t.device.type == "cuda"})


@contextlib.contextmanager
def hands_off(model: nn.Module, *, real: bool = False, train: bool = False, owned: bool = False,
              copies: bool = True) -> Iterator[nn.Module]:
    """Run a pass over `model` in eval mode (train mode with `train`) and leave the model, the process's RNG
    and grad mode as they were.

    `real`: the pass computes with the model's values (a CPU or CUDA run): it runs under a forked RNG, and
    parameters and buffers are restored if written. `owned`: inspectlab built the model for this call, so
    its values need no copy (the RNG is still forked). `copies=False` (timed runs, whose measured memory a copy
    would change): parameters and buffers are watched by their version counters, and a write raises."""
    if real and not owned and has_lazy(model):
        raise InspectlabError(
            f"the model has lazy modules ({', '.join(lazy_modules(model))}) whose parameters its first forward would "
            "create, and a real run would be that forward, changing the model: call the model once first (summary "
            "and flops, which work on a materialised copy, need not)")
    taken = snapshot(model, real and not owned, copies)
    grad_mode = torch.is_grad_enabled()
    try:
        with torch.random.fork_rng(devices=_devices(model), enabled=real):
            model.train(train)
            yield model
    finally:
        torch.set_grad_enabled(grad_mode)
        restore(taken)
