"""Architecture graphs (inspectlab.analysis.graph + render.graphviz_render): counts derived by hand from each
architecture, skip and cross-branch edges, the ×k collapse, no dangling edges, real SVG/PNG rendering."""

from __future__ import annotations

import re
import shutil
import struct
import xml.etree.ElementTree as ET
from functools import cache

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from inspectlab import api
from inspectlab.analysis.graph import Graph, build_graph, module_kind, parse_show
from inspectlab.core.errors import InspectlabError
from inspectlab.render.formats import human_count
from inspectlab.render.graphviz_render import render_bytes, to_digraph

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed "
                               "(apt-get install graphviz); CI installs it")
SMALL = (1, 3, 64, 64)  # ResNet/HRNet/UNet strides divide 64: every size below is exact


@cache
def traced(model: str, shape: tuple[int, ...] = SMALL):
    return api.trace(model, shape)


def dot_counts(source: str) -> tuple[set[str], list[tuple[str, str]]]:
    """Declared node ids and edges of a dot source."""
    nodes = set(re.findall(r"^\s+(\w+) \[label=", source, flags=re.M))
    edges = re.findall(r"^\s+(\w+) -> (\w+)", source, flags=re.M)
    return nodes, edges


def by_name(graph: Graph) -> dict[str, str]:
    """Module name -> node id."""
    return {node.name: node.id for node in graph.nodes if node.name}


def edge_pairs(graph: Graph) -> set[tuple[str, str]]:
    names = {node.id: node.name or node.type for node in graph.nodes}
    return {(names[e.source], names[e.target]) for e in graph.edges}


# counts per model and depth (each derived from the architecture by hand) ----------------------------------
def test_resnet18_depth1_is_the_stage_chain():
    # input, conv1, bn1, relu, maxpool, layer1..4, avgpool, fc, output: one chain of 12 nodes, 11 edges
    graph = build_graph(traced("resnet18"), 1)
    assert [n.name or n.type for n in graph.nodes] == [
        "input", "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc", "output"]
    order = [n.id for n in graph.nodes]
    assert [(e.source, e.target) for e in graph.edges] == list(zip(order, order[1:], strict=False))
    source, target = by_name(graph)["avgpool"], by_name(graph)["fc"]
    flatten_edge = next(e for e in graph.edges if (e.source, e.target) == (source, target))
    assert flatten_edge.shape == (1, 512)  # torch.flatten is seen through: avgpool -> fc carries 1×512
    nodes, edges = dot_counts(to_digraph(graph).source)
    assert (len(nodes), len(edges)) == (12, 11)


def test_resnet18_depth2_collapses_the_identical_first_stage():
    # layer1 has no downsample (64 -> 64, stride 1), so its two BasicBlocks are identical: "BasicBlock ×2";
    # layers 2-4 start with a downsampling block: 2 nodes each. 1+4+1+2+2+2+2 = 14 ... + output = 15
    graph = build_graph(traced("resnet18"), 2)
    assert len(graph.nodes) == 15 and len(graph.edges) == 14
    run = graph.node(by_name(graph)["layer1.0–1"])
    assert (run.type, run.repeat) == ("BasicBlock", 2)
    flat = build_graph(traced("resnet18"), 2, collapse=False)
    assert len(flat.nodes) == 16 and len(flat.edges) == 15


def test_resnet50_depth2_layer3_is_first_block_then_bottleneck_x5():
    graph = build_graph(traced("resnet50"), 2)
    # input, stem (4), [layer1.0, ×2], [layer2.0, ×3], [layer3.0, ×5], [layer4.0, ×2], avgpool, fc, output
    assert len(graph.nodes) == 16 and len(graph.edges) == 15
    names = by_name(graph)
    run = graph.node(names["layer3.1–5"])
    assert (run.type, run.repeat, run.clusters) == ("Bottleneck", 5, ("layer3",))
    assert graph.node(names["layer3.0"]).repeat == 1
    # params of the run: 5 × Bottleneck(1024, 256), reference from torchvision's own model
    import torchvision

    with torch.device("meta"):
        reference = torchvision.models.resnet50()
    assert run.params == sum(p.numel() for p in reference.layer3[1:].parameters())
    assert graph.node(names["layer3.0"]).params == sum(p.numel() for p in reference.layer3[0].parameters())
    source = to_digraph(graph, title="t").source
    assert "Bottleneck ×5" in source and "layer3.1–5" in source
    flat = build_graph(traced("resnet50"), 2, collapse=False)
    assert len(flat.nodes) == 1 + 4 + (3 + 4 + 6 + 3) + 2 + 1
    assert {f"layer3.{i}" for i in range(6)} <= set(by_name(flat))


