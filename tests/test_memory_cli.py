"""`inspectlab memory` on the command line: every format, the timeline picture, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import assert_one_line_error, run_cli

PNG = bytes([0x89]) + b"PNG\r\n\x1a\n"


def test_table_names_the_peak_and_its_parts() -> None:
    result = run_cli("memory", "resnet18", "--input", "2,3,64,64", "--train", "--optimizer", "adam", "--depth", "1")
    assert result.exit_code == 0, result.output
    assert "saved for backward" in result.output and "layer4" in result.output
    assert "Peak" in result.output and "optimizer phase" in result.output and "optimizer state" in result.output


def test_json_totals_are_the_documented_keys(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    result = run_cli("memory", "lenet5", "--input", "2,1,32,32", "--train", "--budget", "2MiB", "-f", "json",
                     "-o", str(out))
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert list(document["totals"]) == ["params_bytes", "grads_bytes", "optimizer_bytes", "activations_bytes",
                                        "peak_bytes", "peak_phase", "peak_op", "max_batch"]
    assert document["mode"] == "train" and document["optimizer"] == "adamw"
    assert document["budget"]["estimates"] and document["totals"]["max_batch"] > 2
    assert [row["name"] for row in document["layers"]][:3] == ["(root)", "conv1", "act1"]


def test_csv_markdown_html_and_the_picture(tmp_path: Path) -> None:
    result = run_cli("memory", "lenet5", "-f", "csv")
    assert result.exit_code == 0 and result.output.splitlines()[0].startswith("name,type,depth,peak_bytes")
    result = run_cli("memory", "lenet5", "--train", "-f", "markdown")
    assert result.exit_code == 0 and "| module |" in result.output and "- Peak" in result.output
    page, picture = tmp_path / "memory.html", tmp_path / "timeline.png"
    result = run_cli("memory", "lenet5", "--train", "-f", "html", "-o", str(page), "--plot", str(picture))
    assert result.exit_code == 0, result.output
    assert 'src="data:image/png;base64,' in page.read_text() and picture.read_bytes().startswith(PNG)
    again = run_cli("memory", "lenet5", "--plot", str(picture))
    assert_one_line_error(again, "--force")


def test_bad_input_is_one_line() -> None:
    cases = [
        (("memory", "lenet5", "--amp", "bf16"), "--train"),
        (("memory", "lenet5", "--budget", "lots"), "--budget"),
        (("memory", "lenet5", "--optimizer", "lion", "--train"), "lion"),
        (("memory", "lenet5", "--train", "--grad-checkpoint", "nothing*"), "--grad-checkpoint"),
        (("memory", "resnet18", "--input", "1,3,64,48", "--budget", "1GiB", "--solve", "size"), "square"),
        (("memory", "unet", "--input", "1,3,64,64", "--train", "--loss", "nope"), "--loss"),
        (("memory", "no_such_model"), "no_such_model"),
        (("memory", "lenet5", "--budget", "0"), "--budget"),
    ]
    for arguments, fragment in cases:
        assert_one_line_error(run_cli(*arguments), fragment)
