"""The empirical check itself (`runtime.empirical_rf`, issue 14 §4): it measures every row (tokens and NHWC rows
too) or says why not, checks strides and global rows, finds every kind of wrong analysis it is shown (a field,
a stride, a global flag too many or too few, in a shared backward or alone), and stays exact in float32."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from inspectlab import api
from inspectlab.analysis.receptive_field import FieldMap, FieldRow, field_rows, receptive_fields
from inspectlab.analysis.rf_fields import AxisField, FieldInfo
from inspectlab.runtime.empirical_rf import CheckRun, row_verdict, run_checks
from inspectlab.runtime.rf_linear import Linearise, linear_positive_copy
from inspectlab.runtime.rf_probe import centre_candidates, even_period

torch.set_num_threads(1)


def analyse(model: nn.Module, shape: tuple[int, ...], depth: int | None = None) -> tuple[FieldMap, list[FieldRow]]:
    fields = receptive_fields(api.trace(model, shape))
    return fields, field_rows(fields, depth=depth)


def verdicts(rows: list[FieldRow], run: CheckRun) -> dict[str, tuple[str, list[str]]]:
    return {r.name: row_verdict(r, [c for c in run.rows if c.name == r.name]) for r in rows}


def edited(row: FieldRow, axis: int, jump: Fraction | None = None, shift: tuple[int, int] = (0, 0),
           is_global: bool | None = None) -> FieldRow:
    """The row with its field changed: one axis's stride, or its table's first/last pixels moved (all rows)."""
    info = row.field
    axes = list(info.axes)
    old = axes[axis]
    table = old.per_unit.copy()
    table[0::2] += shift[0]
    table[1::2] += shift[1]
    axes[axis] = AxisField(old.dim, old.jump if jump is None else jump, table, pieces=old.pieces)
    field = FieldInfo(tuple(axes), info.is_global if is_global is None else is_global)
    return dataclasses.replace(row, field=field)


class Stack(nn.Sequential):
    def __init__(self) -> None:
        super().__init__(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=2,
                                                                                               dilation=2))


class SE(nn.Module):
    """A conv, then an SE gate from a module (cut at its output) or from functional code in this forward."""

    def __init__(self, functional: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(4, 4, 1)
        self.functional = functional

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        gate = F.adaptive_avg_pool2d(y, 1) if self.functional else self.fc(self.pool(y))
        return y * gate.sigmoid()


# ------------------------------------------------------------------------------------------------
# what is measured


def test_every_row_field_and_stride() -> None:
    fields, rows = analyse(Stack(), (1, 2, 40, 36))
    run = run_checks(Stack(), fields, rows, (1, 2, 40, 36), units=("first", "centre", "last"))
    assert all(v == ("equal", []) for v in verdicts(rows, run).values())
    (centre,) = [c for c in run.rows if c.name == "3" and c.mode == "centre"]
    assert centre.size == [12, 12] and [s.measured for s in centre.strides] == [2, 2]  # 3 + 1 + (3 - 1)·2·2
    assert all(s.status == "equal" and s.k == 1 for c in run.rows for s in c.strides)


def test_global_rows_cover_the_input_and_their_local_field_is_measured() -> None:
    fields, rows = analyse(SE(), (1, 2, 16, 16))
    run = run_checks(SE(), fields, rows, (1, 2, 16, 16))
    root = {c.mode: c for c in run.rows if c.name == "(root)"}
    assert root["global"].measured == [(0, 15), (0, 15)] and root["global"].match
    assert root["centre"].size == [3, 3] and root["centre"].match  # the gate's path cut at its modules' outputs
    assert verdicts(rows, run)["(root)"] == ("equal", [])


def test_a_gate_made_in_functional_code_leaves_the_local_field_unchecked() -> None:
    fields, rows = analyse(SE(functional=True), (1, 2, 16, 16))
    run = run_checks(SE(functional=True), fields, rows, (1, 2, 16, 16))
    status, notes = verdicts(rows, run)["(root)"]
    assert status == "equal" and [c.mode for c in run.rows if c.name == "(root)"] == ["global"]
    assert any("local field not checkable" in n for n in notes)


def test_rows_it_cannot_check_say_why() -> None:
    class Unruly(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :, torch.tensor([2, 0, 1])]  # aten.index: no rule

    fields, rows = analyse(Unruly(), (1, 1, 6, 6))
    run = run_checks(Unruly(), fields, rows, (1, 1, 6, 6))
    assert not run.rows and run.backwards == 0
    status, notes = verdicts(rows, run)["(root)"]
    assert status == "not checkable" and "no rule for aten.index" in notes[0]


def test_a_constant_row_has_no_support() -> None:
    class Zeroed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x) * torch.zeros_like(x[:, :, 2:, 2:])  # a path to the input, a zero gradient

    fields, rows = analyse(Zeroed(), (1, 1, 8, 8))
    run = run_checks(Zeroed(), fields, rows, (1, 1, 8, 8))
    (root,) = [c for c in run.rows if c.name == "(root)"]
    assert root.mode == "constant" and root.measured == [None, None] and root.match
    assert root.dtype == "float64" and run.float64_backwards == 1  # float32 could have underflowed to zero


# ------------------------------------------------------------------------------------------------
# it finds what is wrong


@pytest.mark.parametrize("edit,what", [
    (lambda r: edited(r, 0, jump=Fraction(8)), "stride"),  # the "stride 4 on a 7×7 map" kind of bug
    (lambda r: edited(r, 1, shift=(1, 0)), "field"),  # one pixel short at the start, on every unit
    (lambda r: edited(r, 0, shift=(0, -1)), "field"),
    (lambda r: edited(r, 0, is_global=True), "global"),  # global where it is not
])
def test_a_wrong_row_differs(edit: object, what: str) -> None:
    model = Stack()
    fields, rows = analyse(model, (1, 2, 40, 36))
    rows = [edit(r) if r.name == "3" else r for r in rows]  # type: ignore[operator]
    run = run_checks(model, fields, rows, (1, 2, 40, 36))
    assert verdicts(rows, run)["3"][0] == "differs"
    assert {v[0] for name, v in verdicts(rows, run).items() if name != "3"} == {"equal"}
    (wrong,) = [c for c in run.rows if c.name == "3" and not c.match]
    if what == "stride":  # the fields equal the analysis (in float32), their shift does not
        assert [s.status for s in wrong.strides] == ["differs", "equal"] and wrong.strides[0].measured == 2
    else:
        assert wrong.dtype == "float64"  # a field that differs is confirmed alone, in float64


def test_a_missing_global_flag_differs() -> None:
    """An SE output called local: measured without the cut, its unit depends on every pixel."""
    fields, rows = analyse(SE(), (1, 2, 16, 16))
    rows = [dataclasses.replace(r, field=FieldInfo(r.field.axes, False)) if r.name == "(root)" else r for r in rows]
    run = run_checks(SE(), fields, rows, (1, 2, 16, 16))
    assert verdicts(rows, run)["(root)"][0] == "differs"


def test_shared_backwards_separate_exactly() -> None:
    """Units whose supports lie apart share a backward: 5 rows, each a unit and its neighbour, in 2 backwards.
    A field one pixel too small on one row is told apart from the others' in the same backward."""
    model, shape = Stack(), (1, 2, 96, 96)
    fields, rows = analyse(model, shape)
    run = run_checks(model, fields, rows, shape)
    assert {v[0] for v in verdicts(rows, run).values()} == {"equal"} and len(rows) == 5
    assert run.forwards == 1 and run.backwards == 2
    wrong = [edited(r, 0, shift=(1, 0)) if r.name == "1" else r for r in rows]
    run = run_checks(model, fields, wrong, shape)
    assert {n for n, v in verdicts(wrong, run).items() if v[0] != "equal"} == {"1"}


