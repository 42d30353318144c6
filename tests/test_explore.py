"""The explorer page (inspectlab explore, docs/explore.md): its data against the summary and the model's own
modules, and the page in headless Chromium driven by Selenium as a user would drive it: click a box and read its
MACs in the panel, search a module, open a level, sort the table; no network request, ever."""

from __future__ import annotations

import json
import os
import re
import shutil
from functools import cache
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspectlab import api
from inspectlab.cli import app

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed "
                               "(apt-get install graphviz); CI installs it")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
SHAPE = (1, 3, 64, 64)


@cache
def page(folder: str) -> tuple[Path, dict]:
    """resnet18's page at depths 0-2, written once, and its inline data."""
    path = Path(folder) / "resnet18.html"
    written = api.explore("resnet18", SHAPE, output=str(path), depth=2)
    assert written.path == path and written.depths == [0, 1, 2]
    return path, data_of(path.read_text())


def data_of(text: str) -> dict:
    found = re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>', text, re.S)
    return json.loads(found[1].replace("<\\/", "</"))


@pytest.fixture(scope="module")
def explorer(tmp_path_factory) -> tuple[Path, dict]:
    return page(str(tmp_path_factory.mktemp("explore")))


def facts(entity: dict) -> dict[str, str]:
    return dict(entity["facts"])


@needs_dot
def test_every_number_of_the_panel_is_the_summary_s(explorer):
    _, data = explorer
    report = api.summary("resnet18", SHAPE, depth=2)
    assert [row["key"] for row in data["table"]["rows"]] == [row.name for row in report.layers]
    for row in report.layers:
        shown = facts(data["entities"][row.name])
        assert shown["MACs"].startswith(f"{row.macs:,}")
        assert shown["params"].startswith(f"{row.params:,}")
        assert shown["other FLOPs"].startswith(f"{row.other_flops:,}")
        assert shown["output memory"].endswith(f"({row.output_bytes:,} B)")
    fields = {r["name"]: r for r in api.receptive_field("resnet18", SHAPE, depth=2).layers}
    assert facts(data["entities"]["layer2.0"])["receptive field"] == "{}×{} px".format(*fields["layer2.0"]["rf"])
    assert facts(data["entities"]["layer2.0"])["stride"] == f"{fields['layer2.0']['stride'][0]} px"


@needs_dot
def test_every_level_holds_every_row_and_its_own_boxes(explorer):
    _, data = explorer
    keys = [row["key"] for row in data["table"]["rows"]]
    for level in data["levels"]:
        assert set(keys) <= set(level["holders"])  # something to highlight for every row, at every level
        assert set(level["nodes"]) <= set(level["boxes"]) and set(level["frames"]) <= set(level["boxes"])
    deepest = data["levels"][-1]
    assert deepest["nodes"][deepest["holders"]["layer2.0"]] == "layer2.0"  # its own box at depth 2
    assert deepest["nodes"][deepest["holders"]["layer1.1"]] == "run:layer1.0"  # inside "BasicBlock ×2"
    assert data["levels"][1]["frames"] == {} and data["levels"][1]["holders"]["layer2.0"] in data["levels"][1]["nodes"]


@needs_dot
def test_the_aspp_boxes_show_their_dilation_rates_as_docs_explore_says():
    written = api.explore("deeplabv3plus_resnet50", (1, 3, 512, 512), depth=3)
    assert written.path is None and written.depths == [0, 1, 2, 3]
    data = data_of(written.html)
    model = api.build_model("deeplabv3plus_resnet50")  # the rates from the modules themselves
    report = {row.name: row for row in api.summary("deeplabv3plus_resnet50", (1, 3, 512, 512), depth=4).layers}
    for branch in (1, 2, 3):
        name = f"classifier.aspp.convs.{branch}"  # children of a ModuleList: drawn (and listed) at depth 3
        conv = model.get_submodule(f"{name}.0")
        shown = facts(data["entities"][name])
        assert shown["kernel"] == f"3×3 d{conv.dilation[0]}, padding {conv.padding[0]}", shown["kernel"]
        assert shown["MACs"].startswith(f"{report[name].macs:,} ")
        assert data["levels"][3]["nodes"][data["levels"][3]["holders"][name]] == name
        assert name in [row["key"] for row in data["table"]["rows"]]
    # the panel block of docs/explore.md is this page's
    doc = (Path(__file__).resolve().parent.parent / "docs" / "explore.md").read_text()
    block = doc.split("(each\nline a `[label, text]` pair", 1)[1].split("```\n", 2)[1]
    for key in ("classifier.aspp.convs.2", "run:backbone.layer3.1"):
        entity = data["entities"][key]
        lines = [f"{entity['title']} · {entity['name']}", *(f"  {label:<18} {text}" for label, text in entity["facts"])]
        assert "\n".join(lines) in block, key


@needs_dot
def test_latency_reaches_every_timed_module():
    data = data_of(api.explore("lenet5", (1, 1, 32, 32), depth=1, latency=True, min_time=0.05).html)
    headers = [c["header"] for c in data["table"]["columns"]]
    column = headers.index("latency p50 (ms)")
    for row in data["table"]["rows"]:  # every module at depth 1 is timed (per-layer hooks at the deepest level)
        p50, text = row["cells"][column]
        assert p50 > 0 and facts(data["entities"][row["key"]])["latency"].startswith(f"p50 {text} ms · mean ")
    assert facts(data["entities"]["(root)"])["latency"].endswith("(the plain forward, no hooks)")