def test_resnet50_depth3_collapses_repeated_clusters():
    graph = build_graph(traced("resnet50"), 3)
    cluster = graph.clusters["layer3.1"]
    assert (cluster.name, cluster.type, cluster.repeat) == ("layer3.1–5", "Bottleneck", 5)
    assert not any(key.startswith("layer3.2") for key in graph.clusters)
    inside = [n for n in graph.nodes if "layer3.1" in n.clusters]
    # one Bottleneck: conv1, bn1, relu, conv2, bn2, relu#1, conv3, bn3, add, relu#2
    assert [n.type for n in inside] == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU",
                                        "Conv2d", "BatchNorm2d", "add", "ReLU"]
    assert "layer3.1–5</B> · Bottleneck ×5" in to_digraph(graph).source
    # the edge leaving the run leaves its kept block and carries layer3's output into layer4.0
    names = by_name(graph)
    leaving = [e for e in graph.edges if e.source == names["layer3.1.relu#2"]]
    assert {graph.node(e.target).name for e in leaving} == {"layer4.0.downsample", "layer4.0.conv1"}
    assert {e.shape for e in leaving} == {(1, 1024, 4, 4)}


def test_unet_depth1_has_its_four_skips():
    graph = build_graph(traced("unet"), 1)
    # input, in_conv, down1..4, up1..4, out_conv, output; 11 chain edges + 4 skips
    assert len(graph.nodes) == 12 and len(graph.edges) == 15
    skips = {("in_conv", "up4"), ("down1", "up3"), ("down2", "up2"), ("down3", "up1")}
    assert skips <= edge_pairs(graph)
    # skip shapes from the channel plan (base 64, doubling, stride 2 per Down): C×H×W of each encoder stage
    names = {n.id: n.name for n in graph.nodes}
    skip_shapes = {(names[e.source], names[e.target]): e.shape for e in graph.edges
                   if (names[e.source], names[e.target]) in skips}
    assert skip_shapes == {("in_conv", "up4"): (1, 64, 64, 64), ("down1", "up3"): (1, 128, 32, 32),
                           ("down2", "up2"): (1, 256, 16, 16), ("down3", "up1"): (1, 512, 8, 8)}


def test_unet_depth2_skips_end_in_the_concatenations():
    graph = build_graph(traced("unet"), 2)
    # in_conv: 6 layers; each Down: MaxPool2d + DoubleConv; each Up: Upsample, cat, DoubleConv; + out_conv,
    # input, output = 6 + 8 + 12 + 3 = 29. Edges: 6 into/inside in_conv, 2 per Down, 4 per Up (x, up->cat,
    # skip->cat, cat->conv), out_conv in and out: 6 + 8 + 16 + 2 = 32
    assert len(graph.nodes) == 29 and len(graph.edges) == 32
    cats = {n.id: n for n in graph.nodes if n.type == "cat"}
    assert len(cats) == 4 and all(n.kind == "merge" for n in cats.values())
    names = {n.id: n.name for n in graph.nodes}
    into_cats = {(names[e.source], cats[e.target].clusters[-1]) for e in graph.edges if e.target in cats}
    assert {("in_conv.5", "up4"), ("down1.1", "up3"), ("down2.1", "up2"), ("down3.1", "up1")} <= into_cats
    assert not any(n.type == "pad" for n in graph.nodes)  # F.pad is seen through


def test_hrnet_depth2_shows_parallel_branches_and_the_final_fusion():
    graph = build_graph(traced("hrnetv2_w32"), 2)
    # input, stem.0-1, layer1.0, layer1.1–3, transition1.0-1, stage2.0, transition2.2 (2.0/2.1 are Identity),
    # stage3 ×4, transition3.3, stage4 ×3, 3 interpolate, cat, head.0-3, output
    assert len(graph.nodes) == 21
    # 4 stem/layer1 + 2 + 2 + 3 (stage2 -> stage3 ×2, -> transition2.2) + 1 + 4 + 1 + 4 (stage4 -> cat,
    # interpolates) + 3 + 5 (cat -> head chain -> output)
    assert len(graph.edges) == 29
    names = by_name(graph)
    stage3, stage4 = names["stage3.0–3"], names["stage4.0–2"]
    assert graph.node(stage3).repeat == 4 and graph.node(stage4).repeat == 3
    # one edge per branch: 32, 64, 128 channels at strides 4, 8, 16 (16×16, 8×8, 4×4 for a 64×64 input)
    parallel = {e.shape for e in graph.edges if (e.source, e.target) == (stage3, stage4)}
    assert parallel == {(1, 32, 16, 16), (1, 64, 8, 8), (1, 128, 4, 4)}
    cat = next(n for n in graph.nodes if n.type == "cat")
    assert cat.shapes == [(1, 32 + 64 + 128 + 256, 16, 16)]
    into_cat = sorted(e.shape for e in graph.edges if e.target == cat.id)
    assert into_cat == sorted([(1, c, 16, 16) for c in (32, 64, 128, 256)])


