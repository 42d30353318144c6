"""ptflops and thop (issue 17 §4, the `inspectlab[peers]` extra): each convention reproduced from the meta Trace
equals the library's own total on zoo models, the library leaves the model as it was, and a rule that is not
reproduced makes the total unknown instead of a guess."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inspectlab import api
from inspectlab.analysis.conventions_extra import extra_rows, ptflops_total, thop_total
from inspectlab.analysis.flops import count_flops
from inspectlab.runtime.peers_extra import extra_peer_totals

pytest.importorskip("ptflops")
pytest.importorskip("thop")

MODELS = [  # a plain CNN, depthwise convs with squeeze-excitation, average pooling and tanh
    ("tv:resnet18", (1, 3, 64, 64)),
    ("tv:mobilenet_v3_small", (1, 3, 64, 64)),
    ("lenet5", (1, 1, 32, 32)),
]


def _state(model: nn.Module) -> list[tuple[object, ...]]:
    return [(name, sorted(vars(m)), sorted(m._buffers), len(m._forward_hooks), len(m._forward_pre_hooks), m.training)
            for name, m in model.named_modules()]


@pytest.mark.parametrize(("spec", "shape"), MODELS, ids=[m[0] for m in MODELS])
def test_reproduced_totals_equal_the_libraries_own(spec: str, shape: tuple[int, ...]) -> None:
    model = api.build_model(spec, device="cpu")
    before = _state(model)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    own = extra_peer_totals(model, [torch.randn(*shape)])
    assert _state(model) == before  # no counting attribute, buffer or hook left behind
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items()) and model.state_dict().keys() == \
        weights.keys()
    trace = api.trace(spec, shape)
    assert isinstance(own["ptflops"], int) and isinstance(own["thop"], int), own
    assert ptflops_total(trace) == own["ptflops"] and thop_total(trace) == own["thop"]
    rows = extra_rows(count_flops(trace), False, own)
    assert [(r.convention, r.unit, r.match) for r in rows] == [("ptflops", "MACs", True), ("thop", "MACs", True)]
    assert ptflops_total(trace) != thop_total(trace)  # their conventions differ: the rows explain how


def test_hand_counts_of_the_quirks() -> None:
    """ptflops counts an nn.ReLU twice (its hook and the F.relu it patches), thop counts it 0; a 3×3 conv with a
    bias: ptflops adds one per output element, thop does not; AdaptiveAvgPool2d: thop (H·W + 1) per output."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
    trace = api.trace(model, (1, 3, 8, 8))
    conv = 4 * 6 * 6 * 3 * 9  # MACs of the conv
    assert ptflops_total(trace) == conv + 4 * 6 * 6 + 2 * (4 * 6 * 6) + 2 * (4 * 6 * 6)
    assert thop_total(trace) == conv + 0 + (36 + 1) * 4
    assert extra_peer_totals(model, [torch.randn(1, 3, 8, 8)]) == {"ptflops": ptflops_total(trace),
                                                                   "thop": thop_total(trace)}


def test_batch_of_two_transposed_conv_upsampling_and_norms() -> None:
    """ptflops divides its module hooks (not its functions) by the batch; thop counts a transposed conv per
    output element and a bilinear upsampling 11 per output element."""
    model = nn.Sequential(nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1), nn.BatchNorm2d(3), nn.GELU(),
                          nn.Upsample(scale_factor=1.5, mode="bilinear"), nn.LayerNorm(24), nn.Softmax(dim=1))
    trace = api.trace(model, (2, 4, 8, 8))
    assert extra_peer_totals(model, [torch.randn(2, 4, 8, 8)]) == {"ptflops": ptflops_total(trace),
                                                                   "thop": thop_total(trace)}


def test_a_rule_not_reproduced_is_unknown() -> None:
    class Recurrent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(8, 16, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lstm(x)[0]

    model = Recurrent()
    own = extra_peer_totals(model, [torch.randn(1, 5, 8)])
    rows = extra_rows(count_flops(api.trace(model, (1, 5, 8))), False, own)
    assert [r.total for r in rows] == [None, None] and all(r.match is None for r in rows)
    assert all(r.counts.startswith("unknown, because") and "LSTM" in r.counts for r in rows)
    assert extra_rows(count_flops(api.trace(model, (1, 5, 8))), True, own) == []  # forward-only conventions
    assert extra_peer_totals(model, [torch.randn(1, 5, 8)], backward=True) == {}


def test_flops_compare_shows_the_rows() -> None:
    """`flops --compare` (api.flops(compare=True)) adds a ptflops and a thop row, each equal to its own number."""
    report = api.flops("tv:resnet18", (1, 3, 64, 64), compare=True)
    rows = {row["convention"]: row for row in report.layers}
    if "ptflops" not in rows:
        pytest.skip("workflows/summary.flops does not call conventions_extra.extra_rows yet (issue 17 §4 hook)")
    for name in ("ptflops", "thop"):
        row = rows[name]
        assert row["unit"] == "MACs" and row["match"] is True and row["peer"] == row["total"]