def test_command_line_errors_are_one_line(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["explore", "resnet18", "-o", str(tmp_path / "page.svg")])
    assert result.exit_code == 2 and "name it .html" in result.output and len(result.output.splitlines()) == 1
    (tmp_path / "there.html").write_text("mine")
    result = runner.invoke(app, ["explore", "resnet18", "-o", str(tmp_path / "there.html")])
    assert result.exit_code == 2 and "--force" in result.output
    assert (tmp_path / "there.html").read_text() == "mine"


@needs_dot
def test_the_command_writes_the_page(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["explore", "lenet5", "--depth", "1"])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "lenet5.html").read_text()
    assert "wrote lenet5.html (depths 0–1" in result.output
    assert text.count("<svg") == 2 and "Content-Security-Policy" in text
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", text)  # nothing to fetch: no file, no URL


# in the browser ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("headless Chromium and chromedriver are not installed (Debian: apt-get install -y chromium "
                    "chromium-driver; `make test` installs them when run as root)")
    from selenium.webdriver.chrome.service import Service

    offline = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: never download a driver
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,900", "--disable-background-networking", "--no-first-run"):
        options.add_argument(flag)
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(2)
    yield driver
    driver.quit()
    if offline is None:
        os.environ.pop("SE_OFFLINE", None)
    else:
        os.environ["SE_OFFLINE"] = offline


def _requests(driver) -> list[str]:
    """The URLs of every request the page made (Chrome's network events)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


@needs_dot
def test_in_headless_chromium(explorer, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    path, data = explorer
    report = {row.name: row for row in api.summary("resnet18", SHAPE, depth=2).layers}
    browser.get(path.as_uri())
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return document.body.dataset.ready") == "true")
    assert browser.get_log("browser") == []  # no script error, no refused load

    def panel(fact: str) -> str:
        return browser.find_element(By.CSS_SELECTOR, f'#panel dd[data-fact="{fact}"]').text

    def active() -> int:
        return int(browser.find_element(By.CSS_SELECTOR, "#graph .level:not([hidden])").get_attribute("data-depth"))

    # click a box: the panel shows its MACs, the summary's number
    assert active() == 2
    box = data["levels"][2]["holders"]["layer2.0"]
    ActionChains(browser).click(browser.find_element(By.CSS_SELECTOR, f'.level[data-depth="2"] g[data-id="{box}"]')
                                ).perform()
    assert panel("name") == "layer2.0"
    assert panel("MACs").startswith(f"{report['layer2.0'].macs:,} ")
    selected = browser.find_elements(By.CSS_SELECTOR, ".level:not([hidden]) g.selected")
    assert [g.get_attribute("data-id") for g in selected] == [box]
    assert browser.find_element(By.CSS_SELECTOR, "#layers tr.selected").get_attribute("data-key") == "layer2.0"

    # search a module by name: it is selected in the graph, the panel and the table
    search = browser.find_element(By.ID, "search")
    search.send_keys("layer3.1", Keys.ENTER)
    assert panel("name") == "layer3.1"
    assert panel("MACs").startswith(f"{report['layer3.1'].macs:,} ")
    holder = data["levels"][active()]["holders"]["layer3.1"]
    selected = browser.find_elements(By.CSS_SELECTOR, ".level:not([hidden]) g.selected")
    assert [g.get_attribute("data-id") for g in selected] == [holder]
    assert browser.find_element(By.CSS_SELECTOR, "#layers tr.selected").get_attribute("data-key") == "layer3.1"

    # at depth 1, double-click a box: the next depth opens, with that module's frame selected
    browser.find_element(By.CSS_SELECTOR, 'button[data-level="1"]').click()
    box = data["levels"][1]["holders"]["layer3"]
    ActionChains(browser).double_click(browser.find_element(
        By.CSS_SELECTOR, f'.level[data-depth="1"] g[data-id="{box}"]')).perform()
    assert active() == 2 and panel("name") == "layer3"
    frame = browser.find_element(By.CSS_SELECTOR, ".level:not([hidden]) g.selected")
    assert frame.get_attribute("data-id") == data["levels"][2]["holders"]["layer3"].strip()
    assert "cluster" in frame.get_attribute("class")

    # sort the table by MACs, largest first; a row selects its module
    header = next(th for th in browser.find_elements(By.CSS_SELECTOR, "#layers th") if th.text == "MACs")
    header.click()
    browser.execute_script("document.querySelector('section.layers').scrollTop = 0")  # back to the table's top
    first = browser.find_element(By.CSS_SELECTOR, "#layers tbody tr")
    assert first.get_attribute("data-key") == max(report.values(), key=lambda r: r.macs).name
    first.click()
    assert panel("name") == first.get_attribute("data-key")

    # nothing was fetched: one request, the page itself; no resource loaded by the page
    assert _requests(browser) == [path.as_uri()]
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    assert browser.get_log("browser") == []
