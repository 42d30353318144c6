"""Feature capture (issue 7) through the API: values against a hand-written forward and torchvision's feature
extractor, the BatchNorm-before-inplace-ReLU case, repeated calls, structured outputs, gradients against
torch.autograd.grad, the three file formats, the manifest's statistics and receptive fields, hooks removed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from inspectlab import api
from inspectlab.core.errors import InspectlabError
from inspectlab.runtime import dump_writer
from inspectlab.runtime.capture import capture, objective, select_modules

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that bn1 has negatives and positives
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.bias.uniform_(-0.3, 0.3)
    return model


@pytest.fixture(scope="module")
def image():
    return torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))


def manual_forward(model, x, relu=torch.relu):
    """torchvision's ResNet forward written out, keeping every intermediate tensor (no in-place op)."""
    kept = {"bn1": model.bn1(model.conv1(x))}
    y = model.maxpool(relu(kept["bn1"]))
    for name in ("layer1", "layer2", "layer3", "layer4"):
        y = kept[name] = getattr(model, name)(y)
    kept["fc"] = model.fc(torch.flatten(model.avgpool(y), 1))
    return kept


def hooks_of(model):
    return [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()]


# --------------------------------------------------------------------------------------------------
# values


def test_values_equal_a_manual_forward_and_the_feature_extractor(resnet, image):
    from torchvision.models.feature_extraction import create_feature_extractor

    with torch.no_grad():
        with capture(resnet, ["bn1", "layer?", "fc"]) as cap:
            logits = resnet(image)
        reference = manual_forward(resnet, image)
        extracted = create_feature_extractor(resnet, return_nodes=["layer1", "layer3", "bn1"])(image)
    assert cap.keys() == ["bn1#0", "layer1#0", "layer2#0", "layer3#0", "layer4#0", "fc#0"]
    for name, tensor in reference.items():
        torch.testing.assert_close(cap[name], tensor, rtol=0, atol=1e-6)
    torch.testing.assert_close(cap["fc#0"], logits, rtol=0, atol=0)
    for name in ("layer1", "layer3"):  # not followed by an in-place op: the extractor is right
        torch.testing.assert_close(cap[name], extracted[name], rtol=0, atol=1e-6)


def test_batchnorm_before_inplace_relu_keeps_its_negatives(resnet, image):
    """The issue's claim: a plain hook and torchvision's extractor return bn1 after the in-place ReLU."""
    from torchvision.models.feature_extraction import create_feature_extractor

    naive = {}

    def naive_hook(module, args, output):
        naive["bn1"] = output

    with torch.no_grad():
        handle = resnet.bn1.register_forward_hook(naive_hook)
        try:
            with capture(resnet, ["bn1"]) as cap:
                resnet(image)
        finally:
            handle.remove()
        # with a later node requested the extractor's graph runs the in-place ReLU after bn1 (asked alone,
        # bn1 would be the graph's end and come back right)
        extracted = create_feature_extractor(resnet, return_nodes=["bn1", "layer1"])(image)["bn1"]
        true_bn1 = resnet.bn1(resnet.conv1(image))
    assert (true_bn1 < 0).sum() > 1000
    torch.testing.assert_close(cap["bn1"], true_bn1, rtol=0, atol=1e-6)
    assert naive["bn1"].min() == 0 and extracted.min() == 0  # both lost every negative value
    torch.testing.assert_close(extracted, torch.relu(true_bn1), rtol=0, atol=1e-6)


