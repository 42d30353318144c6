"""`memory --train`: one steady-state step estimated from meta traces, against PyTorch's memory profiler on a
real CPU step (runtime/memory_profile.py: the same step, measured after a warm-up step made the optimizer
state). Goals of docs/memory.md: the peak within 5 %, parameters, gradients and optimizer state exact.

The CPU runs use two intra-op threads: the configuration the kernel rules were measured in (with more,
oneDNN may split a weight gradient's reduction across threads, a buffer the rules do not size).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from inspectlab import api
from inspectlab.analysis.memory_kernels import KernelContext
from inspectlab.runtime.memory_profile import profile_memory, training_step
from inspectlab.tracing.train_step import checkpointed

pytestmark = pytest.mark.skipif(KernelContext.of_this_process().block is None,
                                reason="oneDNN's block is known for AVX-512 and AVX2 only")


@contextlib.contextmanager
def two_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _measured(name: str, shape: tuple[int, ...], optimizer: str, autocast: torch.dtype | None = None,
              checkpoint: list[str] | None = None) -> tuple[nn.Module, object]:
    torch.manual_seed(0)
    model = api.build_model(name, device="cpu")
    x = torch.randn(shape)
    with checkpointed(model, checkpoint or []):
        step = training_step(model, [x], optimizer, autocast=autocast)
        return model, profile_memory(step)


@pytest.mark.parametrize(("name", "shape", "optimizer"), [
    ("resnet18", (2, 3, 128, 128), "adam"),
    ("unet", (1, 3, 128, 128), "sgd"),
    ("mobilenet_v3_large", (4, 3, 160, 160), "adamw"),
])
def test_training_peak_matches_the_profiler(name: str, shape: tuple[int, ...], optimizer: str) -> None:
    with two_threads():
        report = api.memory(name, shape, train=True, optimizer=optimizer)
        model, measured = _measured(name, shape, optimizer)
    totals = report.totals
    assert set(totals) == {"params_bytes", "grads_bytes", "optimizer_bytes", "activations_bytes", "peak_bytes",
                           "peak_phase", "peak_op"}
    assert abs(totals["peak_bytes"] / measured.peak_bytes - 1) <= 0.05, (totals, measured.peak_bytes)
    # parameters, gradients and optimizer state: exact, by the profiler's categories and by hand
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    steps = sum(1 for p in model.parameters() if p.requires_grad) * 4  # Adam's step counts: float32 scalars
    assert totals["params_bytes"] == measured.most["parameter"] == trainable
    assert totals["grads_bytes"] == measured.most["gradient"] == trainable
    expected_state = {"sgd": 0, "adam": 2 * trainable + steps, "adamw": 2 * trainable + steps}[optimizer]
    assert totals["optimizer_bytes"] == measured.most.get("optimizer_state", 0) == expected_state
    # the op at the peak is the profiler's
    assert totals["peak_op"].split(".")[1] in {op.removeprefix("aten::") for op in measured.peak_ops}
    assert totals["peak_phase"] == ("optimizer" if optimizer == "adam" else "backward")


def test_momentum_state_is_one_copy_of_the_trainable_parameters() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    model[0].weight.requires_grad_(False)  # frozen: no gradient, no state
    trainable = sum(p.numel() * 4 for p in model.parameters() if p.requires_grad)
    everything = sum(p.numel() * 4 for p in model.parameters())
    totals = api.memory(model, (2, 3, 8, 8), train=True, optimizer="momentum").totals
    assert (totals["params_bytes"], totals["grads_bytes"], totals["optimizer_bytes"]) == (
        everything, trainable, trainable)
    assert api.memory(model, (2, 3, 8, 8), train=True, optimizer="sgd").totals["optimizer_bytes"] == 0


def test_saved_bytes_per_module_partition_the_activations() -> None:
    report = api.memory("resnet18", (2, 3, 64, 64), train=True, depth=2)
    root = report.layers[0]
    assert (root.name, root.depth, root.saved_bytes, root.share) == ("(root)", 0, report.totals["activations_bytes"], 1)
    top = [row for row in report.layers if row.depth == 1]
    assert sum(row.saved_bytes for row in top) == report.totals["activations_bytes"] > 0
    assert abs(sum(row.share for row in top) - 1) < 1e-9
    for parent in top:
        children = [row for row in report.layers if row.depth == 2 and row.name.startswith(parent.name + ".")]
        if children:
            assert sum(row.saved_bytes for row in children) == parent.saved_bytes
    # a BatchNorm saves its input and its batch statistics: N·C·H·W + 2·C floats
    bn1 = next(row for row in report.layers if row.name == "bn1")
    assert bn1.saved_bytes == (2 * 64 * 32 * 32 + 2 * 64) * 4


def test_autocast_keeps_float32_master_weights_and_bfloat16_activations() -> None:
    fp32 = api.memory("resnet18", (2, 3, 64, 64), train=True, optimizer="sgd")
    report = api.memory("resnet18", (2, 3, 64, 64), train=True, optimizer="sgd", amp="bf16")
    assert report.totals["params_bytes"] == report.totals["grads_bytes"] == fp32.totals["params_bytes"]
    # every activation a convolution or a norm saves is bfloat16: half the bytes (the pooling indices stay int64)
    assert 0.45 < report.totals["activations_bytes"] / fp32.totals["activations_bytes"] < 0.6
    # the bfloat16 copies of the convolutions' and the classifier's parameters: their own category
    cast = [p for n, p in api.build_model("resnet18").named_parameters() if p.dim() == 4 or n.startswith("fc.")]
    assert report.extra["weight_copy_bytes"] == 2 * sum(p.numel() for p in cast)
    assert fp32.extra["weight_copy_bytes"] == 0


@pytest.mark.slow
def test_autocast_step_matches_the_profiler() -> None:
    with two_threads():
        report = api.memory("resnet18", (2, 3, 64, 64), train=True, optimizer="sgd", amp="bf16")
        _, measured = _measured("resnet18", (2, 3, 64, 64), "sgd", autocast=torch.bfloat16)
    assert abs(report.totals["peak_bytes"] / measured.peak_bytes - 1) <= 0.05


def test_checkpointing_saves_only_the_inputs_of_checkpointed_modules() -> None:
    plain = api.memory("resnet18", (2, 3, 64, 64), train=True, optimizer="sgd")
    report = api.memory("resnet18", (2, 3, 64, 64), train=True, optimizer="sgd", grad_checkpoint=["layer*"])
    assert report.extra["grad_checkpoint"] == ["layer1", "layer2", "layer3", "layer4"]  # outermost matches only
    assert report.totals["activations_bytes"] < plain.totals["activations_bytes"]
    layers = {row.name: row.saved_bytes for row in report.layers}
    assert layers["layer2"] == 2 * 64 * 16 * 16 * 4  # a checkpointed module saves its input only
    assert layers["layer2.0"] == 0 and layers["bn1"] > 0
    assert report.totals["peak_bytes"] < plain.totals["peak_bytes"]


@pytest.mark.slow
def test_checkpointed_step_matches_the_profiler() -> None:
    with two_threads():
        report = api.memory("resnet18", (2, 3, 64, 64), train=True, optimizer="sgd", grad_checkpoint=["layer*"])
        _, measured = _measured("resnet18", (2, 3, 64, 64), "sgd", checkpoint=report.extra["grad_checkpoint"])
    assert abs(report.totals["peak_bytes"] / measured.peak_bytes - 1) <= 0.05


def test_a_users_module_is_left_as_it_was() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3)).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    params = list(model.parameters())
    for options in ({}, {"amp": "bf16"}, {"grad_checkpoint": ["1"]}, {"optimizer": "adam"}):
        api.memory(model, (2, 3, 12, 12), train=True, **options)
        assert not model.training and list(model.parameters()) == params
        assert all(p.grad is None and p.device.type == "cpu" for p in model.parameters())
        assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
        assert all("forward" not in vars(m) and not m._forward_hooks and not m._forward_pre_hooks
                   for m in model.modules())


def test_the_loss_of_one_named_output() -> None:
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"main": self.a(x), "aux": self.b(x)}

    both = api.memory(Two(), (2, 4), train=True, optimizer="sgd").totals
    main = api.memory(Two(), (2, 4), train=True, optimizer="sgd", loss="main").totals
    assert main["grads_bytes"] == both["grads_bytes"] // 2  # only `a` gets a gradient
