"""`inspectlab rf` through Typer's CliRunner: formats, filters, --empirical, --erf, --weights, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from inspectlab.cli import app

torch.set_num_threads(1)
runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def lenet_chain() -> dict[str, int]:
    """LeNet-5 by hand: conv 5x5 (+4), pool 2 (+1), conv 5x5 at stride 2 (+8), pool 2 at stride 2 (+2)."""
    return {"conv1": 5, "pool1": 6, "conv2": 14, "pool2": 16}


def test_json_rows() -> None:
    code, out, _ = run("rf", "lenet5", "-f", "json")
    assert code == 0
    document = json.loads(out)
    rows = {row["name"]: row for row in document["layers"]}
    for name, size in lenet_chain().items():
        assert rows[name]["rf"] == [size, size] and rows[name]["padding"] == [0, 0]
    assert rows["pool2"]["stride"] == [4, 4] and rows["pool2"]["rf_min"] == [16, 16]
    assert rows["fc1"]["global"] is True and rows["conv2"]["global"] is False
    assert {"name", "output_shape", "rf", "rf_min", "stride", "padding", "global"} <= set(rows["conv1"])
    assert rows["conv1"]["output_shape"] == [1, 6, 28, 28] and document["inputs"] == [[1, 1, 32, 32]]


def test_csv_with_layers_glob_and_markdown() -> None:
    code, out, _ = run("rf", "tv:resnet50", "--input", "1,3,224,224", "--layers", "layer?", "-f", "csv")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith("name,output_shape,rf,rf_min,stride,padding,global")
    assert [line.split(",")[2] for line in lines[1:]] == ["35×35", "91×91", "267×267", "427×427"]
    assert [line.split(",")[4] for line in lines[1:]] == ["4×4", "8×8", "16×16", "32×32"]
    code, out, _ = run("rf", "tv:resnet50", "--input", "1,3,224,224", "--layers", "layer4", "-f", "markdown")
    assert code == 0 and "| layer4 | 1×2048×7×7 | 427×427 | 11×11 | 32×32 | 213×213 |" in out


def test_table_and_depth() -> None:
    code, out, _ = run("rf", "lenet5", "--depth", "0")
    assert code == 0 and "(root)" in out and "conv1" not in out and "Model output: rf 16×16" in out


def test_empirical_check_passes_and_is_reported() -> None:
    code, out, err = run("rf", "lenet5", "--empirical", "--units", "first,centre,last", "-f", "json")
    assert code == 0
    rows = {row["name"]: row for row in json.loads(out)["layers"]}
    check = rows["conv2"]["empirical"]
    assert check["status"] == "equal" and check["notes"] == []
    units = check["units"]
    assert [u["unit"] for u in units] == ["first", "centre", "last"] and all(u["match"] for u in units)
    assert units[0]["measured"] == [[0, 13], [0, 13]]  # unit (0, 0) of conv2 reads pixels 0..13
    assert [s["measured"] for s in units[0]["strides"]] == [2, 2]  # unit (1, 1) reads pixels 2..15
    assert rows["fc3"]["empirical"]["units"] == [{
        "unit": "global", "index": [None, None], "analytic": [[0, 31], [0, 31]], "measured": [[0, 31], [0, 31]],
        "fits": True, "match": True, "dtype": "float32", "strides": []}]
    assert "13 rows equal, 0 differ, 0 not checkable; strides measured on 7 rows" in err


def test_empirical_table_shows_fields_and_strides() -> None:
    code, out, _ = run("rf", "lenet5", "--empirical", "--depth", "1")
    assert code == 0
    assert "measured rf / stride" in out and "14×14 / 2×2" in out and "all" in out and "✓" in out


def test_empirical_mismatch_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    from inspectlab.runtime import empirical_rf
    from inspectlab.workflows import receptive_field as rf_workflow

    real = empirical_rf.run_checks

    def wrong(*args: object, **kwargs: object) -> object:
        checks = real(*args, **kwargs)  # type: ignore[arg-type]
        checks.rows[1].measured = [(0, 1), (0, 1)]
        return checks

    monkeypatch.setattr(rf_workflow, "run_checks", wrong)  # the name the workflow calls
    code, out, err = run("rf", "lenet5", "--empirical", "--depth", "1")
    assert code == 1 and "✗" in out and "1 differ" in out and "1 row(s) differ from their autograd support" in err


def test_rows_not_checkable_are_listed_with_the_reason_and_exit_0(tmp_path: Path) -> None:
    source = tmp_path / "net.py"
    source.write_text("import torch\nfrom torch import nn\n\n\nclass Net(nn.Module):\n"
                      "    def __init__(self):\n        super().__init__()\n        self.conv = nn.Conv2d(1, 2, 3)\n\n"
                      "    def forward(self, x):\n        return self.conv(x)[:, :, torch.tensor([2, 0, 1])]\n\n\n"
                      "def make():\n    return Net()\n")
    code, out, err = run("rf", f"{source}:make", "--input", "1,1,8,8", "--empirical")
    assert code == 0
    assert "1 rows equal, 0 differ, 1 not checkable" in out
    assert "Not checkable: (root): the analysis gives no field: no rule for aten.index" in out


def test_erf_writes_a_png_and_radii(tmp_path: Path) -> None:
    target = tmp_path / "erf.png"
    code, out, err = run("rf", "lenet5", "--erf", str(target), "--samples", "3", "-f", "json", "--depth", "0")
    assert code == 0 and target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    erf = json.loads(out)["erf"]
    assert erf["layer"] == "pool2" and erf["unit"] == [2, 2] and erf["samples"] == 3
    assert 0 < erf["radius50"] <= erf["radius90"] and erf["analytic_rf"] == [16, 16]
    assert "Effective field of pool2" in err
    code, _, err = run("rf", "lenet5", "--erf", str(target), "--samples", "1")
    assert code == 2 and "exists; use --force" in err and err.count("\n") == 1


def test_erf_with_weights(tmp_path: Path) -> None:
    from inspectlab import api

    model = api.build_model("lenet5", None, "cpu")
    weights = tmp_path / "lenet.pt"
    torch.save(model.state_dict(), weights)
    target = tmp_path / "erf.png"
    code, out, _ = run("rf", "lenet5", "--erf", str(target), "--weights", str(weights), "--samples", "2",
                       "--erf-layer", "conv2", "-f", "json", "--depth", "0")
    assert code == 0 and json.loads(out)["erf"]["layer"] == "conv2"
    torch.save({"conv1.weight": torch.zeros(1)}, weights)
    code, _, err = run("rf", "lenet5", "--erf", str(tmp_path / "b.png"), "--weights", str(weights))
    assert code == 2 and err.startswith("error:") and "does not fit the model" in err and err.count("\n") == 1


@pytest.mark.parametrize("args,message", [
    (["rf", "lenet5", "--input", "1,1,x,32"], "malformed --input"),
    (["rf", "no_such_model"], "unknown model"),
    (["rf", "lenet5", "--units", "middle"], "--units takes"),
    (["rf", "lenet5", "--layers", "nothing*"], "no module matches --layers"),
    (["rf", "lenet5", "--erf-layer", "fc1", "--erf", "/nonexistent-folder/x.png"], "does not exist"),
    (["rf", "lenet5", "--erf-layer", "nope", "--erf", "{tmp}/x.png"], "is not a module output"),
    (["rf", "lenet5", "--erf-layer", "fc1", "--erf", "{tmp}/x.png"], "no per-position field"),
    (["rf", "lenet5", "--weights", "{tmp}/missing.pt", "--erf", "{tmp}/x.png"], "no such weights file"),
])
def test_errors_are_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    code, _, err = run(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert code == 2 and err.startswith("error:") and message in err and err.count("\n") == 1


def test_help_does_not_import_torch() -> None:
    code = ("import sys; from inspectlab.cli import app; assert 'torch' not in sys.modules; "
            "from typer.testing import CliRunner; r = CliRunner().invoke(app, ['rf', '--help']); "
            "assert r.exit_code == 0 and '--empirical' in r.stdout and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
