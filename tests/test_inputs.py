"""Inputs (docs/models.md, "Inputs"): `--input [NAME=]SHAPE[:DTYPE]` parsed into `InputSpec`s, named inputs as
keyword arguments, `--input-file` (a tensor, a tuple/list, a dict), and inputs that are not all tensors through
the API's `input_data` (nested dicts/lists, namedtuples, strings, None, keywords). Every mistake is one line."""

from __future__ import annotations

import collections
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_helpers import assert_one_line_error, run_cli
from torch import nn

from inspectlab import api
from inspectlab.api import InputSpec
from inspectlab.core.errors import InspectlabError
from inspectlab.core.shapes import as_specs, inputs_text, parse_input, parse_inputs, simplest
from inspectlab.tracing.inputs import as_call, example_call, example_inputs, load_inputs, on_device, positional

Pair = collections.namedtuple("Pair", "image extra")


class Tokens(nn.Module):
    """Token ids (positional) and an optional mask (a keyword): an embedding, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.embed(ids)
        if mask is not None:
            hidden = hidden * mask.unsqueeze(-1).to(hidden.dtype)
        return self.head(hidden)


class Mixer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 3)
        self.b = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.a(x) + (0 if y is None else self.b(y))


class Nested(nn.Module):
    """A forward that takes a dict of a list, a string, None and keyword arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.embed = nn.Embedding(10, 4)

    def forward(self, batch: dict[str, Any], mode: str = "plain", extra: Any = None, *, scale: float = 1.0,
                ids: torch.Tensor | None = None) -> dict[str, Any]:
        assert isinstance(mode, str)
        image = batch["image"]
        image = image.image if isinstance(image, Pair) else image[0]
        out = self.conv(image) * scale
        if ids is not None:
            out = out + self.embed(ids).sum()
        return {"out": out, "pair": Pair(out, None)}


MODEL_FILE = '''
import torch
from torch import nn


class Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, ids, mask=None):
        hidden = self.embed(ids)
        if mask is not None:
            hidden = hidden * mask.unsqueeze(-1).to(hidden.dtype)
        return self.head(hidden)


def tokens():
    return Tokens()


def image():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2))
'''


@pytest.fixture
def models(tmp_path: Path) -> Path:
    path = tmp_path / "nets.py"
    path.write_text(textwrap.dedent(MODEL_FILE))
    return path


# ------------------------------------------------------------------------------------------------- parsing

@pytest.mark.parametrize(("text", "spec"), [
    ("1,3,224,224", InputSpec((1, 3, 224, 224))),
    ("1x3x8x8", InputSpec((1, 3, 8, 8))),
    ("1,128:int64", InputSpec((1, 128), "int64")),
    ("1,128:long", InputSpec((1, 128), "int64")),
    ("1,128:bool", InputSpec((1, 128), "bool")),
    ("1,3,8,8:float16", InputSpec((1, 3, 8, 8), "float16")),
    ("1,3,8,8:fp16", InputSpec((1, 3, 8, 8), "float16")),
    ("1,3,8,8:bf16", InputSpec((1, 3, 8, 8), "bfloat16")),
    ("1,3,8,8:float64", InputSpec((1, 3, 8, 8), "float64")),
    ("1,3,8,8:uint8", InputSpec((1, 3, 8, 8), "uint8")),
    ("input_ids=1,128:int64", InputSpec((1, 128), "int64", "input_ids")),
    (" attention_mask = 1,128 : bool ", InputSpec((1, 128), "bool", "attention_mask")),
    ("pixel_values=1,3,224,224", InputSpec((1, 3, 224, 224), None, "pixel_values")),
])
def test_parse_input(text: str, spec: InputSpec) -> None:
    assert parse_input(text) == spec


def test_the_text_of_a_spec_is_the_syntax() -> None:
    assert InputSpec((1, 128), "int64", "input_ids").text() == "input_ids=1×128:int64"
    assert InputSpec((1, 3, 8, 8)).text() == "1×3×8×8"
    assert parse_input(InputSpec((2, 5), "bool", "m").text().replace("×", ",")) == InputSpec((2, 5), "bool", "m")


