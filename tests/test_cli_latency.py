"""`inspectlab latency` through the Typer app: formats, sweeps, per-layer output, memory refusal and errors."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from inspectlab.cli import app
from inspectlab.runtime import memory as memory_module

runner = CliRunner()
FAST = ["--iters", "3", "--warmup", "1", "--threads", "1"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECTLAB_CACHE_DIR", str(tmp_path / "cache"))


def run(*arguments: str):
    return runner.invoke(app, ["latency", *arguments])


def assert_one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_table_output_with_conditions():
    result = run("lenet5", *FAST)
    assert result.exit_code == 0, result.output
    for text in ("latency of lenet5", "p50 ms", "p99 ms", "samples/s", "peak RSS increase", "est. peak",
                 "conditions: cpu", f"torch {torch.__version__}", "1 threads", "float32"):
        assert text in result.stdout, text


def test_json_sweep_has_one_result_per_batch_and_its_samples():
    result = run("lenet5", "--batch", "1,4", "--format", "json", *FAST)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)  # the progress bar never reaches stdout
    assert [r["batch"] for r in document["results"]] == [1, 4]
    assert document["results"][1]["input_shapes"] == [[4, 1, 32, 32]]
    for entry in document["results"]:
        ms = np.array(entry["samples_ns"]) / 1e6
        assert entry["stats"]["iterations"] == 3
        assert entry["stats"]["p50_ms"] == pytest.approx(np.median(ms))
        assert entry["stats"]["throughput"] == pytest.approx(entry["batch"] * 1e3 / ms.mean())
    assert document["conditions"]["threads"] == 1 and document["conditions"]["iters"] == 3


def test_csv_rows():
    result = run("lenet5", "-i", "2,1,32,32", "--format", "csv", *FAST)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 1 and rows[0]["batch"] == "2" and int(rows[0]["iterations"]) == 3
    assert float(rows[0]["min_ms"]) <= float(rows[0]["p50_ms"]) <= float(rows[0]["max_ms"])


def test_per_layer_json_and_table():
    result = run("lenet5", "--per-layer", "--format", "json", *FAST)
    assert result.exit_code == 0, result.output
    breakdown = json.loads(result.stdout)["results"][0]["per_layer"]
    assert sum(layer["share"] for layer in breakdown["layers"]) <= 100.0 + 1e-9
    assert breakdown["runs"] == 3 and breakdown["peaks"]["flops_per_s"] > 0
    table = run("lenet5", "--per-layer", *FAST)
    assert table.exit_code == 0, table.output
    for text in ("per layer, batch 1", "(forward, hooked)", "overhead:", "hook pairs", "roofline:", "bound"):
        assert text in table.stdout, text


def test_memory_refusal_then_force(monkeypatch):
    monkeypatch.setattr(memory_module, "free_memory", lambda device: 4096)
    assert_one_line_error(run("lenet5", *FAST), "needs about")
    forced = run("lenet5", "--force", "--format", "json", *FAST)
    assert forced.exit_code == 0, forced.output


@pytest.mark.parametrize(("arguments", "fragment"), [
    (["--iters", "3", "--min-time", "1"], "not both"),
    (["--batch", "1,x"], "malformed --batch"),
    (["--batch", "0"], "malformed --batch"),
    (["--input", "1,3,a"], "malformed --input"),
    (["--cuda-graph"], "--cuda-graph needs --device cuda"),
    (["--per-layer", "--compile"], "does not combine"),
    (["--device", "tpu"], "runs on cpu or cuda"),
    (["--arg", "nonsense"], "malformed --arg"),
])
def test_user_errors_are_one_line(arguments, fragment):
    assert_one_line_error(run("lenet5", *arguments), fragment)


def test_unknown_model():
    assert_one_line_error(run("resnet17", *FAST), "unknown model")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu():
    assert_one_line_error(run("lenet5", "--device", "cuda"), "CUDA is not available")


def test_option_validation_by_typer():
    result = run("lenet5", "--dtype", "int8")
    assert result.exit_code == 2 and "Traceback" not in result.output


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_run_json():
    result = run("lenet5", "--device", "cuda", "--dtype", "float16", "--format", "json", "--iters", "5")
    assert result.exit_code == 0, result.output
    entry = json.loads(result.stdout)["results"][0]
    assert entry["memory"]["reserved_bytes"] >= entry["memory"]["peak_bytes"] > 0
