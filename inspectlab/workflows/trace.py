"""The Trace of a model: built on the meta device, recorded in one pass, with the one fallback to a real
run (a forward that needs values), always recorded as a note."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from inspectlab.core.shapes import InputSize
from inspectlab.tracing.build import paused_gc
from inspectlab.tracing.inputs import example_inputs, on_device, torch_dtype
from inspectlab.tracing.recorder import NeedsRealRun, record
from inspectlab.workflows.models import ModelOrSpec, build, input_shapes

if TYPE_CHECKING:
    from inspectlab.tracing.records import Trace


def trace(model_or_spec: ModelOrSpec, input_size: InputSize | None = None, *,
          input_data: Sequence[Any] | None = None, args: Mapping[str, Any] | None = None,
          device: str = "meta", dtype: str = "float32", backward: bool = False) -> Trace:
    """Record one pass of the model (the Trace of DESIGN.md): module tree, calls, ops and tensors.

    Runs on the meta device by default, so its cost does not depend on the input size; a model whose
    forward needs real values falls back to a real run on the CPU, and the Trace's notes say so.
    """
    built = build(model_or_spec, args, device) if isinstance(model_or_spec, str) else None
    model = built.module if built is not None else model_or_spec
    notes = list(built.notes) if built is not None else []
    data = list(input_data) if input_data is not None else None
    shapes = [tuple(t.shape) for t in data] if data is not None else input_shapes(model_or_spec, input_size)
    try:
        inputs = on_device(data, device) if data is not None else example_inputs(shapes, dtype, device)
        with paused_gc():
            result = record(model, inputs, device=device, backward=backward, dtype=torch_dtype(dtype))
    except NeedsRealRun as reason:
        real_device = "cpu" if device == "meta" else device
        if built is not None:
            rebuilt = build(model_or_spec, args, real_device)
            model, notes = rebuilt.module, list(rebuilt.notes)
        else:
            real_device = next((p.device.type for p in model.parameters()), "cpu")
        inputs = on_device(data, real_device) if data is not None else example_inputs(shapes, dtype, real_device)
        with paused_gc():
            result = record(model, inputs, device=real_device, backward=backward, dtype=torch_dtype(dtype))
        result.notes.append(f"the forward cannot run on the meta device ({reason}); ran on {real_device} instead")
    result.notes[:0] = notes
    return result
