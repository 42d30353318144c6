"""The registry and the loader: zoo names and aliases, `--arg` values, `tv:NAME`, `file.py:factory` and
`package.module:factory`, the meta -> CPU fallback, the cached zoo counts, and the module tree.

Every count is checked against the numbers of issue 2, torchvision's own models, or a hand formula."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torchvision
from torch import nn

from inspectlab import api
from inspectlab.analysis.params import count_params
from inspectlab.core.arguments import parse_builder_args
from inspectlab.core.errors import InspectlabError
from inspectlab.models import registry
from inspectlab.workflows import models as model_workflow

# Issue 2's param counts: they pin each architecture.
SPEC = {
    "resnet50": 25_557_032,
    "mobilenet_v3_large": 5_483_032,
    "mobilenet_v3_small": 2_542_856,
    "lraspp_mobilenet_v3_large": 3_221_538,
    "hrnetv2_w32": 37_044_376,
    "hrnetv2_w48": 76_976_080,
    "unet": 17_263_042,
    "unet_transposed": 31_037_698,
    "deeplabv3_resnet50": 39_638_869,
    "deeplabv3plus_resnet50": 39_761_845,
    "deeplabv3plus_resnet101": 58_753_973,
    "deeplabv3plus_hrnetv2_w32": 33_918_517,
    "deeplabv3plus_hrnetv2_w48": 71_719_861,
    "matting_mobilenetv3": 3_748_633,
    "matting_resnet50": 26_890_461,
}

# LeNet-5 by hand: conv 1->6 5x5, conv 6->16 5x5, fc 400->120->84->10 (weights + biases).
LENET5 = (6 * 25 + 6) + (16 * 6 * 25 + 16) + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)


def _meta_count(builder, **kwargs) -> int:
    """An independent count: torchvision's own builder on the meta device, nothing downloaded."""
    with torch.device("meta"):
        return sum(p.numel() for p in builder(**kwargs).parameters())


def _torchvision_counts() -> dict[str, int]:
    seg = torchvision.models.segmentation
    return {
        **{f"resnet{d}": _meta_count(getattr(torchvision.models, f"resnet{d}")) for d in (18, 34, 101, 152)},
        "deeplabv3_resnet101": _meta_count(seg.deeplabv3_resnet101, weights_backbone=None),
        "deeplabv3_mobilenet_v3_large": _meta_count(seg.deeplabv3_mobilenet_v3_large, weights_backbone=None),
    }


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    """Each test counts for itself: the zoo-count cache lives in a temporary folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "inspectlab"


@pytest.fixture
def no_download(monkeypatch):
    """Any attempt to fetch weights fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args[:1]}")

    import torchvision._internally_replaced_utils as tv_utils
    import torchvision.models._api as tv_api

    for owner in (torch.hub, tv_api, tv_utils):
        monkeypatch.setattr(owner, "load_state_dict_from_url", refuse, raising=False)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


# --- the zoo through the registry ----------------------------------------------------------------------


def test_list_rows_match_the_spec_and_torchvision():
    rows = {row["name"]: row for row in api.list_models()}
    assert list(rows) == [entry.name for entry in registry.list_entries()]
    expected = {**SPEC, **_torchvision_counts(), "lenet5": LENET5}
    assert {name: rows[name]["params"] for name in expected} == expected
    for entry in registry.list_entries():
        row = rows[entry.name]
        assert row["default_input"] == list(entry.default_input)
        assert row["family"] == entry.family and row["description"] and row["aliases"] == list(entry.aliases)


@pytest.mark.parametrize("name", [entry.name for entry in registry.list_entries()])
def test_every_zoo_entry_builds_on_meta(name):
    model = api.build_model(name)
    params = list(model.parameters())
    assert params and all(p.is_meta for p in params)
    assert not model.training
    if name in SPEC:
        assert count_params(model).total == SPEC[name]


