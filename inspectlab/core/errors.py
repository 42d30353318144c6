"""User-facing errors: the CLI prints their message on one line and exits with code 2."""

from __future__ import annotations


class InspectlabError(Exception):
    """An error caused by the user's input (model name, shape, file), not by a bug in inspectlab."""

    exit_code = 2
