"""inspectlab report (docs/report.md): latency, compare and sweep JSON of several machines/conditions merged into
one comparison with one column group each. Two files are made on this machine under different --threads (a tiny
model, short timing); every number of the merged report is checked against the files it came from."""

from __future__ import annotations

import csv
import io
import json
import re
from functools import cache
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspectlab import api
from inspectlab.cli import app
from inspectlab.render.frames import frame_rows

RUNNER = CliRunner()


@cache
def timed(folder: str) -> tuple[Path, Path]:
    """`inspectlab latency lenet5 --threads 1` and `--threads 2` as JSON files (a short timing each)."""
    paths = []
    for threads in (1, 2):
        result = RUNNER.invoke(app, ["latency", "lenet5", "--threads", str(threads), "--warmup", "1", "--min-time",
                                     "0.05", "--format", "json"])
        assert result.exit_code == 0, result.output
        path = Path(folder) / f"threads{threads}.json"
        path.write_text(result.stdout)
        paths.append(path)
    return paths[0], paths[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    return timed(str(tmp_path_factory.mktemp("latency")))


def p50(path: Path) -> float:
    return json.loads(path.read_text())["results"][0]["stats"]["p50_ms"]


def test_two_thread_counts_make_two_column_groups(files, tmp_path):
    one, two = files
    outputs = [tmp_path / name for name in ("merged.html", "merged.md", "merged.csv", "merged.json")]
    result = RUNNER.invoke(app, ["report", str(one), str(two), *(f"-o{o}" for o in outputs)])
    assert result.exit_code == 0, result.output
    assert all(o.exists() for o in outputs)

    document = json.loads(outputs[3].read_text())
    assert [g["label"] for g in document["groups"]] == ["1 thread", "2 threads"]
    assert [g["conditions"]["threads"] for g in document["groups"]] == [1, 2]
    (row,) = document["rows"]
    assert (row["model"], row["input"]) == ("lenet5", "1×1×32×32")
    assert row["times"]["1 thread"]["p50_ms"] == p50(one) and row["times"]["2 threads"]["p50_ms"] == p50(two)

    lines = list(csv.DictReader(io.StringIO(outputs[2].read_text())))
    assert [(line["group"], line["threads"], float(line["p50_ms"])) for line in lines] == [
        ("1 thread", "1", p50(one)), ("2 threads", "2", p50(two))]
    assert {line["source"] for line in lines} == {str(one), str(two)}

    page = outputs[0].read_text()
    assert '<th colspan="2" class="group">1 thread</th>' in page
    assert '<th colspan="3" class="group">2 threads</th>' in page
    assert f'<td class="num">{p50(one):.4g}</td>' in page and f'<td class="num">{p50(two):.4g}</td>' in page
    assert f"×{p50(one) / p50(two):.2f}" in page  # the speed-up of the second group over the first
    assert "data:image/png;base64," in page and not re.search(r"""(src|href)=["'](?!data:)""", page)

    markdown = outputs[1].read_text()
    assert "| p50 ms (1 thread) | p90 ms (1 thread) | p50 ms (2 threads) |" in markdown
    for image in re.findall(r"!\[[^]]*\]\(([^)]+)\)", markdown):
        assert (tmp_path / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_comparison_adds_its_static_numbers_and_the_table_prints(files, tmp_path):
    one, _ = files
    frame = api.compare(["lenet5"], (1, 1, 32, 32), latency=True, warmup=1, min_time=0.05, threads=1)
    compared = tmp_path / "compare.json"
    api.write_reports(frame_rows(frame), frame.attrs, [compared])
    merged = api.report([one, compared])
    (row,) = merged.rows  # the same model and input: one row; the same conditions, so two groups by file
    assert row.params == 61_706 and row.macs == frame["macs"][0]  # lenet5: LeCun's 61,706 parameters
    assert len(merged.groups) == 2 and merged.groups[0].label != merged.groups[1].label
    assert row.times[1].p50_ms == frame["latency_p50_ms"][0]
    result = RUNNER.invoke(app, ["report", str(one), str(compared)])
    assert result.exit_code == 0 and "lenet5" in result.output and "61.71K" in result.output


def test_bad_files_are_one_line(files, tmp_path):
    one, _ = files
    (tmp_path / "other.json").write_text('{"rows": 3}')
    (tmp_path / "broken.json").write_text("{")
    frame = api.compare(["lenet5"], (1, 1, 32, 32))  # no --latency
    untimed = tmp_path / "untimed.json"
    api.write_reports(frame_rows(frame), frame.attrs, [untimed])
    for arguments, message in [
        ([str(tmp_path / "missing.json")], "no such file"),
        ([str(tmp_path / "other.json")], "is not the JSON of `inspectlab latency`"),
        ([str(tmp_path / "broken.json")], "is not JSON"),
        ([str(untimed)], "no file holds latency"),
        ([str(one), "-o", str(tmp_path / "out.txt")], "cannot tell the format"),
    ]:
        result = RUNNER.invoke(app, ["report", *arguments])
        assert result.exit_code == 2 and message in result.output, (arguments, result.output)
        assert len(result.output.strip().splitlines()) == 1
    (tmp_path / "taken.html").write_text("mine")
    result = RUNNER.invoke(app, ["report", str(one), "-o", str(tmp_path / "taken.html")])
    assert result.exit_code == 2 and (tmp_path / "taken.html").read_text() == "mine"
