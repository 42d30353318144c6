"""Tables fit the terminal without cutting a number or a name (issue 17 §2, render/fit.py): in a real
pseudo-terminal at 80 and 200 columns every cell shown is the full table's cell (a shape may be shortened, a
name wrapped), no line is wider than the terminal, nothing ends in "…", and the columns left out are named;
piped output is the full table without colours."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspectlab.cli import app
from inspectlab.render.columns import CATALOGUE, SUMMARY_COLUMNS, kernel_text, short_shape
from inspectlab.render.fit import fit_table, wrap_text
from inspectlab.render.formats import KEEP, Column, thousands

ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
NUMBER = re.compile(r"^(-?[\d,.]+(e[+-]?\d+)?\s?([KMGT]|[KMGT]i?B|B|%|ms| s)?|)$")
COMPARED = [  # (width, arguments): each runs with --wide (the full table) and without (fitted)
    (80, ["summary", "tv:resnet18", "--depth", "2"]),
    (80, ["summary", "tv:resnet18", "--depth", "3", "--names", "full", "--columns",
          "name,type,kernel,output,params,params_pct,trainable,macs,pct,memory"]),
    (80, ["flops", "lenet5"]),
    (80, ["compare", "lenet5", "tv:resnet18"]),
    (80, ["rf", "tv:resnet18", "--input", "1,3,64,64"]),
    (80, ["stages", "tv:resnet18", "--input", "1,3,64,64"]),
    (40, ["summary", "tv:resnet18", "--depth", "3", "--names", "full"]),
    (200, ["summary", "smp:Unet", "--depth", "1"]),
]
TIMED = [(80, ["latency", "lenet5", "--iters", "3", "--warmup", "0"])]  # times differ run to run: structure only
DRIVER = """
import fcntl, json, struct, sys, termios
from inspectlab.cli import app
for width, args in json.loads(sys.argv[1]):
    fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 50, width, 0, 0))
    print(f"=== {width} {' '.join(args)}", flush=True)
    try:
        app(args, prog_name="inspectlab", standalone_mode=False)
    except SystemExit:
        pass
    sys.stdout.flush()
"""


def run_in_terminal(cases: list[tuple[int, list[str]]]) -> dict[str, list[str]]:
    """Each case's output lines (colours removed), run in one process whose stdout is a pseudo-terminal of the
    case's width (stderr a pipe, so that no progress bar is drawn)."""
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(TERM="xterm-256color", INSPECTLAB_CACHE_DIR=env.get("INSPECTLAB_CACHE_DIR", ""))
    env = {k: v for k, v in env.items() if v}
    process = subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(cases)], stdin=subprocess.DEVNULL,
                               stdout=slave, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every end of the terminal is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    errors = process.stderr.read().decode() if process.stderr else ""
    assert process.wait(timeout=300) == 0, errors
    assert "Traceback" not in errors and "error:" not in errors, errors
    text = ANSI.sub("", b"".join(chunks).decode()).replace("\r", "")
    sections: dict[str, list[str]] = {}
    for block in text.split("=== ")[1:]:
        head, _, body = block.partition("\n")
        sections[head] = body.splitlines()
    return sections


def parse_table(lines: list[str]) -> tuple[list[str], list[list[str]], int]:
    """(headers, rows, index of the line after the table) of the first rich table in `lines`: a header over
    several lines joined by spaces, a row over several lines (a wrapped name) joined without its indentation."""
    top = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    middle = next(i for i in range(top, len(lines)) if lines[i].startswith("┡"))
    end = next(i for i in range(middle, len(lines)) if lines[i].startswith("└"))
    header_lines = [line[1:-1].split("┃") for line in lines[top + 1:middle]]
    headers = [" ".join(part.strip() for part in parts if part.strip()) for parts in zip(*header_lines, strict=True)]
    separated = any(line.startswith("├") for line in lines[middle:end])
    rows: list[list[list[str]]] = []
    fresh = True
    for line in lines[middle + 1:end]:
        if line.startswith("├"):
            fresh = True
            continue
        cells = [c.strip() for c in line[1:-1].split("│")]
        assert len(cells) == len(headers), line
        if fresh or not separated:
            rows.append([[c] for c in cells])
            fresh = not separated
        else:
            for parts, c in zip(rows[-1], cells, strict=True):
                parts.append(c)
    return headers, [["".join(p for p in parts if p) for parts in row] for row in rows], end + 1


