"""Hands off the user's model (issue 13 §1): every public function, on models that a careless pass would
change, leaves the model bit-identical (values, flags, grads, hooks, cached tensor attributes), no meta tensor
in it, and the process's RNG, grad mode, default dtype and threads as they were — whether it returns or raises."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from inspectlab import api

SHAPE = (1, 3, 16, 16)


def _block() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))


def train_bn() -> nn.Module:
    return _block().train()


def mixed_modes() -> nn.Module:
    model = _block().train()
    model[1].eval()
    return model


def frozen() -> nn.Module:
    model = _block().eval()
    model[0].weight.requires_grad_(False)
    return model


def inplace_relu() -> nn.Module:
    model = _block().train()
    model[2] = nn.ReLU(inplace=True)
    return model


class Counted(nn.Sequential):
    """Carries a user's forward hook and pre-hook that count their calls."""

    def __init__(self) -> None:
        super().__init__(*_block())
        self.calls = {"pre": 0, "post": 0}
        self.register_forward_pre_hook(lambda module, args: self.calls.__setitem__("pre", self.calls["pre"] + 1))
        self[0].register_forward_hook(lambda module, args, out: self.calls.__setitem__("post", self.calls["post"] + 1))


class Caching(nn.Module):
    """Keeps its last input and output in plain attributes (not buffers)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = _block()
        self.last_input = torch.zeros(1)
        self.last_output: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.last_input = x
        self.last_output = self.body(x)
        return self.last_output


class DataDependent(nn.Module):
    """Branches on the input's values: the meta pass cannot run it, a real run can."""

    def __init__(self) -> None:
        super().__init__()
        self.body = _block().train()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return y * 2 if float(y.mean()) > 0 else y


class RaisesHalfway(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
        self.cache: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.cache = self.first(x)
        raise RuntimeError("this forward fails halfway")


MODELS: dict[str, Callable[[], nn.Module]] = {
    "train_bn": train_bn, "mixed_modes": mixed_modes, "frozen": frozen, "inplace_relu": inplace_relu,
    "user_hooks": Counted, "caching": Caching, "data_dependent": DataDependent, "raises_halfway": RaisesHalfway,
}

FUNCTIONS: dict[str, Callable[[nn.Module, Any], Any]] = {
    "summary": lambda m, tmp: api.summary(m, SHAPE),
    "summary_cpu_backward": lambda m, tmp: api.summary(m, SHAPE, device="cpu", backward=True),
    "flops": lambda m, tmp: api.flops(m, SHAPE),
    "flops_compare": lambda m, tmp: api.flops(m, SHAPE, compare=True),
    "trace": lambda m, tmp: api.trace(m, SHAPE),
    "receptive_field": lambda m, tmp: api.receptive_field(m, SHAPE),
    "rf_empirical": lambda m, tmp: api.rf(m, SHAPE, empirical=True),
    "graph": lambda m, tmp: api.graph(m, SHAPE),
    "latency": lambda m, tmp: api.latency(m, SHAPE, iters=1, warmup=0),
    "dump": lambda m, tmp: api.dump(m, SHAPE, layers=["*"], grads=True, out=str(tmp / "d.safetensors")),
    "compare": lambda m, tmp: api.compare([m], SHAPE),
    "sweep": lambda m, tmp: api.sweep(m, [16, 24], input_size=SHAPE),
    "stages": lambda m, tmp: api.stages(m, SHAPE),
    "compare_stages": lambda m, tmp: api.compare([m], SHAPE, stages=True),
}


def fingerprint(model: nn.Module, identities: bool = True) -> dict[str, Any]:
    """Everything a pass could change, as plain comparable values (`identities`: which tensor objects too)."""
    state: dict[str, Any] = {}

    def who(value: Any) -> Any:
        return id(value) if identities else None

    for name, module in model.named_modules():
        state[f"{name}.training"] = module.training
        for key, value in vars(module).items():
            if isinstance(value, torch.Tensor):
                state[f"{name}.__dict__.{key}"] = (who(value), value.device.type, value.detach().clone())
        for hooks in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_forward_hooks_with_kwargs"):
            state[f"{name}.{hooks}"] = len(getattr(module, hooks)) if not identities else \
                list(getattr(module, hooks).items())
    for name, param in model.named_parameters():
        state[f"{name}.param"] = (who(param), param.detach().clone(), param.requires_grad,
                                  None if param.grad is None else param.grad.clone())
    for name, buffer in model.named_buffers():
        state[f"{name}.buffer"] = (who(buffer), buffer.clone())
    return state


def process_state() -> tuple[Any, ...]:
    return (torch.random.get_rng_state(), torch.is_grad_enabled(), torch.get_default_dtype(), torch.get_num_threads())


def same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def no_meta_tensor(model: nn.Module) -> bool:
    tensors = [*model.parameters(), *model.buffers()]
    tensors += [v for m in model.modules() for v in vars(m).values() if isinstance(v, torch.Tensor)]
    return not any(t.is_meta for t in tensors)


@pytest.mark.parametrize("function", list(FUNCTIONS))
@pytest.mark.parametrize("kind", list(MODELS))
def test_the_model_and_the_process_are_left_as_they_were(kind: str, function: str, tmp_path) -> None:
    torch.manual_seed(0)
    model = MODELS[kind]()
    if kind == "user_hooks":  # a gradient from an earlier user step, which a pass must not touch
        model(torch.ones(SHAPE)).sum().backward()
    before, process = fingerprint(model), process_state()
    try:
        FUNCTIONS[function](model, tmp_path)
    except Exception:  # the model that raises halfway may make a function raise: the guarantees still hold
        assert kind == "raises_halfway", f"{function} raised on {kind}"
    after = fingerprint(model)
    changed = [key for key in before if key not in after or not same(before[key], after[key])]
    changed += [key for key in after if key not in before]
    assert not changed, f"{function} changed {changed}"
    assert no_meta_tensor(model)
    assert all(same(a, b) for a, b in zip(process, process_state(), strict=True))
    if kind == "user_hooks":  # the user's hooks fire exactly once per user forward afterwards
        counts = dict(model.calls)
        model(torch.ones(SHAPE))
        assert model.calls == {"pre": counts["pre"] + 1, "post": counts["post"] + 1}


@pytest.mark.parametrize("kind", list(MODELS))
def test_capture_leaves_only_what_the_users_own_forward_does(kind: str) -> None:
    """A capture adds hooks for its block and removes them, also when the forward raises: the model ends as
    the same forward leaves a copy that was never captured."""
    import copy

    torch.manual_seed(0)
    model = MODELS[kind]()
    reference = copy.deepcopy(model)
    for net, captured in ((model, True), (reference, False)):
        with api.capture(net, ["*"], grads=True) if captured else contextlib.nullcontext() as cap:
            try:
                out = net(torch.ones(SHAPE))
                if captured:
                    cap.backward(out.sum())
            except RuntimeError:
                pass
    got, expected = fingerprint(model, identities=False), fingerprint(reference, identities=False)
    assert got.keys() == expected.keys()
    assert [key for key in got if not same(got[key], expected[key])] == []


def test_real_runs_are_in_eval_mode_unless_asked():
    model = train_bn()
    eval_count = api.summary(model, SHAPE, device="cpu").totals["other_flops"]
    train_count = api.summary(model, SHAPE, device="cpu", train=True).totals["other_flops"]
    assert eval_count < train_count  # batch norm in training mode computes its statistics
    assert model.training
