"""Shell completion (issue 17 §2): `--show-completion`/`--install-completion` exist, and MODEL completes from the
zoo's names through the protocol the shell scripts use (click's `_INSPECTLAB_COMPLETE` environment variable),
without importing torch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from inspectlab import api
from inspectlab.models.registry import list_entries

# run as the console script does, then say whether torch was imported (on stderr)
DRIVER = ("import sys\nfrom inspectlab.cli import app\ntry:\n    app(prog_name='inspectlab')\nexcept SystemExit:\n"
          "    pass\nprint('torch' in sys.modules, file=sys.stderr)\n")


def complete(words: str, **extra: str) -> tuple[list[str], str]:
    """The completions bash asks for when the cursor is after `words` (a last word "" when it ends in a space)."""
    parts = words.split(" ")
    env = {**os.environ, "_INSPECTLAB_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(len(parts) - 1), **extra}
    done = subprocess.run([sys.executable, "-c", DRIVER], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split(), done.stderr.strip().splitlines()[-1]


def test_model_names_are_the_zoos_names_and_aliases() -> None:
    names = api.model_names()
    for entry in list_entries():
        assert entry.name in names and set(entry.aliases) <= set(names)
    assert len(names) == len(set(names))


@pytest.mark.parametrize("command", ["summary", "rf"])
def test_model_completes_from_the_zoo_without_torch(command: str) -> None:
    completions, torch_imported = complete(f"inspectlab {command} resnet")
    assert completions == [name for name in api.model_names() if name.startswith("resnet")]
    assert "resnet50" in completions and torch_imported == "False"


def test_compare_completes_each_model_and_the_prefixes() -> None:
    completions, _ = complete("inspectlab compare unet deeplabv3plus_r")
    assert completions == ["deeplabv3plus_resnet50", "deeplabv3plus_resnet101"]
    assert complete("inspectlab summary t")[0] == ["tv:", "timm:"]
    assert "smp:" in complete("inspectlab summary ")[0]


def run_app(*args: str) -> str:
    """stdout of `inspectlab ARGS...`."""
    code = DRIVER.replace("app(prog_name='inspectlab')", f"app({list(args)!r}, prog_name='inspectlab')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "100"}).stdout


def test_show_completion_prints_the_script() -> None:
    script = run_app("--show-completion", "bash")
    assert "_INSPECTLAB_COMPLETE=complete_bash" in script and "complete -o default -F" in script
    help_text = run_app("--help")
    assert "--install-completion" in help_text and "--show-completion" in help_text
