"""--weights on every command that builds a model (issue 15 §2): a bare state_dict or a checkpoint dict,
wrappers' prefixes stripped, strict by default, --non-strict listing what did not match, and a dump of the
trained features."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from inspectlab import api
from inspectlab.cli import app
from inspectlab.runtime.dump_writer import read_tensors

SHAPE = (1, 1, 32, 32)


def _trained(tmp_path, wrap=None, prefix=""):
    """lenet5's weights as a user would have them after training: values no fresh build has."""
    model = api.build_model("lenet5", device="cpu")
    with torch.no_grad():
        for index, tensor in enumerate(model.state_dict().values()):
            tensor.fill_(0.01 * (index + 1))
    state = {prefix + key: value for key, value in model.state_dict().items()}
    path = tmp_path / "trained.pt"
    torch.save({wrap: state, "epoch": 3} if wrap else state, path)
    return model, str(path)


def run(*args: str):
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_a_dump_with_weights_dumps_the_trained_features(tmp_path):
    model, path = _trained(tmp_path, wrap="model_state_dict", prefix="module.")
    out = tmp_path / "f.safetensors"
    code, _, err = run("dump", "lenet5", "-i", "1,1,32,32", "-l", "conv1", "--weights", path, "-o", str(out))
    assert code == 0, err
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))  # the dump's seeded input (--seed 0)
    with torch.no_grad():
        expected = model.eval().conv1(x)
    assert torch.allclose(read_tensors(out)["conv1#0"], expected)


def test_every_command_takes_weights(tmp_path):
    _, path = _trained(tmp_path, wrap="state_dict")
    for command in (["summary", "lenet5"], ["flops", "lenet5"], ["rf", "lenet5", "--empirical"],
                    ["graph", "lenet5", "-f", "dot"], ["latency", "lenet5", "-n", "1", "--warmup", "0"],
                    ["sweep", "lenet5", "--sizes", "32,64"], ["compare", "lenet5", "resnet18", "-i", "1,1,32,32"]):
        weights = ["--weights", f"lenet5={path}" if command[0] == "compare" else path]
        code, _, err = run(*command, *weights)
        assert code == 0, (command, err)
    report = api.summary("lenet5", weights=path)
    assert report.totals["params"] == api.summary("lenet5").totals["params"]


def test_strict_by_default_and_non_strict_lists_the_keys(tmp_path):
    model = api.build_model("lenet5", device="cpu")
    state = model.state_dict()
    state.pop("conv1.bias")
    state["extra.weight"] = torch.zeros(3)
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    code, _, err = run("summary", "lenet5", "--weights", str(path))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "1 missing: conv1.bias (6)" in err and "1 unexpected: extra.weight (3)" in err and "--non-strict" in err
    report = api.summary("lenet5", weights=str(path), strict=False)
    notes = report.extra["notes"]
    assert any("not in the file" in n and "conv1.bias" in n for n in notes)
    assert any("not in the model" in n and "extra.weight" in n for n in notes)


def test_a_shape_mismatch_is_refused_even_non_strict(tmp_path):
    state = api.build_model("lenet5", device="cpu").state_dict()
    state["conv1.weight"] = torch.zeros(7, 1, 5, 5)
    path = tmp_path / "wrong.pt"
    torch.save(state, path)
    code, _, err = run("summary", "lenet5", "--weights", str(path), "--non-strict")
    assert code == 2 and "conv1.weight is 7×1×5×5 in the file, 6×1×5×5 in the model" in err


def test_weights_of_compare_must_name_a_model(tmp_path):
    _, path = _trained(tmp_path)
    code, _, err = run("compare", "lenet5", "--weights", f"unet={path}")
    assert code == 2 and "names no model" in err
    code, _, err = run("compare", "lenet5", "--weights", path)
    assert code == 2 and "MODEL=PATH" in err
