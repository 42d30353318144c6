"""`inspectlab stages` and `compare --stages`: the feature pyramid of a backbone (docs/stages.md).

ResNet-50's pyramid exactly; an encoder-decoder (UNet: its downsampling path only); HRNet (its final parallel
branches); a timm features_only model (its own feature_info); plain timm models read from the trace against
timm's own feature_info; smp networks (the encoder's pyramid, as smp's `encoder.out_channels` says, never a
padding module or the decoder); a DeepLab head after the backbone; cumulative MACs and params against the
summary's per-call rows; the json/csv/markdown outputs; compare --stages on two backbones; one-line errors.
"""

from __future__ import annotations

import json
from itertools import accumulate
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, run_cli

from inspectlab import api
from inspectlab.analysis.stages import STAGE_KEYS, StageRow
from inspectlab.core.errors import InspectlabError

MLP = '''from torch import nn


def mlp():
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))


def flat():
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4))
'''


def _cumulative(model: str, size: tuple[int, ...]) -> dict[str, tuple[int, int]]:
    """Per depth-1 row of the summary: (MACs, params) of that row and every row before it, in call order."""
    rows = api.summary(model, size, depth=1).layers
    macs = accumulate(row["macs"] for row in rows)
    params = accumulate(row["params"] for row in rows)
    return {row["name"]: pair for row, pair in zip(rows, zip(macs, params, strict=True), strict=True)}


def test_resnet50_pyramid_is_layer1_to_layer4() -> None:
    report = api.stages("tv:resnet50", (1, 3, 224, 224))
    assert all(isinstance(row, StageRow) for row in report.layers)
    stem, *layers = report.layers
    assert [(r.name, r.stride, r.channels) for r in layers] == [
        ("layer1", 4, 256), ("layer2", 8, 512), ("layer3", 16, 1024), ("layer4", 32, 2048)]
    assert [r.output_shape for r in layers] == [[1, 256, 56, 56], [1, 512, 28, 28], [1, 1024, 14, 14],
                                                [1, 2048, 7, 7]]
    assert (stem.name, stem.stride, stem.channels) == ("relu", 2, 64)  # the stem, at stride 2
    assert [r.rf for r in layers] == [[35, 35], [91, 91], [267, 267], [427, 427]]
    assert not any(r.rf_global for r in report.layers)
    assert report.extra["method"] == "trace" and report.extra["depth"] == 1
    # cumulative MACs and params: the summary's depth-1 rows up to the stage, in call order (avgpool, fc after)
    cumulative = _cumulative("tv:resnet50", (1, 3, 224, 224))
    assert [(r.cumulative_macs, r.cumulative_params) for r in report.layers] == [
        cumulative[r.name] for r in report.layers]
    totals = api.summary("tv:resnet50", (1, 3, 224, 224), depth=0).totals
    assert report.totals["macs"] == totals["macs"] and report.totals["params"] == totals["params"]
    assert layers[-1].cumulative_params == totals["params"] - (2048 * 1000 + 1000)  # all but the fc head


def test_unet_stages_are_its_downsampling_path() -> None:
    report = api.stages("unet", (1, 3, 64, 64))
    assert [(r.name, r.stride, r.channels) for r in report.layers] == [
        ("in_conv", 1, 64), ("down1", 2, 128), ("down2", 4, 256), ("down3", 8, 512), ("down4", 16, 512)]
    assert report.layers[-1].output_shape == [1, 512, 4, 4]
    cumulative = _cumulative("unet", (1, 3, 64, 64))
    assert [r.cumulative_macs for r in report.layers] == [cumulative[r.name][0] for r in report.layers]
    assert report.layers[-1].cumulative_macs < report.totals["macs"]  # the decoder comes after


def test_hrnet_stages_are_its_final_branches() -> None:
    report = api.stages("hrnetv2_w18", (1, 3, 64, 64))
    assert [(r.name, r.stride, r.channels) for r in report.layers] == [
        ("stem.0", 2, 64), ("stage4.2[0]", 4, 18), ("stage4.2[1]", 8, 36), ("stage4.2[2]", 16, 72),
        ("stage4.2[3]", 32, 144)]
    assert [r.output_shape[-1] for r in report.layers] == [32, 16, 8, 4, 2]
    macs = [r.cumulative_macs for r in report.layers]
    assert macs == sorted(macs) and len(set(macs)) == len(macs)  # each branch's fusion made before the next
    # the coarsest branch is the last op of stage4: everything up to the head
    assert macs[-1] == _cumulative("hrnetv2_w18", (1, 3, 64, 64))["stage4"][0] < report.totals["macs"]


