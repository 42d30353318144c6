"""`inspectlab summary` and `inspectlab flops` through the CLI: formats, files, totals and bad input."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
import torch
import torchvision
from cli_helpers import assert_one_line_error, run_cli
from hypothesis import given
from hypothesis import strategies as st

from inspectlab.core.errors import InspectlabError
from inspectlab.core.shapes import parse_shape

LAYER_KEYS = {"name", "type", "depth", "call", "input_shapes", "output_shapes", "params", "macs", "flops",
              "other_flops", "output_bytes"}
TOTAL_KEYS = {"params", "trainable_params", "macs", "flops", "other_flops", "param_bytes", "activation_bytes",
              "peak_bytes"}


def test_summary_json_schema_and_params_against_torchvision() -> None:
    result = run_cli("summary", "tv:resnet18", "--input", "1,3,64,64", "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["schema"] == 1 and document["model"] == "tv:resnet18"
    assert document["inputs"] == [[1, 3, 64, 64]]
    assert TOTAL_KEYS <= set(document["totals"])
    assert isinstance(document["uncounted_ops"], dict)
    reference = torchvision.models.resnet18()
    assert document["totals"]["params"] == sum(p.numel() for p in reference.parameters())
    assert document["totals"]["param_bytes"] == 4 * document["totals"]["params"]
    layer1 = next(row for row in document["layers"] if row["name"] == "layer1")
    assert LAYER_KEYS <= set(layer1)
    assert layer1["params"] == sum(p.numel() for p in reference.layer1.parameters())
    assert layer1["output_shapes"] == [[1, 64, 16, 16]]
    assert layer1["output_bytes"] == 64 * 16 * 16 * 4


def test_summary_counts_each_call_of_a_reused_module() -> None:
    result = run_cli("summary", "tv:resnet18", "--input", "1,3,64,64", "--depth", "3", "--format", "json")
    names = [row["name"] for row in json.loads(result.output)["layers"]]
    assert "layer1.0.relu" in names and "layer1.0.relu#1" in names


def test_summary_csv_has_the_json_layer_keys() -> None:
    result = run_cli("summary", "lenet5", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert LAYER_KEYS <= set(rows[0])
    assert rows[0]["output_shapes"] == "1×6×28×28"


def test_summary_table_shows_totals() -> None:
    result = run_cli("summary", "unet", "--input", "1,3,64,64")
    assert result.exit_code == 0, result.output
    assert "Params: 17,263,042" in result.output
    assert re.search(r"MACs: [\d,]+", result.output)


@pytest.mark.parametrize("fmt", ["markdown", "html", "json", "csv"])
def test_output_file_is_written_once_and_refused_without_force(tmp_path, fmt: str) -> None:
    target = tmp_path / f"report.{fmt}"
    assert run_cli("summary", "lenet5", "--format", fmt, "-o", str(target)).exit_code == 0
    first = target.read_text()
    assert first
    assert_one_line_error(run_cli("summary", "lenet5", "--format", fmt, "-o", str(target)), "--force")
    assert target.read_text() == first
    assert run_cli("summary", "lenet5", "--format", fmt, "-o", str(target), "--force").exit_code == 0
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary file left behind


def test_backward_total_equals_flop_counter_mode() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    result = run_cli("summary", "tv:resnet18", "--input", "1,3,64,64", "--backward", "--format", "json")
    model = torchvision.models.resnet18().eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, 64, 64)).sum().backward()
    assert json.loads(result.output)["totals"]["flops"] == counter.get_total_flops()


def test_flops_convention_prints_one_number() -> None:
    result = run_cli("flops", "tv:resnet50", "--input", "1,3,224,224", "--convention", "torchinfo")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "4089238376"  # torchinfo's total_mult_adds for this model and input


@pytest.mark.parametrize("text", ["1,3,abc", "0,3,224,224", "", "1,3,-5,5", "1,,3"])
def test_malformed_input(text: str) -> None:
    assert_one_line_error(run_cli("summary", "unet", "--input", text), "--input")


def test_shape_the_model_rejects() -> None:
    assert_one_line_error(run_cli("summary", "tv:resnet18", "--input", "1,4,64,64"), "conv1", "1×4×64×64")
    assert_one_line_error(run_cli("summary", "unet", "--input", "1,3,8,8"), "down4.0", "too small")


def test_unknown_model_column_and_convention() -> None:
    assert_one_line_error(run_cli("summary", "resnet5O"), "did you mean")
    assert_one_line_error(run_cli("summary", "lenet5", "--columns", "name,bogus"), "bogus")
    assert_one_line_error(run_cli("flops", "lenet5", "--convention", "ptflops"), "ptflops")


@given(st.text(max_size=30))
def test_parse_shape_accepts_only_positive_integer_lists(text: str) -> None:
    try:
        shape = parse_shape(text)
    except InspectlabError:
        return
    assert shape and all(isinstance(d, int) and d > 0 for d in shape)
    assert re.fullmatch(r"\s*\d+\s*([,x×]\s*\d+\s*)*", text)


def test_summary_rf_and_stride_columns_match_the_resnet50_anchors() -> None:
    """Issue 4's hand-checkable anchors: layer1..layer4 = 35 / 91 / 267 / 427 px at strides 4 / 8 / 16 / 32."""
    result = run_cli("summary", "tv:resnet50", "--input", "1,3,224,224", "--depth", "1", "--format", "json",
                  "--columns", "name,rf,stride")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)["layers"]}
    for name, size, stride in (("layer1", 35, 4), ("layer2", 91, 8), ("layer3", 267, 16), ("layer4", 427, 32)):
        assert rows[name]["rf"] == [size, size] and rows[name]["stride"] == [stride, stride]
    assert rows["fc"]["rf"] == "global"


@pytest.mark.parametrize("fmt", ["markdown", "html", "csv"])
def test_every_format_names_each_layer_in_its_first_column(fmt: str) -> None:
    result = run_cli("summary", "lenet", "--input", "1,1,32,32", "--format", fmt)
    assert result.exit_code == 0, result.output
    names = [row["name"] for row in json.loads(run_cli("summary", "lenet", "--input", "1,1,32,32", "--format",
                                                      "json").output)["layers"]]
    if fmt == "markdown":
        firsts = [line.split("|")[1].strip() for line in result.output.splitlines()[4:] if line.startswith("|")]
    elif fmt == "html":
        firsts = re.findall(r"<tr><td>([^<]*)</td>", result.output)
        firsts = [first.strip() for first in firsts]
    else:
        firsts = [row[0] for row in csv.reader(io.StringIO(result.output))][1:]
    assert len(firsts) == len(names)
    assert all(first and name.endswith(first) for first, name in zip(firsts, names, strict=True)), firsts
