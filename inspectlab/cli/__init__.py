"""The `inspectlab` command line: parse options, call the API, render. No analysis logic here.

Each command group lives in its own module; importing it registers its commands on `app`.
"""

from __future__ import annotations

from inspectlab.cli import (
    compare,  # noqa: F401
    dump,  # noqa: F401
    explore,  # noqa: F401
    graph,  # noqa: F401
    latency,  # noqa: F401
    memory,  # noqa: F401
    report,  # noqa: F401
    rf,  # noqa: F401
    stages,  # noqa: F401
    summary,  # noqa: F401
    zoo,  # noqa: F401  (registers commands)
)
from inspectlab.cli.common import app


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