def test_timm_features_only_uses_its_feature_info() -> None:
    timm = pytest.importorskip("timm")
    report = api.stages("timm:resnet18", (1, 3, 64, 64), args={"features_only": True, "out_indices": (1, 2, 3, 4)})
    assert report.extra["method"] == "feature_info"
    info = timm.create_model("resnet18", pretrained=False, features_only=True, out_indices=(1, 2, 3, 4)).feature_info
    assert [(r.name, r.stride, r.channels) for r in report.layers] == list(
        zip(info.module_name(), info.reduction(), info.channels(), strict=True))
    assert [r.name for r in report.layers] == ["layer1", "layer2", "layer3", "layer4"]
    assert report.extra["notes"] == []  # the trace's strides agree with feature_info's reductions
    plain = api.stages("timm:resnet18", (1, 3, 64, 64))  # without features_only: found from the trace
    assert plain.extra["method"] == "trace"
    assert [(r.name, r.channels, r.cumulative_macs) for r in plain.layers[1:]] == [
        (r.name, r.channels, r.cumulative_macs) for r in report.layers]


@pytest.mark.parametrize("name", ["efficientnet_b0", "regnety_002", "densenet121"])
def test_timm_plain_models_match_their_feature_info(name: str, offline: list) -> None:
    """Read from the trace alone, a plain timm classifier gives the pyramid timm itself names for the model
    (`features_only=True`'s feature_info: module, stride, channels), the head before the pooling left out
    (EfficientNet's 1×1 `conv_head` to 1280 channels runs after `blocks`, the call that made every stride)."""
    timm = pytest.importorskip("timm")
    report = api.stages(f"timm:{name}", (1, 3, 64, 64))
    info = timm.create_model(name, pretrained=False, features_only=True).feature_info
    assert report.extra["method"] == "trace"
    assert [(r.name, r.stride, r.channels) for r in report.layers] == list(
        zip(info.module_name(), info.reduction(), info.channels(), strict=True))


@pytest.mark.parametrize(("arch", "encoder"), [("FPN", "resnet34"), ("FPN", "efficientnet-b0"),
                                              ("Unet", "efficientnet-b0"), ("DeepLabV3", "resnet34"),
                                              ("PAN", "efficientnet-b0"), ("PSPNet", "efficientnet-b0")])
def test_smp_stages_are_the_encoders_pyramid(arch: str, encoder: str, offline: list) -> None:
    """An smp network's stages are what its encoder returns to the decoder, `encoder[1]`..: smp's own
    `encoder.out_channels` (its [0] is the input image), at strides 2, 4, 8, ... up to the encoder's output
    stride (DeepLabV3 dilates to 8, PAN to 16, PSPNet stops after 3 stages). Never a padding module
    (efficientnet-b0's `ZeroPad2d` makes a stride-1 copy of the image at 0 MACs), never the decoder (FPN's
    `decoder.p5` is a 1×1 conv of the stride-32 map, made after it), never blocks that the network computes
    and throws away (PSPNet's efficientnet-b0 runs 4 blocks at stride 16 whose output nothing reads)."""
    pytest.importorskip("segmentation_models_pytorch")
    args, size = {"encoder_name": encoder}, (1, 3, 128, 128)
    model = api.build_model(f"smp:{arch}", args)
    channels = list(model.encoder.out_channels[1:])
    report = api.stages(f"smp:{arch}", size, args=args)
    rows = [(r.name, r.channels) for r in report.layers]
    strides = [r.stride for r in report.layers]
    # dilated encoders return several maps at their output stride: the stage there is the last of them
    expected = {2 ** min(k + 1, {"DeepLabV3": 3, "PAN": 4}.get(arch, 5)): (f"encoder[{k + 1}]", c)
                for k, c in enumerate(channels)}
    assert rows == list(expected.values()) and strides == list(expected)
    encoder_macs = next(r for r in api.summary(f"smp:{arch}", size, args=args, depth=1).layers
                        if r["name"] == "encoder")["macs"]
    assert report.layers[-1].cumulative_macs <= encoder_macs < report.totals["macs"]
    if arch not in ("PSPNet",):  # the last stage is the encoder's last map: all of its MACs, not the decoder's
        assert report.layers[-1].cumulative_macs == encoder_macs


def test_fpn_cli_names_no_padding_and_no_decoder() -> None:
    """The reported case: `stages smp:FPN --arg encoder_name=... --arg encoder_weights=None`."""
    pytest.importorskip("segmentation_models_pytorch")
    for encoder in ("resnet34", "efficientnet-b0"):
        result = run_cli("stages", "smp:FPN", "--arg", f"encoder_name={encoder}", "--arg", "encoder_weights=None",
                         "--input", "1,3,128,128", "--format", "json")
        assert result.exit_code == 0, result.output
        layers = json.loads(result.output)["layers"]
        assert [row["stride"] for row in layers] == [2, 4, 8, 16, 32]
        assert all(row["name"].startswith("encoder[") and row["cumulative_macs"] > 0 for row in layers)


