"""inspectlab.compare / inspectlab.sweep and their report files: totals against api.summary and torchvision,
hand-computed receptive fields, strides and ratios, error rows, spec parsing, fitted exponents, the files
(overwrite refusal, self-contained HTML) and the HTML report rendered in headless Chromium."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import inspectlab
from inspectlab import api
from inspectlab.analysis.compare import fit_exponent, output_pixels
from inspectlab.api import write_reports
from inspectlab.core.arguments import parse_model
from inspectlab.core.errors import InspectlabError
from inspectlab.core.shapes import parse_sizes
from inspectlab.render.frames import frame_rows

SHAPE = (1, 3, 64, 64)
TOTAL_KEYS = ("params", "trainable_params", "macs", "flops", "other_flops", "param_bytes", "activation_bytes",
              "peak_bytes")


def conv_stack() -> nn.Module:
    """3×3 convs: stride 1, stride 2, stride 1 (padding 1, no bias). By hand: rf 1+2+2+2·2 = 9, stride 2."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.Conv2d(8, 8, 3, 2, 1, bias=False),
                         nn.Conv2d(8, 4, 3, padding=1, bias=False))


def conv_stack_macs(height: int, width: int) -> int:
    """MACs = Σ C_out·H_out·W_out·C_in·k² of the three convs; the stride-2 conv gives ⌈H/2⌉×⌈W/2⌉."""
    half = ((height + 1) // 2) * ((width + 1) // 2)
    return 8 * height * width * 3 * 9 + 8 * half * 8 * 9 + 4 * half * 8 * 9


def classifier() -> nn.Module:
    """conv_stack, then global average pooling and a linear layer: the output sees the whole input."""
    return nn.Sequential(conv_stack(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))


@pytest.fixture(scope="module")
def frame():
    return inspectlab.compare(["resnet18", "unet", "nope", conv_stack(), classifier()], SHAPE)


def row_of(frame, model):
    return next(r for r in frame_rows(frame) if r["model"] == model)


def test_totals_equal_api_summary_and_torchvision(frame) -> None:
    for model in ("resnet18", "unet"):
        row = row_of(frame, model)
        totals = api.summary(model, SHAPE, depth=0).totals
        assert {k: row[k] for k in TOTAL_KEYS} == {k: totals[k] for k in TOTAL_KEYS}
        assert row["input"] == [list(SHAPE)]
    assert row_of(frame, "resnet18")["params"] == sum(p.numel() for p in torchvision.models.resnet18().parameters())
    assert row_of(frame, "Sequential")["macs"] == conv_stack_macs(64, 64)


def test_ratios_by_hand(frame) -> None:
    resnet, unet = row_of(frame, "resnet18"), row_of(frame, "unet")
    assert resnet["macs_per_param"] == pytest.approx(resnet["macs"] / resnet["params"], rel=1e-12)
    assert resnet["macs_per_output_pixel"] == resnet["macs"]  # a classifier: one prediction per image
    assert unet["output_shape"] == [1, 2, 64, 64]
    assert unet["macs_per_output_pixel"] == pytest.approx(unet["macs"] / (64 * 64), rel=1e-12)
    assert output_pixels([2, 5, 3, 8, 8]) == 2 * 5 * 8 * 8 and output_pixels([4, 3, 10]) == 40
    assert output_pixels([4, 1000]) == 4


def test_output_stride_and_receptive_field(frame) -> None:
    stack = [r for r in frame_rows(frame) if r["model"] == "Sequential"]
    assert (stack[0]["output_stride"], stack[0]["rf"], stack[0]["rf_global"]) == (2, 9, False)
    assert (stack[1]["output_stride"], stack[1]["rf"], stack[1]["rf_global"]) == (2, 9, True)
    # ResNet-18: five stride-2 stages, the published receptive field 435, global average pooling
    resnet = row_of(frame, "resnet18")
    assert (resnet["output_stride"], resnet["rf"], resnet["rf_global"]) == (32, 435, True)
    unet = row_of(frame, "unet")  # four 2×2 max pools
    assert unet["output_stride"] == 16 and unet["rf_global"] is False
    for row in (resnet, unet):  # the same field as `inspectlab rf` gives for the model's output
        totals = api.receptive_field(row["model"], SHAPE, depth=0).totals
        assert (row["rf"], row["rf_global"]) == (max(totals["rf"]), totals["global"])


class SqueezeExcite(nn.Module):
    """x · sigmoid(conv(pool(x))): the product has x's stride, not the pooled branch's."""

    def __init__(self) -> None:
        super().__init__()
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc(self.pool(x)))