@pytest.mark.slow
def test_unet_rows_share_backwards() -> None:
    """UNet at 512²: 33 rows (a unit and its neighbour each) in under a quarter as many backwards."""
    shape = (1, 3, 512, 512)
    fields = receptive_fields(api.trace("unet", shape, args={"base_c": 2}))
    rows = field_rows(fields, depth=2)
    run = run_checks(api.build_model("unet", {"base_c": 2}, "cpu"), fields, rows, shape)
    assert {v[0] for v in verdicts(rows, run).values()} == {"equal"}
    assert run.forwards == 1 and run.backwards < len(rows) / 4 and run.float64_backwards == 0


# ------------------------------------------------------------------------------------------------
# float32 stays exact


def test_float32_underflow_is_caught() -> None:
    """A 3-tap stack 130 deep over a line: its unit's gradient falls by 3^-130 (2^-206) from the centre to the
    field's ends, past float32's range. A plain float32 backward loses the ends; the check sees values below
    2^-96 even with its seed rescaled, falls back to float64, and measures the whole 261 px field."""
    depth, size = 130, 270
    model = nn.Sequential(*[nn.Conv1d(1, 1, 3, padding=1) for _ in range(depth)])
    shape = (1, 1, size)
    fields, rows = analyse(model, shape, depth=0)
    copy = linear_positive_copy(model, dtype=torch.float32)
    x = torch.ones(shape, requires_grad=True)
    with Linearise():
        y = copy(x)
    grad = torch.autograd.grad(y[0, 0, size // 2], x)[0][0, 0]
    assert int((grad > 0).sum()) < 2 * depth + 1  # plain float32 loses the ends
    run = run_checks(model, fields, rows, shape)
    (root,) = run.rows
    assert root.match and root.size == [2 * depth + 1] and root.dtype == "float64" and run.float64_backwards == 2


def test_float32_is_exact_on_a_deep_residual_net() -> None:
    """ResNet-18's rows in float32 equal the float64 measurement, with no float64 backward needed."""
    shape = (1, 3, 96, 96)
    fields = receptive_fields(api.trace("tv:resnet18", shape))
    rows = field_rows(fields, depth=1)
    run = run_checks(api.build_model("tv:resnet18", None, "cpu"), fields, rows, shape)
    assert run.float64_backwards == 0 and all(c.match for c in run.rows)


# ------------------------------------------------------------------------------------------------
# the planning pieces


def test_even_period_and_candidates() -> None:
    units = np.arange(10, dtype=float)
    conv = np.stack([units * 2 - 1, units * 2 + 1] * 3)  # 3 px fields at stride 2
    assert even_period(conv) == 1
    upsampled = np.repeat(conv[:, :5], 2, axis=1)  # nearest 2x: every other unit moves
    assert even_period(upsampled) == 2
    uneven = conv.copy()
    uneven[:, 5:] += 1
    assert "unevenly" in str(even_period(uneven))
    assert centre_candidates(conv, extent=20)[0] == 1 and 4 in centre_candidates(conv, extent=20)
    assert centre_candidates(conv, extent=2) == [4]  # nothing fits: the most centred unit