def test_deeplab_heads_are_not_stages() -> None:
    """torchvision's DeepLabV3 runs its ASPP head at the backbone's output stride (8, dilated layer3/layer4):
    the stage there is the backbone's last map (`layer4`, 2048 channels), not the head's logits."""
    report = api.stages("tv:deeplabv3_resnet50", (1, 3, 64, 64))
    assert [(r.name, r.stride, r.channels) for r in report.layers] == [
        ("backbone.relu", 2, 64), ("backbone.layer1", 4, 256), ("backbone.layer4", 8, 2048)]
    backbone = next(r for r in api.summary("tv:deeplabv3_resnet50", (1, 3, 64, 64), depth=1).layers
                    if r["name"] == "backbone")
    assert report.layers[-1].cumulative_macs == backbone["macs"]


def test_json_csv_markdown_and_table() -> None:
    result = run_cli("stages", "resnet18", "--input", "1,3,64,64", "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["schema"] == 1 and document["model"] == "resnet18" and document["inputs"] == [[1, 3, 64, 64]]
    assert [list(row) for row in document["layers"]] == [list(STAGE_KEYS)] * 5
    assert [row["stride"] for row in document["layers"]] == [2, 4, 8, 16, 32]
    assert document["totals"]["stages"] == 5 and document["method"] == "trace"
    csv = run_cli("stages", "resnet18", "--input", "1,3,64,64", "--format", "csv")
    assert csv.exit_code == 0 and csv.output.splitlines()[0] == ",".join(STAGE_KEYS)
    assert csv.output.splitlines()[2].startswith("layer1,Sequential,4,64,1×64×16×16,")
    markdown = run_cli("stages", "resnet18", "--input", "1,3,64,64", "--format", "markdown")
    assert "| layer4 | Sequential | 32 | 512 | 1×512×2×2 |" in markdown.output
    table = run_cli("stages", "resnet18", "--input", "1,3,64,64")
    assert table.exit_code == 0 and "MACs so far" in table.output and "module depth 1" in table.output


def test_compare_stages_side_by_side() -> None:
    result = run_cli("compare", "resnet18", "mobilenet_v3_large", "--stages", "--input", "1,3,64,64",
                     "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["stages"] is True
    resnet, mobilenet = document["rows"]
    for row, model in ((resnet, "resnet18"), (mobilenet, "mobilenet_v3_large")):
        stages = api.stages(model, (1, 3, 64, 64)).layers
        assert {f"s{r.stride}_{part}": value for r in stages for part, value in (
            ("name", r.name), ("channels", r.channels), ("macs", r.cumulative_macs), ("rf", max(r.rf)))} == {
            key: value for key, value in row.items() if key[0] == "s" and key[1].isdigit()}
    assert (resnet["s8_name"], resnet["s8_channels"], mobilenet["s8_name"], mobilenet["s8_channels"]) == (
        "layer2", 128, "features.6", 40)
    assert resnet["macs"] == api.summary("resnet18", (1, 3, 64, 64), depth=0).totals["macs"]  # the usual columns too
    table = run_cli("compare", "resnet18", "mobilenet_v3_large", "--stages", "--input", "1,3,64,64")
    assert table.exit_code == 0, table.output
    assert "Backbone stages" in table.output and "s16 ch" in table.output and "s32 MACs" in table.output
    frame = api.compare(["resnet18", "unet"], (1, 3, 64, 64), stages=True)
    assert str(frame["s32_channels"].dtype) == "Int64"  # unet has no stride 32: kept as integers
    assert frame["s32_channels"].tolist()[0] == 512 and frame["s1_name"].tolist()[1] == "in_conv"


def test_compare_stages_reports(tmp_path: Path) -> None:
    md, csv = tmp_path / "stages.md", tmp_path / "stages.csv"
    result = run_cli("compare", "resnet18", "lenet5", "--stages", "-o", str(md), "-o", str(csv))
    assert result.exit_code == 0, result.output
    text = md.read_text()
    assert "# Backbone stages" in text and "| s4 ch | s4 MACs | s4 RF |" in text and "--stages" in text
    assert csv.read_text().splitlines()[0].count("s4_") == 4


def test_errors_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "mlp.py"
    path.write_text(MLP)
    assert_one_line_error(run_cli("stages", f"{path}:mlp", "--input", "1,16"), "spatial dims")
    assert_one_line_error(run_cli("stages", "nope"), "unknown model")
    assert_one_line_error(run_cli("stages", "resnet18", "--format", "nope"))
    with pytest.raises(InspectlabError, match="spatial dims"):
        api.stages(f"{path}:mlp", (1, 16))
    # images, but no module output keeps H and W: no stage
    assert_one_line_error(run_cli("stages", f"{path}:flat", "--input", "1,3,32,32"),
                          "no module output is a feature map")
    # in compare --stages, such a model's row keeps its other columns and says why it has no stages
    result = run_cli("compare", "resnet18", f"{path}:flat", "--stages", "--input", "1,3,32,32", "--format", "json")
    assert result.exit_code == 0, result.output
    resnet, flat = json.loads(result.output)["rows"]
    assert resnet["s32_channels"] == 512 and flat["error"] is None and flat["params"] == 3 * 32 * 32 * 4 + 4
    assert flat["s32_channels"] is None and "stages: no module output is a feature map" in flat["notes"]
