"""What a failed pass means, told from the exception in one line: the forward needs real values (`NeedsRealRun`:
the meta device cannot run it, a real run can), or the model rejected its input (`ModelRejectedInput`, a user
error naming the module that was running)."""

from __future__ import annotations

from typing import NoReturn

from inspectlab.core.errors import InspectlabError

_META_HINTS = (
    "meta", "data pointer", "item()", "_local_scalar_dense", "data-dependent", "is not on the expected device",
)
_TORCHSCRIPT_FAILURE = "The following operation failed in the TorchScript interpreter"


class NeedsRealRun(Exception):
    """The forward cannot run on the meta device (value-dependent code, a CPU tensor made inside forward...)."""


class ModelRejectedInput(InspectlabError):
    """The model raised during its forward: names the innermost module running and the shapes it got."""


def classify(exc: Exception, device: str, where: str | None = None, failed_op: Exception | None = None) -> Exception:
    """A user error as it is; NeedsRealRun for a reason of the meta device; else ModelRejectedInput, prefixed with
    `where` ("layer conv1 (Conv2d) rejected input 1×3×8×8"; default: "the model rejected its input").

    A TorchScript error ("The following operation failed in the TorchScript interpreter.", then TorchScript's own
    traceback, whose file paths would read as meta hints) is told by the op's own exception (`failed_op`, as the
    recorder's dispatch mode saw it: under a dispatch mode TorchScript loses its message), else by its last line."""
    if isinstance(exc, InspectlabError):
        return exc
    if str(exc).startswith(_TORCHSCRIPT_FAILURE) and failed_op is not None:
        exc = failed_op
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    message = lines[0] if lines else type(exc).__name__
    if message.startswith(_TORCHSCRIPT_FAILURE):
        message = lines[-1]
    if device == "meta" and (isinstance(exc, NotImplementedError) or any(h in str(exc) for h in _META_HINTS)):
        return NeedsRealRun(message)
    return ModelRejectedInput(f"{where or 'the model rejected its input'}: {message}")


def refuse_stand_ins(name: str, device: str, held: str) -> NoReturn:
    """A pass over a model holding a ScriptModule (`name`, "" for the root) that would need stand-ins for its
    parameters (another device or dtype than the ones it `held`): torch's stateless API does not support
    ScriptModules."""
    where = f"the ScriptModule {name}" if name else "a ScriptModule"
    if device == "meta":
        raise NeedsRealRun(f"{where} runs only with its own parameters (hooks and parameter stand-ins are not "
                           "supported on ScriptModules)")
    raise InspectlabError(f"{where} runs only with its own parameters ({held}): analyse it on that device and "
                          "in that dtype")
