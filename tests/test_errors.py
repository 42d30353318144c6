"""One line for every mistake (issue 13, part 5): usage errors of Typer/Click, numbers, user code that
misbehaves, torch messages of many lines, and graphs of modules whose output is not a tensor."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_one_line_error, run_cli
from torch import nn

from inspectlab import api
from inspectlab.core.arguments import parse_bytes
from inspectlab.core.checkpoints import load_into as load_weights
from inspectlab.core.errors import InspectlabError, describe_error, first_line
from inspectlab.core.shapes import MAX_ELEMENTS, parse_batches, parse_shape, parse_sizes
from inspectlab.render.columns import summary_columns
from inspectlab.render.frames import frame_rows
from inspectlab.runtime.latency import validate

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")

FACTORIES = '''import sys

import torch
from torch import nn


class Strange(BaseException):
    pass


def convs():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())


def exits():
    sys.exit(3)


def interrupted():
    raise KeyboardInterrupt


def strange():
    raise Strange("from the factory")


class ExitingForward(nn.Module):
    def forward(self, x):
        sys.exit(5)


def exiting_forward():
    return ExitingForward()


def chatty():
    raise RuntimeError("the first line\\n  a second line\\n  a third line")


def meta_refuser():
    model = nn.Linear(2, 2)
    if model.weight.is_meta:
        raise RuntimeError("cannot be built on meta\\n" + "a torch message of many lines\\n" * 5)
    return model


class ImageList:
    """What torchvision's detection transforms return: an object holding the tensor."""

    def __init__(self, tensors):
        self.tensors = tensors


class Wrap(nn.Module):
    def forward(self, x):
        return ImageList(x * 2)


class Wrapped(nn.Module):
    def __init__(self):
        super().__init__()
        self.wrap = Wrap()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(self.wrap(x).tensors)


def wrapped():
    return Wrapped()
