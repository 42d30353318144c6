"""Building a model: the meta-build context (no weights allocated, no initialisation), the one fallback to a
CPU build (always recorded as a note), the copies a pass runs on instead of the user's module (lazy modules
materialised, a ScriptModule reloaded on meta), and the pause of Python's cyclic garbage collector."""

from __future__ import annotations

import contextlib
import functools
import gc
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from inspectlab.core.errors import InspectlabError, describe_error, first_line

if TYPE_CHECKING:
    from torch import nn

# In-place ops that change a tensor's metadata (shape, storage, autograd flag), not its values:
# they must run on meta tensors too.
_METADATA_OPS = frozenset({
    "requires_grad_", "resize_", "resize_as_", "set_", "squeeze_", "unsqueeze_", "t_", "transpose_",
    "swapdims_", "swapaxes_", "as_strided_", "detach_", "rename_",
})


@dataclass
class Built:
    """A built model and what happened while building it (a fallback to the CPU, ...)."""

    module: nn.Module
    notes: list[str] = field(default_factory=list)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Python's cyclic garbage collector off inside the block, back on (if it was on) afterwards, also when
    the block raises. Building and tracing a model allocate ~10^5 short-lived objects (freed by reference
    counting), and the collections they trigger took ~20% of a ResNet-50 summary. Used around the build and
    the trace of one model, never process-wide."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@functools.lru_cache(maxsize=1)
def _build_context_class() -> type:
    from torch.utils._device import DeviceContext, _device_constructors

    class BuildContext(DeviceContext):
        """`with torch.device(d)` in one torch-function mode, plus: in-place ops that only set values
        (initialisers) do nothing on meta tensors. A meta tensor has no values, and some initialisers
        (normal_) would make torch import its decompositions (a second). One mode, not two stacked:
        building the zoo makes ~90k torch calls, each paying every active mode."""

        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            if func in _device_constructors():
                if kwargs.get("device") is None:
                    kwargs["device"] = self.device
                return func(*args, **kwargs)
            name = getattr(func, "__name__", "")
            if name.endswith("_") and not name.startswith("__") and name not in _METADATA_OPS:
                target = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
                if getattr(target, "is_meta", False):
                    return target
            return func(*args, **kwargs)

    return BuildContext


def build_context(device: str) -> Any:
    """The context a builder runs in: new tensors on `device`, no initialisation of meta tensors."""
    return _build_context_class()(device)


