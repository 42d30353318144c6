"""Each peer's quirks, reproduced by its convention or named in its row, proven against the installed peer
(issue 15, section 4): recurrent layers on the CPU, fvcore's JIT trace, string paddings, pruned weights, and
inputs that are dicts. The models are small equivalents written here; the references are FlopCounterMode,
fvcore's FlopCountAnalysis and torchinfo.summary, run for real on the CPU in default grad mode."""

from __future__ import annotations

import pytest
import torch
import torch.nn.utils.prune as prune
from peer_references import flop_counter_mode, fvcore_total, torchinfo_macs
from torch import nn

from inspectlab import api
from inspectlab.analysis.conventions import convention_count, convention_total, pruning_masks
from inspectlab.analysis.flops import count_flops
from inspectlab.runtime.peers import peer_totals

# ---- recurrent layers: oneDNN's LSTM on the CPU, fvcore's aten::lstm/gru/rnn_* ----

class Recurrent(nn.Module):
    """A recurrent layer and a linear head on its last output."""

    def __init__(self, kind: type[nn.RNNBase], **options: object) -> None:
        super().__init__()
        self.rnn = kind(16, 32, batch_first=True, **options)  # type: ignore[arg-type]
        width = options.get("proj_size") or 32
        self.head = nn.Linear(width * (2 if options.get("bidirectional") else 1), 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0])


RECURRENT = {
    "LSTM": (nn.LSTM, {}), "LSTM 2 layers bidirectional": (nn.LSTM, {"num_layers": 2, "bidirectional": True}),
    "LSTM without bias": (nn.LSTM, {"bias": False}), "LSTM with projections": (nn.LSTM, {"proj_size": 8}),
    "GRU": (nn.GRU, {}), "RNN": (nn.RNN, {}), "RNN relu": (nn.RNN, {"nonlinearity": "relu", "num_layers": 2}),
}


def _recurrent(name: str, dtype: torch.dtype = torch.float32) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    kind, options = RECURRENT[name]
    return Recurrent(kind, **options).eval().to(dtype), torch.randn(2, 7, 16, dtype=dtype)


@pytest.mark.parametrize("name", RECURRENT)
def test_recurrent_layers_torch_and_fvcore(name: str) -> None:
    """FlopCounterMode counts nothing of an LSTM that oneDNN runs (aten.mkldnn_rnn_layer: no projections,
    float32), all of GRU/RNN (the same matmuls as on meta); fvcore counts 0 for all three (aten::lstm, gru,
    rnn_tanh/relu), its head only."""
    model, x = _recurrent(name)
    count = count_flops(api.trace(model, input_data=[x]))
    torch_count, fvcore_count = convention_count(count, "torch"), convention_count(count, "fvcore")
    assert torch_count.total == flop_counter_mode(model, x) > 0
    assert fvcore_count.total == fvcore_total(model, x) == 2 * 7 * 10 * model.head.in_features
    onednn = name.startswith("LSTM") and "projections" not in name
    assert list(torch_count.left_out) == (
        ["FlopCounterMode on CPU does not count an LSTM (aten.mkldnn_rnn_layer)"] if onednn else [])
    assert list(fvcore_count.left_out) == [f"fvcore has no handle for aten::{model.rnn.mode.lower()}"]


def test_lstm_in_float64_stays_off_onednn() -> None:
    model, x = _recurrent("LSTM", torch.float64)
    count = count_flops(api.trace(model, input_data=[x], dtype="float64"))
    assert convention_total(count, "torch") == flop_counter_mode(model, x) == convention_total(count, "inspectlab")


def test_lstm_backward_on_onednn_is_not_counted_either() -> None:
    model, x = _recurrent("LSTM 2 layers bidirectional")
    count = count_flops(api.trace(model, input_data=[x], backward=True))
    assert convention_total(count, "torch", backward=True) == flop_counter_mode(model, x, backward=True)


@pytest.mark.parametrize("name", ["LSTM", "LSTM 2 layers bidirectional", "LSTM without bias"])
def test_onednn_lstm_layer_counts_like_the_meta_decomposition(name: str) -> None:
    """A CPU pass records one aten.mkldnn_rnn_layer per layer and direction, a meta pass one addmm per gate
    matmul and step: the same MACs and other FLOPs."""
    model, x = _recurrent(name)
    on_cpu = count_flops(api.trace(model, input_data=[x], device="cpu"))
    assert any(op.packet == "aten.mkldnn_rnn_layer" for op in on_cpu.trace.ops)
    assert on_cpu.total() == count_flops(api.trace(model, input_data=[x])).total()
    assert on_cpu.uncounted() == {}


# ---- fvcore's JIT trace drops work whose result is unused ----

