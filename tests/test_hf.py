"""Hugging Face transformers models (`inspectlab/models/hf.py`): `hf:MODEL_TYPE`.

Every count is checked against transformers' own model built normally on the CPU (sum of numel over its
parameters, tied weights once); the inputs are named per model (`pixel_values`, `input_ids`) and passed as
keywords; `--arg task=...` picks the Auto class; ModelOutput results go through summary, flops, graph and
compare; a missing library names its extra; and nothing reaches the network (`offline`, as in
tests/test_sources.py: `socket` refuses every connection and name lookup, and the test fails if anything tried).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import torch
from cli_helpers import assert_one_line_error, run_cli

from inspectlab import api
from inspectlab.analysis.params import count_params
from inspectlab.api import InputSpec
from inspectlab.core.errors import InspectlabError
from inspectlab.models import registry
from inspectlab.workflows import models as model_workflow

transformers = pytest.importorskip("transformers")

BERT = {"num_hidden_layers": 2}
VIT = {"hidden_size": 192, "num_hidden_layers": 2, "num_attention_heads": 3, "intermediate_size": 768}
SEGFORMER = {"depths": [1, 1, 1, 1]}




def _cpu_count(model_type: str, args: dict[str, Any], auto: str = "AutoModel") -> int:
    config = transformers.AutoConfig.for_model(model_type, **args)
    model = getattr(transformers, auto).from_config(config)
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------- param counts

@pytest.mark.parametrize(("model_type", "args", "auto"), [
    ("bert", BERT, "AutoModel"),
    ("bert", {**BERT, "task": "masked-lm"}, "AutoModelForMaskedLM"),  # the decoder tied to the embeddings
    ("vit", VIT, "AutoModel"),
    ("vit", {**VIT, "task": "image-classification", "num_labels": 7}, "AutoModelForImageClassification"),
    ("segformer", {**SEGFORMER, "task": "semantic-segmentation"}, "AutoModelForSemanticSegmentation"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_counts_equal_transformers_on_the_cpu(model_type: str, args: dict[str, Any], auto: str,
                                              offline: Any) -> None:
    built = model_workflow.build(f"hf:{model_type}", dict(args))
    assert next(built.module.parameters()).is_meta and built.notes == []
    assert type(built.module).__name__ == getattr(transformers, auto)._model_mapping[
        type(built.module.config)].__name__
    config_args = {k: v for k, v in args.items() if k != "task"}
    assert count_params(built.module).total == _cpu_count(model_type, config_args, auto)


def test_the_documented_counts(offline: Any) -> None:
    """The numbers docs/models.md and examples/hf.sh show."""
    bert = api.summary("hf:bert", args=BERT, depth=0)
    assert bert.totals["params"] == 38_603_520 and bert.totals["macs"] == 1_862_860_800
    assert api.summary("hf:vit", depth=0).totals["params"] == 86_389_248


# ----------------------------------------------------------------------------------------- named inputs

@pytest.mark.parametrize(("spec", "args", "inputs"), [
    ("hf:bert", BERT, [InputSpec((1, 128), "int64", "input_ids")]),
    ("hf:vit", VIT, [InputSpec((1, 3, 224, 224), None, "pixel_values")]),
    ("hf:vit", {**VIT, "image_size": 96, "num_channels": 1}, [InputSpec((1, 1, 96, 96), None, "pixel_values")]),
    ("hf:segformer", {"task": "semantic-segmentation"}, [InputSpec((1, 3, 512, 512), None, "pixel_values")]),
    ("hf:gpt2", {"n_positions": 64}, [InputSpec((1, 64), "int64", "input_ids")]),
    ("hf:t5", {}, [InputSpec((1, 128), "int64", "input_ids"), InputSpec((1, 128), "int64", "decoder_input_ids")]),
])
def test_default_inputs_are_named(spec: str, args: dict[str, Any], inputs: list[InputSpec]) -> None:
    assert registry.default_input(spec, args) == inputs
    assert api.input_specs(spec, None, args) == inputs


def test_the_default_input_is_passed_by_keyword(offline: Any) -> None:
    report = api.summary("hf:bert", args=BERT, depth=1)
    assert report.inputs == [[1, 128]]
    assert report.extra["input_details"] == [{"name": "input_ids", "shape": [1, 128], "dtype": "int64"}]
    assert report.extra["notes"] == []  # traced on meta: int64 ids through the embedding
    by_name = {row.name: row for row in report.layers}
    assert by_name["encoder"].output_shapes == [[1, 128, 768]] and by_name["pooler"].output_shapes == [[1, 768]]


def test_token_ids_on_the_command_line(offline: Any) -> None:
    """`hf:bert --input 1,128:int64` (positional, as input_ids is forward's first argument), and several
    named inputs (keywords; an attention mask makes transformers look at its values: a CPU run, noted)."""
    positional = run_cli("summary", "hf:bert", "--arg", "num_hidden_layers=2", "--input", "1,128:int64",
                         "--format", "json")
    assert positional.exit_code == 0, positional.output
    assert json.loads(positional.stdout)["totals"]["macs"] == 1_862_860_800
    named = run_cli("summary", "hf:bert", "--arg", "num_hidden_layers=2", "--input", "input_ids=1,32:int64",
                    "--input", "attention_mask=1,32:int64", "--format", "json")
    assert named.exit_code == 0, named.output
    document = json.loads(named.stdout)
    assert [d["name"] for d in document["input_details"]] == ["input_ids", "attention_mask"]
    assert document["inputs"] == [[1, 32], [1, 32]]


def test_model_outputs_through_every_analysis(offline: Any) -> None:
    """ModelOutput (dict-like) results: summary, flops, graph, rf and compare take them."""
    args = {**SEGFORMER, "task": "semantic-segmentation"}
    report = api.summary("hf:segformer", (1, 3, 64, 64), args=args, depth=1)
    assert report.layers[-1].output_shapes == [[1, 2, 16, 16]]  # logits at a quarter of the input
    assert report.extra.get("input_details") is None  # an unnamed float input: plain, positional
    flops = {row.convention: row.total for row in api.flops("hf:segformer", args=args).layers}
    assert flops["inspectlab"] > 0
    assert "out0 [" in api.graph("hf:vit", args=VIT, depth=1).source
    fields = api.receptive_field("hf:segformer", args=args, depth=1)  # attention's softmax: no rule yet, "?"
    assert fields.layers[-1]["output_shape"] == [1, 2, 128, 128]
    frame = api.compare(["hf:bert:num_hidden_layers=2",
                         "hf:vit:num_hidden_layers=2,hidden_size=192,num_attention_heads=3"])
    assert list(frame["params"]) == [38_603_520, _cpu_count("vit", {"num_hidden_layers": 2, "hidden_size": 192,
                                                                     "num_attention_heads": 3})]
    assert frame.iloc[0]["input"] == [[1, 128]]


def test_detr_builds_without_downloads(offline: Any) -> None:
    """DETR's timm backbone would load pretrained weights: the config is made to build from scratch."""
    args = {"encoder_layers": 1, "decoder_layers": 1, "num_queries": 10, "task": "object-detection"}
    built = model_workflow.build("hf:detr", dict(args))
    config_args = {k: v for k, v in args.items() if k != "task"}
    assert count_params(built.module).total == _cpu_count("detr", config_args, "AutoModelForObjectDetection")
    assert registry.default_input("hf:detr", args) == [InputSpec((1, 3, 512, 512), None, "pixel_values")]
    report = api.summary("hf:detr", InputSpec((1, 3, 64, 64), None, "pixel_values"), args=args, depth=1)
    assert report.totals["params"] == count_params(built.module).total
    with pytest.raises(InspectlabError, match="would download weights, and inspectlab never downloads"):
        registry.recipe("hf:detr", {"use_pretrained_backbone": True})


# --------------------------------------------------------------------------------------- tasks and errors

def test_the_task_picks_the_auto_class(offline: Any) -> None:
    report = api.summary("hf:vit", args={**VIT, "task": "image-classification", "num_labels": 5}, depth=1)
    assert report.layers[-1].name == "classifier" and report.layers[-1].output_shapes == [[1, 5]]
    lm = api.summary("hf:bert", args={**BERT, "task": "masked_lm"}, depth=1)  # any spelling: masked-lm, MaskedLM
    assert lm.layers[-1].output_shapes == [[1, 128, 30522]]


@pytest.mark.parametrize(("spec", "args", "fragment"), [
    ("hf:bertt", {}, "unknown transformers model type 'bertt'; did you mean bert"),
    ("hf:bert", {"task": "segmentation"}, "unknown task 'segmentation'; did you mean image-segmentation"),
    ("hf:bert", {"task": "semantic-segmentation"}, "hf:bert has no semantic-segmentation model in transformers"),
    ("hf:bert", {"use_pretrained_backbone": True}, "never downloads"),
])
def test_mistakes_are_one_line(spec: str, args: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InspectlabError) as caught:
        registry.recipe(spec, args)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    assert_one_line_error(run_cli("summary", spec, *[f"--arg={k}={v}" for k, v in args.items()]), fragment)


def test_a_config_that_refuses_its_arguments_is_one_line() -> None:
    assert_one_line_error(run_cli("summary", "hf:bert", "--arg", "hidden_size=7"), "hf:bert", "hidden size (7)")


def test_a_missing_library_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now raises
    message = "hf:bert needs transformers: pip install 'inspectlab[hf]'"
    with pytest.raises(InspectlabError) as caught:
        registry.recipe("hf:bert")
    assert str(caught.value) == message
    with pytest.raises(InspectlabError, match="needs transformers"):
        registry.default_input("hf:bert")
    assert_one_line_error(run_cli("summary", "hf:bert"), message)


def test_other_specs_do_not_import_transformers() -> None:
    code = ("import sys\n"
            "from inspectlab.models import registry\n"
            "registry.recipe('unet'); registry.default_input('unet')\n"
            "assert 'transformers' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_download_is_even_tried(offline: Any) -> None:
    """Building and tracing each of the documented models with the network cut off."""
    for spec, args in (("hf:bert", BERT), ("hf:vit", VIT), ("hf:segformer", {"task": "semantic-segmentation"})):
        assert api.summary(spec, args=args, depth=0).totals["params"] > 0
    assert torch.get_default_device().type == "cpu"
