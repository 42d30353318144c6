"""`--convention` reproduces each peer library's own total exactly (issue 3, section 4).

The references are the installed libraries themselves, called here directly (not through
inspectlab.runtime.peers): torch's FlopCounterMode, fvcore's FlopCountAnalysis.total() and
torchinfo's total_mult_adds, each run for real on the CPU model as a user runs them (default grad mode).
Our side is the meta-device Trace. Attention and detection models, recurrent layers and the peers' other
quirks: tests/test_conventions_attention.py, tests/test_conventions_quirks.py, tests/test_detection.py.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from inspectlab import api
from inspectlab.analysis.conventions import convention_total
from inspectlab.analysis.flops import FlopCount, count_flops
from inspectlab.cli import app
from inspectlab.models.registry import list_entries

TORCHVISION = ("tv:resnet18", "tv:resnet50", "tv:mobilenet_v3_large", "tv:deeplabv3_resnet50")
SPECS = tuple(entry.name for entry in list_entries()) + TORCHVISION
PEERS = ("torch", "fvcore", "torchinfo")


def _size(spec: str) -> tuple[int, ...]:
    """Small inputs: 64² is above every zoo model's minimum (HRNet needs 32)."""
    return (1, 1, 32, 32) if spec == "lenet5" else (1, 3, 64, 64)


def _input(spec: str) -> torch.Tensor:
    return torch.randn(_size(spec), generator=torch.Generator().manual_seed(0))


# One model and one count alive at a time: the parameters below keep each spec's peers together.
@functools.lru_cache(maxsize=1)
def _real_model(spec: str) -> nn.Module:
    torch.manual_seed(0)
    return api.build_model(spec, device="cpu")


@functools.lru_cache(maxsize=1)
def _forward_count(spec: str) -> FlopCount:
    return count_flops(api.trace(spec, _size(spec)))


def _flatten(value: object) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _flatten(item)]
    return []


def _torch_reference(model: nn.Module, x: torch.Tensor) -> int:
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


def _fvcore_reference(model: nn.Module, x: torch.Tensor) -> int:
    with warnings.catch_warnings(), torch.enable_grad():
        warnings.simplefilter("ignore")  # fvcore's import (torch.jit.script), jit TracerWarnings, unsupported ops
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(model, (x,))
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        return analysis.total()


def _torchinfo_reference(model: nn.Module, x: torch.Tensor) -> int:
    import torchinfo

    return torchinfo.summary(model, input_data=[x], device="cpu", verbose=0).total_mult_adds


REFERENCES: dict[str, Callable[[nn.Module, torch.Tensor], int]] = {
    "torch": _torch_reference, "fvcore": _fvcore_reference, "torchinfo": _torchinfo_reference,
}


@functools.cache
def _reference(spec: str, peer: str) -> int:
    """The peer library's own number for the spec at its small input (ints only are kept)."""
    return REFERENCES[peer](_real_model(spec), _input(spec))


@pytest.mark.parametrize(("spec", "peer"), [(spec, peer) for spec in SPECS for peer in PEERS])
def test_convention_reproduces_the_peer_exactly(spec: str, peer: str) -> None:
    reference = _reference(spec, peer)
    assert reference > 0
    assert convention_total(_forward_count(spec), peer) == reference


@pytest.mark.parametrize("spec", ["tv:resnet18", "mobilenet_v3_small"])
def test_conventions_in_training_mode_with_a_batch_of_two(spec: str) -> None:
    """fvcore counts batch norm differently in training mode; torchinfo multiplies by the batch."""
    torch.manual_seed(0)
    model = api.build_model(spec, device="cpu").train()
    x = torch.randn(2, 3, 64, 64)
    count = count_flops(api.trace(model, input_data=[x], train=True))
    for peer, reference in REFERENCES.items():
        assert convention_total(count, peer) == reference(model, x), peer


# ---- forward + backward: FlopCounterMode around the backward of the sum of the float outputs ----

@functools.lru_cache(maxsize=1)
def _backward_count(spec: str) -> FlopCount:
    return count_flops(api.trace(spec, _size(spec), backward=True))


@functools.cache
def _torch_backward_reference(spec: str) -> int:
    model = _real_model(spec)
    with FlopCounterMode(display=False) as counter:
        outputs = _flatten(model(_input(spec)))
        sum(t.float().sum() for t in outputs if t.requires_grad).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


BACKWARD_CASES = [(spec, convention) for spec in ("lenet5", "tv:resnet18", "unet", "unet_transposed")
                  for convention in ("torch", "inspectlab")] + [("mobilenet_v3_small", "torch")]


@pytest.mark.parametrize(("spec", "convention"), BACKWARD_CASES)
def test_backward_total_equals_flop_counter_mode(spec: str, convention: str) -> None:
    """The torch convention on any model; inspectlab's own on models without grouped convs (see below)."""
    if convention == "inspectlab":
        convs = [m for m in _real_model(spec).modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
        assert convs and all(m.groups == 1 for m in convs)
    count = _backward_count(spec)
    reference = _torch_backward_reference(spec)
    assert convention_total(count, convention, backward=True) == reference
    assert reference > convention_total(count, convention)  # the backward really was counted


def test_backward_grouped_convs_differ_by_flop_counter_modes_grad_weight_formula() -> None:
    """FlopCounterMode's grad-weight of a conv ignores groups: N·C_in·C_out·H_out·W_out·k_h·k_w, where the
    true count divides by groups. So torch − inspectlab = 2 · Σ over grouped convs of
    N·C_out·H_out·W_out·k_h·k_w·(C_in − C_in/groups), read here from hooks on the real model."""
    spec = "mobilenet_v3_small"
    model = _real_model(spec)
    excess = 0

    def hook(module: nn.Conv2d, inputs: object, output: torch.Tensor) -> None:
        nonlocal excess
        n, c_out, h, w = output.shape
        kh, kw = module.kernel_size
        excess += n * c_out * h * w * kh * kw * (module.in_channels - module.in_channels // module.groups)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    try:
        with torch.no_grad():
            model(_input(spec))
    finally:
        for handle in handles:
            handle.remove()
    assert handles and excess > 0
    count = _backward_count(spec)
    torch_total = convention_total(count, "torch", backward=True)
    assert torch_total == _torch_backward_reference(spec)
    assert torch_total - convention_total(count, "inspectlab", backward=True) == 2 * excess


# ---- the CLI: `inspectlab flops MODEL --compare` runs the peers and reports "match" ----

def test_cli_flops_compare_matches_the_three_peers() -> None:
    spec = "tv:resnet18"
    result = CliRunner().invoke(app, ["flops", spec, "--input", "1,3,64,64", "--compare", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {row["convention"]: row for row in json.loads(result.output)["layers"]}
    installed = {name for name in ("ptflops", "thop") if importlib.util.find_spec(name) is not None}
    assert set(rows) == {"inspectlab", *PEERS, *installed}  # ptflops/thop rows where installed (test_peers_extra)
    for peer in PEERS:
        assert rows[peer]["match"] is True, rows[peer]
        assert rows[peer]["peer"] == rows[peer]["total"] == _reference(spec, peer)
    assert rows["inspectlab"]["match"] is None  # no peer library behind our own convention


@pytest.mark.parametrize("peer", PEERS)
def test_cli_convention_prints_the_peers_total(peer: str) -> None:
    spec = "tv:resnet18"
    result = CliRunner().invoke(app, ["flops", spec, "--input", "1,3,64,64", "--convention", peer])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(_reference(spec, peer))
