"""`inspectlab list` and `inspectlab tree` through typer's CliRunner: the zoo's counts against issue 2,
the table's fit to the terminal, the tree, and every error as one line with exit code 2."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from typer.testing import CliRunner

from inspectlab.cli import app
from inspectlab.cli.zoo import ZOO_COLUMNS
from inspectlab.core.errors import InspectlabError
from inspectlab.render.fit import fit_table

SPEC = {  # issue 2's param counts
    "resnet50": 25_557_032, "mobilenet_v3_large": 5_483_032, "mobilenet_v3_small": 2_542_856,
    "lraspp_mobilenet_v3_large": 3_221_538, "hrnetv2_w32": 37_044_376, "hrnetv2_w48": 76_976_080,
    "unet": 17_263_042, "unet_transposed": 31_037_698, "deeplabv3_resnet50": 39_638_869,
    "deeplabv3plus_resnet50": 39_761_845, "deeplabv3plus_resnet101": 58_753_973,
    "deeplabv3plus_hrnetv2_w32": 33_918_517, "deeplabv3plus_hrnetv2_w48": 71_719_861,
    "matting_mobilenetv3": 3_748_633, "matting_resnet50": 26_890_461,
}
ZOO_SIZE = 26
NO_COLUMNS = {"COLUMNS": None}  # CliRunner's stdout is not a terminal: no width to fit


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    """A runner whose zoo-count cache starts empty, so that `list` counts for itself."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(cache))
        yield CliRunner()