@pytest.mark.parametrize(("text", "fragment"), [
    ("1,128:int65", "unknown dtype 'int65'; choose one of float32"),
    ("1,128:", "unknown dtype ''"),
    ("input-ids=1,128", "'input-ids' is not a keyword argument name"),
    ("=1,128", "'' is not a keyword argument name"),
    ("ids=", "give a shape such as 1,3,224,224"),
    (":int64", "give a shape such as 1,3,224,224"),
    ("ids=1,0:int64", "every dimension must be at least 1"),
    ("1,a:int64", "'a' is not a positive integer"),
    ("", "empty --input"),
])
def test_malformed_inputs_are_one_line(text: str, fragment: str) -> None:
    with pytest.raises(InspectlabError) as caught:
        parse_input(text)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_a_name_given_twice_is_refused() -> None:
    with pytest.raises(InspectlabError, match="--input mask= is given twice"):
        parse_inputs(["1,4:int64", "mask=1,4:bool", "mask=1,4:bool"])


def test_plain_shapes_keep_working() -> None:
    """The API's input_size: one shape, a list of shapes, a spec, a mixed list, a mapping of names."""
    assert as_specs((1, 3, 224, 224)) == [InputSpec((1, 3, 224, 224))]
    assert as_specs([(1, 3, 8, 8), [1, 1, 8, 8]]) == [InputSpec((1, 3, 8, 8)), InputSpec((1, 1, 8, 8))]
    assert as_specs(InputSpec((1, 4), "int64")) == [InputSpec((1, 4), "int64")]
    assert as_specs({"mask": (1, 4), "ids": InputSpec((1, 4), "int64")}) == [
        InputSpec((1, 4), None, "mask"), InputSpec((1, 4), "int64", "ids")]
    assert simplest(parse_inputs(["1,3,8,8", "1,1,8,8"])) == [(1, 3, 8, 8), (1, 1, 8, 8)]
    assert simplest(parse_inputs(["1,3,8,8", "1,4:int64"])) == [InputSpec((1, 3, 8, 8)), InputSpec((1, 4), "int64")]
    with pytest.raises(InspectlabError, match="not a keyword argument name"):
        InputSpec((1, 2), None, "not a name")


# ---------------------------------------------------------------------------------------- making tensors

def test_example_inputs_by_dtype() -> None:
    ids, mask, half, plain = example_inputs([InputSpec((1, 6), "int64"), InputSpec((1, 6), "bool"),
                                             InputSpec((1, 3, 4, 4), "float16"), (1, 2)], "float64", "cpu", seed=0)
    assert ids.dtype == torch.int64 and not ids.any()  # zeros: a valid index of any embedding
    assert mask.dtype == torch.bool and not mask.any()
    assert half.dtype == torch.float16 and half.std() > 0  # seeded standard normal
    assert plain.dtype == torch.float64  # no dtype of its own: the command's
    again = example_inputs([InputSpec((1, 6), "int64"), InputSpec((1, 6), "bool"),
                            InputSpec((1, 3, 4, 4), "float16"), (1, 2)], "float64", "cpu", seed=0)
    assert torch.equal(half, again[2])
    on_meta = example_inputs([InputSpec((1, 6), "int64"), (1, 3, 4, 4)], device="meta")
    assert [t.device.type for t in on_meta] == ["meta", "meta"] and on_meta[0].dtype == torch.int64


def test_named_specs_become_keyword_arguments() -> None:
    call = example_call([InputSpec((1, 3), "int64", "mask"), InputSpec((1, 5), "int64"), (1, 2)], device="meta")
    assert [tuple(t.shape) for t in call.args] == [(1, 5), (1, 2)]  # unnamed ones positional, in order
    assert list(call.kwargs) == ["mask"] and tuple(call.kwargs["mask"].shape) == (1, 3)


def test_input_data_forms() -> None:
    tensor = torch.zeros(2, 3)
    assert as_call(tensor).args == [tensor] and as_call(tensor).kwargs == {}
    assert as_call([tensor, "x"]).args == [tensor, "x"]
    assert as_call({"mask": tensor}).kwargs == {"mask": tensor}
    pair = Pair(tensor, None)
    assert as_call(pair).args == [pair]  # a namedtuple is one argument, not a list of them
    moved = on_device(as_call([{"a": [tensor, None], "b": "text"}, Pair(tensor, 3)]), "meta")
    assert moved.args[0]["a"][0].is_meta and moved.args[0]["a"][1] is None and moved.args[0]["b"] == "text"
    assert isinstance(moved.args[1], Pair) and moved.args[1].image.is_meta and moved.args[1].extra == 3
    assert not tensor.is_meta


