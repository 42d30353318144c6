"""Building a model: the meta-build context (no weights allocated, no initialisation), the one fallback to a
CPU build (always recorded as a note), and the pause of Python's cyclic garbage collector."""

from __future__ import annotations

import contextlib
import functools
import gc
from collections.abc import Callable, Iterator, Mapping
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


def run_builder(builder: Callable[..., Any], kwargs: Mapping[str, Any], device: str, spec: str) -> Built:
    """Call `builder(**kwargs)` with new tensors on `device`, in eval mode. A builder that fails on the meta
    device (one that computes with its weights while building, say) is built on the CPU instead, and the
    returned notes say so and why (in one line); any other failure is one user error naming the spec. So is
    a builder that calls sys.exit or raises KeyboardInterrupt or another BaseException: the user's code
    ends neither the process nor a `compare` of several models."""
    from torch import nn

    try:
        with build_context(device):
            model = builder(**kwargs)
    except InspectlabError:
        raise
    except Exception as exc:  # the user's factory: report its message, not our traceback
        if device != "meta":
            raise InspectlabError(f"building {spec!r} failed: {type(exc).__name__}: {exc}") from exc
        built = run_builder(builder, kwargs, "cpu", spec)
        reason = first_line(f"{type(exc).__name__}: {exc}")
        built.notes.insert(0, f"{spec} cannot be built on the meta device ({reason}); built on the CPU instead")
        return built
    except BaseException as exc:  # sys.exit, KeyboardInterrupt, ... raised by the factory itself
        reason = describe_error(exc)
        reason = reason.removeprefix("the code ") if isinstance(exc, SystemExit) else f"raised {reason}"
        raise InspectlabError(f"building {spec!r} failed: the factory {reason}") from exc
    if not isinstance(model, nn.Module):
        raise InspectlabError(f"{spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return Built(model.eval())
