"""The meta-device shortcuts give the tensor torch itself would give: same shape, strides and dtype."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from inspectlab.tracing.meta_shortcuts import SHORTCUTS

aten = torch.ops.aten
CL = torch.channels_last


def _t(*shape: int, layout: torch.memory_format = torch.contiguous_format, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape).to(dtype=dtype, memory_format=layout)


CASES: list[tuple[Any, tuple[Any, ...], dict[str, Any], bool]] = [  # op, args, kwargs, the shortcut answers it
    (aten.add.Tensor, (_t(2, 3, 4, 5), _t(2, 3, 4, 5)), {"alpha": 2}, True),
    (aten.add.Tensor, (_t(2, 3, 4, 5, layout=CL), _t(2, 3, 4, 5, layout=CL)), {}, True),
    (aten.mul.Tensor, (_t(2, 3, 4, 5), _t(1, 3, 1, 1)), {}, True),  # broadcast, contiguous
    (aten.mul.Tensor, (_t(2, 3, 4, 5, layout=CL), _t(1, 3, 1, 1)), {}, False),  # mixed layouts: torch decides
    (aten.sub.Tensor, (_t(2, 3), _t(2, 3, dtype=torch.float64)), {}, False),  # dtype promotion
    (aten.div.Tensor, (_t(4, 1), _t(1, 6)), {}, True),
    (aten.rsub.Scalar, (_t(2, 3, 4, 4), 1), {}, True),
    (aten.mul.Scalar, (_t(2, 3), 0.5), {}, True),
    (aten.add.Tensor, (_t(2, 3).to(torch.int64), _t(2, 3).to(torch.int64)), {}, False),  # integers: not covered
    (aten.hardsigmoid.default, (_t(2, 8, 3, 3, layout=CL),), {}, True),
    (aten.relu.default, (_t(5, 7),), {}, True),
    (aten.clamp.default, (_t(5, 7), 0.0, 1.0), {}, True),
    (aten.gelu.default, (_t(5, 7),), {"approximate": "tanh"}, True),
    (aten.relu_.default, (_t(2, 3, 4, 4),), {}, True),
    (aten.cat.default, ([_t(2, 3, 4, 5), _t(2, 1, 4, 5)], 1), {}, True),
    (aten.cat.default, ([_t(2, 3, 4, 5, layout=CL), _t(2, 1, 4, 5, layout=CL)], 1), {}, True),
    (aten.cat.default, ([_t(2, 3, 4, 5, layout=CL), _t(2, 2, 4, 5)], 1), {}, False),
    (aten.cat.default, ([_t(3, 4), _t(5, 4)], -2), {}, True),
    (aten.mean.dim, (_t(2, 8, 6, 6), [-1, -2], True), {}, True),
    (aten.mean.dim, (_t(2, 8, 6, 6), [2]), {}, True),
    (aten.addmm.default, (_t(10), _t(4, 7), _t(7, 10)), {}, True),
    (aten.upsample_bilinear2d.default, (_t(2, 3, 5, 7), [10, 15], False), {}, True),
    (aten.upsample_bilinear2d.default, (_t(2, 3, 5, 7, layout=CL), [9, 3], True), {}, True),
    (aten.upsample_nearest2d.default, (_t(1, 4, 5, 7), [11, 13]), {}, True),
]


def _meta(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return torch.empty_strided(value.shape, value.stride(), dtype=value.dtype, device="meta")
    if isinstance(value, list):
        return [_meta(v) for v in value]
    return value


def _layout(result: Any) -> Any:
    if isinstance(result, torch.Tensor):
        return tuple(result.shape), result.stride(), result.dtype
    return [_layout(r) for r in result]


@pytest.mark.parametrize(("op", "args", "kwargs", "answered"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_shortcut_gives_what_torch_gives(op: Any, args: tuple, kwargs: dict, answered: bool) -> None:
    expected = op(*[a.clone() if isinstance(a, torch.Tensor) else a for a in args], **kwargs)
    result = SHORTCUTS[str(op)](*[_meta(a) for a in args], **kwargs)
    if not answered:
        assert result is NotImplemented
        return
    assert result is not NotImplemented
    assert _layout(result) == _layout(expected)


@pytest.mark.parametrize(("op", "args"), [
    (aten.native_batch_norm.default, (_t(2, 6, 4, 4), _t(6), _t(6), _t(6), _t(6).abs(), False, 0.1, 1e-5)),
    (aten.native_batch_norm.default, (_t(2, 6, 4, 4, layout=CL), _t(6), _t(6), _t(6), _t(6).abs(), True, 0.1, 1e-5)),
    (aten._native_batch_norm_legit_no_training.default, (_t(2, 6, 3), _t(6), _t(6), _t(6), _t(6).abs(), 0.1, 1e-5)),
])
def test_batch_norm_shortcut_gives_what_torch_gives(op: Any, args: tuple) -> None:
    expected = op(*[a.clone() if isinstance(a, torch.Tensor) else a for a in args])
    assert _layout(SHORTCUTS[str(op)](*[_meta(a) for a in args])) == _layout(expected)


def test_a_wrong_size_is_still_refused() -> None:
    with pytest.raises(RuntimeError, match="running_mean should contain 6 elements not 4"):
        SHORTCUTS["aten.native_batch_norm.default"](*[_meta(a) for a in (_t(1, 6, 2, 2), None, None, _t(4), _t(4))],
                                                    False, 0.1, 1e-5)
    with pytest.raises(RuntimeError, match="greater than 0"):
        SHORTCUTS["aten.upsample_bilinear2d.default"](_meta(_t(1, 2, 3, 3)), [0, 4], False)
    assert SHORTCUTS["aten.add.Tensor"](_meta(_t(2, 3)), _meta(_t(4, 3))) is NotImplemented  # torch raises
