"""Registers the notebook and rich views of the result objects (render/notebook.py; core/display.py explains the
hook). `inspectlab.api` imports this module, so every result the API returns can show itself."""

from __future__ import annotations

from inspectlab.render import notebook  # noqa: F401  (registers the views)