def test_hrnet_depth3_shows_cross_resolution_fusion():
    graph = build_graph(traced("hrnetv2_w32"), 3)
    inside = [n for n in graph.nodes if "stage3.0" in n.clusters]
    types = [n.type for n in inside]
    # 3 branches: each target sums the 2 others (6 adds), upsampling from each lower resolution (0+1+2 = 3)
    assert types.count("add") == 6 and types.count("interpolate") == 3
    assert sum(1 for n in inside if ".fuse_layers." in n.name) == 6
    assert graph.clusters["stage3.0"].repeat == 4
    pairs = edge_pairs(graph)
    # branch 1 -> 1×1 conv -> upsample -> add into branch 0; branch 0 -> strided conv -> add into branch 1
    assert ("stage3.0.branches.1", "stage3.0.fuse_layers.0.1") in pairs
    assert ("stage3.0.fuse_layers.0.1", "interpolate") in pairs
    assert ("stage3.0.branches.0", "stage3.0.fuse_layers.1.0") in pairs
    assert ("stage3.0.branches.0", "add") in pairs and ("stage3.0.fuse_layers.1.0", "add") in pairs


def test_deeplabv3plus_aspp_branches_and_low_level_skip():
    graph = build_graph(traced("deeplabv3plus_resnet50"), 3)
    names = by_name(graph)
    branches = [f"classifier.aspp.convs.{i}" for i in range(5)]  # 1×1, three atrous 3×3, image pooling
    deep = names["backbone.layer4.1–2"]
    assert {e.target for e in graph.edges if e.source == deep} == {names[b] for b in branches}
    aspp_cat = next(n for n in graph.nodes if n.type == "cat" and n.clusters[-1] == "classifier.aspp")
    assert {e.source for e in graph.edges if e.target == aspp_cat.id} == {names[b] for b in branches}
    assert aspp_cat.shapes == [(1, 5 * 256, 4, 4)]  # output stride 16 on 64×64
    shallow = build_graph(traced("deeplabv3plus_resnet50"), 2)
    assert ("backbone.layer1", "classifier.low_project") in edge_pairs(shallow)
    # depth 1: the backbone (used through forward_features, an implicit call) is one box sending two
    # feature maps (layer4 at stride 16, layer1 at stride 4) to the head; the final resize is free code
    top = build_graph(traced("deeplabv3plus_resnet50"), 1)
    assert [n.name or n.type for n in top.nodes] == ["input", "backbone", "classifier", "interpolate", "output"]
    names = by_name(top)
    assert sorted(e.shape for e in top.edges if (e.source, e.target) == (names["backbone"], names["classifier"])) \
        == [(1, 256, 16, 16), (1, 2048, 4, 4)]
    assert len(top.edges) == 5


@pytest.mark.parametrize("model", ["resnet18", "unet", "hrnetv2_w32", "deeplabv3plus_resnet50",
                                   "lraspp_mobilenet_v3_large", "matting_mobilenetv3"])
@pytest.mark.parametrize("depth", [0, 1, 2, 3])
def test_no_dangling_edges(model, depth):
    graph = build_graph(traced(model), depth)
    nodes, edges = dot_counts(to_digraph(graph, show=("shapes",)).source)
    assert len(nodes) == len(graph.nodes) and len(edges) == len(graph.edges)
    assert all(a in nodes and b in nodes for a, b in edges)
    targets = {b for _, b in edges}
    sources = {a for a, _ in edges}
    assert all(n.id in targets for n in graph.nodes if n.kind != "input")
    assert all(n.id in sources for n in graph.nodes if n.kind != "output")
    assert all(set(n.clusters) <= set(graph.clusters) for n in graph.nodes)


def test_depth0_is_one_box():
    graph = build_graph(traced("resnet18"), 0)
    assert [n.type for n in graph.nodes] == ["input", "ResNet", "output"] and len(graph.edges) == 2


# dataflow through in-place ops, views and no-op modules ----------------------------------------------------
class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.skip = nn.Identity()
        self.c = nn.Conv2d(16, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.a(x))  # an in-place version of a's output
        z = self.b(y)
        z += self.skip(y)  # in-place add outside any module, through an Identity
        w = torch.cat([z, F.interpolate(y[:, :, ::2, ::2], scale_factor=2.0)], 1)  # slices are views
        return self.c(w).flatten(1) * 0.5  # flatten and a scalar multiply carry no structure