def test_aliases_and_case_resolve_to_their_entry():
    for entry in registry.list_entries():
        for alias in entry.aliases:
            assert registry.lookup(alias) is entry
    assert registry.lookup("UNet") is registry.lookup("unet")
    assert count_params(api.build_model("rvm")).total == SPEC["matting_mobilenetv3"]
    assert count_params(api.build_model("mobilenetv3_large")).total == SPEC["mobilenet_v3_large"]
    assert count_params(api.build_model("lenet")).total == LENET5


def test_unknown_name_suggests_the_closest():
    with pytest.raises(InspectlabError, match=r"unknown model 'hrnetv2_w23'; did you mean hrnetv2_w32"):
        registry.lookup("hrnetv2_w23")
    with pytest.raises(InspectlabError, match="inspectlab list"):
        api.build_model("qqqqqq")


# --- builder arguments ---------------------------------------------------------------------------------


def test_parse_builder_args_types():
    parsed = parse_builder_args(
        ["num_classes=5", "bilinear=false", "flag=True", "scale=0.5", "name=abc", "none_value=None", "k=(1, 2)"]
    )
    assert parsed == {"num_classes": 5, "bilinear": False, "flag": True, "scale": 0.5, "name": "abc",
                      "none_value": None, "k": (1, 2)}


@pytest.mark.parametrize("bad", ["num_classes", "=3", "1x=2", "a b=1"])
def test_malformed_args_raise(bad):
    with pytest.raises(InspectlabError, match="malformed --arg"):
        parse_builder_args([bad])


@pytest.mark.parametrize(("name", "args", "delta"), [
    # 1x1 classifier conv with bias: (C_in + 1) params per class
    ("unet", {"num_classes": 5}, (64 + 1) * (5 - 2)),
    ("deeplabv3plus_resnet50", {"num_classes": 5}, (256 + 1) * (5 - 21)),
    # fc 2048 -> classes with bias
    ("resnet50", {"num_classes": 5}, (2048 + 1) * (5 - 1000)),
    # the output stride moves dilations, not weights
    ("deeplabv3plus_resnet50", {"output_stride": 8}, 0),
])
def test_builder_args_change_the_count_by_hand_computed_amounts(name, args, delta):
    assert count_params(api.build_model(name, args)).total == SPEC[name] + delta


def test_args_override_what_the_name_fixes():
    # unet_transposed is unet with bilinear=False; the reverse through --arg
    assert count_params(api.build_model("unet", {"bilinear": False})).total == SPEC["unet_transposed"]
    assert count_params(api.build_model("unet_transposed", {"bilinear": True})).total == SPEC["unet"]


def test_unknown_arg_names_the_valid_ones():
    with pytest.raises(InspectlabError, match=r"'unet' takes no argument 'colour'; its arguments: .*num_classes"):
        api.build_model("unet", {"colour": 1})


# --- tv:NAME -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "args"), [
    ("resnet18", {}),
    ("resnet18", {"num_classes": 7}),
    ("mobilenet_v3_small", {}),
    ("deeplabv3_resnet50", {}),  # its default weights_backbone would download ImageNet weights
    ("lraspp_mobilenet_v3_large", {}),
])
def test_torchvision_models_build_on_meta_without_download(no_download, name, args):
    model = api.build_model(f"tv:{name}", args)
    assert all(p.is_meta for p in model.parameters())
    builder = torchvision.models.get_model_builder(name)
    reference = {"weights": None, **({"weights_backbone": None} if "segmentation" in builder.__module__ else {})}
    assert count_params(model).total == _meta_count(builder, **reference, **args)


def test_torchvision_deeplab_equals_the_zoo_spec(no_download):
    assert count_params(api.build_model("tv:deeplabv3_resnet50")).total == SPEC["deeplabv3_resnet50"]


