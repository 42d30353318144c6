"""Start-up cost: importing inspectlab and building its CLI must not import torch (seconds)."""

from __future__ import annotations

import subprocess
import sys


def test_import_and_help_do_not_import_torch() -> None:
    code = ("import sys, inspectlab, inspectlab.cli\n"
            "from typer.testing import CliRunner\n"
            "result = CliRunner().invoke(inspectlab.cli.app, ['--help'])\n"
            "assert result.exit_code == 0 and 'summary' in result.output, result.output\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