def test_edges_follow_inplace_versions_and_views():
    graph = build_graph(api.trace(Toy(), (1, 3, 8, 8)), 1)
    labels = [n.name or n.type for n in graph.nodes]
    assert labels == ["input", "a", "act", "b", "add_", "interpolate", "cat", "c", "output"]
    assert edge_pairs(graph) == {
        ("input", "a"), ("a", "act"), ("act", "b"), ("b", "add_"), ("act", "add_"), ("act", "interpolate"),
        ("add_", "cat"), ("interpolate", "cat"), ("cat", "c"), ("c", "output"),
    }
    shapes = {(e.source, e.target): e.shape for e in graph.edges}
    ids = {n.name or n.type: n.id for n in graph.nodes}
    assert shapes[ids["act"], ids["interpolate"]] == (1, 8, 4, 4)  # the strided slice it reads
    assert shapes[ids["c"], ids["output"]] == (1, 4 * 8 * 8)


def test_params_and_macs_against_formulas():
    graph = build_graph(traced("resnet18"), 1)
    names = by_name(graph)
    conv1, fc = graph.node(names["conv1"]), graph.node(names["fc"])
    assert conv1.params == 64 * 3 * 7 * 7 and fc.params == 512 * 1000 + 1000
    assert conv1.macs == 64 * 32 * 32 * 3 * 7 * 7  # N·C_out·H_out·W_out·C_in·k·k, 64×64 input -> 32×32
    assert fc.macs == 512 * 1000
    label = to_digraph(graph, show=("params", "flops")).source
    assert f"{human_count(64 * 3 * 7 * 7)} params" in label
    assert f"{human_count(64 * 32 * 32 * 3 * 7 * 7)} MACs" in label


def test_receptive_field_labels():
    graph = build_graph(traced("resnet18"), 1, receptive_field=True)
    names = by_name(graph)
    # conv 7×7/2 (r 7, j 2), max pool 3×3/2 (r 7 + 2·2 = 11, j 4); after global pooling: the whole input
    assert graph.node(names["conv1"]).rf == "RF 7×7 · stride 2"
    assert graph.node(names["maxpool"]).rf == "RF 11×11 · stride 4"
    assert graph.node(names["fc"]).rf == "RF global"
    assert "RF 11×11 · stride 4" in to_digraph(graph, show=("rf",)).source


def test_labels_kinds_and_options():
    assert [module_kind(t, n) for t, n in [("Conv2d", "conv1"), ("BatchNorm2d", "bn"), ("ReLU", "relu"),
                                           ("MaxPool2d", "pool"), ("Upsample", "up"), ("Linear", "fc"),
                                           ("Bottleneck", "layer1.0"), ("Conv2d", "out_conv")]] == [
        "conv", "norm", "activation", "pool", "resample", "head", "block", "head"]
    assert parse_show("shapes, flops") == {"shapes", "flops"}
    with pytest.raises(InspectlabError, match="unknown --show"):
        parse_show("params,colour")
    graph = build_graph(traced("resnet18"), 1)
    plain = to_digraph(graph).source
    labelled = re.compile(r"-> \w+ \[label=")
    assert len(labelled.findall(plain)) == 1  # only avgpool -> fc says something new (1×512 after flatten)
    assert len(labelled.findall(to_digraph(graph, show=("shapes",)).source)) == 11
    assert "rankdir=LR" in to_digraph(graph, rankdir="LR").source
    with pytest.raises(InspectlabError, match="rankdir"):
        to_digraph(graph, rankdir="XY")


def test_api_graph_returns_a_digraph():
    import graphviz

    digraph = api.graph("resnet18", SMALL, depth=1)
    assert isinstance(digraph, graphviz.Digraph)
    assert "resnet18 · input 1×3×64×64 · depth 1" in digraph.source


# real rendering ------------------------------------------------------------------------------------------
def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@needs_dot
def test_render_svg_and_png():
    graph = build_graph(traced("unet"), 1)
    digraph = to_digraph(graph)
    svg = ET.fromstring(render_bytes(digraph, "svg"))
    titles = {t.text for t in svg.iter("{http://www.w3.org/2000/svg}title")}
    names = by_name(graph)
    assert {n.id for n in graph.nodes} <= titles
    assert f"{names['in_conv']}->{names['up4']}" in titles  # the outermost skip is drawn
    width, height = png_size(render_bytes(digraph, "png"))
    assert width > 300 and height > 300


@needs_dot
def test_resnet50_depth2_fits_one_a4_page():
    digraph = api.graph("resnet50", (1, 3, 224, 224), depth=2)
    root = ET.fromstring(render_bytes(digraph, "svg"))
    width, height = (float(root.get(key).removesuffix("pt")) for key in ("width", "height"))
    assert width <= 595 and height <= 842  # A4 in points, at 100 %


def test_missing_dot_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    digraph = to_digraph(build_graph(traced("resnet18"), 1))
    with pytest.raises(InspectlabError, match="apt-get install graphviz"):
        render_bytes(digraph, "png")
    assert render_bytes(digraph, "dot").startswith(b"digraph")