@pytest.fixture(scope="module")
def zoo_json(runner):
    result = runner.invoke(app, ["list", "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _fails(runner, args, message):
    """The command exits with 2 and says `message` in one line on stderr, without a traceback."""
    result = runner.invoke(app, args, env=NO_COLUMNS)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    assert re.search(message, lines[0]), lines[0]
    return lines[0]


# --- list ----------------------------------------------------------------------------------------------


def test_list_json_has_the_spec_counts(zoo_json):
    assert len(zoo_json) == ZOO_SIZE
    counts = {row["name"]: row["params"] for row in zoo_json}
    assert {name: counts[name] for name in SPEC} == SPEC
    unet = next(row for row in zoo_json if row["name"] == "unet")
    assert unet["family"] == "unet" and unet["default_input"] == [1, 3, 512, 512] and unet["description"]


def test_list_table_shows_every_model_on_a_wide_screen(runner, zoo_json):
    result = runner.invoke(app, ["list"], env=NO_COLUMNS)
    assert result.exit_code == 0
    for header in ("name", "family", "params", "default input", "description"):
        assert header in result.stdout
    assert "25,557,032" in result.stdout and "1×3×512×512" in result.stdout
    for row in zoo_json:
        assert row["description"] in result.stdout


@pytest.mark.parametrize("width", [80, 100, 120])
def test_list_table_fits_the_terminal_one_line_per_model(runner, zoo_json, width):
    result = runner.invoke(app, ["list"], env={"COLUMNS": str(width)})
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= width
    for row in zoo_json:
        assert sum(line.startswith(f"│ {row['name']} ") for line in lines) == 1
    assert sum(line.startswith("│") for line in lines) == ZOO_SIZE  # no wrapped continuation lines


def test_list_table_at_80_columns_drops_the_description_and_says_so(runner):
    result = runner.invoke(app, ["list"], env={"COLUMNS": "80"})
    assert "description" not in result.stdout.splitlines()[2]  # the header line
    assert "description not shown at 80 columns" in result.stdout


def test_list_gives_way_in_the_documented_order():
    """render/fit.py's order on list's columns: short shapes and two-line headers, then the description, then the
    family; nothing is ever cut."""
    rows = [{"name": "n" * 10, "family": "f" * 6, "params": 123, "default_input": [1, 3, 8, 8],
             "description": "d" * 50}]
    # widths: name 10, family 6, params 6, default input 13, description 50; each column adds 3, the table 1
    full = (10 + 3) + (6 + 3) + (6 + 3) + (13 + 3) + (50 + 3) + 1
    assert [c.key for c in fit_table(rows, ZOO_COLUMNS, full).columns] == [c.key for c in ZOO_COLUMNS]
    shorter = fit_table(rows, ZOO_COLUMNS, full - 6)  # "3×8²" and "default\ninput": 7 wide instead of 13
    assert shorter.headers[3] == "default\ninput" and shorter.cells[0][3] == "3×8²" and not shorter.dropped
    assert shorter.width == full - 6 and shorter.shortened
    no_description = fit_table(rows, ZOO_COLUMNS, full - 7)
    assert [c.key for c in no_description.dropped] == ["description"] and no_description.width == full - 6 - 53
    assert [c.key for c in fit_table(rows, ZOO_COLUMNS, 33).dropped] == ["family", "description"]
    assert [c.key for c in fit_table(rows, ZOO_COLUMNS, 32).columns] == ["name", "params"]
    assert all("…" not in text for fitted in (shorter, no_description) for text in fitted.cells[0])


# --- tree ----------------------------------------------------------------------------------------------


def test_tree_json_root_total_and_depth(runner):
    result = runner.invoke(app, ["tree", "unet", "--depth", "1", "--format", "json"])
    assert result.exit_code == 0, result.output
    nodes = json.loads(result.stdout)
    assert nodes[0]["name"] == "(root)" and nodes[0]["type"] == "UNet"
    assert nodes[0]["total_params"] == SPEC["unet"]
    assert {n["depth"] for n in nodes} == {0, 1}
    assert sum(n["total_params"] for n in nodes[1:]) + nodes[0]["own_params"] == SPEC["unet"]


def test_tree_table(runner):
    result = runner.invoke(app, ["tree", "deeplabv3plus_resnet50", "-d", "0"], env=NO_COLUMNS)
    assert result.exit_code == 0
    assert "DeepLab" in result.stdout and "39,761,845" in result.stdout


def test_tree_with_builder_args(runner):
    result = runner.invoke(app, ["tree", "unet", "-d", "0", "-f", "json", "--arg", "num_classes=5"])
    assert json.loads(result.stdout)[0]["total_params"] == SPEC["unet"] + (64 + 1) * (5 - 2)  # 1x1 conv head
    result = runner.invoke(app, ["tree", "unet", "-d", "0", "-f", "json", "--arg", "bilinear=false"])
    assert json.loads(result.stdout)[0]["total_params"] == SPEC["unet_transposed"]


def test_tree_of_a_package_module_factory(runner):
    result = runner.invoke(app, ["tree", "inspectlab.models.unet:unet", "-d", "0", "-f", "json"])
    assert json.loads(result.stdout)[0]["total_params"] == SPEC["unet"]


def test_tree_of_a_file_factory(runner, tmp_path):
    path = tmp_path / "net.py"
    path.write_text("from torch import nn\n\ndef net():\n    return nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 1))\n")
    result = runner.invoke(app, ["tree", f"{path}:net", "-f", "json"])
    assert [n["total_params"] for n in json.loads(result.stdout)] == [(4 * 3 + 3) + (3 + 1), 4 * 3 + 3, 3 + 1]


# --- errors --------------------------------------------------------------------------------------------


def test_unknown_model_suggests_the_closest(runner):
    _fails(runner, ["tree", "hrnetv2_w23"], r"unknown model 'hrnetv2_w23'; did you mean hrnetv2_w32")


def test_unknown_torchvision_model(runner):
    _fails(runner, ["tree", "tv:resnet5"], r"unknown torchvision model 'resnet5'; did you mean resnet50")


@pytest.mark.parametrize(("arg", "message"), [
    ("colour=red", r"'unet' takes no argument 'colour'; its arguments: .*num_classes"),
    ("num_classes", r"malformed --arg 'num_classes': expected key=value"),
    ("=5", "malformed --arg"),
    ("num_classes=-3", r"building 'unet' failed: RuntimeError: .*negative dimension"),
])
def test_bad_builder_arguments(runner, arg, message):
    _fails(runner, ["tree", "unet", "--arg", arg], message)


def test_file_errors(runner, tmp_path):
    _fails(runner, ["tree", f"{tmp_path}/absent.py:net"], "no such file")
    path = tmp_path / "models.py"
    path.write_text("def broken():\n    raise ValueError('no such backbone: foo')\n")
    _fails(runner, ["tree", f"{path}:net"], r"models.py has no callable 'net'")
    _fails(runner, ["tree", f"{path}:broken"], r"failed: ValueError: no such backbone: foo")
    failing_import = tmp_path / "failing.py"
    failing_import.write_text("import not_installed_anywhere\n")
    _fails(runner, ["tree", f"{failing_import}:net"], r"importing .*failing.py failed: ModuleNotFoundError")
    _fails(runner, ["tree", "inspectlab.models.unet:nothing"], r"inspectlab.models.unet has no callable 'nothing'")


def test_debug_shows_the_exception(runner):
    result = runner.invoke(app, ["--debug", "tree", "hrnetv2_w23"])
    assert result.exit_code != 0
    assert isinstance(result.exception, InspectlabError)
    # and without --debug, the next command is quiet again
    _fails(runner, ["tree", "hrnetv2_w23"], "did you mean")


def test_list_csv_markdown_and_html_carry_the_spec_counts(runner, zoo_json):
    rows = list(csv.DictReader(io.StringIO(runner.invoke(app, ["list", "-f", "csv"]).stdout)))
    assert [row["name"] for row in rows] == [row["name"] for row in zoo_json]
    assert all(int(row["params"]) == SPEC[row["name"]] for row in rows if row["name"] in SPEC)
    markdown = runner.invoke(app, ["list", "-f", "markdown"]).stdout
    html = runner.invoke(app, ["list", "-f", "html"]).stdout
    assert "| unet | unet | 17,263,042 |" in markdown
    assert "<tr><td>unet</td><td>unet</td><td>17,263,042</td>" in html


def test_tree_csv_markdown_and_html(runner):
    rows = list(csv.DictReader(io.StringIO(runner.invoke(app, ["tree", "unet", "-d", "0", "-f", "csv"]).stdout)))
    assert rows[0]["name"] == "(root)" and int(rows[0]["total_params"]) == SPEC["unet"]
    markdown = runner.invoke(app, ["tree", "unet", "-d", "0", "-f", "markdown"]).stdout
    assert "| (root) | UNet | 0 | 17,263,042 |" in markdown
    html = runner.invoke(app, ["tree", "unet", "-d", "0", "-f", "html"]).stdout
    assert "<td>(root)</td><td>UNet</td>" in html
