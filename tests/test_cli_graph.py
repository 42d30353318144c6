"""`inspectlab graph` through the Typer app: formats, default file names, --force, errors as one line."""

from __future__ import annotations

import re
import shutil
import struct

import pytest
from typer.testing import CliRunner

from inspectlab.cli import app
from inspectlab.cli.graph import default_output

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed "
                               "(apt-get install graphviz); CI installs it")
runner = CliRunner()
SMALL = ["resnet18", "-i", "1,3,64,64"]


def invoke(*args: str):
    return runner.invoke(app, list(args))


def counts(source: str) -> tuple[int, int]:
    nodes = re.findall(r"^\s+(\w+) \[label=", source, flags=re.M)
    edges = re.findall(r"^\s+(\w+) -> (\w+)", source, flags=re.M)
    return len(nodes), len(edges)


def one_line_error(result, pattern: str) -> None:
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(pattern, lines[0]), result.stderr
    assert "Traceback" not in result.output


def test_dot_to_stdout_without_output_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("graph", *SMALL, "-d", "1", "-f", "dot")
    assert result.exit_code == 0, result.output
    # resnet18 at depth 1: input, conv1, bn1, relu, maxpool, layer1-4, avgpool, fc, output in one chain
    assert counts(result.stdout) == (12, 11)
    assert list(tmp_path.iterdir()) == []


def test_options_reach_the_drawing():
    lr = invoke("graph", *SMALL, "-d", "1", "-f", "dot", "--rankdir", "LR", "--show", "shapes,flops")
    assert lr.exit_code == 0 and "rankdir=LR" in lr.stdout and "MACs" in lr.stdout
    assert len(re.findall(r"-> \w+ \[label=", lr.stdout)) == 11  # --show shapes labels every edge
    collapsed = invoke("graph", *SMALL, "-f", "dot")
    flat = invoke("graph", *SMALL, "-f", "dot", "--no-collapse-repeats")
    # layer1's two BasicBlocks are identical (no downsample): one "BasicBlock ×2" node when collapsed
    assert counts(collapsed.stdout) == (15, 14) and "BasicBlock ×2" in collapsed.stdout
    assert counts(flat.stdout) == (16, 15) and "BasicBlock ×2" not in flat.stdout


def test_dot_file_and_force(tmp_path):
    target = tmp_path / "r18.dot"
    first = invoke("graph", *SMALL, "-f", "dot", "-o", str(target))
    assert first.exit_code == 0 and target.read_text().startswith("digraph")
    again = invoke("graph", *SMALL, "-f", "dot", "-o", str(target))
    one_line_error(again, "exists; use --force")
    forced = invoke("graph", *SMALL, "-d", "1", "-f", "dot", "-o", str(target), "--force")
    assert forced.exit_code == 0 and counts(target.read_text()) == (12, 11)


@needs_dot
def test_default_file_name_svg_and_png(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    svg = invoke("graph", *SMALL, "-d", "1")
    assert svg.exit_code == 0, svg.output
    assert (tmp_path / "resnet18.svg").read_text().lstrip().startswith(("<?xml", "<svg", "<!DOCTYPE"))
    assert "wrote resnet18.svg" in svg.stderr
    png = invoke("graph", *SMALL, "-d", "1", "-f", "png")
    data = (tmp_path / "resnet18.png").read_bytes()
    assert png.exit_code == 0 and data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert height > width > 100  # a top-to-bottom chain
    one_line_error(invoke("graph", *SMALL, "-d", "1", "-f", "png"), "exists; use --force")


def test_default_output_names():
    assert default_output("resnet50", "svg") == "resnet50.svg"
    assert default_output("tv:resnet50", "png") == "resnet50.png"
    assert default_output("models/net.py:build_net", "pdf") == "build_net.pdf"


def test_missing_dot_program(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without `dot`
    monkeypatch.chdir(tmp_path)
    one_line_error(invoke("graph", *SMALL, "-f", "png"), r"apt-get install graphviz")
    assert list(tmp_path.iterdir()) == []
    assert invoke("graph", *SMALL, "-d", "1", "-f", "dot").exit_code == 0  # the source needs no program


def test_user_errors_are_one_line(tmp_path):
    one_line_error(invoke("graph", *SMALL, "-f", "dot", "--show", "params,colour"), "unknown --show")
    one_line_error(invoke("graph", "resnet18", "-i", "1,3,x,64", "-f", "dot"), "malformed --input")
    one_line_error(invoke("graph", "resnet_18", "-f", "dot"), "unknown model")
    one_line_error(invoke("graph", *SMALL, "-f", "dot", "-o", str(tmp_path / "missing" / "g.dot")), "does not exist")
    assert invoke("graph", *SMALL, "-f", "gif").exit_code == 2  # Typer rejects the choice


def test_dash_output_is_stdout(tmp_path, monkeypatch):
    """`-o -` writes to stdout, never a file named '-': the dot source as without -o, the SVG as text."""
    monkeypatch.chdir(tmp_path)
    dot = invoke("graph", *SMALL, "-d", "1", "-f", "dot", "-o", "-")
    assert dot.exit_code == 0, dot.output
    assert dot.stdout == invoke("graph", *SMALL, "-d", "1", "-f", "dot").stdout and counts(dot.stdout) == (12, 11)
    assert "wrote" not in dot.stderr
    if shutil.which("dot") is not None:
        svg = invoke("graph", *SMALL, "-d", "1", "-o", "-")
        assert svg.exit_code == 0, svg.output
        assert svg.stdout.lstrip().startswith(("<?xml", "<svg", "<!DOCTYPE")) and "</svg>" in svg.stdout
        png = invoke("graph", *SMALL, "-d", "1", "-f", "png", "-o", "-")
        assert png.exit_code == 0 and png.stdout_bytes[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(tmp_path.iterdir()) == []
