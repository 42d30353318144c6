"""The layers of docs/architecture.md, checked from the code's imports (an AST walk of every module, counting
imports inside functions; imports under `if TYPE_CHECKING:` are for type hints only and do not count).

    cli → api → workflows → (analysis | runtime | render) → tracing → core
    models → core
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "inspectlab"
MAX_LINES = 450

# What each layer may import (besides itself and the standard library / third-party packages).
ALLOWED = {
    "core": {"core"},
    "tracing": {"core"},
    "models": {"core"},
    "analysis": {"core", "tracing"},
    "render": {"core", "tracing", "analysis"},
    "runtime": {"core", "tracing", "analysis", "render"},
    "workflows": {"core", "tracing", "models", "analysis", "runtime", "render"},
    "api": {"core", "workflows", "tracing", "analysis", "runtime"},  # the last three for type hints and Capture
    "cli": {"core", "api", "render"},
    "errors": {"core"},  # inspectlab.errors: the public path of core.errors
    "__init__": {"core", "api"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden.update(id(n) for n in ast.walk(node))
    return hidden


def _imports(path: Path, modules: set[str]) -> dict[str, int]:
    """The inspectlab modules one file imports (anywhere in it, outside TYPE_CHECKING), with a line each."""
    tree = ast.parse(path.read_text())
    hidden = _type_checking_nodes(tree)
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name.startswith("inspectlab"):
                found.setdefault(name, node.lineno)
    return found


def _graph() -> dict[str, dict[str, int]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    graph = {}
    for name, path in files.items():
        imported = _imports(path, modules)
        # `from inspectlab.x import y` names inspectlab.x as well as its package: keep the most precise one
        graph[name] = {m: line for m, line in imported.items()
                       if m != name and not any(o.startswith(m + ".") for o in imported)}
    return graph


def test_no_upward_import():
    wrong = []
    for module, imported in _graph().items():
        layer = _layer(module)
        for target, line in imported.items():
            other = _layer(target)
            if other != layer and other not in ALLOWED[layer]:
                wrong.append(f"{module}:{line} imports {target} ({layer} may import {sorted(ALLOWED[layer])})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    graph = {module: set(imported) for module, imported in _graph().items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checker_sees_function_level_and_ignores_type_checking_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from inspectlab.api import trace\n"
                      "def f():\n    from inspectlab.workflows.trace import trace\n")
    assert _imports(sample, {"inspectlab.api", "inspectlab.workflows.trace"}) == {"inspectlab.workflows.trace": 5}


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_are_short(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_help_is_fast_and_torch_free():
    code = ("import sys, time\nstart = time.perf_counter()\nfrom typer.testing import CliRunner\n"
            "import inspectlab.cli\n"
            "result = CliRunner().invoke(inspectlab.cli.app, ['--help'])\n"
            "assert result.exit_code == 0, result.output\nassert 'torch' not in sys.modules\n"
            "print(time.perf_counter() - start)\n")
    best = min(float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                    timeout=60).stdout) for _ in range(3))
    assert best < 0.3, f"--help took {best:.3f} s"


def test_no_global_rng_seeding_or_sys_path_change():
    """The process's RNG and sys.path are never changed for good: seeding happens under fork_rng, a user's
    file is importable beside its folder only while it is imported."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for number, line in enumerate(text.splitlines(), 1):
            if "torch.manual_seed(" in line and "fork_rng" not in text:
                offenders.append(f"{path.name}:{number}")
            if "gc.disable()" in line and path.name != "build.py":
                offenders.append(f"{path.name}:{number}")
    assert not offenders, offenders

