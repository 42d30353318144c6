"""Notebook views (issue 17 §3): every result object shows itself as a styled table (`_repr_html_`: a sticky
header, numbers right-aligned, the totals below) and to rich (`__rich__`: fitted to the console), and
examples/notebook.ipynb runs from top to bottom in a real kernel (nbclient), each result drawn as a table."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import pytest
import torch
from rich.console import Console

import inspectlab
from inspectlab.core.display import Displayable, view_of

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "notebook.ipynb"
CELL = re.compile(r'<td( class="num")?>([^<]*)</td>')


def rows_of(html: str) -> list[list[tuple[bool, str]]]:
    """The body rows of the first table of an HTML view: (right-aligned?, text) per cell."""
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [[(bool(num), unescape(text)) for num, text in CELL.findall(row)] for row in body.split("</tr>")
            if "<td" in row]


def check_view(result: Displayable, width: int = 80) -> tuple[str, str]:
    """The HTML and the rich text of a result; the HTML is the styled table, the rich text fits `width`."""
    assert view_of(result) is not None, type(result)
    html = result._repr_html_()
    assert html is not None and html.startswith('<div class="inspectlab-view">')
    assert "position:sticky" in html and "text-align:right" in html and "<thead>" in html
    console = Console(width=width, record=True, color_system=None)
    console.print(result)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= width and "…" not in text
    return html, text


@pytest.fixture(scope="module")
def summary() -> inspectlab.api.Report:
    return inspectlab.summary("lenet5", depth=1)


def test_summary_view(summary) -> None:  # noqa: ANN001
    html, text = check_view(summary)
    rows = rows_of(html)
    assert len(rows) == len(summary.layers)
    conv1 = rows[0]
    assert conv1[0] == (False, "conv1") and conv1[4] == (True, "156")  # params: right-aligned, exact
    assert [cell for _, cell in (row[4] for row in rows)] == [f"{layer['params']:,}" for layer in summary.layers]
    assert html.index("</table>") < html.index("Params: 61,706 (trainable 61,706")  # the totals below the table
    assert "Params: 61,706" in text and "conv1" in text


def test_flops_rf_stages_views() -> None:
    flops = inspectlab.flops("lenet5")
    html, _ = check_view(flops)
    totals = {row[0][1]: row[2][1] for row in rows_of(html)}
    assert totals == {row["convention"]: f"{row['total']:,}" for row in flops.layers}
    assert "Breakdown by category" in html
    field = inspectlab.rf("tv:resnet18", (1, 3, 64, 64), depth=1)
    html, text = check_view(field)
    assert rows_of(html)[0][:3] == [(False, "(root)"), (False, "1×1000"), (True, "435×435")]
    assert "Model output: rf 435×435" in html and "435×435" in text
    report = inspectlab.receptive_field("tv:resnet18", (1, 3, 64, 64), depth=1)
    assert rows_of(check_view(report)[0]) == rows_of(html)
    stages = inspectlab.stages("tv:resnet18", (1, 3, 64, 64))
    html, _ = check_view(stages)
    assert [row[0][1] for row in rows_of(html)] == [row["name"] for row in stages.layers]
    assert "Whole model: 11,689,512 params" in html


def test_latency_and_capture_views() -> None:
    timed = inspectlab.latency("lenet5", iters=2, warmup=0)
    html, _ = check_view(timed)
    row = rows_of(html)[0]
    assert row[0] == (True, "1") and row[5] == (True, f"{timed.results[0].stats.p50_ms:.3f}")
    assert "conditions: cpu" in html
    model = inspectlab.build_model("lenet5", device="cpu")
    with inspectlab.capture(model, ["conv1", "fc3"]) as cap:
        model(torch.randn(1, 1, 32, 32))
    html, _ = check_view(cap)
    assert [row[:3] for row in rows_of(html)] == [[(False, "conv1#0"), (False, "Conv2d"), (False, "1×6×28×28")],
                                                   [(False, "fc3#0"), (False, "Linear"), (False, "1×10")]]
    assert "2 tensors, 18.41 KiB kept" in html  # (6·28·28 + 10) × 4 B = 18,856 B


def test_a_class_without_a_view_falls_back_to_its_repr() -> None:
    class Plain(Displayable):
        def __repr__(self) -> str:
            return "Plain()"

    assert Plain()._repr_html_() is None and Plain().__rich__() == "Plain()"


def test_the_example_notebook_runs() -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert len(code) == 7
    for cell in code:
        assert not [o for o in cell.outputs if o.get("output_type") == "error"], cell.source
        html = "".join(o["data"].get("text/html", "") for o in cell.outputs if "data" in o)
        assert "<table" in html, cell.source
        if "compare" not in cell.source:  # a DataFrame draws its own table
            assert 'class="inspectlab-view"' in html and "position:sticky" in html and 'class="num"' in html
    assert "Params: 61,706" in "".join(o["data"]["text/html"] for o in code[0].outputs)