def test_keywords_to_positions() -> None:
    """What runs `model(*inputs)` (the peers, per-layer timing) gets keywords in their places."""
    ids, mask = torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 4)
    model = Tokens()
    assert positional(model, as_call({"mask": mask, "ids": ids}), "x") == [ids, mask]
    assert positional(Nested(), as_call({"batch": {}, "extra": 1}), "x") == [{}, "plain", 1]
    with pytest.raises(InspectlabError, match="takes ids only as keywords"):
        positional(Nested(), as_call({"batch": {}, "ids": ids}), "latency --per-layer")


# ------------------------------------------------------------------------------------- traces and reports

def test_the_dtype_travels_to_the_meta_trace() -> None:
    report = api.summary(Tokens(), InputSpec((1, 12), "int64"))
    assert report.extra["notes"] == []  # on meta: no real-run fallback
    assert report.inputs == [[1, 12]]
    assert report.extra["input_details"] == [{"name": None, "shape": [1, 12], "dtype": "int64"}]
    assert report.totals["params"] == 100 * 16 + 16 * 4 + 4
    assert report.totals["macs"] == 12 * 16 * 4


def test_named_inputs_are_keywords_of_the_forward() -> None:
    report = api.summary(Tokens(), [InputSpec((1, 12), "int64"), InputSpec((1, 12), "bool", "mask")])
    assert report.inputs == [[1, 12], [1, 12]]
    assert [d["name"] for d in report.extra["input_details"]] == [None, "mask"]
    assert inputs_text(report.extra["input_details"]) == "1×12:int64 + mask=1×12:bool"
    keyword_only = api.summary(Tokens(), {"ids": InputSpec((1, 12), "int64")})
    assert keyword_only.totals["macs"] == report.totals["macs"]


def test_plain_inputs_report_as_before() -> None:
    """No input_details for positional float inputs: the JSON of a plain call keeps its keys."""
    report = api.summary(nn.Conv2d(3, 4, 3), (1, 3, 8, 8))
    assert report.inputs == [[1, 3, 8, 8]] and "input_details" not in report.to_dict()


