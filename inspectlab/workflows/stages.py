"""stages: the feature pyramid of a backbone from one Trace (`inspectlab.analysis.stages`), with the stages a
timm `features_only` model names itself (its `feature_info`), which needs the built module."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from inspectlab.analysis.flops import FlopCount
from inspectlab.analysis.receptive_field import receptive_fields
from inspectlab.analysis.report import Report
from inspectlab.analysis.stages import GivenStage, StageRow, stage_report
from inspectlab.core.shapes import InputSize
from inspectlab.tracing.records import Trace
from inspectlab.workflows.models import ModelOrSpec, build, model_name
from inspectlab.workflows.trace import trace


def stages(model_or_spec: ModelOrSpec, input_size: InputSize | None = None, *,
           input_data: Sequence[Any] | None = None, args: Mapping[str, Any] | None = None,
           weights: str | None = None, strict: bool = True) -> Report[StageRow]:
    """One row per stride of the model's feature pyramid (docs/stages.md): the stage's module, stride,
    channels, output shape, receptive field, and the MACs and parameters up to it."""
    recorded = trace(model_or_spec, input_size, input_data=input_data, args=args, weights=weights, strict=strict)
    return stages_of(recorded, model_or_spec, args, model_name(model_or_spec))


def stages_of(recorded: Trace, model_or_spec: ModelOrSpec, args: Mapping[str, Any] | None, label: str,
              count: FlopCount | None = None) -> Report[StageRow]:
    """The stages of a model already traced (compare --stages reuses its one trace)."""
    return stage_report(recorded, receptive_fields(recorded), label, feature_info(model_or_spec, args), count)


def feature_info(model_or_spec: ModelOrSpec, args: Mapping[str, Any] | None = None) -> list[GivenStage] | None:
    """The stages a timm `features_only` model names (`feature_info.get_dicts()`: module, channels,
    reduction), or None. A spec is built (on the meta device) only for `timm:NAME` with `features_only`."""
    if isinstance(model_or_spec, str):
        if not (model_or_spec.startswith("timm:") and _truthy((args or {}).get("features_only"))):
            return None
        module = build(model_or_spec, args, "meta").module
    else:
        module = model_or_spec
    info = getattr(module, "feature_info", None)
    if not callable(getattr(info, "get_dicts", None)):
        return None  # a plain timm model's feature_info is a list of dicts about a classifier
    return [GivenStage(str(d.get("module")), d.get("num_chs"), d.get("reduction")) for d in info.get_dicts()]


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("1", "true", "yes"))
