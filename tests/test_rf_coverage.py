"""Issue 14 §5: receptive fields on the architectures people use now, proven against autograd support.

For each model, every row of the rf table (every module output) either equals the gradient support of its units
on the linear positive copy (`runtime.empirical_rf`): the field AND the stride (the shift of a neighbour's
field), or is global (one unit depends on every pixel, and a local field beside it is measured with the global
paths cut), or is unknown / not checkable with a reason; and no field breaks an invariant (rf_checks.py). The
reasons a stride may go unchecked are the four the check gives: the field reaches the input's edges at both
ends, it moves unevenly from unit to unit, the stride is an interpolation's sample spacing, or the unit is a
border unit whose field moves differently from the rest (the check then prefers another unit).

The big models are `slow`; the default run has the issue's toy ConvNeXt block (with and without its residual),
a token model and timm's ConvNeXt-atto at a small input.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import pytest
import torch
from torch import nn
from toy_models import ConvNeXtBlock

from inspectlab import api
from inspectlab.analysis.receptive_field import FieldMap, FieldRow, field_rows, receptive_fields
from inspectlab.analysis.rf_checks import coarsest_stride, extent_problem
from inspectlab.runtime.empirical_rf import EmpiricalRow, row_verdict, run_checks

torch.set_num_threads(1)

STRIDE_REASONS = ("reaches the input's edges at both ends", "moves unevenly", "spacing of the units' sample",
                  "at this border unit the field moves differently")


class PatchTokens(nn.Module):
    """A patch embedding to tokens (N, H·W, C), a Linear over channels, back to a grid: token rows."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 4, stride=4)
        self.mix = nn.Linear(8, 8)
        self.conv = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.mix(self.embed(x).flatten(2).transpose(1, 2))
        n, c, h, w = x.shape[0], 8, x.shape[2] // 4, x.shape[3] // 4
        return self.conv(tokens.transpose(1, 2).reshape(n, c, h, w))


def assert_consistent(fields: FieldMap) -> None:
    """No field breaks an invariant: the walk checks each op (an `inconsistent` note), and every field's extent."""
    assert not [n for n in fields.notes if n.kind == "inconsistent"], fields.notes
    coarsest = coarsest_stride(list(fields.values()), Fraction(1))
    for info in fields.values():
        assert info.unknown or extent_problem(info, fields.input_size, coarsest) is None


def prove(model: nn.Module | str, shape: tuple[int, ...], depth: int | None = 2, args: dict[str, Any] | None = None,
          units: Sequence[str] = ("centre",)) -> tuple[dict[str, FieldRow], dict[str, list[EmpiricalRow]]]:
    """Every row equals autograd (field and stride), is global, or is not checkable with a reason; no row breaks
    an invariant. Returns the rows and their measurements by name."""
    fields = receptive_fields(api.trace(model, shape, args=args))
    assert_consistent(fields)
    rows = field_rows(fields, depth=depth)
    network = model if isinstance(model, nn.Module) else api.build_model(model, args, "cpu")
    checks = run_checks(network, fields, rows, shape, units=units).rows
    by_row: dict[str, list[EmpiricalRow]] = {}
    for check in checks:
        by_row.setdefault(check.name, []).append(check)
    for row in rows:
        entries = by_row.get(row.name, [])
        status, notes = row_verdict(row, entries)
        assert status != "differs", (row.name, [(e.mode, e.unit, e.analytic, e.measured, e.strides) for e in entries])
        if status == "not checkable":
            assert notes, row.name
            assert row.field.unknown is None or (row.notes and row.report_row().rf is None), row.name
            continue
        for entry in entries:
            assert entry.match, (row.name, entry)
            for stride in entry.strides:
                assert stride.status == "equal" or any(r in (stride.reason or "") for r in STRIDE_REASONS), stride
            if entry.mode == "global":
                assert entry.measured == [(0, n - 1) for n in fields.input_size]
    return {r.name: r for r in rows}, by_row


def strides_measured(checks: dict[str, list[EmpiricalRow]]) -> int:
    return sum(any(s.status == "equal" for e in entries for s in e.strides) for entries in checks.values())


# ------------------------------------------------------------------------------------------------
# default run


@pytest.mark.parametrize("residual", [True, False])
def test_toy_convnext_block(residual: bool) -> None:
    rows, checks = prove(ConvNeXtBlock(residual=residual), (1, 4, 20, 20), depth=None, units=("first", "centre",
                                                                                                "last"))
    assert rows["(root)"].field.size == (7, 7) and not rows["(root)"].field.is_global
    centre = checks["(root)"][1]
    assert centre.mode == "centre" and centre.size == [7, 7] and [s.measured for s in centre.strides] == [1, 1]
    assert checks["fc1"][1].size == [7, 7]  # an NHWC row, measured at its unit's elements


def test_token_rows_are_measured() -> None:
    """Rows whose image axes are spread over the token dim (N, H·W, C) are measured, field and stride."""
    rows, checks = prove(PatchTokens(), (1, 3, 32, 32), depth=None)
    assert rows["mix"].field.axes[0].pieces and checks["mix"][0].size == [4, 4]
    assert [s.measured for s in checks["mix"][0].strides] == [4, 4]
    assert checks["(root)"][0].size == [12, 12] and [s.measured for s in checks["(root)"][0].strides] == [4, 4]


def test_timm_convnext_atto_small(offline: list[Any]) -> None:
    rows, checks = prove("timm:convnext_atto", (1, 3, 96, 96), depth=2)
    assert rows["stages.0"].field.size == (52, 52) and rows["head"].field.is_global
    assert checks["stages.0"][0].size == [52, 52] and [s.measured for s in checks["stages.0"][0].strides] == [4, 4]
    assert checks["head"][0].mode == "global" and checks["head"][0].match
    assert strides_measured(checks) >= 4  # stem, stages.0 and the blocks before the fields pass 96 px


# ------------------------------------------------------------------------------------------------
# the coverage list (slow)


@pytest.mark.slow
def test_torchvision_convnext_tiny() -> None:
    """The issue's numbers: at 224² the support inside the image is 76 px at features.1 and 220 px at
    features.3 (a 224 px field whose ends lie outside)."""
    rows, checks = prove("tv:convnext_tiny", (1, 3, 224, 224), depth=2)
    assert checks["features.1"][0].size == [76, 76] and checks["features.3"][0].size == [220, 220]
    assert rows["features.1"].field.size == (76, 76) and rows["features.3"].field.size == (224, 224)
    assert [s.measured for s in checks["features.1"][0].strides] == [4, 4]


@pytest.mark.slow
@pytest.mark.parametrize("spec,size", [
    ("tv:swin_t", 224), ("tv:vit_b_16", 224), ("tv:maxvit_t", 224), ("tv:efficientnet_b0", 224),
    ("tv:regnet_y_400mf", 224), ("timm:convnext_atto", 224), ("timm:coatnet_0_rw_224", 224),
    ("timm:poolformer_s12", 224), ("timm:levit_128s", 224),
])
def test_coverage_models(spec: str, size: int, offline: list[Any]) -> None:
    _, checks = prove(spec, (1, 3, size, size), depth=2)
    assert strides_measured(checks) >= 1


@pytest.mark.slow
@pytest.mark.parametrize("arch,encoder", [("Unet", "tu-convnext_atto"), ("FPN", "mit_b0"), ("Segformer", "resnet34")])
def test_segmentation_models(arch: str, encoder: str, offline: list[Any]) -> None:
    _, checks = prove(f"smp:{arch}", (1, 3, 256, 256), depth=2, args={"encoder_name": encoder})
    assert strides_measured(checks) >= 1
