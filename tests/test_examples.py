"""Every runnable example in examples/ runs to the end, as a user would run it from the repository root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.sh")) + sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(example: Path, tmp_path: Path) -> None:
    # the interpreter running the tests, and its `inspectlab` script, come first on PATH
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "INSPECTLAB_CACHE_DIR": str(tmp_path / "cache"), "MPLBACKEND": "Agg"}
    command = ["bash", str(example)] if example.suffix == ".sh" else [sys.executable, str(example)]
    # a script runs from the repository root, a Python example from a scratch folder (what it writes goes there)
    folder = ROOT if example.suffix == ".sh" else tmp_path
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{example.name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stdout + done.stderr