def test_maps_pooled_to_a_fixed_grid_do_not_set_the_output_stride() -> None:
    # conv_stack ends at stride 2; pooling 64×64 input's 32×32 map to 4×4 would be "stride 16", and to
    # 8×8 at 128×128 input too: a stride that follows the input size, so it does not count.
    grid_head = nn.Sequential(conv_stack(), nn.AdaptiveAvgPool2d(4), nn.Conv2d(4, 4, 1), nn.Flatten(),
                              nn.Linear(64, 10))
    squeeze = nn.Sequential(conv_stack(), SqueezeExcite(), nn.Conv2d(4, 4, 3, 2, 1))
    rows = frame_rows(inspectlab.compare([grid_head, squeeze], SHAPE))
    assert [r["output_stride"] for r in rows] == [2, 4]


def test_failing_model_gets_an_error_row_and_the_others_finish(frame, tmp_path: Path) -> None:
    assert [r["model"] for r in frame_rows(frame)] == ["resnet18", "unet", "nope", "Sequential", "Sequential"]
    bad = row_of(frame, "nope")
    assert "unknown model 'nope'" in bad["error"] and bad["macs"] is None
    assert str(frame["params"].dtype) == "Int64"  # integers stay integers beside the error row
    assert all(r["error"] is None for r in frame_rows(frame) if r["model"] != "nope")
    missing = tmp_path / "needs_dep.py"
    missing.write_text("import not_a_module_anywhere\n\ndef build():\n    return None\n")
    small = inspectlab.compare([f"{missing}:build", "unet", "lenet5", conv_stack()], (1, 3, 8, 8))
    rows = frame_rows(small)
    assert "not_a_module_anywhere" in rows[0]["error"]
    assert "unet" in rows[1]["model"] and "too small" in rows[1]["error"]  # 8×8 is too small for four pools
    assert "channel" in rows[2]["error"]  # LeNet takes 1 channel, not 3
    assert rows[3]["error"] is None and rows[3]["macs"] == conv_stack_macs(8, 8)


def test_parse_model_arguments() -> None:
    choice = parse_model("deeplabv3plus_resnet50:output_stride=16")
    assert (choice.model, choice.args) == ("deeplabv3plus_resnet50", {"output_stride": 16})
    assert parse_model("tv:resnet50").model == "tv:resnet50" and parse_model("tv:resnet50").args == {}
    assert parse_model("models/net.py:build").model == "models/net.py:build"
    choice = parse_model("models/net.py:build:width=8,bias=false,name=a:b,sizes=(1, 2)")
    assert choice.model == "models/net.py:build"
    assert choice.args == {"width": 8, "bias": False, "name": "a:b", "sizes": (1, 2)}
    assert parse_model("tv:resnet18:num_classes=10").args == {"num_classes": 10}
    with pytest.raises(InspectlabError):
        parse_model(":width=3")
    assert parse_model("runs/lr=0.1/net.py:build").args == {}  # an "=" in the path is not an argument


def test_per_model_arguments_reach_the_builder() -> None:
    frame = inspectlab.compare(["tv:resnet18:num_classes=10", "unet:bilinear=false"], SHAPE)
    rows = frame_rows(frame)
    assert rows[0]["params"] == sum(p.numel() for p in torchvision.models.resnet18(num_classes=10).parameters())
    assert rows[0]["output_shape"] == [1, 10]
    assert rows[1]["params"] == api.summary("unet", SHAPE, args={"bilinear": False}, depth=0).totals["params"]