'''


@pytest.fixture()
def factories(tmp_path: Path) -> str:
    path = tmp_path / "factories.py"
    path.write_text(FACTORIES)
    return str(path)


# usage errors ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,fragments", [
    (["summary", "lenet5", "--format", "bogus"], ["error: --format: 'bogus' is not one of table, json, csv, markdown, "
                                                 "html"]),
    (["summary", "lenet5", "--depth", "-1"], ["--depth", "-1", "greater than or equal to 0"]),
    (["summary", "lenet5", "--depth", "x"], ["--depth", "'x'", "integer"]),
    (["summary", "lenet5", "--bogus"], ["unknown option --bogus"]),
    (["summary"], ["missing MODEL", "inspectlab summary --help"]),
    (["compare"], ["missing MODELS"]),
    (["sweep", "lenet5"], ["missing option --sizes"]),
    (["summary", "lenet5", "--input"], ["--input", "requires an argument"]),
    (["summary", "lenet5", "extra"], ["extra"]),
    (["bogus"], ["no such command 'bogus'"]),
    (["summar", "lenet5"], ["no such command 'summar'; did you mean 'summary'?"]),
    (["--bogus"], ["unknown option --bogus"]),
    (["rf", "lenet5", "--samples", "0"], ["--samples", "greater than or equal to 1"]),
    (["graph", "lenet5", "-f", "gif"], ["--format: 'gif' is not one of svg, png, pdf, dot"]),
])
def test_usage_errors_are_one_line(args: list[str], fragments: list[str]) -> None:
    result = run_cli(*args)
    assert_one_line_error(result, *fragments)
    assert "╭" not in result.output and "Usage:" not in result.output


def test_usage_errors_of_the_console_script_are_one_line_on_stderr() -> None:
    """`inspectlab.cli.main` (the console script), not CliRunner: one line on stderr, exit code 2, no torch."""
    code = ("import sys; sys.argv = ['inspectlab', 'summary', 'lenet5', '--format', 'bogus']\n"
            "from inspectlab.cli import main\n"
            "try:\n    main()\nfinally:\n    assert 'torch' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "error: --format: 'bogus' is not one of table, json, csv, markdown, html\n"


def test_help_is_unchanged() -> None:
    result = run_cli("--help")
    assert result.exit_code == 0 and "Usage" in result.output and "summary" in result.output
    assert "Usage" in run_cli().output  # `inspectlab` alone still prints the help
    assert run_cli("summary", "--help").exit_code == 0


# numbers --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,fragment", [
    (["summary", "lenet5", "--input", "99999999999999999999,3,4,4"], "too large"),
    (["summary", "lenet5", "--input", "17,1000000000000000000"], "too large"),
    (["summary", "lenet5", "--input", "1,3,2000000000,2000000000"], "too large"),
    (["rf", "lenet5", "--input", "9" * 5000], "too large"),
    (["summary", "lenet5", "--input", "1,1,٣2,32"], "malformed --input"),
    (["summary", "lenet5", "--input", "1,1,3²,32"], "malformed --input"),
    (["dump", "lenet5", "--max-bytes", "1e999"], "--max-bytes '1e999' is too large"),
    (["dump", "lenet5", "--max-bytes", "٣GB"], "malformed --max-bytes"),
    (["sweep", "lenet5", "--sizes", "²"], "malformed --sizes"),
    (["sweep", "lenet5", "--sizes", "99999999999999999999"], "too large"),
    (["sweep", "lenet5", "--sizes", "2000000000", "--input", "1,1,32,32"], "too large"),
    (["latency", "lenet5", "--batch", "²"], "malformed --batch"),
    (["latency", "lenet5", "--batch", "99999999999999999999"], "too large"),
    (["latency", "lenet5", "--input", "1,3,1024,1024", "--batch", "2000000000"], "too large"),
    (["latency", "lenet5", "--min-time", "inf"], "--min-time"),
    (["latency", "lenet5", "--min-time", "nan"], "--min-time"),
    (["summary", "lenet5", "--columns", ""], "empty --columns"),
    (["summary", "lenet5", "--columns", " , "], "empty --columns"),
    (["dump", "lenet5", "--mean", "nan,0,0"], "malformed --mean"),
])
def test_bad_numbers_are_one_line(args: list[str], fragment: str) -> None:
    assert_one_line_error(run_cli(*args), fragment)


@pytest.mark.parametrize("command", [
    ["summary", "lenet5"], ["flops", "lenet5"], ["graph", "lenet5", "-f", "dot"], ["rf", "lenet5"],
    ["latency", "lenet5"], ["dump", "lenet5"], ["compare", "lenet5"], ["sweep", "lenet5", "--sizes", "32"],
])
def test_an_empty_input_is_rejected_by_every_command(command: list[str]) -> None:
    assert_one_line_error(run_cli(*command, "--input", ""), "empty --input")


def test_huge_inputs_stay_legitimate_on_the_meta_device(factories: str) -> None:
    assert parse_shape("1,3,30000,30000") == (1, 3, 30000, 30000)
    assert parse_shape("1x1x33554432x33554432") == (1, 1, 2**25, 2**25)  # exactly MAX_ELEMENTS
    assert 2**25 * 2**25 == MAX_ELEMENTS
    result = run_cli("summary", f"{factories}:convs", "--input", "1,3,30000,30000", "--format", "json")
    assert result.exit_code == 0, result.output


def test_number_parsers_accept_ascii_digits_only() -> None:
    assert parse_sizes("224,512x1024") == [(224, 224), (512, 1024)]
    assert parse_batches("1, 8,32") == [1, 8, 32]
    assert parse_bytes("1.5GiB") == 1_610_612_736 and parse_bytes("2GB") == 2 * 10**9
    for parse, text in ((parse_sizes, "٣"), (parse_sizes, "2²"), (parse_batches, "1,٣"), (parse_bytes, "²MB"),
                        (parse_shape, "1,３,4"), (parse_bytes, "9" * 400), (parse_batches, "")):
        with pytest.raises(InspectlabError):
            parse(text)
    with pytest.raises(InspectlabError, match="empty --columns"):
        summary_columns(",")


@pytest.mark.parametrize("min_time", [math.inf, math.nan, -1.0, 0.0, 1e300])
def test_latency_refuses_a_min_time_that_never_ends_or_means_nothing(min_time: float) -> None:
    with pytest.raises(InspectlabError, match="--min-time"):
        validate(torch.device("cpu"), "cast", None, min_time, 0, False, None, False, None, None)
    validate(torch.device("cpu"), "cast", None, 0.5, 0, False, None, False, None, None)


# user code that misbehaves -------------------------------------------------------------------------------------
@pytest.mark.parametrize("factory,fragment", [
    ("exits", "the factory called sys.exit(3)"),
    ("interrupted", "the factory raised KeyboardInterrupt"),
    ("strange", "the factory raised Strange: from the factory"),
    ("exiting_forward", "sys.exit(5)"),
])
def test_a_misbehaving_factory_is_one_line(factories: str, factory: str, fragment: str) -> None:
    assert_one_line_error(run_cli("summary", f"{factories}:{factory}"), fragment)


def test_a_misbehaving_factory_is_an_error_row_of_compare(factories: str) -> None:
    frame = api.compare([f"{factories}:convs", f"{factories}:exits", f"{factories}:interrupted",
                         f"{factories}:strange", f"{factories}:exiting_forward", f"{factories}:convs"], (1, 3, 32, 32))
    rows = frame_rows(frame)
    good = 4 * 32 * 32 * 3 * 9
    assert rows[0]["macs"] == good and not rows[0].get("error")
    assert rows[5]["macs"] == good and not rows[5].get("error")  # the rows after the bad ones still run
    assert "sys.exit(3)" in rows[1]["error"] and "KeyboardInterrupt" in rows[2]["error"]
    assert "Strange: from the factory" in rows[3]["error"] and "sys.exit(5)" in rows[4]["error"]
    assert all(row["macs"] is None for row in rows[1:5])
    result = run_cli("compare", f"{factories}:convs", f"{factories}:exits", "--input", "1,3,32,32")
    assert result.exit_code == 0, result.output
    assert "sys.exit(3)" in result.output


def test_a_message_of_many_lines_is_cut_to_its_first_line(factories: str) -> None:
    result = run_cli("summary", f"{factories}:chatty")
    assert_one_line_error(result, "RuntimeError: the first line", "--debug")
    assert "second" not in result.output
    debug = run_cli("--debug", "summary", f"{factories}:chatty")
    assert debug.exit_code != 0 and "a second line" in str(debug.exception)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="MPS is available here: --device mps works")
def test_device_mps_without_mps_is_one_short_line() -> None:
    result = run_cli("summary", "lenet5", "--device", "mps")
    assert_one_line_error(result, "'MPS' backend", "--debug shows the rest")
    assert len(result.output) < 300 and "AutogradMPS" not in result.output


def test_the_meta_fallback_note_is_one_line(factories: str) -> None:
    report = api.summary(f"{factories}:meta_refuser", (1, 2))
    notes = report.extra["notes"]
    assert any("cannot be built on the meta device (RuntimeError: cannot be built on meta)" in n for n in notes)
    assert all("\n" not in note and "many lines" not in note for note in notes)


def test_first_line_of_torch_messages() -> None:
    backends = "Could not run 'aten::empty' with arguments from the 'MPS' backend. This could be because " + (
        "the operator doesn't exist. " * 20) + "[CPU, CUDA, Meta, " + "Autograd, " * 40 + "]"
    assert first_line(backends) == "Could not run 'aten::empty' with arguments from the 'MPS' backend."
    assert first_line("\n\n  first\nsecond") == "first"
    assert first_line("Error(s) in loading state_dict for Net:\n\tsize mismatch for w") == (
        "Error(s) in loading state_dict for Net: size mismatch for w")
    assert len(first_line("x" * 1000)) == 200
    assert describe_error(SystemExit(2)) == "the code called sys.exit(2)"
    assert describe_error(KeyboardInterrupt()) == "KeyboardInterrupt"


def test_load_state_dict_failures_name_the_keys_and_shapes(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["0.weight"] = torch.zeros(4, 3, 3, 3)
    del state["1.bias"]
    state["2.weight"] = torch.zeros(5)
    path = tmp_path / "w.pt"
    torch.save(state, path)
    with pytest.raises(InspectlabError) as caught:
        load_weights(model, str(path))
    message = str(caught.value)
    assert "\n" not in message and "does not fit the model" in message
    assert "0.weight is 4×3×3×3 in the file, 8×3×3×3 in the model" in message
    assert "1 missing: 1.bias (8)" in message and "1 unexpected: 2.weight (5)" in message
    torch.save(model.state_dict(), path)
    assert load_weights(model, str(path)) == []  # strict and complete: loaded, nothing to note


# graphs ---------------------------------------------------------------------------------------------------------
def test_a_module_whose_output_is_not_a_tensor_has_a_label(factories: str) -> None:
    result = run_cli("graph", f"{factories}:wrapped", "--input", "1,3,16,16", "-f", "dot")
    assert result.exit_code == 0, result.output
    assert '<FONT POINT-SIZE="9"></FONT>' not in result.output
    assert "output is not a tensor" in result.output


@needs_dot
def test_the_graph_of_a_non_tensor_output_renders(factories: str, tmp_path: Path) -> None:
    target = tmp_path / "wrapped.svg"
    result = run_cli("graph", f"{factories}:wrapped", "--input", "1,3,16,16", "-o", str(target))
    assert result.exit_code == 0, result.output
    assert target.read_bytes().lstrip().startswith((b"<?xml", b"<svg"))


@needs_dot
def test_a_failure_of_dot_is_one_line() -> None:
    import graphviz

    from inspectlab.render.graphviz_render import render_bytes

    broken = graphviz.Digraph()
    broken.node("a", '<<FONT POINT-SIZE="9"></FONT>>')
    with pytest.raises(InspectlabError) as caught:
        render_bytes(broken, "svg")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("Graphviz `dot` failed") and "syntax error" in message


def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    """`inspectlab summary MODEL | head -1`: no error line when the pipe closes (rich exits with 1 there)."""
    import subprocess
    import sys

    script = Path(sys.executable).parent / "inspectlab"
    done = subprocess.run(["bash", "-c", f"'{script}' summary lenet5 --depth 3 | head -1 >/dev/null; "
                           "echo ${PIPESTATUS[0]}"], capture_output=True, text=True, timeout=120)
    assert "error" not in done.stderr, done.stderr
    assert done.stdout.strip() == "0"
