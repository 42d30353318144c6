"""`inspectlab compare` and `inspectlab sweep` through the CLI: rows against api.summary, error rows, report
files (overwrite refusal, self-contained HTML), sweeps of a user's factory file, and one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, run_cli

from inspectlab import api

FACTORY = '''from torch import nn


def convs(width=8):
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.ReLU(),
                         nn.Conv2d(width, width, 3, stride=2, padding=1, bias=False))
'''


@pytest.fixture()
def factory(tmp_path: Path) -> str:
    path = tmp_path / "mine.py"
    path.write_text(FACTORY)
    return f"{path}:convs"


def test_compare_json_rows_match_api_summary(factory: str) -> None:
    result = run_cli("compare", "unet", f"{factory}:width=4", "nope", "--input", "1,3,32,32", "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["kind"] == "compare" and document["input"] == [[1, 3, 32, 32]]
    unet, mine, nope = document["rows"]
    totals = api.summary("unet", (1, 3, 32, 32), depth=0).totals
    assert all(unet[k] == totals[k] for k in ("params", "macs", "flops", "other_flops", "peak_bytes"))
    # the factory with width=4, by hand: params 3·4·9 + 4·4·9; MACs 4·32²·3·9 + 4·16²·4·9
    assert mine["model"] == f"{factory}:width=4"
    assert mine["params"] == 3 * 4 * 9 + 4 * 4 * 9
    assert mine["macs"] == 4 * 32 * 32 * 3 * 9 + 4 * 16 * 16 * 4 * 9
    assert (mine["output_stride"], mine["rf"], mine["rf_global"]) == (2, 5, False)  # 1 + 2 + 2·1
    assert mine["macs_per_output_pixel"] == pytest.approx(mine["macs"] / (16 * 16))
    assert nope["error"].startswith("unknown model 'nope'") and nope["macs"] is None


def test_compare_table_and_convention(factory: str) -> None:
    result = run_cli("compare", "unet", factory, "nope", "--input", "1,3,32,32", "--convention", "torch")
    assert result.exit_code == 0, result.output
    for text in ("unet", "mine.py:convs", "MACs/param", "torch flops", "error: nope: unknown model"):
        assert text in result.output
    result = run_cli("compare", factory, "--input", "1,3,32,32", "--convention", "torch", "--format", "csv")
    header, row = result.output.splitlines()[:2]
    values = dict(zip(header.split(","), row.split(","), strict=True))
    assert int(values["torch_flops"]) == 2 * int(values["macs"])  # convs without bias: FlopCounterMode = 2·MACs


def test_compare_with_latency_on_a_tiny_model() -> None:
    result = run_cli("compare", "lenet5", "--input", "1,1,32,32", "--latency", "--iters", "3", "--warmup", "0",
                  "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    row = document["rows"][0]
    assert 0 < row["latency_p50_ms"] <= row["latency_p90_ms"]
    assert document["latency"]["iters"] == 3


def test_report_files_refuse_overwrite_without_force(factory: str, tmp_path: Path) -> None:
    html, md = tmp_path / "r.html", tmp_path / "r.md"
    args = ["compare", "unet", factory, "--input", "1,3,32,32", "-o", str(html), "-o", str(md)]
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    assert f"wrote {html}" in result.output and (tmp_path / "r-macs-params.png").exists()
    page = html.read_text()
    assert not [v for v in re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", page) if not v.startswith("data:")]
    assert page.count("<img ") == 2 and "mine.py:convs" in page
    assert "![MACs vs parameters](r-macs-params.png)" in md.read_text()
    before = html.read_bytes()
    assert_one_line_error(run_cli(*args), "exists", "--force")
    assert html.read_bytes() == before
    assert run_cli(*args, "--force", "--title", "Mine").exit_code == 0
    assert "<h1>Mine</h1>" in html.read_text()


def test_compare_errors_are_one_line(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("compare", "unet", "-o", str(tmp_path / "r.txt")), "format", ".html")
    assert_one_line_error(run_cli("compare", "nope", "tv:nothing_like_this", "--input", "1,3,32,32"),
                           "every model failed", "nope")
    assert_one_line_error(run_cli("compare", "unet", "--input", "1,3,x,4"), "malformed --input")
    assert_one_line_error(run_cli("compare", ":width=3"), "malformed model spec")
    assert_one_line_error(run_cli("compare", "unet", "-o", str(tmp_path / "no" / "r.md")), "does not exist")


def test_sweep_exponent_of_a_conv_only_factory(factory: str, tmp_path: Path) -> None:
    result = run_cli("sweep", factory, "--sizes", "16,32,64,128", "--input", "1,3,8,8", "--arg", "width=4",
                  "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["kind"] == "sweep"
    assert abs(document["exponents"]["macs"] - 1.0) < 1e-6
    for row in document["rows"]:
        h = row["height"]
        assert row["macs"] == 4 * h * h * 3 * 9 + 4 * (h // 2) ** 2 * 4 * 9
    report = tmp_path / "s.html"
    result = run_cli("sweep", factory, "--sizes", "16,32", "--input", "1,3,8,8", "-o", str(report))
    assert result.exit_code == 0, result.output
    assert report.read_text().count('src="data:image/png;base64,') == 1
    table = run_cli("sweep", factory, "--sizes", "16,32,2x4", "--input", "1,3,8,8")
    assert table.exit_code == 0 and "MACs 1.0000" in table.output and "2×4" in table.output


def test_sweep_errors_are_one_line(factory: str) -> None:
    assert_one_line_error(run_cli("sweep", factory, "--sizes", "16,big"), "malformed --sizes")
    assert_one_line_error(run_cli("sweep", factory, "--sizes", "16", "--input", "1,3"), "spatial dims")
    assert_one_line_error(run_cli("sweep", "unet", "--sizes", "4,8"), "every size failed")
