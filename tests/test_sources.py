"""Model sources from other libraries (`inspectlab/models/sources.py`): `timm:NAME` and `smp:ARCH`.

Every count is checked against the library's own model built normally on the CPU (sum of numel over its
parameters); list outputs (timm's `features_only`) go through summary, flops, rf and graph; default inputs
come from the model's own config; weights arguments that would download are refused in one line; a missing
library names its extra; and nothing ever reaches the network (`offline`: `socket` refuses every connection
and every name lookup, and the test fails if anything tried).
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from typing import Any

import pytest
import torch
from cli_helpers import assert_one_line_error, run_cli

from inspectlab import api
from inspectlab.analysis.params import count_params
from inspectlab.core.errors import InspectlabError
from inspectlab.models import registry
from inspectlab.workflows import models as model_workflow

timm = pytest.importorskip("timm")
smp = pytest.importorskip("segmentation_models_pytorch")

FEATURES = {"features_only": True, "out_indices": (1, 2, 3)}

# timm families at small sizes (a Swin shrunk through its own arguments), and features_only backbones.
TIMM_CASES = [
    ("resnet18", {}),
    ("resnet18", {"num_classes": 10, "in_chans": 1}),
    ("convnext_atto", {}),
    ("efficientnet_b0", {}),
    ("vit_tiny_patch16_224", {}),
    ("swin_tiny_patch4_window7_224", {"embed_dim": 32, "depths": (1, 1, 2, 1), "num_heads": (1, 2, 4, 8)}),
    ("resnet18", FEATURES),
    ("convnext_atto", FEATURES),
    ("efficientnet_b0", FEATURES),
]
SMP_CASES = [
    ("Unet", {"encoder_name": "resnet18", "classes": 2}),
    ("FPN", {"encoder_name": "efficientnet-b0", "classes": 3}),
    ("DeepLabV3Plus", {"encoder_name": "resnet18", "classes": 4}),
    ("Unet", {"encoder_name": "tu-resnet18"}),  # a timm encoder through smp's timm-universal wrapper
]




def _cpu_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta_build(spec: str, args: dict[str, Any]) -> tuple[torch.nn.Module, list[str]]:
    built = model_workflow.build(spec, dict(args))
    return built.module, built.notes


# ------------------------------------------------------------------------------------------ the guarantee

def test_the_offline_guard_catches_a_download(offline: list[Any]) -> None:
    """The guard itself: an HTTP request fails inside it, and is recorded."""
    with pytest.raises(OSError):
        urllib.request.urlopen("https://huggingface.co/timm/resnet18.a1_in1k", timeout=1)
    assert offline
    offline.clear()


def test_nothing_is_downloaded(offline: list[Any]) -> None:
    """Models of both sources built and traced with the network cut off (so are those of every count test
    below); refusals happen before any download is tried."""
    for spec, args in (("timm:resnet18", {}), ("timm:vit_tiny_patch16_224", {}), ("timm:convnext_atto", FEATURES),
                       ("smp:Unet", {"encoder_name": "resnet18"}), ("smp:FPN", {"encoder_name": "tu-resnet18"}),
                       ("smp:DeepLabV3Plus", {}), ("smp:DPT", {})):
        model, notes = _meta_build(spec, args)
        assert next(model.parameters()).is_meta and notes == [], spec
    assert api.summary("smp:Unet", (1, 3, 64, 64), args={"encoder_name": "resnet18"}).totals["params"] > 0
    assert api.summary("timm:resnet18", args=FEATURES).totals["params"] > 0
    for spec, args in (("timm:resnet18", {"pretrained": True}), ("smp:Unet", {"encoder_weights": "imagenet"}),
                       ("smp:Unet", {"encoder_name": "tu-resnet18", "encoder_weights": True})):
        with pytest.raises(InspectlabError, match="never downloads"):
            model_workflow.build(spec, args)


# ----------------------------------------------------------------------------------------- param counts

@pytest.mark.parametrize(("name", "args"), TIMM_CASES, ids=lambda v: v if isinstance(v, str) else None)
def test_timm_counts_equal_timm_on_the_cpu(name: str, args: dict[str, Any], offline: list[Any]) -> None:
    model, notes = _meta_build(f"timm:{name}", args)
    assert next(model.parameters()).is_meta and notes == []
    expected = _cpu_count(timm.create_model(name, pretrained=False, **args))
    assert count_params(model).total == expected


@pytest.mark.parametrize(("arch", "args"), SMP_CASES, ids=lambda v: v if isinstance(v, str) else None)
def test_smp_counts_equal_smp_on_the_cpu(arch: str, args: dict[str, Any], offline: list[Any]) -> None:
    model, notes = _meta_build(f"smp:{arch}", args)
    assert next(model.parameters()).is_meta and notes == []
    expected = _cpu_count(getattr(smp, arch)(encoder_weights=None, **args))
    assert count_params(model).total == expected


def test_the_documented_counts(offline: list[Any]) -> None:
    """The counts docs/models.md and examples/sources.sh show (and the spec's example)."""
    assert api.summary("timm:resnet50").totals["params"] == 25_557_032
    assert api.summary("smp:Unet", args={"encoder_name": "resnet34", "classes": 2}).totals["params"] == 24_436_514


def test_a_model_that_cannot_be_built_on_meta_falls_back_to_the_cpu(offline: list[Any]) -> None:
    """smp's own Mix Transformer reads `.item()` of a tensor while it is built: built on the CPU, with a note."""
    args = {"encoder_name": "mit_b0", "classes": 2}
    model, notes = _meta_build("smp:FPN", args)
    assert not next(model.parameters()).is_meta
    assert len(notes) == 1 and "cannot be built on the meta device" in notes[0] and "built on the CPU" in notes[0]
    assert count_params(model).total == _cpu_count(smp.FPN(encoder_weights=None, **args))
    report = api.summary("smp:FPN", (1, 3, 64, 64), args=args)
    assert any("built on the CPU" in note for note in report.extra["notes"])


def test_case_and_spec_forms() -> None:
    assert count_params(_meta_build("smp:unet", {"encoder_name": "resnet18"})[0]).total == \
        count_params(_meta_build("smp:Unet", {"encoder_name": "resnet18"})[0]).total
    recipe = registry.recipe("timm:resnet18.a1_in1k")  # a pretrained tag picks the config, not weights
    assert recipe.kwargs == {"pretrained": False}
    assert registry.recipe("smp:Unet").kwargs == {"encoder_weights": None}


# ------------------------------------------------------------------------------------------ list outputs

def test_features_only_list_outputs_through_every_analysis(offline: list[Any]) -> None:
    """timm's features_only model returns a list of feature maps: summary, flops, rf and graph take it."""
    report = api.summary("timm:resnet18", args=FEATURES, depth=1)
    by_name = {row.name: row for row in report.layers}
    assert [by_name[f"layer{i}"].output_shapes for i in (1, 2, 3)] == [
        [[1, 64, 56, 56]], [[1, 128, 28, 28]], [[1, 256, 14, 14]]]
    assert "layer4" not in by_name  # out_indices stop at stage 3: timm drops what follows
    flops = {row.convention: row.total for row in api.flops("timm:resnet18", args=FEATURES).layers}
    assert flops["inspectlab"] == report.totals["flops"] > 0
    fields = {row.name: row for row in api.receptive_field("timm:resnet18", args=FEATURES, depth=1).layers}
    assert [fields[f"(root)[{i}]"].stride for i in range(3)] == [[4, 4], [8, 8], [16, 16]]
    source = api.graph("timm:resnet18", args=FEATURES, depth=1).source
    assert all(f"out{i} [" in source for i in range(3)) and "out3 [" not in source


# ---------------------------------------------------------------------------------------- default inputs

@pytest.mark.parametrize(("spec", "shape"), [
    ("timm:resnet50", (1, 3, 224, 224)),
    ("timm:efficientnet_b3", (1, 3, 288, 288)),
    ("timm:vit_base_patch16_384", (1, 3, 384, 384)),
    ("timm:tinynet_e", (1, 3, 106, 106)),
    ("timm:resnet50.tv_in1k", (1, 3, 224, 224)),
    ("smp:Unet", (1, 3, 512, 512)),
    ("smp:deeplabv3plus", (1, 3, 512, 512)),
    ("smp:DPT", (1, 3, 224, 224)),  # its default encoder is a ViT made for 224×224
])
def test_default_inputs(spec: str, shape: tuple[int, ...]) -> None:
    assert registry.default_input(spec) == shape


def test_the_default_input_is_used() -> None:
    assert api.summary("timm:tinynet_e", depth=0).inputs == [[1, 3, 106, 106]]
    assert api.summary("timm:tinynet_e", args=FEATURES, depth=0).inputs == [[1, 3, 106, 106]]


def test_zoo_names_import_neither_torch_nor_the_sources() -> None:
    code = ("import sys\n"
            "from inspectlab.models import registry\n"
            "assert registry.default_input('unet') == (1, 3, 512, 512)\n"
            "registry.lookup('resnet50')\n"
            "loaded = {'torch', 'timm', 'segmentation_models_pytorch'} & set(sys.modules)\n"
            "assert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------ refusals

@pytest.mark.parametrize(("spec", "args", "fragment"), [
    ("timm:resnet18", {"pretrained": True}, "--arg pretrained=True would download weights"),
    ("timm:resnet18", {"checkpoint_path": "/no/such/file.pth"}, "is not a local file"),
    ("timm:resnet18", {"pretrained_weights": "imagenet"}, "names a checkpoint to download"),
    ("timm:hf-hub:timm/resnet18.a1_in1k", {}, "names a Hugging Face Hub repository"),
    ("smp:Unet", {"encoder_weights": "imagenet"}, "--arg encoder_weights='imagenet' names a checkpoint"),
    ("smp:Unet", {"encoder_weights": True}, "never downloads"),
    ("smp:Unet", {"encoder_weights": "/no/such/encoder.pth"}, "is not a local file"),
    ("smp:Unet", {"encoder_weights": "smp-hub/unet"}, "never downloads"),
    ("smp:Unet", {"aux_weights": "imagenet"}, "--arg aux_weights='imagenet' names a checkpoint"),
])
def test_weights_that_would_download_are_refused(spec: str, args: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InspectlabError) as caught:
        registry.recipe(spec, args)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_refusals_are_one_line_on_the_command_line() -> None:
    assert_one_line_error(run_cli("summary", "smp:Unet", "--arg", "encoder_weights=imagenet"),
                          "never downloads", "encoder_weights=PATH")
    assert_one_line_error(run_cli("summary", "timm:resnet50", "--arg", "pretrained=true"),
                          "never downloads", "checkpoint_path=PATH")


def test_unknown_names_get_the_closest() -> None:
    with pytest.raises(InspectlabError, match="unknown timm model 'resnet5'; did you mean resnet50"):
        registry.recipe("timm:resnet5")
    with pytest.raises(InspectlabError, match="architecture 'unett'; did you mean Unet"):
        registry.recipe("smp:unett")
    with pytest.raises(InspectlabError, match="its architectures: Unet, UnetPlusPlus"):
        registry.recipe("smp:xyzzy")


def test_local_weight_files_are_loaded(tmp_path: Any) -> None:
    """A local file is the one weights argument allowed: strict (every key and shape checked on meta too)."""
    from safetensors.torch import save_file

    reference = timm.create_model("resnet18", pretrained=False)
    checkpoint = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), checkpoint)
    assert _meta_build("timm:resnet18", {"checkpoint_path": str(checkpoint)})[1] == []
    loaded = model_workflow.build_model("timm:resnet18", {"checkpoint_path": str(checkpoint)}, device="cpu")
    assert torch.equal(loaded.conv1.weight, reference.conv1.weight)

    unet = smp.Unet(encoder_name="resnet18", encoder_weights=None)
    for path in (tmp_path / "encoder.pth", tmp_path / "encoder.safetensors"):
        if path.suffix == ".pth":
            torch.save(unet.encoder.state_dict(), path)
        else:
            save_file(unet.encoder.state_dict(), str(path))
        args = {"encoder_name": "resnet18", "encoder_weights": str(path)}
        assert _meta_build("smp:Unet", args)[1] == []
        loaded = model_workflow.build_model("smp:Unet", args, device="cpu")
        assert torch.equal(loaded.encoder.conv1.weight, unet.encoder.conv1.weight)
    with pytest.raises(InspectlabError, match="does not fit the model: .* missing"):  # a resnet34 is not a resnet18
        model_workflow.build("smp:Unet", {"encoder_name": "resnet34", "encoder_weights": str(path)})


# ---------------------------------------------------------------------------------------- missing extras

@pytest.mark.parametrize(("module", "spec", "message"), [
    ("timm", "timm:resnet50", "timm:resnet50 needs timm: pip install 'inspectlab[timm]'"),
    ("segmentation_models_pytorch", "smp:Unet",
     "smp:Unet needs segmentation-models-pytorch: pip install 'inspectlab[smp]'"),
])
def test_a_missing_library_names_its_extra(monkeypatch: pytest.MonkeyPatch, module: str, spec: str,
                                           message: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ModuleNotFoundError
    with pytest.raises(InspectlabError) as caught:
        registry.recipe(spec)
    assert str(caught.value) == message
    if module == "timm":
        with pytest.raises(InspectlabError, match=r"needs timm"):
            registry.default_input(spec)
    assert_one_line_error(run_cli("summary", spec), message)
