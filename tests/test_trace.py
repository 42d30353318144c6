"""The trace engine: what it records, and that the user's model is left exactly as it was."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from inspectlab import api
from inspectlab.tracing.recorder import ModelRejectedInput


class Tiny(nn.Module):
    """A reused ReLU, functional ops in forward, an in-place op, and nested dict/list outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.inplace = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> dict:
        y = self.act(self.conv(x))
        z = self.inplace(self.act(self.conv2(y)) - 1)
        w = F.interpolate(z, scale_factor=2, mode="bilinear")
        return {"out": w, "aux": [y + 1, torch.cat([y, z], 1)]}


class Raises(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_module_calls_reuse_and_nested_outputs() -> None:
    trace = api.trace(Tiny(), (2, 3, 16, 16))
    act_calls = trace.calls_of("act")
    assert [c.call for c in act_calls] == [0, 1]
    assert [c.label for c in act_calls] == ["act", "act#1"]
    assert trace.shapes(trace.outputs) == [[2, 8, 32, 32], [2, 8, 16, 16], [2, 16, 16, 16]]
    root = trace.calls[0]
    assert root.name == "" and root.depth == 0 and trace.calls[1].parent == 0


def test_functional_ops_are_attributed_to_the_running_module() -> None:
    trace = api.trace(Tiny(), (1, 3, 16, 16))
    upsample = [op for op in trace.ops if "upsample_bilinear2d" in op.name]
    assert len(upsample) == 1
    assert upsample[0].module_call == 0 and upsample[0].function == "interpolate"
    assert any(op.packet == "aten.cat" and op.module_call == 0 for op in trace.ops)
    conv = next(op for op in trace.ops if op.packet == "aten.convolution")
    assert trace.calls[conv.module_call].name == "conv"
    assert conv.args["stride"] == [1, 1] and conv.args["padding"] == [1, 1]


def test_dataflow_producers_consumers_and_inplace_versions() -> None:
    trace = api.trace(Tiny(), (1, 3, 16, 16))
    conv = next(op for op in trace.ops if op.packet == "aten.convolution")
    produced = trace.tensors[conv.outputs[0]]
    assert produced.producer == conv.index
    assert trace.ops[produced.consumers[0]].packet == "aten.relu"
    inplace = next(op for op in trace.ops if op.name == "aten.relu_.default")
    version = trace.tensors[inplace.outputs[0]]
    assert inplace.inplace and version.alias_of == inplace.inputs[0]
    assert version.storage == trace.tensors[inplace.inputs[0]].storage


def test_model_is_not_modified() -> None:
    model = Tiny().train()
    model.conv2.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    api.trace(model, (1, 3, 16, 16))
    api.trace(model, (1, 3, 16, 16), device="cpu", backward=True)
    assert model.training and not model.conv2.weight.requires_grad and model.conv.weight.requires_grad
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert _hook_count(model) == 0


def test_hooks_removed_when_forward_raises() -> None:
    model = Raises()
    with pytest.raises(ModelRejectedInput, match="boom"):
        api.trace(model, (1, 3, 8, 8), device="cpu")
    assert _hook_count(model) == 0


def test_meta_cost_does_not_depend_on_input_size() -> None:
    trace = api.trace("unet", (1, 3, 4096, 4096), args={"base_c": 8})
    assert trace.device == "meta"
    assert trace.shapes(trace.outputs) == [[1, 2, 4096, 4096]]


def test_value_dependent_forward_falls_back_to_a_real_run() -> None:
    class Gate(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2 if x.sum() > 0 else x

    trace = api.trace(Gate(), (1, 3, 4, 4))
    assert trace.device == "cpu"
    assert "meta" in trace.notes[0]


def test_rejected_input_names_the_layer_and_shape() -> None:
    with pytest.raises(ModelRejectedInput, match=r"conv1 \(Conv2d\) rejected input 1×4×32×32"):
        api.trace("resnet18", (1, 4, 32, 32))
    with pytest.raises(ModelRejectedInput, match=r"MaxPool2d\) rejected input 1×512×1×1"):
        api.trace("unet", (1, 3, 8, 8))


def test_backward_pass_is_recorded() -> None:
    trace = api.trace(Tiny(), (1, 3, 8, 8), backward=True)
    phases = {op.phase for op in trace.ops}
    assert phases == {"forward", "objective", "backward"}
    assert any(op.packet == "aten.convolution_backward" for op in trace.ops if op.phase == "backward")


def test_multiple_inputs_and_5d_video_input() -> None:
    trace = api.trace("matting_mobilenetv3", (1, 2, 3, 64, 64))
    fgr, pha = trace.shapes(trace.outputs)[:2]
    assert fgr == [1, 2, 3, 64, 64] and pha == [1, 2, 1, 64, 64]


def test_module_used_through_another_method_gets_an_implicit_call() -> None:
    """DeepLab runs `backbone.forward_features(x)`: the backbone's hooks never fire, its children do."""
    trace = api.trace("deeplabv3plus_resnet50", (1, 3, 64, 64))
    backbone = trace.calls_of("backbone")
    assert len(backbone) == 1 and backbone[0].implicit
    assert trace.shapes(backbone[0].inputs) == [[1, 3, 64, 64]]
    assert trace.shapes(backbone[0].outputs) == [[1, 256, 16, 16], [1, 2048, 4, 4]]
    assert all(trace.calls[c.parent].name == "backbone" for c in trace.calls if c.name.count(".") == 1
               and c.name.startswith("backbone."))
    for op in trace.ops:  # every op still lies inside the call it is attributed to
        if op.module_call is not None:
            assert trace.calls[op.module_call].first_op <= op.index < trace.calls[op.module_call].end_op
    report = api.summary("deeplabv3plus_resnet50", (1, 3, 64, 64), depth=1)
    assert [row["name"] for row in report.layers] == ["backbone", "classifier"]
    assert sum(row["macs"] for row in report.layers) == report.totals["macs"]


def test_dtype_applies_to_stand_ins_not_to_the_model() -> None:
    model = nn.Conv2d(3, 4, 3)
    for device in ("meta", "cpu"):
        report = api.summary(model, (1, 3, 8, 8), dtype="bfloat16", device=device)
        assert report.totals["param_bytes"] == (3 * 4 * 9 + 4) * 2
        assert report.totals["input_bytes"] == 3 * 8 * 8 * 2
    assert model.weight.dtype == torch.float32 and model.weight.device.type == "cpu"


class SplitNorm(nn.Module):
    """Batch norm, in-place and out-of-place activations, elementwise ops, upsampling and a split: the ops
    the meta pass answers without torch's meta code (inspectlab/tracing/meta_shortcuts.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.Hardswish(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.act(self.bn(self.conv(x))).split(4, dim=1)
        y = torch.relu_(a * b) + F.hardsigmoid(a) - torch.sigmoid(b) / 2
        y = F.gelu(y) * 3 + F.silu(y).add(1, alpha=2)
        up = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
        return F.interpolate(up, size=(5, 11), mode="nearest") + 1.5


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("training", [False, True])
def test_meta_pass_records_what_a_real_run_records(training: bool, layout: torch.memory_format) -> None:
    model = SplitNorm().train(training)
    x = torch.randn(2, 3, 9, 7).to(memory_format=layout)
    meta, real = api.trace(model, input_data=[x]), api.trace(model, input_data=[x], device="cpu")
    assert meta.device == "meta" and real.device == "cpu"
    assert [op.name for op in meta.ops] == [op.name for op in real.ops]
    assert [(t.shape, t.dtype, t.alias_of, t.storage) for t in meta.tensors.values()] == \
        [(t.shape, t.dtype, t.alias_of, t.storage) for t in real.tensors.values()]


def test_every_piece_of_a_split_is_a_view_of_its_input() -> None:
    trace = api.trace(SplitNorm(), (1, 3, 8, 8))
    split = next(op for op in trace.ops if op.packet == "aten.split")
    pieces = [trace.tensors[t] for t in split.outputs]
    assert len(pieces) == 2
    assert all(p.alias_of == split.inputs[0] and p.storage == trace.tensors[split.inputs[0]].storage for p in pieces)


def test_batch_norm_with_the_wrong_channel_count_is_rejected_on_meta() -> None:
    model = nn.Sequential(nn.Conv2d(3, 6, 1), nn.BatchNorm2d(8))
    with pytest.raises(ModelRejectedInput, match=r"1 \(BatchNorm2d\) rejected input 1×6×4×4"):
        api.trace(model, (1, 3, 4, 4))


def test_garbage_collector_is_restored_after_a_trace() -> None:
    import gc

    assert gc.isenabled()
    api.summary(SplitNorm(), (1, 3, 8, 8))
    with pytest.raises(ModelRejectedInput):
        api.trace(Raises(), (1, 3, 8, 8))
    assert gc.isenabled()
    gc.disable()
    try:
        api.trace(SplitNorm(), (1, 3, 8, 8))
        assert not gc.isenabled()
    finally:
        gc.enable()