def test_the_attribute_error_of_a_dict_input() -> None:
    """`summary(model, input_data=[{"a": t}])` crashed with AttributeError: 'dict' object has no attribute
    'shape'."""
    class Dict(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(5, 2)

        def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
            return self.linear(x["a"])

    report = api.summary(Dict(), input_data=[{"a": torch.randn(3, 5)}])
    assert report.inputs == [[3, 5]] and report.totals["macs"] == 3 * 5 * 2
    assert report.extra["input_details"][0]["name"] == "[0]['a']"


def test_inputs_that_are_not_all_tensors() -> None:
    image = torch.randn(1, 3, 8, 8)
    ids = torch.zeros(1, 2, dtype=torch.long)
    model = Nested()
    positional_data = api.summary(model, input_data=[{"image": [image, None], "tag": "t"}, "fast", None])
    assert positional_data.inputs == [[1, 3, 8, 8]] and positional_data.totals["macs"] == 4 * 3 * 9 * 36
    keywords = api.summary(model, input_data={"batch": {"image": Pair(image, 3)}, "ids": ids, "scale": 2.0})
    assert keywords.inputs == [[1, 3, 8, 8], [1, 2]]
    assert [d["name"] for d in keywords.extra["input_details"]] == ["batch['image'].image", "ids"]
    assert json.loads(keywords.to_json())["input_details"][1] == {"name": "ids", "shape": [1, 2], "dtype": "int64"}
    assert not image.is_meta and image.requires_grad is False  # the user's tensors are left alone
    for run in (lambda: api.flops(model, input_data=[{"image": [image]}]),
                lambda: api.receptive_field(model, input_data=[{"image": [image]}]),
                lambda: api.graph(model, input_data=[{"image": [image]}])):
        assert run() is not None
    assert "[0]['image'][0]=1×3×8×8" in api.graph(model, input_data=[{"image": [image]}]).source
    peers = {row.convention: row.peer for row in api.flops(model, input_data=[{"image": [image]}], compare=True).layers}
    assert peers["torch"] == 2 * 4 * 3 * 9 * 36


def test_a_real_run_with_integer_inputs() -> None:
    report = api.summary(Tokens(), InputSpec((1, 12), "int64"), device="cpu")
    assert report.totals["macs"] == 12 * 16 * 4 and report.extra["device"] == "cpu"


def test_latency_batches_every_input() -> None:
    report = api.latency(Tokens(), [InputSpec((1, 12), "int64"), InputSpec((1, 12), "bool", "mask")],
                         batches=[1, 3], iters=2, warmup=0)
    assert [r.input_shapes for r in report.results] == [[[1, 12], [1, 12]], [[3, 12], [3, 12]]]
    per_layer = api.latency(Mixer(), [InputSpec((1, 6)), InputSpec((1, 6), None, "y")], iters=2, warmup=0,
                            per_layer=True)  # the keyword goes to its place: per-layer timing runs model(*inputs)
    assert [layer.label for layer in per_layer.results[0].per_layer.layers] == ["a", "b"]


def test_dump_with_named_inputs() -> None:
    result = api.dump(Tokens(), [InputSpec((1, 12), "int64"), InputSpec((1, 12), "bool", "mask")],
                      layers=["embed"])
    assert result.manifest["inputs"] == [[1, 12], [1, 12]]
    assert [d["dtype"] for d in result.manifest["input_details"]] == ["int64", "bool"]


def test_compare_and_sweep_with_typed_inputs() -> None:
    frame = api.compare([Tokens()], [InputSpec((1, 12), "int64")])
    assert frame.iloc[0]["macs"] == 12 * 16 * 4 and frame.attrs["input"] == [[1, 12]]
    sweep = api.sweep(nn.Conv2d(3, 4, 3), [8, 16], input_size=InputSpec((1, 3, 4, 4), "float32", "input"))
    assert list(sweep["macs"]) == [4 * 27 * 36, 4 * 27 * 196]  # the name and dtype kept at every size
    with pytest.raises(InspectlabError, match="sweep resizes the last two dims of an image input"):
        api.sweep(Tokens(), [8], input_size=InputSpec((1, 1, 12, 12), "int64"))


def test_rf_refuses_token_inputs() -> None:
    with pytest.raises(InspectlabError, match="rf measures fields in pixels of an image input.*1×12:int64"):
        api.rf(Tokens(), InputSpec((1, 12), "int64"))


# ------------------------------------------------------------------------------------------ --input-file

def _save(path: Path, value: Any) -> str:
    torch.save(value, path)
    return str(path)


def test_input_file_forms(tmp_path: Path) -> None:
    image = torch.randn(1, 3, 8, 8)
    ids = torch.randint(0, 100, (1, 7))
    assert load_inputs(_save(tmp_path / "t.pt", image)).args[0].shape == (1, 3, 8, 8)
    assert len(load_inputs(_save(tmp_path / "tuple.pt", (image, image))).args) == 2
    assert len(load_inputs(_save(tmp_path / "list.pt", [image])).args) == 1
    call = load_inputs(_save(tmp_path / "dict.pt", {"ids": ids, "mask": torch.ones(1, 7)}))
    assert call.args == [] and torch.equal(call.kwargs["ids"], ids)  # real values, as saved
    nested = load_inputs(_save(tmp_path / "nested.pt", [{"image": [image, None], "tag": "t"}]))
    assert nested.args[0]["tag"] == "t"
    report = api.summary(Tokens(), input_data=call)
    assert report.inputs == [[1, 7], [1, 7]] and [d["name"] for d in report.extra["input_details"]] == ["ids", "mask"]


def test_input_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InspectlabError, match="no such input file"):
        load_inputs(str(tmp_path / "missing.pt"))
    with pytest.raises(InspectlabError, match="holds no tensor"):
        load_inputs(_save(tmp_path / "text.pt", "hello"))
    with pytest.raises(InspectlabError, match="cannot read inputs from .*weights_only|cannot read inputs from"):
        load_inputs(_save(tmp_path / "object.pt", {"x": Tokens()}))  # a pickled module: weights_only refuses