def shortened(text: str) -> str | None:
    """The short form of a full table's shape cell ("1×64×56×56" -> "64×56²"), None if it is no shape."""
    try:
        shapes = [[int(d) for d in part.split("×")] for part in text.split(", ")]
    except ValueError:
        return None
    return short_shape(shapes if len(shapes) > 1 else shapes[0])


@pytest.fixture(scope="module")
def terminal() -> dict[str, list[str]]:
    cases = [case for width, args in COMPARED for case in ((width, [*args, "--wide"]), (width, args))]
    return run_in_terminal(cases + TIMED)


def check_fitted(lines: list[str], width: int) -> tuple[list[str], list[list[str]], str]:
    """The fitted table's headers and rows, and the text after it; no line wider than the terminal, no "…"."""
    assert lines, "no output"
    assert max(len(line) for line in lines) <= width, max(lines, key=len)
    assert not any("…" in line for line in lines)
    headers, rows, after = parse_table(lines)
    return headers, rows, " ".join(line.strip() for line in lines[after:])


@pytest.mark.parametrize(("width", "args"), COMPARED, ids=lambda v: v if isinstance(v, int) else " ".join(v))
def test_every_cell_shown_is_the_full_tables(terminal: dict[str, list[str]], width: int, args: list[str]) -> None:
    key = f"{width} {' '.join(args)}"
    headers, rows, below = check_fitted(terminal[key], width)
    wide_headers, wide_rows, _ = parse_table(terminal[f"{key} --wide"])
    assert len(rows) == len(wide_rows) and rows
    for row, full in zip(rows, wide_rows, strict=True):
        for header, text in zip(headers, row, strict=True):
            whole = full[wide_headers.index(header)]
            assert text == whole or (text == shortened(whole) and "Shapes shortened" in below), (header, text, whole)
    dropped = [h for h in wide_headers if h not in headers]
    if dropped:
        assert f"{', '.join(dropped)} not shown at {width} columns: --wide shows every column" in below
    else:
        assert "not shown" not in below
    assert headers[0] == wide_headers[0]  # the name column stays


def test_summary_at_80_columns_keeps_names_macs_and_pct(terminal: dict[str, list[str]]) -> None:
    """Issue 17's failures: names cut to `la…`, MACs to `1…`, `% MACs` dropped."""
    headers, rows, _ = check_fitted(terminal["80 summary tv:resnet18 --depth 2"], 80)
    assert {"layer", "type", "output shape", "params", "MACs", "% MACs"} <= set(headers)
    assert [row[0] for row in rows][:5] == ["conv1", "bn1", "relu", "maxpool", "layer1"]
    layer1 = rows[4]
    assert layer1[headers.index("params")] == "147,968" and layer1[headers.index("MACs")] == "462.4M"


def test_unet_params_whole_at_200_columns(terminal: dict[str, list[str]]) -> None:
    headers, rows, _ = check_fitted(terminal["200 summary smp:Unet --depth 1"], 200)
    encoder = next(row for row in rows if row[0] == "encoder")
    assert encoder[headers.index("params")] == "21,284,672"


def test_names_wrap_at_40_columns(terminal: dict[str, list[str]]) -> None:
    lines = terminal["40 summary tv:resnet18 --depth 3 --names full"]
    headers, rows, _ = check_fitted(lines, 40)
    assert "layer4.1.conv2" in [row[0] for row in rows]  # whole once its lines are joined
    assert any(line.startswith("│   ") for line in lines)  # a continuation line


def test_rf_keeps_its_headers_and_yes(terminal: dict[str, list[str]]) -> None:
    """Issue 17: `rf` lost every header and printed "yes" one letter per line."""
    headers, rows, _ = check_fitted(terminal["80 rf tv:resnet18 --input 1,3,64,64"], 80)
    assert headers[:3] == ["layer", "output shape", "rf"] and "global" in headers
    assert rows[0][headers.index("global")] == "yes"


def test_latency_fits(terminal: dict[str, list[str]]) -> None:
    headers, rows, below = check_fitted(terminal["80 latency lenet5 --iters 3 --warmup 0"], 80)
    assert headers[0] == "batch" and "p50 ms" in headers and "conditions:" in below
    for row in rows:
        numeric = [text for header, text in zip(headers, row, strict=True) if header not in ("input",)]
        assert all(NUMBER.match(text) for text in numeric), row


