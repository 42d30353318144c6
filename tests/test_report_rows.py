"""Typed report rows: read as mappings, exported as the same JSON keys as before, changed by replace."""

from __future__ import annotations

import json
from dataclasses import replace
from fractions import Fraction

import pytest
import torch
from torch import nn

from inspectlab.analysis.conventions import ConventionRow, convention_rows
from inspectlab.analysis.flops import count_flops
from inspectlab.analysis.receptive_field import RfRow, field_columns, field_report, plain_number, receptive_fields
from inspectlab.analysis.report import Report
from inspectlab.analysis.summary import LAYER_KEYS, LayerRow, summarize
from inspectlab.tracing.recorder import record


@pytest.fixture(scope="module")
def trace():  # noqa: ANN201
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Upsample(size=(7, 7), mode="bilinear"),
                          nn.AdaptiveAvgPool2d(1))
    return record(model, [torch.empty(1, 3, 18, 18, device="meta")])  # conv: 8×8, upsampled to 7×7


def test_layer_rows_read_as_mappings(trace) -> None:  # noqa: ANN001
    report = summarize(trace, "m", depth=1)
    row = report.layers[0]
    assert isinstance(row, LayerRow) and tuple(row) == LAYER_KEYS and len(row) == len(LAYER_KEYS)
    assert row["params"] == row.params == 4 * 3 * 9 + 4 and row.get("rf") is None and "rf" not in row
    with pytest.raises(KeyError):
        row["rf"]  # noqa: B018
    assert {**row, "label": "x"}["label"] == "x" and dict(row) == row.to_dict() == row
    assert sum(r["macs"] for r in report.layers) == report.totals["macs"]
    document = json.loads(report.to_json())
    assert list(document["layers"][0]) == list(LAYER_KEYS)
    assert list(report.to_dataframe().columns) == list(LAYER_KEYS)


def test_rf_columns_only_when_asked(trace) -> None:  # noqa: ANN001
    rows = summarize(trace, "m", depth=1, receptive_field=True).layers
    assert list(rows[0]) == [*LAYER_KEYS, "rf", "stride"]
    assert rows[0]["rf"] == [3, 3] and rows[0]["stride"] == [2, 2] and rows[1]["rf"] == [3, 3]
    assert rows[2]["stride"] == ["16/7", "16/7"]  # exact: a rational stride prints as a fraction
    assert rows[3]["rf"] == "global"


def test_rf_rows_take_the_checks_by_replace(trace) -> None:  # noqa: ANN001
    report = field_report(receptive_fields(trace), "m", depth=1)
    row = report.layers[3]
    assert isinstance(row, RfRow) and list(row) == ["name", "output_shape", "rf", "rf_min", "stride", "padding",
                                                    "global", "notes"]
    checked = replace(row, empirical=[], measured="3×3", check="✓")
    assert list(checked)[-3:] == ["empirical", "measured", "check"] and checked["stride"] == ["16/7"] * 2
    assert "empirical" not in row
    report.layers[3] = checked
    assert list(json.loads(report.to_json())["layers"][3])[-3:] == ["empirical", "measured", "check"]
    with pytest.raises(TypeError):
        row["rf"] = None  # type: ignore[index]


def test_field_columns_numbers(trace) -> None:  # noqa: ANN001
    assert plain_number(Fraction(4, 2)) == 2 and isinstance(plain_number(Fraction(4, 2)), int)
    assert plain_number(Fraction(18, 7)) == 2.5714 and plain_number(Fraction(18, 7), None) == 18 / 7
    assert plain_number(None) is None
    assert field_columns(None) == {"rf": None, "rf_min": None, "stride": None, "padding": None, "global": False}


def test_convention_rows(trace) -> None:  # noqa: ANN001
    count = count_flops(trace)
    rows = convention_rows(count, False, {"torch": 1, "fvcore": "not installed"})
    assert [r.convention for r in rows] == ["inspectlab", "torch", "fvcore", "torchinfo"]
    assert all(isinstance(r, ConventionRow) for r in rows)
    assert list(rows[0]) == ["convention", "unit", "total", "peer", "counts", "match"]
    assert rows[1]["match"] is (rows[1].total == 1) and rows[2]["match"] is None and rows[0]["peer"] is None
    assert [r.convention for r in convention_rows(count, True, {})] == ["inspectlab", "torch"]
    assert Report("m", [], rows).to_dict()["layers"][3]["unit"] == "MACs"