class Reuse(nn.Module):
    """One ReLU and one Linear applied three times; the block's output is then changed in place."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 6)
        self.relu = nn.ReLU()
        self.block = nn.Linear(6, 6)

    def forward(self, x):
        for _ in range(3):
            x = self.relu(self.linear(x) - 0.1)
        y = self.block(x)
        y.mul_(-2.0)
        return y


def reuse_reference(model, x):
    steps = []
    for _ in range(3):
        pre = model.linear(x)
        x = torch.relu(pre - 0.1)
        steps.append((pre, x))
    block = model.block(x)
    return steps, block, block * -2.0


def test_every_call_of_a_reused_module_is_kept():
    torch.manual_seed(2)
    model = Reuse()
    x = torch.randn(4, 6)
    with torch.no_grad():
        with capture(model, ["relu", "linear", "block"]) as cap:
            model(x)
        steps, block, _ = reuse_reference(model, x)
    assert cap.keys() == ["linear#0", "relu#0", "linear#1", "relu#1", "linear#2", "relu#2", "block#0"]
    for call, (pre, post) in enumerate(steps):
        torch.testing.assert_close(cap[f"linear#{call}"], pre, rtol=0, atol=0)
        torch.testing.assert_close(cap[f"relu#{call}"], post, rtol=0, atol=0)
    torch.testing.assert_close(cap["relu"], steps[0][1], rtol=0, atol=0)  # a bare name is the first call
    assert all(torch.equal(a, b[1]) for a, b in zip(cap.calls("relu"), steps, strict=True))
    torch.testing.assert_close(cap["block"], block, rtol=0, atol=0)  # before the mul_ that followed


class Structured(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = Head()

    def forward(self, x):
        return self.head(x)["out"]


class Head(nn.Module):
    def forward(self, x):
        return {"out": x * 2, "aux": [x + 1, (3, x - 1)], "note": "text"}


def test_structured_outputs_are_flattened_with_their_key_paths():
    x = torch.arange(6.0).reshape(2, 3)
    with capture(Structured(), ["head"]) as cap:
        cap.model(x)
    assert cap.keys() == ["head#0[out]", "head#0[aux][0]", "head#0[aux][1][1]"]
    torch.testing.assert_close(cap["head#0[aux][1][1]"], x - 1)
    rebuilt = cap["head"]
    assert rebuilt["note"] == "text" and rebuilt["aux"][1][0] == 3
    torch.testing.assert_close(rebuilt["out"], x * 2)
    torch.testing.assert_close(rebuilt["aux"][0], x + 1)


# --------------------------------------------------------------------------------------------------
# gradients


def test_gradients_equal_autograd_grad(resnet, image):
    parameters_before = [p.grad for p in resnet.parameters()]
    with capture(resnet, ["bn1", "layer1", "layer3"], grads=True) as cap:
        cap.backward(objective(resnet(image), target=7))
    reference = manual_forward(resnet, image)
    wanted = ["bn1", "layer1", "layer3"]
    expected = torch.autograd.grad(reference["fc"][:, 7].sum(), [reference[n] for n in wanted])
    for name, grad in zip(wanted, expected, strict=True):
        torch.testing.assert_close(cap.grad(name), grad, rtol=1e-5, atol=1e-7)
    assert [p.grad for p in resnet.parameters()] == parameters_before  # no .grad was written
    assert (cap.grad("bn1") != 0).any() and (cap.grad("bn1") == 0).any()  # ReLU's mask, of the pre-ReLU value


def test_full_backward_hooks_fail_where_tensor_hooks_work(resnet, image):
    """Why capture uses tensor hooks: a module full backward hook on bn1 makes autograd raise when the
    following ReLU(inplace=True) modifies its output (this documents torch's behaviour)."""
    handle = resnet.bn1.register_full_backward_hook(lambda module, grad_in, grad_out: None)
    try:
        with pytest.raises(RuntimeError, match="modified inplace"):
            resnet(image.clone().requires_grad_()).sum().backward()
    finally:
        handle.remove()


def test_gradients_of_every_call_and_of_a_segmentation_objective():
    torch.manual_seed(3)
    model = Reuse()
    x = torch.randn(4, 6)
    with capture(model, ["relu", "block"], grads=True) as cap:
        cap.backward(objective(model(x)))
    steps, block, out = reuse_reference(model, x)
    expected = torch.autograd.grad(out.sum(), [post for _, post in steps] + [block])
    for call in range(3):
        torch.testing.assert_close(cap.grad(f"relu#{call}"), expected[call], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(cap.grad("block"), expected[3], rtol=1e-6, atol=1e-7)

    segment = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.Conv2d(5, 4, 1))
    image = torch.randn(2, 3, 8, 8)

    class Segmenter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = segment

        def forward(self, x):
            return {"out": self.body(x)}

    seg = Segmenter()
    with capture(seg, ["body.0", "body.1"], grads=True) as cap:
        cap.backward(objective(seg(image), target=2))
    conv = segment[0](image)
    relu = torch.relu(conv)
    logits = segment[2](relu)
    expected = torch.autograd.grad(logits[:, 2].sum(), [conv, relu])  # per pixel, summed
    torch.testing.assert_close(cap.grad("body.0"), expected[0], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(cap.grad("body.1"), expected[1], rtol=1e-6, atol=1e-7)


def test_public_api_and_missing_keys(resnet, image):
    import inspectlab

    with torch.no_grad(), inspectlab.capture(resnet, ["layer1"]) as cap:
        resnet(image)
    assert "layer1" in cap and "layer1#0" in cap and "layer1#1" not in cap and list(cap) == ["layer1#0"]
    with pytest.raises(KeyError, match="nearest: layer1#0"):
        cap["layer1#1"]


def test_objective_rejects_a_class_out_of_range():
    with pytest.raises(InspectlabError, match="out of range"):
        objective(torch.zeros(1, 10, requires_grad=True), target=10)


# --------------------------------------------------------------------------------------------------
# hooks, selection


def test_hooks_are_removed_also_when_the_forward_raises(resnet, image):
    before = hooks_of(resnet)
    with capture(resnet, ["layer*"], grads=True) as cap:
        resnet(image)
    assert hooks_of(resnet) == before and len(cap) > 0

    class Fails(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.conv(x).view(-1, 7)  # 2·3·4·4 is not a multiple of 7

    model = Fails()
    before = hooks_of(model)
    with pytest.raises(RuntimeError), capture(model, ["conv", "(root)"], grads=True) as cap:
        model(torch.zeros(2, 3, 4, 4))
    assert hooks_of(model) == before
    assert cap.keys() == ["conv#0"]  # what ran before the failure was kept


def test_selection_by_glob_regex_and_type(resnet):
    assert list(select_modules(resnet, ["layer?.?"])) == [f"layer{s}.{b}" for s in range(1, 5) for b in range(2)]
    assert list(select_modules(resnet, [r"re:layer4\.\d\.conv\d"])) == [
        "layer4.0.conv1", "layer4.0.conv2", "layer4.1.conv1", "layer4.1.conv2"]
    convs = select_modules(resnet, types=["Conv2d"])
    assert len(convs) == sum(isinstance(m, nn.Conv2d) for m in resnet.modules()) == 20
    assert list(select_modules(resnet, ["layer1*"], types=["nn.BatchNorm2d"])) == [
        "layer1.0.bn1", "layer1.0.bn2", "layer1.1.bn1", "layer1.1.bn2"]
    assert list(select_modules(resnet, ["(root)"])) == [""]
    with pytest.raises(InspectlabError, match="nearest names: layer1"):
        select_modules(resnet, ["layr1"])
    with pytest.raises(InspectlabError, match="nearest types: BatchNorm2d"):
        select_modules(resnet, types=["BatchNorm3d"])
    with pytest.raises(InspectlabError, match="matches both"):
        select_modules(resnet, ["fc"], types=["Conv2d"])


# --------------------------------------------------------------------------------------------------
# files and manifest


@pytest.mark.parametrize("suffix", ["safetensors", "npz", "pt"])
def test_each_format_round_trips_with_its_manifest(tmp_path, resnet, image, suffix):
    with capture(resnet, ["bn1", "layer2.1.relu"], grads=True) as cap:
        cap.backward(objective(resnet(image)))
    path = tmp_path / f"feats.{suffix}"
    written = cap.save(str(path))
    assert written == [str(path), str(path) + ".json"]
    back = dump_writer.read_tensors(path)
    expected = cap.tensors()
    assert set(back) == set(expected) == {"bn1#0", "bn1#0.grad", "layer2.1.relu#0", "layer2.1.relu#1",
                                          "layer2.1.relu#0.grad", "layer2.1.relu#1.grad"}
    for key, tensor in expected.items():
        assert torch.equal(back[key], tensor), key
    manifest = json.loads((tmp_path / f"feats.{suffix}.json").read_text())
    assert manifest["format"] == suffix and [e["key"] for e in manifest["entries"]] == cap.keys()
    for record in manifest["entries"]:  # statistics against numpy on the file's arrays
        array = back[record["key"]].numpy().astype(np.float64)
        assert record["shape"] == list(array.shape) and record["bytes"] == array.size * 4
        assert record["min"] == pytest.approx(array.min(), rel=1e-6)
        assert record["max"] == pytest.approx(array.max(), rel=1e-6)
        assert record["mean"] == pytest.approx(array.mean(), rel=1e-4, abs=1e-7)
        assert record["std"] == pytest.approx(array.std(), rel=1e-4)
        assert record["zero_fraction"] == pytest.approx((array == 0).mean())
        grad = back[record["grad"]["key"]].numpy().astype(np.float64)
        assert record["grad"]["std"] == pytest.approx(grad.std(), rel=1e-4)
    with pytest.raises(InspectlabError, match="--force"):
        cap.save(str(path))
    assert cap.save(str(path), force=True) == written


def test_npz_stores_bfloat16_as_float32(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3)).to(torch.bfloat16)
    with capture(model, ["0"]) as cap:
        model(torch.ones(2, 4, dtype=torch.bfloat16))
    cap.save(str(tmp_path / "b.npz"))
    back = dump_writer.read_tensors(tmp_path / "b.npz")["0#0"]
    assert back.dtype == torch.float32 and torch.equal(back, cap["0"].float())
    record = json.loads((tmp_path / "b.npz.json").read_text())["entries"][0]
    assert (record["dtype"], record["stored_dtype"], record["bytes"]) == ("bfloat16", "float32", 2 * 3 * 2)


def test_statistics_only_keep_no_tensor(resnet, image):
    with torch.no_grad():
        with capture(resnet, ["bn1"], keep=False) as cap:
            resnet(image)
        true_bn1 = resnet.bn1(resnet.conv1(image)).double().numpy()
    stats = cap.entries[0].stats
    assert cap.entries[0].value is None
    assert stats["min"] == pytest.approx(true_bn1.min(), rel=1e-6) and stats["min"] < 0
    assert stats["std"] == pytest.approx(true_bn1.std(), rel=1e-4)
    with pytest.raises(InspectlabError, match="statistics only"):
        cap["bn1"]


def test_dump_estimates_from_the_trace_and_gives_receptive_fields(tmp_path, resnet):
    result = api.dump(resnet, (1, 3, 64, 64), layers=["bn1", "layer1", "layer2.0.relu"], out=str(tmp_path / "f.pt"))
    kept = result.capture.tensors()
    assert result.estimate == sum(t.numel() * 4 for t in kept.values())  # from the trace, before the run
    rows = {e["key"]: e for e in result.manifest["entries"]}
    # conv 7×7 stride 2 padding 3: r = 7, j = 2, padding 3
    assert (rows["bn1#0"]["rf"], rows["bn1#0"]["stride"], rows["bn1#0"]["padding"]) == ([7, 7], [2, 2], [3, 3])
    # + max pool 3/2 (r = 7 + 2·2 = 11, j = 4) + four 3×3 convs (r = 11 + 4·2·4 = 43)
    assert (rows["layer1#0"]["rf"], rows["layer1#0"]["stride"]) == ([43, 43], [4, 4])
    assert rows["layer1#0"]["rf_min"] == [11, 11]  # through the identity shortcuts
    assert ["layer2.0.relu#0", "layer2.0.relu#1"] == [k for k in rows if k.startswith("layer2")]
    with pytest.raises(InspectlabError, match="above --max-bytes"):
        api.dump(resnet, (1, 3, 64, 64), layers=["bn1"], out=str(tmp_path / "g.pt"), max_bytes=64 * 32 * 32 * 4 - 1)
    assert not (tmp_path / "g.pt").exists()


def test_images_are_cover_resized_centre_cropped_and_normalised(tmp_path):
    from PIL import Image

    from inspectlab.runtime.images import IMAGENET_MEAN, IMAGENET_STD, load_images

    picture = np.zeros((40, 80, 3), dtype=np.uint8)  # H 40, W 80: left half red, right half blue
    picture[:, :40, 0] = 255
    picture[:, 40:, 2] = 255
    Image.fromarray(picture).save(tmp_path / "a.png")
    Image.fromarray(picture[:, ::-1].copy()).save(tmp_path / "b.png")
    batch = load_images([str(tmp_path / "a.png"), str(tmp_path / "b.png")], (32, 32))
    assert tuple(batch.tensor.shape) == (2, 3, 32, 32)
    # scaled by 0.8 to 64×32, the centre 32 columns: 16 red then 16 blue (bilinear blurs the middle)
    red = [(1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], -IMAGENET_MEAN[1] / IMAGENET_STD[1],
           -IMAGENET_MEAN[2] / IMAGENET_STD[2]]
    for channel in range(3):
        assert torch.allclose(batch.tensor[0, channel, :, :14], torch.tensor(red[channel]), atol=1e-5)
        assert torch.allclose(batch.tensor[1, channel, :, 18:], torch.tensor(red[channel]), atol=1e-5)
    assert batch.pictures.shape == (2, 32, 32, 3) and batch.pictures[0, 0, 0].tolist() == [1.0, 0.0, 0.0]
