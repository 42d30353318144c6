"""No hidden global state: the GC, the RNG and sys.path are as they were after every call, and each fallback
(a CPU build, a real run) is a note of the report."""

from __future__ import annotations

import gc
import sys
import textwrap

import pytest
import torch

from inspectlab import api


def test_gc_and_rng_are_left_as_they_were():
    gc.enable()
    before = torch.random.get_rng_state()
    api.summary("lenet5")
    assert gc.isenabled()
    gc.disable()
    try:
        api.trace("lenet5")
        assert not gc.isenabled()  # a collector the caller had turned off stays off
    finally:
        gc.enable()
    api.rf("lenet5", (1, 1, 32, 32), depth=1, empirical=True)  # builds and runs a seeded copy for real
    api.dump("lenet5", (1, 1, 32, 32), layers=["conv1"])
    assert torch.equal(torch.random.get_rng_state(), before)


def _write_net(folder, width: int) -> str:
    folder.mkdir()
    (folder / f"helper_{folder.name}.py").write_text(f"WIDTH = {width}\n")
    (folder / "net.py").write_text(textwrap.dedent(f"""
        from torch import nn
        import helper_{folder.name}

        def build():
            return nn.Linear(helper_{folder.name}.WIDTH, 1)
    """))
    return f"{folder / 'net.py'}:build"


def test_two_files_with_one_stem_do_not_collide_and_sys_path_is_restored(tmp_path):
    path_before = list(sys.path)
    first, second = _write_net(tmp_path / "a", 3), _write_net(tmp_path / "b", 5)
    assert api.build_model(first).in_features == 3
    assert api.build_model(second).in_features == 5  # not the first file's module again
    assert api.build_model(first).in_features == 3
    assert sys.path == path_before


FACTORIES = """
import torch
from torch import nn


class BuiltWithValues(nn.Linear):
    def __init__(self):
        super().__init__(4, 4)
        if float(self.weight.detach().sum()) > 1e9:  # computes with its weights while building: not on meta
            raise AssertionError


class ValueDependent(nn.Linear):
    def __init__(self):
        super().__init__(4, 4)

    def forward(self, x):
        return super().forward(x) if float(x.sum()) > -1e9 else x  # a branch on values: not on meta


def built():
    return BuiltWithValues()


def dependent():
    return ValueDependent()
"""


@pytest.fixture()
def factories(tmp_path):
    source = tmp_path / "factories.py"
    source.write_text(FACTORIES)
    return source


def test_cpu_build_and_real_run_are_notes(factories):
    built = api.summary(f"{factories}:built", (1, 4))
    assert any("cannot be built on the meta device" in note and "built on the CPU" in note
               for note in built.extra["notes"])
    ran = api.summary(f"{factories}:dependent", (1, 4))
    assert any("cannot run on the meta device" in note for note in ran.extra["notes"])
    assert ran.totals["params"] == built.totals["params"] == 4 * 4 + 4