def run_builder(builder: Callable[..., Any], kwargs: Mapping[str, Any], device: str, spec: str,
                loader: bool = False) -> Built:
    """Call `builder(**kwargs)` with new tensors on `device`, in eval mode. A builder that fails on the meta
    device (one that computes with its weights while building, say) is built on the CPU instead, and the
    returned notes say so and why (in one line); any other failure is one user error naming the spec. So is
    a builder that calls sys.exit or raises KeyboardInterrupt or another BaseException: the user's code
    ends neither the process nor a `compare` of several models.

    `loader`: the builder reads a saved model (`models.saved.load_model_file`): it is called as
    `builder(device=device, **kwargs)` outside the meta-build context (torch's loaders place tensors themselves)
    and returns the module and its notes."""
    from torch import nn

    notes: list[str] = []
    try:
        if loader:
            model, notes = builder(device=device, **kwargs)
        else:
            with build_context(device):
                model = builder(**kwargs)
    except InspectlabError:
        raise
    except Exception as exc:  # the user's factory: report its message, not our traceback
        if device != "meta":
            raise InspectlabError(f"building {spec!r} failed: {type(exc).__name__}: {exc}") from exc
        built = run_builder(builder, kwargs, "cpu", spec, loader)
        reason = first_line(f"{type(exc).__name__}: {exc}")
        built.notes.insert(0, f"{spec} cannot be built on the meta device ({reason}); built on the CPU instead")
        return built
    except BaseException as exc:  # sys.exit, KeyboardInterrupt, ... raised by the factory itself
        reason = describe_error(exc)
        reason = reason.removeprefix("the code ") if isinstance(exc, SystemExit) else f"raised {reason}"
        raise InspectlabError(f"building {spec!r} failed: the factory {reason}") from exc
    if not isinstance(model, nn.Module):
        raise InspectlabError(f"{spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return Built(model.eval(), list(notes))


def has_lazy(model: nn.Module) -> bool:
    """Whether the model holds parameters or buffers that a lazy module (`nn.LazyLinear`, `nn.LazyConv2d`, ...)
    has not materialised yet: their shapes come from its first forward."""
    from torch.nn.parameter import is_lazy

    return any(is_lazy(tensor) for tensor in (*model.parameters(), *model.buffers()))


def materialised(model: nn.Module, args: Sequence[Any], kwargs: Mapping[str, Any], device: str) -> nn.Module:
    """A copy of `model` whose lazy modules have their parameters, made by one forward of the copy on the given
    inputs (already on `device`), as torch's lazy modules are materialised: the shapes they create are the ones
    the parameter count reads. The model itself is not changed, and shares no tensor with the copy.

    On meta the copy's parameters and buffers are meta twins (`copy.deepcopy` with them in its memo: no values
    copied, none initialised) and the forward runs in the meta-build context; on a real device the copy holds
    copies of the values, new uninitialised tensors for the lazy ones (which torch cannot deepcopy), and these are
    initialised by their modules' own `reset_parameters`, under a forked RNG
    (the process's generators are untouched). A failing forward is classified as a pass's is
    (`tracing.failures.classify`)."""
    import copy

    import torch
    from torch.nn.parameter import is_lazy

    from inspectlab.tracing.failures import classify

    memo: dict[int, Any] = {}  # what deepcopy uses instead of copying: meta twins, new uninitialised tensors
    for tensor in (*model.parameters(), *model.buffers()):
        if device == "meta" or is_lazy(tensor):  # (torch cannot deepcopy an uninitialised buffer)
            memo[id(tensor)] = _twin(tensor, "meta" if device == "meta" else tensor.device)
    twin = copy.deepcopy(model, memo)
    context = build_context("meta") if device == "meta" else contextlib.nullcontext()
    try:
        with torch.random.fork_rng(enabled=device != "meta"), torch.no_grad(), context:
            twin(*args, **kwargs)
    except Exception as exc:
        raise classify(exc, device, "the first forward, which materialises the lazy modules, failed") from exc
    return twin


def _twin(tensor: Any, device: Any) -> Any:
    """A tensor's twin on `device`, of its kind: an uninitialised parameter or buffer, a parameter or a tensor
    (shape and dtype only: on meta)."""
    import torch
    from torch import nn
    from torch.nn.parameter import UninitializedBuffer, UninitializedParameter

    if isinstance(tensor, UninitializedParameter):
        return UninitializedParameter(tensor.requires_grad, device=device, dtype=tensor.dtype)
    if isinstance(tensor, UninitializedBuffer):
        return UninitializedBuffer(tensor.requires_grad, device=device, dtype=tensor.dtype,
                                   persistent=getattr(tensor, "persistent", True))
    twin = torch.empty_like(tensor, device=device)
    return nn.Parameter(twin, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else twin


def script_on_meta(model: nn.Module) -> nn.Module | None:
    """A copy of a ScriptModule on the meta device (saved with `torch.jit.save` into memory, loaded back with
    `map_location="meta"`): its pass then allocates nothing that grows with the input. None when it cannot be
    saved (the pass then runs the module itself, for real)."""
    import io

    import torch

    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r"`torch\.jit\.", FutureWarning)  # deprecated, and still what loads it
            torch.jit.save(model, buffer)
            buffer.seek(0)
            return torch.jit.load(buffer, map_location="meta")
    except Exception:
        return None


def lazy_modules(model: nn.Module) -> list[str]:
    """The class names of the model's lazy modules that still wait for their first forward, each once."""
    from torch.nn.modules.lazy import LazyModuleMixin

    found = [type(module).__name__ for module in model.modules()
             if isinstance(module, LazyModuleMixin) and module.has_uninitialized_params()]
    return list(dict.fromkeys(found))

