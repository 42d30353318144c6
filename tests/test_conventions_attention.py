"""The torch and fvcore conventions on attention models reproduce the peers as a user runs them on the CPU, in
default grad mode (issue 15, section 4), and inspectlab's own count does not depend on the path a pass took.

The references are the installed peers run for real on the CPU: FlopCounterMode, fvcore's FlopCountAnalysis,
and the ops a CPU run dispatches (a TorchDispatchMode that records them). Our side is the meta-device Trace,
whose attention always takes torch's math path.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from peer_references import flop_counter_mode, fvcore_total
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import VisionTransformer
from typer.testing import CliRunner

from inspectlab import api
from inspectlab.analysis.conventions import convention_count, convention_total
from inspectlab.analysis.cpu_dispatch import FLASH_CPU, attention_calls, cpu_attention_backend
from inspectlab.analysis.flops import count_flops
from inspectlab.cli import app


class _Dispatched(TorchDispatchMode):
    """The op packets a real run dispatches ("aten.bmm", ...)."""

    def __init__(self) -> None:
        super().__init__()
        self.packets: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        self.packets.add(str(func.overloadpacket).replace("::", "."))
        return func(*args, **(kwargs or {}))


def small_vit() -> nn.Module:
    torch.manual_seed(0)
    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64).eval()


# ---- tv:vit_b_16 at 224²: the numbers (one build, four CPU runs) ----

def test_vit_b_16_torch_convention_is_flop_counter_mode_on_cpu() -> None:
    """FlopCounterMode on the CPU leaves out the flash attention core; with SDPA forced to the math backend it
    counts the two bmm's per block, and equals inspectlab's own count, which does not depend on the path.
    Under torch.no_grad() nn.MultiheadAttention takes its fast path (aten._native_multi_head_attention), which
    FlopCounterMode does not count at all: its number is inspectlab's less all the work of the
    MultiheadAttention calls (projections and attention core), as docs/counting.md says."""
    torch.manual_seed(0)
    model, x = api.build_model("tv:vit_b_16", device="cpu"), torch.randn(1, 3, 224, 224)
    trace = api.trace("tv:vit_b_16", (1, 3, 224, 224))
    count = count_flops(trace)
    on_cpu = flop_counter_mode(model, x)
    with sdpa_kernel(SDPBackend.MATH):
        math = flop_counter_mode(model, x)
    torch_count = convention_count(count, "torch")
    assert torch_count.total == on_cpu == 33_697_001_472
    assert convention_total(count, "inspectlab") == math == 35_127_656_448
    core = "FlopCounterMode on CPU does not count the attention core (aten._scaled_dot_product_flash_attention_for_cpu)"
    assert torch_count.left_out == {core: math - on_cpu} and math - on_cpu == 1_430_654_976

    dispatched = _Dispatched()
    with torch.no_grad(), FlopCounterMode(display=False) as counter, dispatched:
        model(x)
    assert "aten._native_multi_head_attention" in dispatched.packets
    inside = {i for call in trace.calls if call.type == "MultiheadAttention" for i in call.op_range()}
    attention = sum(2 * cost.macs for i, cost in enumerate(count.costs) if i in inside and cost is not None)
    assert counter.get_total_flops() == 22_542_249_984 == convention_total(count, "inspectlab") - attention


# ---- which kernel the CPU takes, against what a CPU run dispatches ----

class Attention(nn.Module):
    def __init__(self, learned_mask: tuple[int, ...] | None = None, **options: object) -> None:
        super().__init__()
        self.options = options
        self.bias = nn.Parameter(torch.zeros(learned_mask)) if learned_mask else None  # a mask that requires grad

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=self.bias if mask is None else mask, **self.options)


Q, KV = (2, 4, 5, 8), (2, 4, 6, 8)
CASES = {
    "plain": ({}, [Q, KV, KV]),
    "4-D mask": ({}, [Q, KV, KV, (1, 1, 5, 6)]),
    "4-D mask per batch and head": ({}, [Q, KV, KV, (2, 4, 5, 6)]),
    "2-D mask": ({}, [Q, KV, KV, (5, 6)]),
    "3-D mask": ({}, [Q, KV, KV, (1, 5, 6)]),
    "mask that requires grad": ({"learned_mask": (1, 4, 5, 6)}, [Q, KV, KV]),
    "causal": ({"is_causal": True}, [Q, KV, KV]),
    "dropout": ({"dropout_p": 0.1}, [Q, KV, KV]),
    "grouped-query": ({"enable_gqa": True}, [Q, (2, 2, 6, 8), (2, 2, 6, 8)]),
    "3-D": ({}, [(4, 5, 8), (4, 6, 8), (4, 6, 8)]),
    "5-D": ({}, [(1, 2, 4, 5, 8), (1, 2, 4, 6, 8), (1, 2, 4, 6, 8)]),
    "value dim differs": ({}, [Q, KV, (2, 4, 6, 3)]),
    "broadcast batch": ({}, [Q, (1, 4, 6, 8), (1, 4, 6, 8)]),
    "float64": ({}, [Q, KV, KV]),
}


def _case(name: str) -> tuple[nn.Module, list[torch.Tensor]]:
    options, shapes = CASES[name]
    dtype = torch.float64 if name == "float64" else torch.float32
    generator = torch.Generator().manual_seed(0)
    model = Attention(**options).to(dtype)  # type: ignore[arg-type]
    return model, [torch.randn(s, generator=generator, dtype=dtype) for s in shapes]


@pytest.mark.parametrize("name", CASES)
def test_cpu_backend_is_what_a_cpu_run_dispatches(name: str) -> None:
    model, inputs = _case(name)
    dispatched = _Dispatched()
    with dispatched:
        model(*inputs)
    calls = attention_calls(api.trace(model, input_data=inputs))
    assert len(calls) == 1 and len(calls[0].ops) > 1  # the math path, found around its _safe_softmax
    assert (cpu_attention_backend(calls[0]) == "flash") is (FLASH_CPU in dispatched.packets)


def test_cpu_backend_follows_the_sdpa_switches() -> None:
    model, inputs = _case("plain")
    trace = api.trace(model, input_data=inputs)
    with sdpa_kernel(SDPBackend.MATH):
        assert cpu_attention_backend(attention_calls(trace)[0]) == "math"
        assert convention_total(count_flops(trace), "torch") == flop_counter_mode(model, *inputs) > 0
    assert cpu_attention_backend(attention_calls(trace)[0]) == "flash"


@pytest.mark.parametrize("name", CASES)
def test_torch_convention_equals_flop_counter_mode(name: str) -> None:
    model, inputs = _case(name)
    assert convention_total(count_flops(api.trace(model, input_data=inputs)), "torch") == flop_counter_mode(
        model, *inputs)


@pytest.mark.parametrize("name", ["plain", "4-D mask", "2-D mask", "causal", "grouped-query", "3-D", "float64"])
def test_the_fused_kernel_counts_what_the_math_path_counts(name: str) -> None:
    """A CPU pass records aten._scaled_dot_product_flash_attention_for_cpu, a meta pass the math path: the same
    MACs and other FLOPs, all in the attention category."""
    model, inputs = _case(name)
    on_cpu = count_flops(api.trace(model, input_data=inputs, device="cpu"))
    on_meta = count_flops(api.trace(model, input_data=inputs))
    assert any(op.packet == FLASH_CPU for op in on_cpu.trace.ops)
    assert not any(op.packet == FLASH_CPU for op in on_meta.trace.ops)
    assert on_cpu.total() == on_meta.total() and on_cpu.total().macs > 0
    assert on_cpu.by_category() == on_meta.by_category() and set(on_meta.by_category()) <= {"attention", "elementwise"}


@pytest.mark.parametrize(("need_weights", "average"), [(False, True), (True, True), (True, False)])
def test_fused_multi_head_attention_counts_like_its_slow_path(need_weights: bool, average: bool) -> None:
    """aten._native_multi_head_attention (nn.MultiheadAttention's fast path, called here directly) counts the
    MACs and other FLOPs of the slow path the module takes with the same arguments."""
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(16, 4, batch_first=True).eval()

    class Slow(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention = attention

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.attention(x, x, x, need_weights=need_weights, average_attn_weights=average)

    class Fused(Slow):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = self.attention
            return torch._native_multi_head_attention(x, x, x, a.embed_dim, a.num_heads, a.in_proj_weight,
                                                      a.in_proj_bias, a.out_proj.weight, a.out_proj.bias, None,
                                                      need_weights, average)

    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        fused = count_flops(api.trace(Fused(), input_data=[x], device="cpu"))
    assert [op.packet for op in fused.trace.ops] == ["aten._native_multi_head_attention"]
    assert fused.total() == count_flops(api.trace(Slow(), input_data=[x])).total()


# ---- small ViT: forward + backward, fvcore, the CLI ----

def test_small_vit_torch_convention_with_backward() -> None:
    """The flash kernel's backward is not counted either: the math path's backward bmm's are left out."""
    model, x = small_vit(), torch.randn(2, 3, 32, 32)
    count = count_flops(api.trace(model, input_data=[x], backward=True))
    reference = flop_counter_mode(model, x, backward=True)
    assert convention_total(count, "torch", backward=True) == reference > convention_total(count, "torch")


def test_small_vit_fvcore_convention() -> None:
    """fvcore's JIT trace sees aten::scaled_dot_product_attention whole and has no handle for it."""
    model, x = small_vit(), torch.randn(2, 3, 32, 32)
    counted = convention_count(count_flops(api.trace(model, input_data=[x])), "fvcore")
    assert counted.total == fvcore_total(model, x)
    assert list(counted.left_out) == ["fvcore has no handle for aten::scaled_dot_product_attention"]


def test_frozen_vit_takes_the_fast_path_in_default_grad_mode_too() -> None:
    """Where no tensor of a MultiheadAttention call requires grad (a frozen model), default grad mode takes the
    fast path too: both peers then count nothing of the attention blocks, and both conventions say so."""
    model, x = small_vit(), torch.randn(1, 3, 32, 32)
    model.requires_grad_(False)
    count = count_flops(api.trace(model, input_data=[x]))
    torch_count, fvcore_count = convention_count(count, "torch"), convention_count(count, "fvcore")
    assert torch_count.total == flop_counter_mode(model, x) and fvcore_count.total == fvcore_total(model, x)
    assert list(torch_count.left_out) == ["FlopCounterMode on CPU does not count nn.MultiheadAttention's fast path "
                                          "(aten._native_multi_head_attention)"]
    assert list(fvcore_count.left_out) == ["fvcore has no handle for aten::_native_multi_head_attention"]
    model.requires_grad_(True)
    model.heads.requires_grad_(False)  # the head alone frozen: the blocks still need grad, no fast path
    assert convention_total(count_flops(api.trace(model, input_data=[x])), "torch") == flop_counter_mode(model, x)


@pytest.mark.parametrize(("norm_first", "activation"), [(False, "relu"), (True, "gelu")])
def test_frozen_transformer_encoder(norm_first: bool, activation: str) -> None:
    """A frozen nn.TransformerEncoderLayer in eval mode runs as one aten._transformer_encoder_layer_fwd under
    FlopCounterMode (nothing of the layer counted); fvcore's hooks on every module keep the layer on its slow
    path, where its MultiheadAttention takes the fused fast path (its projections and attention not counted)."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True, norm_first=norm_first, activation=activation)
    model = nn.Sequential(nn.Linear(8, 16), nn.TransformerEncoder(layer, 2, enable_nested_tensor=False),
                          nn.Linear(16, 3)).eval()
    x = torch.randn(2, 5, 8)
    for frozen in (False, True):
        model.requires_grad_(not frozen)
        count = count_flops(api.trace(model, input_data=[x]))
        torch_count, fvcore_count = convention_count(count, "torch"), convention_count(count, "fvcore")
        assert torch_count.total == flop_counter_mode(model, x) and fvcore_count.total == fvcore_total(model, x)
        what = "nn.TransformerEncoderLayer's fast path (aten._transformer_encoder_layer_fwd)" if frozen else (
            "the attention core (aten._scaled_dot_product_flash_attention_for_cpu)")
        assert list(torch_count.left_out) == [f"FlopCounterMode on CPU does not count {what}"]
    assert torch_count.total == 2 * 2 * 5 * (8 * 16 + 16 * 3)  # frozen: the two Linears around the encoder only


def test_cli_flops_compare_names_the_difference_and_matches(tmp_path) -> None:  # noqa: ANN001
    (tmp_path / "vit.py").write_text("from torchvision.models import VisionTransformer\n\n\ndef small():\n"
                                     "    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, "
                                     "num_heads=4, hidden_dim=32, mlp_dim=64)\n")
    spec = f"{tmp_path / 'vit.py'}:small"
    result = CliRunner().invoke(app, ["flops", spec, "--input", "1,3,32,32", "--compare", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {row["convention"]: row for row in json.loads(result.output)["layers"]}
    left = convention_count(count_flops(api.trace(spec, (1, 3, 32, 32))), "torch").left_out
    assert rows["torch"]["match"] is True and rows["torch"]["peer"] == rows["torch"]["total"]
    core = "FlopCounterMode on CPU does not count the attention core (aten._scaled_dot_product_flash_attention_for_cpu)"
    assert rows["torch"]["differs"] == f"{core}: {left[core]:,} FLOPs" and left[core] > 0
    assert rows["fvcore"]["match"] is True and "aten::scaled_dot_product_attention" in rows["fvcore"]["differs"]
    assert rows["torchinfo"]["match"] is True and "differs" not in rows["inspectlab"]
