"""The peers' own totals, run as their users run them on the CPU: the references the convention tests compare
inspectlab's reproductions with."""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def flop_counter_mode(model: nn.Module, *inputs: torch.Tensor, backward: bool = False) -> int:
    """FlopCounterMode's total for a CPU run in default grad mode (forward, or + the backward of the sum)."""
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        output = model(*inputs)
        if backward:
            output.sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def fvcore_total(model: nn.Module, *inputs: torch.Tensor) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore's import, jit TracerWarnings, unsupported ops
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(model, inputs)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        return analysis.total()


def torchinfo_macs(model: nn.Module, *inputs: torch.Tensor) -> int:
    import torchinfo

    return torchinfo.summary(model, input_data=list(inputs), device="cpu", verbose=0).total_mult_adds
