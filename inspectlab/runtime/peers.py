"""Run the peer libraries themselves (FlopCounterMode, fvcore, torchinfo) to print their own totals, as a user
runs them: in default grad mode (which decides, for one, whether nn.MultiheadAttention takes its fused fast
path), whatever the caller's grad mode."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten


def peer_totals(model: nn.Module, inputs: Sequence[Any], backward: bool = False) -> dict[str, Any]:
    """Each peer's own total for `model(*inputs)` (an int, or the one-line error the library raised)."""
    runners: dict[str, Callable[[], int]] = {"torch": lambda: torch_total(model, inputs, backward)}
    if not backward:
        runners["fvcore"] = lambda: fvcore_total(model, inputs)
        runners["torchinfo"] = lambda: torchinfo_total(model, inputs)
    results: dict[str, Any] = {}
    for name, run in runners.items():
        try:
            results[name] = run()
        except Exception as exc:  # a peer that cannot handle the model: say so in its cell
            results[name] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return results


def torch_total(model: nn.Module, inputs: Sequence[Any], backward: bool = False) -> int:
    """torch.utils.flop_counter.FlopCounterMode's total (forward, or forward + backward of the outputs' sum)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        output = model(*inputs)
        if backward:
            leaves, _ = tree_flatten(output)
            sum(t.float().sum() for t in leaves if isinstance(t, torch.Tensor) and t.requires_grad).backward()
    return int(counter.get_total_flops())


def fvcore_total(model: nn.Module, inputs: Sequence[Any]) -> int:
    """fvcore.nn.FlopCountAnalysis(model, inputs).total(), warnings silenced."""
    with _quiet(), torch.enable_grad():
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(model, tuple(inputs))
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        return int(analysis.total())


def torchinfo_total(model: nn.Module, inputs: Sequence[Any]) -> int:
    """torchinfo.summary(model, input_data=inputs).total_mult_adds, on the device of the inputs' first tensor
    (the inputs may nest tensors in dicts, lists and tuples)."""
    with _quiet():
        import torchinfo

        stats = torchinfo.summary(model, input_data=list(inputs), verbose=0, device=_device_of(model, inputs))
    return int(stats.total_mult_adds)


def _device_of(model: nn.Module, inputs: Sequence[Any]) -> torch.device:
    """The device of the first tensor among the inputs, else of the first parameter, else the CPU."""
    leaves, _ = tree_flatten(list(inputs))
    first = next((t for t in leaves if isinstance(t, torch.Tensor)), None)
    if first is None:
        first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


@contextlib.contextmanager
def _quiet() -> Any:
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)