def test_torchvision_model_that_fails_on_meta_is_built_on_cpu(no_download):
    # RegNet's constructor reads tensor values (.tolist()), which meta tensors do not have
    model = api.build_model("tv:regnet_y_400mf")
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    reference = torchvision.models.regnet_y_400mf(weights=None)
    assert count_params(model).total == sum(p.numel() for p in reference.parameters())


def test_unknown_torchvision_name():
    with pytest.raises(InspectlabError, match=r"unknown torchvision model 'resnet5'; did you mean resnet50"):
        api.build_model("tv:resnet5")


# --- user factories ------------------------------------------------------------------------------------

USER_MODELS = """
import torch
from torch import nn


def tiny(width=4):
    return nn.Sequential(nn.Conv2d(3, width, 3), nn.ReLU(), nn.Flatten(), nn.Linear(width, 2))


def needs_values():
    kernel = int(torch.tensor([3]).sum().item())  # a meta tensor has no value to read
    return nn.Conv2d(1, 1, kernel)


def frozen():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    model[0].weight.requires_grad_(False)
    for p in model[1].parameters():
        p.requires_grad_(False)
    return model


def broken():
    raise ValueError("the factory is broken")


def not_a_module():
    return 42
"""


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my_models.py"
    path.write_text(textwrap.dedent(USER_MODELS))
    return path


def _tiny_count(width: int) -> int:
    return (3 * width * 9 + width) + (width * 2 + 2)  # conv 3x3 with bias, linear with bias


def test_file_factory_loads_on_meta_with_args(user_file):
    model = api.build_model(f"{user_file}:tiny")
    assert all(p.is_meta for p in model.parameters())
    assert count_params(model).total == _tiny_count(4)
    assert count_params(api.build_model(f"{user_file}:tiny", {"width": 8})).total == _tiny_count(8)