def test_convention_column_is_fvcore_own_number() -> None:
    from fvcore.nn import FlopCountAnalysis

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
    frame = inspectlab.compare([model], (1, 3, 16, 16), convention="fvcore")
    analysis = FlopCountAnalysis(model, torch.randn(1, 3, 16, 16))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    assert frame_rows(frame)[0]["fvcore_macs"] == analysis.total()
    with pytest.raises(InspectlabError, match="unknown convention"):
        inspectlab.compare([model], (1, 3, 16, 16), convention="ptflops")


def test_latency_on_a_tiny_model() -> None:
    frame = inspectlab.compare(["lenet5"], (1, 1, 32, 32), latency=True, iters=5, warmup=1)
    row = frame_rows(frame)[0]
    assert 0 < row["latency_p50_ms"] <= row["latency_p90_ms"]
    assert frame.attrs["latency"]["iters"] == 5 and frame.attrs["latency"]["device"] == "cpu"


def test_report_warns_when_other_processes_competed_for_the_cpu() -> None:
    from inspectlab.render.report_files import context_lines

    def warned(load: float, cpus: int, device: str = "cpu") -> bool:
        attrs = {"latency": {"device": device, "load_average": load, "cpus": cpus, "iters": 3}}
        return any(line.startswith("Warning: the 1-minute load average") for line in context_lines(attrs, None))

    assert warned(4.3, 2) and not warned(2.9, 2) and not warned(4.3, 2, "cuda:0")


def test_fit_exponent_and_sizes() -> None:
    xs = [10.0, 100.0, 1000.0, 5000.0]
    assert fit_exponent(xs, [3 * x**1.5 for x in xs]) == pytest.approx(1.5, abs=1e-12)
    assert fit_exponent(xs, [None, 2.0, None, None]) is None
    assert parse_sizes("224, 512,1024x2048") == [(224, 224), (512, 512), (1024, 2048)]
    for bad in ("", "224,,512", "0", "12x", "1x2x3", "abc"):
        with pytest.raises(InspectlabError):
            parse_sizes(bad)


def test_sweep_of_a_conv_only_model_scales_as_pixels() -> None:
    frame = inspectlab.sweep(conv_stack(), [16, 32, (32, 64), 128, 1], input_size=(1, 3, 8, 8))
    rows = frame_rows(frame)
    assert [r["size"] for r in rows] == ["16×16", "32×32", "32×64", "128×128", "1×1"]
    for row in rows:
        assert row["macs"] == conv_stack_macs(row["height"], row["width"])
        assert row["pixels"] == row["height"] * row["width"] and row["input"] == [[1, 3, row["height"], row["width"]]]
    assert rows[4]["macs"] == 8 * 3 * 9 + 8 * 8 * 9 + 4 * 8 * 9  # 1×1: every conv makes one position
    ok = inspectlab.sweep(conv_stack(), [16, 32, 64, 128], input_size=(1, 3, 8, 8))
    assert ok.attrs["exponents"]["macs"] == pytest.approx(1.0, abs=1e-6)
    assert ok.attrs["exponents"]["activation_bytes"] == pytest.approx(1.0, abs=1e-6)


def test_sweep_failing_size_gets_an_error_row() -> None:
    frame = inspectlab.sweep("unet", "8,32,64")
    rows = frame_rows(frame)
    assert rows[0]["error"] and rows[0]["macs"] is None
    assert rows[1]["error"] is None and rows[2]["macs"] == 4 * rows[1]["macs"]  # convs with same padding
    assert frame.attrs["exponents"]["macs"] == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(InspectlabError, match="spatial dims"):
        inspectlab.sweep(nn.Linear(4, 2), [4], input_size=(1, 4))


