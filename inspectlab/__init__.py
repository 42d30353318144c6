"""inspectlab: everything about a PyTorch network in one command.

Importing this package does not import torch; the public functions import it when called.
"""

from __future__ import annotations

from typing import Any

from inspectlab.core.version import __version__

_API = ("summary", "trace", "build_model", "list_models", "tree", "flops", "capture", "compare", "sweep", "graph",
        "receptive_field", "rf", "latency", "dump", "stages", "memory", "explore", "report", "load_inputs",
        "model_names")


def __getattr__(name: str) -> Any:
    """Load the public API lazily, so that `import inspectlab` stays free of torch."""
    if name in _API:
        from inspectlab import api

        return getattr(api, name)
    raise AttributeError(f"module 'inspectlab' has no attribute {name!r}")


__all__ = [*_API, "__version__"]