def test_input_file_on_every_command(tmp_path: Path, models: Path) -> None:
    tokens = _save(tmp_path / "tokens.pt", {"ids": torch.randint(0, 100, (2, 9)), "mask": torch.ones(2, 9)})
    image = _save(tmp_path / "image.pt", torch.randn(1, 3, 16, 16))
    summary = run_cli("summary", f"{models}:tokens", "--input-file", tokens, "--format", "json")
    assert summary.exit_code == 0, summary.output
    document = json.loads(summary.output)
    assert document["inputs"] == [[2, 9], [2, 9]] and document["totals"]["macs"] == 2 * 9 * 16 * 4
    table = run_cli("summary", f"{models}:tokens", "--input-file", tokens, "--format", "markdown")
    assert "input ids=2×9:int64 + mask=2×9\n" in table.output
    flops = run_cli("flops", f"{models}:tokens", "--input-file", tokens, "--convention", "torch")
    assert flops.exit_code == 0 and flops.output.strip() == str(2 * 2 * 9 * 16 * 4)
    graph = run_cli("graph", f"{models}:image", "--input-file", image, "--format", "dot")
    assert graph.exit_code == 0 and "input 1×3×16×16" in graph.output
    rf = run_cli("rf", f"{models}:image", "--input-file", image, "--format", "json")
    assert rf.exit_code == 0 and json.loads(rf.stdout)["totals"]["rf"] == [5, 5]
    latency = run_cli("latency", f"{models}:tokens", "--input-file", tokens, "-n", "2", "--warmup", "0",
                      "--format", "json")
    assert latency.exit_code == 0, latency.output
    assert json.loads(latency.output)["results"][0]["input_shapes"] == [[2, 9], [2, 9]]
    dump = run_cli("dump", f"{models}:image", "--input-file", image, "--layers", "0", "--format", "json")
    assert dump.exit_code == 0 and json.loads(dump.output)["inputs"] == [[1, 3, 16, 16]]


def test_the_command_line_with_dtypes_and_names(models: Path) -> None:
    result = run_cli("summary", f"{models}:tokens", "--input", "1,10:int64", "--input", "mask=1,10:bool", "-f",
                     "markdown")
    assert result.exit_code == 0, result.output
    assert "input 1×10:int64 + mask=1×10:bool\n" in result.output
    document = json.loads(run_cli("summary", f"{models}:tokens", "--input", "ids=1,10:int64", "-f", "json").output)
    assert document["input_details"] == [{"name": "ids", "shape": [1, 10], "dtype": "int64"}]
    plain = json.loads(run_cli("summary", f"{models}:image", "--input", "1,3,8,8", "-f", "json").output)
    assert list(plain) == ["schema", "model", "inputs", "totals", "layers", "uncounted_ops", "breakdown", "device",
                           "backward", "notes"]
    batches = run_cli("latency", f"{models}:tokens", "--input", "1,10:int64", "--batch", "1,2", "-n", "2",
                      "--warmup", "0", "-f", "json")
    assert [r["input_shapes"] for r in json.loads(batches.output)["results"]] == [[[1, 10]], [[2, 10]]]
    half = run_cli("summary", f"{models}:image", "--input", "1,3,8,8:float16", "-f", "json")
    assert json.loads(half.output)["totals"]["input_bytes"] == 3 * 64 * 2


@pytest.mark.parametrize(("args", "fragments"), [
    (("summary", "{m}:tokens", "--input", "1,10:int65"), ("unknown dtype 'int65'",)),
    (("summary", "{m}:tokens", "--input", "a-b=1,10"), ("is not a keyword argument name",)),
    (("summary", "{m}:tokens", "--input", "m=1,10", "--input", "m=1,10"), ("--input m= is given twice",)),
    (("summary", "{m}:tokens", "--input", "1,10:int64", "--input-file", "x.pt"), ("choose one",)),
    (("summary", "{m}:tokens", "--input-file", "no/such.pt"), ("no such input file",)),
    (("rf", "{m}:tokens", "--input", "1,10:int64"), ("rf measures fields in pixels of an image input",)),
    (("sweep", "{m}:tokens", "--sizes", "8", "--input", "1,1,10,10:int64"), ("sweep resizes the last two dims",)),
    (("latency", "{m}:image", "--input-file", "{image}", "--batch", "2"), ("--batch resizes made-up inputs",)),
    (("dump", "{m}:image", "--input-file", "{image}", "--image", "x.png", "--layers", "0"), ("choose one",)),
])
def test_mistakes_are_one_line(tmp_path: Path, models: Path, args: tuple[str, ...],
                               fragments: tuple[str, ...]) -> None:
    image = _save(tmp_path / "image.pt", torch.randn(1, 3, 16, 16))
    filled = [a.format(m=models, image=image) for a in args]
    assert_one_line_error(run_cli(*filled), *fragments)
