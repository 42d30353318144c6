"""Run ptflops and thop themselves (the `inspectlab[peers]` extra), where they are installed, to print their own
totals beside the conventions reproduced in analysis/conventions_extra.py. Each runs as a user would call it:
`ptflops.get_model_complexity_info(model, ..., as_strings=False)` (its default "pytorch" backend) and
`thop.profile(model, inputs)`. Both leave attributes or buffers on the modules they hook (ptflops its counting
methods and batch counter, thop `total_ops`/`total_params` buffers on the modules it does not hook): what they
add is taken away again, so that the model is as it was."""

from __future__ import annotations

import contextlib
import importlib.util
import io
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from inspectlab.runtime.peers import _quiet

INSTALL = "not installed (pip install inspectlab[peers])"


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def extra_peer_totals(model: nn.Module, inputs: Sequence[torch.Tensor], backward: bool = False) -> dict[str, Any]:
    """ptflops's and thop's own totals for `model(*inputs)` where they are installed (an int, or the one-line
    error the library raised); none with `backward` (both count the forward only)."""
    if backward:
        return {}
    runners: dict[str, Callable[[], int]] = {"ptflops": lambda: ptflops_total(model, inputs),
                                             "thop": lambda: thop_total(model, inputs)}
    results: dict[str, Any] = {}
    for name, run in runners.items():
        if not installed(name):
            continue
        try:
            results[name] = run()
        except Exception as exc:  # a peer that cannot handle the model: say so in its cell
            results[name] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return results


def ptflops_total(model: nn.Module, inputs: Sequence[torch.Tensor]) -> int:
    """ptflops.get_model_complexity_info's MACs for the one input tensor (it calls `model(x)`)."""
    if len(inputs) != 1 or not isinstance(inputs[0], torch.Tensor):
        given = f"{len(inputs)} inputs" if len(inputs) != 1 else f"a {type(inputs[0]).__name__}"
        raise ValueError(f"ptflops passes one input tensor to the model, this model takes {given}")
    with _quiet(), contextlib.redirect_stderr(io.StringIO()), _as_it_was(model), torch.no_grad():
        from ptflops import get_model_complexity_info

        macs, _ = get_model_complexity_info(model, tuple(inputs[0].shape[1:]), as_strings=False,
                                            print_per_layer_stat=False, input_constructor=lambda _: inputs[0],
                                            ost=io.StringIO())
    if macs is None:
        raise RuntimeError("ptflops could not count this model")
    return int(macs)


def thop_total(model: nn.Module, inputs: Sequence[torch.Tensor]) -> int:
    """thop.profile's MACs (its first number) for `model(*inputs)`."""
    with _quiet(), contextlib.redirect_stderr(io.StringIO()), _as_it_was(model):
        import thop

        macs, _ = thop.profile(model, inputs=tuple(inputs), verbose=False)
    return int(macs)


@contextlib.contextmanager
def _as_it_was(model: nn.Module) -> Iterator[None]:
    """Take away the attributes and buffers a library adds to the modules, and their forward hooks."""
    before = {id(m): (set(vars(m)), set(m._buffers), set(m._forward_hooks), set(m._forward_pre_hooks))
              for m in model.modules()}
    try:
        yield
    finally:
        for module in model.modules():
            names, buffers, hooks, pre_hooks = before.get(id(module), (set(), set(), set(), set()))
            for key in set(module._buffers) - buffers:
                del module._buffers[key]
            for key in set(module._forward_hooks) - hooks:
                del module._forward_hooks[key]
            for key in set(module._forward_pre_hooks) - pre_hooks:
                del module._forward_pre_hooks[key]
            for key in set(vars(module)) - names:
                delattr(module, key)