class Discards(nn.Module):
    """A container whose forward computes an intermediate result and throws it away."""

    def __init__(self) -> None:
        super().__init__()
        self.kept, self.thrown, self.last = nn.Linear(10, 5), nn.Linear(10, 5), nn.Linear(5, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.thrown(x)
        return self.last(self.kept(x))


class ReturnsNone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(10, 5)

    def forward(self, x: torch.Tensor) -> None:
        self.linear(x)


@pytest.mark.parametrize(("model", "fvcore", "torch_flops"), [(Discards(), 75, 250), (ReturnsNone(), 0, 100)])
def test_fvcore_drops_unused_work(model: nn.Module, fvcore: int, torch_flops: int) -> None:
    """fvcore counts what reaches the outputs (Discards: kept 50 + last 25 MACs; a forward returning None: 0);
    FlopCounterMode and inspectlab count everything that ran."""
    x = torch.randn(1, 10)
    count = count_flops(api.trace(model.eval(), input_data=[x]))
    fvcore_count = convention_count(count, "fvcore")
    assert fvcore_count.total == fvcore_total(model, x) == fvcore
    assert fvcore_count.left_out == {"fvcore's JIT trace drops work whose result is unused": 50}
    assert convention_total(count, "torch") == flop_counter_mode(model, x) == torch_flops


# ---- padding="same": torch runs aten::_convolution_mode, which fvcore does not handle ----

class SamePadding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.same = nn.Conv2d(3, 4, 3, padding="same")
        self.even = nn.Conv2d(4, 4, 4, padding="same")  # asymmetric: torch pads the input first
        self.explicit = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.explicit(self.even(self.same(x)))


def test_string_padding_differs_from_explicit_padding_for_fvcore_only() -> None:
    """fvcore counts only the explicitly padded conv; FlopCounterMode, torchinfo and inspectlab count all."""
    model, x = SamePadding().eval(), torch.randn(1, 3, 8, 8)
    count = count_flops(api.trace(model, input_data=[x]))
    assert fvcore_total(model, x) == 4 * 8 * 8 * 4 * 9
    assert convention_total(count, "torch") == flop_counter_mode(model, x) == 2 * count.total().macs
    assert convention_total(count, "torchinfo") == torchinfo_macs(model, x)


def test_fvcore_convention_leaves_out_string_padded_convolutions() -> None:
    model, x = SamePadding().eval(), torch.randn(1, 3, 8, 8)
    assert convention_total(count_flops(api.trace(model, input_data=[x])), "fvcore") == fvcore_total(model, x)


# ---- torchinfo and pruned weights ----

def _pruned() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10)).eval()
    prune.l1_unstructured(model[0], "weight", amount=0.5)
    prune.random_unstructured(model[3], "weight", amount=0.3)
    return model


def test_torchinfo_counts_a_pruned_weight_by_its_mask() -> None:
    """torchinfo 1.8 counts `weight_orig` by the ones of `weight_mask`, for its params and its MACs; inspectlab's
    params are the stored parameters (the mask is a buffer), and its torchinfo convention reads the masks from
    the model when their values are known."""
    import torchinfo

    model, x = _pruned(), torch.randn(1, 3, 8, 8)
    stats = torchinfo.summary(model, input_data=[x], device="cpu", verbose=0)
    masks = pruning_masks(model)
    zeros = sum(int((b == 0).sum()) for name, b in model.named_buffers() if name.endswith("_mask"))
    assert set(masks) == {"0.weight_orig", "3.weight_orig"} and zeros > 0
    assert api.summary(model, (1, 3, 8, 8)).totals["params"] == sum(p.numel() for p in model.parameters())
    assert stats.total_params == api.summary(model, (1, 3, 8, 8)).totals["params"] - zeros
    count = count_flops(api.trace(model, input_data=[x]))
    assert convention_total(count, "torchinfo", pruned=masks) == stats.total_mult_adds
    rows = {row.convention: row for row in api.flops(model, (1, 3, 8, 8)).layers}
    assert rows["torchinfo"].total == stats.total_mult_adds


def test_pruned_masks_on_meta_are_named_unknown() -> None:
    count = count_flops(api.trace(_pruned(), (1, 3, 8, 8)))
    counted = convention_count(count, "torchinfo")
    assert counted.differs("MACs") == ("torchinfo counts a pruned weight by its mask's ones, which masks on the "
                                       "meta device do not hold: 2 pruned weights counted whole")


# ---- peers on a model whose first input is a dict ----

class TakesDict(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 3)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.linear(batch["a"])


def test_every_peer_runs_on_a_dict_input() -> None:
    model, batch = TakesDict().eval(), {"a": torch.randn(2, 6)}
    peers = peer_totals(model, [batch])
    report = api.flops(model, input_data=[batch], compare=True)
    assert peers == {"torch": 2 * 2 * 6 * 3, "fvcore": 2 * 6 * 3, "torchinfo": 2 * (6 * 3 + 3)}
    rows = {row.convention: row for row in report.layers}
    assert all(rows[peer].match for peer in ("torch", "fvcore", "torchinfo"))
    if "ptflops" in rows:  # it calls model(x) with one tensor: it cannot take a dict, and says so
        assert rows["ptflops"].peer == "failed: ValueError: ptflops passes one input tensor to the model, this model " \
                                       "takes a dict" and not rows["ptflops"].match
    if "thop" in rows:  # thop calls model(*inputs)
        assert rows["thop"].match
