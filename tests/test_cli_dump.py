"""`inspectlab dump` through the Typer app: files and manifest against a hand-written forward and autograd,
the three formats, images as a batch, pictures, statistics only, and every refusal as one line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from inspectlab import api
from inspectlab.cli import app
from inspectlab.runtime.dump_writer import read_tensors

torch.set_num_threads(1)

MODEL_SOURCE = '''
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.relu(self.bn(self.conv(x)))
        x = self.relu(x * 1.5 - 0.5)
        return self.fc(torch.flatten(self.pool(x), 1))


def tiny():
    generator = torch.Generator().manual_seed(5)
    model = Tiny()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
        model.bn.running_mean.copy_(torch.randn(8, generator=generator) * 0.2)
    return model
'''


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    (folder / "tiny.py").write_text(MODEL_SOURCE)
    return f"{folder / 'tiny.py'}:tiny"


@pytest.fixture
def runner():
    return CliRunner()


def reference(spec, x):
    """The Tiny forward written out without in-place ops."""
    model = api.build_model(spec, device="cpu")
    kept = {"conv#0": model.conv(x)}
    kept["bn#0"] = model.bn(kept["conv#0"])
    kept["relu#0"] = torch.relu(kept["bn#0"])
    kept["relu#1"] = torch.relu(kept["relu#0"] * 1.5 - 0.5)
    kept["fc#0"] = model.fc(torch.flatten(model.pool(kept["relu#1"]), 1))
    return kept


def seeded_input(shape, seed=0):
    """The documented random input: torch.randn with a generator seeded with --seed."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def fails(runner, arguments, fragment):
    result = runner.invoke(app, ["dump", *arguments])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_tensors_gradients_and_manifest(runner, spec, tmp_path):
    out = tmp_path / "feats.safetensors"
    result = runner.invoke(app, ["dump", spec, "-i", "2,3,12,12", "-l", "bn", "-l", "relu", "-l", "fc", "--grads",
                                 "--target", "2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stderr and "relu#1" in result.stdout
    x = seeded_input((2, 3, 12, 12)).requires_grad_()
    kept = reference(spec, x)
    back = read_tensors(out)
    keys = ["bn#0", "relu#0", "relu#1", "fc#0"]
    assert sorted(back) == sorted(keys + [k + ".grad" for k in keys])
    for key in keys:
        torch.testing.assert_close(back[key], kept[key].detach(), rtol=1e-6, atol=1e-6)
    assert back["bn#0"].min() < 0  # the in-place ReLU that followed did not reach the copy
    grads = torch.autograd.grad(kept["fc#0"][:, 2].sum(), [kept[k] for k in keys])
    for key, grad in zip(keys, grads, strict=True):
        torch.testing.assert_close(back[key + ".grad"], grad, rtol=1e-5, atol=1e-7)
    manifest = json.loads((tmp_path / "feats.safetensors.json").read_text())
    assert manifest["file"] == "feats.safetensors" and manifest["inputs"] == [[2, 3, 12, 12]]
    assert manifest["objective"] == "logit of class 2, summed over the batch"
    rows = {row["key"]: row for row in manifest["entries"]}
    assert [rows[k]["call"] for k in keys] == [0, 0, 1, 0]
    assert (rows["bn#0"]["rf"], rows["bn#0"]["stride"], rows["bn#0"]["padding"]) == ([3, 3], [1, 1], [1, 1])
    assert rows["fc#0"]["global"] is True
    for key in keys:
        array = kept[key].detach().double().numpy()
        assert rows[key]["mean"] == pytest.approx(array.mean(), rel=1e-4, abs=1e-7)
        assert rows[key]["zero_fraction"] == pytest.approx((array == 0).mean())


@pytest.mark.parametrize("suffix", ["npz", "pt"])
def test_other_formats(runner, spec, tmp_path, suffix):
    out = tmp_path / f"f.{suffix}"
    result = runner.invoke(app, ["dump", spec, "-i", "1,3,8,8", "-t", "Conv2d", "--seed", "3", "-o", str(out)])
    assert result.exit_code == 0, result.output
    back = read_tensors(out)
    assert list(back) == ["conv#0"]
    torch.testing.assert_close(back["conv#0"], reference(spec, seeded_input((1, 3, 8, 8), 3))["conv#0"].detach())


def test_images_make_a_batch_and_pictures_are_drawn(runner, spec, tmp_path):
    from PIL import Image

    from inspectlab.runtime.images import load_images

    paths = []
    for index in range(2):
        array = (np.random.default_rng(index).random((30, 20, 3)) * 255).astype(np.uint8)
        paths.append(tmp_path / f"im{index}.png")
        Image.fromarray(array).save(paths[-1])
    pictures = tmp_path / "pictures"
    result = runner.invoke(app, ["dump", spec, "-i", "1,3,16,16", "--image", str(paths[0]), "--image", str(paths[1]),
                                 "-l", "bn", "-l", "fc", "--png", str(pictures), "-f", "json"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert manifest["inputs"] == [[2, 3, 16, 16]] and manifest["images"] == [str(p) for p in paths]
    batch = load_images([str(p) for p in paths], (16, 16)).tensor
    bn = reference(spec, batch)["bn#0"].detach().double().numpy()
    assert manifest["entries"][0]["min"] == pytest.approx(bn.min(), rel=1e-5)
    drawn = sorted(p.name for p in pictures.iterdir())
    assert drawn == ["bn_0.b0.png", "bn_0.b1.png", "fc_0.b0.png", "fc_0.b1.png"]
    with Image.open(pictures / "bn_0.b0.png") as picture:
        assert picture.format == "PNG" and picture.size[0] > 500


def test_statistics_only_write_the_manifest_alone(runner, spec, tmp_path):
    out = tmp_path / "s.safetensors"
    result = runner.invoke(app, ["dump", spec, "-i", "1,3,8,8", "-l", "relu", "--stats-only", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["s.safetensors.json"]
    manifest = json.loads((tmp_path / "s.safetensors.json").read_text())
    kept = reference(spec, seeded_input((1, 3, 8, 8)))
    assert manifest["file"] is None and [row["key"] for row in manifest["entries"]] == ["relu#0", "relu#1"]
    for row in manifest["entries"]:
        array = kept[row["key"]].detach().double().numpy()
        assert row["max"] == pytest.approx(array.max(), rel=1e-6)
        assert row["std"] == pytest.approx(array.std(), rel=1e-4)


def test_no_overwrite_without_force(runner, spec, tmp_path):
    out = tmp_path / "f.pt"
    out.write_bytes(b"keep me")
    fails(runner, [spec, "-i", "1,3,8,8", "-l", "bn", "-o", str(out)], "use --force")
    assert out.read_bytes() == b"keep me" and not (tmp_path / "f.pt.json").exists()
    result = runner.invoke(app, ["dump", spec, "-i", "1,3,8,8", "-l", "bn", "-o", str(out), "--force"])
    assert result.exit_code == 0, result.output
    assert list(read_tensors(out)) == ["bn#0"]


def test_refused_above_max_bytes(runner, spec, tmp_path):
    out = tmp_path / "big.safetensors"
    # bn's output: 1×8×32×32 float32 = 32768 bytes, from the trace before anything runs
    fails(runner, [spec, "-i", "1,3,32,32", "-l", "bn", "-o", str(out), "--max-bytes", "32767"],
          "32 KiB (32,768 bytes, estimated from the trace), above --max-bytes 32,767")
    assert list(tmp_path.iterdir()) == []
    result = runner.invoke(app, ["dump", spec, "-i", "1,3,32,32", "-l", "bn", "-o", str(out), "--max-bytes", "32KiB"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(("arguments", "fragment"), [
    (["-l", "bnn"], "no module matches --layers 'bnn'; nearest names: bn"),
    (["-l", "re:con[v"], "malformed regular expression"),
    (["-t", "Conv1d"], "no module of type 'Conv1d'; nearest types: Conv2d"),
    ([], "select layers with --layers"),
    (["-l", "bn", "-o", "x.h5"], "unknown dump format '.h5'"),
    (["-l", "bn", "--target", "1"], "add --grads"),
    (["-l", "bn", "--grads", "--target", "5"], "--target 5 is out of range: the output has 5 classes"),
    (["-l", "bn", "--png", "p", "--stats-only"], "cannot go with --stats-only"),
    (["-l", "bn", "--max-bytes", "lots"], "malformed --max-bytes"),
    (["-l", "bn", "--image", "missing.png"], "image missing.png not found"),
    (["-l", "bn", "--image", "missing.png", "--mean", "0.5,x"], "malformed --mean"),
])
def test_errors_are_one_line(runner, spec, arguments, fragment):
    fails(runner, [spec, "-i", "1,3,8,8", *arguments], fragment)


def test_the_command_module_does_not_import_torch():
    code = "import sys, inspectlab.cli.dump; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