# report files --------------------------------------------------------------------------------------------------
def _external_references(text: str) -> list[str]:
    return [v for v in re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", text, re.I) if not v.startswith("data:")]


def test_report_files_refuse_overwrite_and_html_is_self_contained(frame, tmp_path: Path) -> None:
    rows, attrs = frame_rows(frame), frame.attrs
    paths = [tmp_path / f"cmp.{suffix}" for suffix in ("md", "html", "csv", "json")]
    written = write_reports(rows, attrs, paths)
    pngs = sorted(p.name for p in tmp_path.glob("cmp-*.png"))
    assert pngs == ["cmp-macs-params.png", "cmp-rf-stride.png"]  # no latency: no latency plot
    assert set(written) == {*paths, *(tmp_path / p for p in pngs)}
    markdown = paths[0].read_text()
    assert all(f"]({p})" in markdown for p in pngs)
    page = paths[1].read_text()
    assert _external_references(page) == [] and "<script" not in page.lower()
    assert page.count('src="data:image/png;base64,') == 2
    assert all(p.stat().st_size < 1_000_000 for p in tmp_path.iterdir())
    table = list(csv.DictReader(io.StringIO(paths[2].read_text())))
    assert [int(r["params"]) for r in table if r["model"] == "resnet18"] == [row_of(frame, "resnet18")["params"]]
    document = json.loads(paths[3].read_text())
    assert document["kind"] == "compare" and document["rows"][2]["error"].startswith("unknown model")

    before = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    (tmp_path / "cmp-rf-stride.png").unlink()  # one PNG missing, the .md there: nothing is written
    with pytest.raises(InspectlabError, match="exists"):
        write_reports(rows, attrs, [paths[0]])
    assert not (tmp_path / "cmp-rf-stride.png").exists()
    assert all(p.stat().st_mtime_ns == t for p, t in before.items() if p.exists())
    write_reports(rows, attrs, [paths[0]], force=True)
    assert (tmp_path / "cmp-rf-stride.png").exists()
    with pytest.raises(InspectlabError, match="format"):
        write_reports(rows, attrs, [tmp_path / "cmp.txt"])


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
# Counts the images once the page has loaded (--dump-dom prints the DOM after the load event); a broken image
# added to the page shows that the count tells a failed image from a loaded one.
PROBE = """<img alt="broken on purpose" src="data:image/png;base64,AAAA"><script>window.addEventListener("load", () => {
  const images = [...document.images];
  const loaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute("data-images", images.length + "/" + loaded);
});</script>"""


REPORTS = sorted((Path(__file__).parent.parent / "reports").glob("*.html"))


def _images_loaded(page: Path, tmp_path: Path) -> tuple[int, int]:
    """(images on the page, images loaded) once headless Chromium has loaded `page` (plus one broken image)."""
    probe = tmp_path / f"probe-{page.name}"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    result = subprocess.run([CHROMIUM, *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                            timeout=90)
    match = re.search(r'data-images="(\d+)/(\d+)"', result.stdout)
    assert match, result.stderr[-2000:]
    return int(match.group(1)), int(match.group(2))


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install -y "
                    "chromium chromium-driver; `make test` installs it when run as root)")
def test_html_report_plots_load_in_headless_chromium(tmp_path: Path) -> None:
    frame = inspectlab.compare(["lenet5", "nope"], (1, 1, 32, 32), latency=True, iters=3, warmup=0)
    page = tmp_path / "report.html"
    write_reports(frame_rows(frame), frame.attrs, [page])
    # the report's bubble chart, latency bars and rf-vs-stride plot loaded; the broken probe image did not
    assert _images_loaded(page, tmp_path) == (4, 3)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")
@pytest.mark.parametrize("page", REPORTS, ids=[p.name for p in REPORTS])
def test_committed_reports_show_every_plot(page: Path, tmp_path: Path) -> None:
    """reports/*.html as a user opens them: every plot inline and loaded (the probe's broken image aside)."""
    images, loaded = _images_loaded(page, tmp_path)
    assert images >= 2 and loaded == images - 1


def test_compare_memory_train_adds_the_training_peak_of_inspectlab_memory() -> None:
    """`compare --memory --train`: each row's training peak is `inspectlab memory --train`'s (whose peak
    tests/test_memory_train.py checks against PyTorch's memory profiler); without it, no such column."""
    shape = (2, 3, 32, 32)
    frame = api.compare(["resnet18", "mobilenet_v3_small"], shape, train_optimizer="sgd")
    assert list(frame.columns).index("train_peak_bytes") == list(frame.columns).index("peak_bytes") + 1
    for row in frame.to_dict("records"):
        expected = api.memory(row["model"], shape, train=True, optimizer="sgd").totals["peak_bytes"]
        assert row["train_peak_bytes"] == expected > row["peak_bytes"]
    assert "train_peak_bytes" not in api.compare(["resnet18"], shape).columns
