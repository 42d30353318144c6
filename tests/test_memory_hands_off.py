"""Hands off the user's model for `memory` too: the models of tests/test_hands_off.py that a careless pass
would change, under every mode of the command (an inference trace, a training step traced with its optimizer
and autograd, on fake CPU tensors under autocast, with activation checkpointing, the budget's traces), leave
the model bit-identical and the process as it was."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from test_hands_off import MODELS, SHAPE, fingerprint, no_meta_tensor, process_state, same
from torch import nn

from inspectlab import api
from inspectlab.core.errors import InspectlabError

FUNCTIONS: dict[str, Callable[[nn.Module], Any]] = {
    "inference": lambda m: api.memory(m, SHAPE),
    "train_autocast": lambda m: api.memory(m, SHAPE, train=True, amp="bf16", optimizer="momentum"),
    "train_checkpoint": lambda m: api.memory(m, SHAPE, train=True, grad_checkpoint=["*"]),
    "train_budget": lambda m: api.memory(m, SHAPE, train=True, optimizer="sgd", budget=2**20, depth=0),
}


@pytest.mark.parametrize("function", list(FUNCTIONS))
@pytest.mark.parametrize("kind", list(MODELS))
def test_memory_leaves_the_model_and_the_process_as_they_were(kind: str, function: str) -> None:
    torch.manual_seed(0)
    model = MODELS[kind]()
    if kind == "user_hooks":  # a gradient from an earlier user step, which the estimate must not touch
        model(torch.ones(SHAPE)).sum().backward()
    before, process = fingerprint(model), process_state()
    try:
        FUNCTIONS[function](model)
    except InspectlabError as error:  # a forward that fails, or needs values (a training step is traced on meta)
        assert kind == "raises_halfway" or (kind == "data_dependent" and "meta" in str(error)), error
    except RuntimeError:
        assert kind == "raises_halfway"
    after = fingerprint(model)
    changed = [key for key in before if key not in after or not same(before[key], after[key])]
    changed += [key for key in after if key not in before]
    assert not changed, f"{function} changed {changed}"
    assert no_meta_tensor(model) and all("forward" not in vars(m) for m in model.modules())
    assert all(same(a, b) for a, b in zip(process, process_state(), strict=True))