def test_file_factory_may_be_a_class_importing_its_neighbour(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # the loader puts the file's folder on sys.path
    (tmp_path / "helper_blocks.py").write_text("from torch import nn\n\ndef head():\n    return nn.Linear(2, 2)\n")
    (tmp_path / "net.py").write_text(textwrap.dedent("""
        from torch import nn
        import helper_blocks

        class MyNet(nn.Module):
            def __init__(self, width=3):
                super().__init__()
                self.fc = nn.Linear(width, 2)
                self.head = helper_blocks.head()
    """))
    model = api.build_model(f"{tmp_path}/net.py:MyNet", {"width": 4})
    assert count_params(model).total == (4 * 2 + 2) + (2 * 2 + 2)


def test_package_module_factory_loads():
    assert count_params(api.build_model("inspectlab.models.unet:unet")).total == SPEC["unet"]
    model = api.build_model("inspectlab.models.unet:unet", {"bilinear": False})
    assert count_params(model).total == SPEC["unet_transposed"]


def test_factory_failing_on_meta_is_built_on_cpu(user_file):
    model = api.build_model(f"{user_file}:needs_values")
    assert model.weight.device.type == "cpu"
    assert count_params(model).total == 3 * 3 + 1


def test_meta_build_keeps_frozen_parameters(user_file):
    # in-place initialisers are skipped on meta, but requires_grad_ must still apply
    meta = count_params(api.build_model(f"{user_file}:frozen"))
    assert (meta.total, meta.trainable) == (3 * 4 * 9 + 4 + 2 * 4, 4)  # only the conv bias trains


@pytest.mark.parametrize(("spec", "message"), [
    (":broken", r"building '.*:broken' failed: ValueError: the factory is broken"),
    (":not_a_module", "returned int, not a torch.nn.Module"),
    (":missing", "has no callable 'missing'"),
])
def test_factory_errors(user_file, spec, message):
    with pytest.raises(InspectlabError, match=message):
        api.build_model(f"{user_file}{spec}")


def test_loading_errors(tmp_path):
    with pytest.raises(InspectlabError, match="no such file"):
        api.build_model(f"{tmp_path}/absent.py:f")
    bad = tmp_path / "bad.py"
    bad.write_text("raise ImportError('needs a package you lack')\n")
    with pytest.raises(InspectlabError, match="importing .*bad.py failed: ImportError: needs a package"):
        api.build_model(f"{bad}:f")
    with pytest.raises(InspectlabError, match="cannot import module 'no_such_package.models': No module named"):
        api.build_model("no_such_package.models:f")
    with pytest.raises(InspectlabError, match="malformed model spec"):
        api.build_model("inspectlab.models.unet:not-an-identifier")


# --- the cached zoo counts -----------------------------------------------------------------------------


def test_zoo_counts_are_cached_and_refreshed(fresh_cache, monkeypatch):
    monkeypatch.setattr(registry, "ZOO", tuple(e for e in registry.ZOO if e.name in ("lenet5", "unet")))
    first = model_workflow.zoo_rows()
    assert [row["params"] for row in first] == [LENET5, SPEC["unet"]]
    stored = json.loads((fresh_cache / "zoo_params.json").read_text())
    assert stored["params"] == {"lenet5": LENET5, "unet": SPEC["unet"]}

    build_model = model_workflow.build_model

    def refuse(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(model_workflow, "build_model", refuse)
    assert model_workflow.zoo_rows() == first
    monkeypatch.setattr(model_workflow, "build_model", build_model)

    # a stale key, or a damaged file, is counted again
    (fresh_cache / "zoo_params.json").write_text(json.dumps({"key": "old", "params": {"lenet5": 1, "unet": 1}}))
    assert model_workflow.zoo_rows() == first
    (fresh_cache / "zoo_params.json").write_text("{not json")
    assert model_workflow.zoo_rows() == first


def test_list_on_a_warm_cache_does_not_import_torch(fresh_cache):
    # a cache with marker counts: the command must print them without importing torch
    fresh_cache.mkdir(parents=True)
    marker = {entry.name: position for position, entry in enumerate(registry.ZOO)}
    cache = {"key": model_workflow._zoo_fingerprint(), "params": marker}
    (fresh_cache / "zoo_params.json").write_text(json.dumps(cache))
    code = (
        "import sys\n"
        "from inspectlab.cli import app\n"
        "app(['list', '--format', 'json'], standalone_mode=False)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(fresh_cache.parent)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert {row["name"]: row["params"] for row in json.loads(done.stdout)} == marker


# --- the module tree -----------------------------------------------------------------------------------


def test_tree_totals_add_up():
    model = api.build_model("deeplabv3plus_resnet50")
    nodes = api.tree(model)
    assert nodes[0].name == "(root)" and nodes[0].total_params == SPEC["deeplabv3plus_resnet50"]
    assert len(nodes) == len(list(model.modules()))  # nothing shared in this model: every module once
    children: dict[str, int] = {}
    for node in nodes[1:]:
        parent = node.name.rpartition(".")[0] or "(root)"
        children[parent] = children.get(parent, 0) + node.total_params
    for node in nodes:
        assert node.own_params + children.get(node.name, 0) == node.total_params, node.name


def test_tree_depth_limits_the_nodes():
    model = api.build_model("unet")
    nodes = api.tree("unet", depth=1)
    assert [n.name for n in nodes[1:]] == [name for name, _ in model.named_children()]
    assert max(n.depth for n in nodes) == 1
    assert [n.name for n in api.tree("unet", depth=0)] == ["(root)"]


def test_tree_counts_a_shared_module_once():
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(3, 4)
            self.b = self.a  # registered twice under one parent
            self.seq = nn.Sequential(self.a, nn.Linear(4, 2))  # and once more under another

    nodes = {node.name: node for node in api.tree(Shared())}
    assert nodes["(root)"].total_params == (3 * 4 + 4) + (4 * 2 + 2)
    assert nodes["seq"].total_params == (3 * 4 + 4) + (4 * 2 + 2)
    assert "b" not in nodes  # the same module under a second name is not a second node