def test_piped_output_is_the_whole_table_without_colours() -> None:
    """Not a terminal (CliRunner): every column, nothing cut, no ANSI codes, even a 230-column-wide table."""
    result = CliRunner().invoke(app, ["summary", "lenet5", "--depth", "1", "--columns",
                                      ",".join(CATALOGUE_ORDER)], env={"COLUMNS": None})
    assert result.exit_code == 0, result.output
    assert "\x1b[" not in result.output and "…" not in result.output and "not shown" not in result.output
    headers, rows, _ = parse_table(result.output.splitlines())
    assert headers == [CATALOGUE[name].header for name in CATALOGUE_ORDER]
    assert max(len(line) for line in result.output.splitlines()) > 200  # wider than the old 200-column cut


CATALOGUE_ORDER = SUMMARY_COLUMNS


# the mechanism itself ------------------------------------------------------------------------------------------
def test_short_shapes() -> None:
    assert short_shape([1, 64, 112, 112]) == "64×112²" and short_shape([8, 3, 32, 32]) == "8×3×32²"
    assert short_shape([1, 512, 1, 1]) == "512×1×1" and short_shape([1, 197, 768]) == "197×768"
    assert short_shape([1, 1000]) == "1×1000" and short_shape([[1, 3, 8, 8], [1, 4, 8, 6]]) == "3×8², 4×8×6"
    assert short_shape([1, 3, 16, 32, 32]) == "3×16×32²"


def test_wrapped_names_join_back() -> None:
    for text in ("layer4.1.downsample.0", "    encoder.layer_with_a_long_name", "x" * 30):
        for width in (8, 10, 13):
            lines = wrap_text(text, width)
            assert all(len(line) <= width for line in lines)
            assert "".join(line.lstrip(" ") for line in lines) == text.lstrip(" ")
    assert wrap_text("layer1.0.conv1", 11) == ["layer1.0.", "  conv1"]


def test_fit_gives_way_in_order_and_never_cuts() -> None:
    rows = [{"label": "block.conv", "shape": [1, 64, 56, 56], "params": 1_234_567, "low": 1.5, "mid": 2}]
    columns = [Column("label", "layer", wraps=True), Column("shape", "output shape", str, short=short_shape),
               Column("params", "params", thousands, numeric=True, priority=KEEP),
               Column("low", "low priority", priority=10), Column("mid", "mid", priority=20)]
    full = fit_table(rows, columns, None)
    assert full.width == (10 + 3) + (15 + 3) + (9 + 3) + (12 + 3) + (3 + 3) + 1
    assert fit_table(rows, columns, full.width).cells == full.cells
    step1 = fit_table(rows, columns, full.width - 3)  # the shape shortens (its header is then the widest)
    assert step1.cells[0][1] == "64×56²" and step1.headers[1] == "output shape" and step1.width == full.width - 3
    step1 = fit_table(rows, columns, full.width - 4)  # and the header breaks onto two lines; nothing dropped
    assert step1.headers[1] == "output\nshape" and step1.width == full.width - 9 and not step1.dropped
    assert step1.shortened and "Shapes shortened" in step1.notes()[-1]
    step2 = fit_table(rows, columns, 38)  # then the lowest priorities go: low (10), then mid (20)
    assert [c.key for c in step2.dropped] == ["low", "mid"] and step2.width == 35
    assert step2.notes()[0].startswith("low priority, mid not shown at 38 columns")
    step3 = fit_table(rows, columns, 20)  # only the name and the KEEP column are left: the name wraps
    assert [c.key for c in step3.columns] == ["label", "params"] and step3.wrapped
    assert step3.cells[0][1] == "1,234,567" and step3.cells[0][0].replace("\n", "").replace(" ", "") == "block.conv"
    assert fit_table(rows, columns, 5).cells[0][1] == "1,234,567"  # too narrow for the number: printed whole


def test_kernel_text() -> None:
    assert kernel_text({"size": [3, 3], "stride": [2, 2], "dilation": [2, 2], "groups": 32}) == "3×3/2 d2 g32"
    assert kernel_text({"size": [1, 1], "stride": [1, 1], "dilation": [1, 1], "groups": 1}) == "1×1"
    assert kernel_text({"size": [4, 4], "stride": [2, 2], "dilation": [1, 1], "groups": 1,
                        "transposed": True}) == "4×4↑2"
    assert kernel_text({"size": [3, 1], "stride": [2, 1], "dilation": [1, 2], "groups": 1}) == "3×1/2×1 d1×2"
    assert CATALOGUE["kernel"].show is kernel_text
