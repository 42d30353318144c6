"""User-facing errors: the CLI prints their message on one line and exits with code 2; and the one line a
message of many lines (torch's, a user's) is cut to."""

from __future__ import annotations

import re


class InspectlabError(Exception):
    """An error caused by the user's input (model name, shape, file), not by a bug in inspectlab."""

    exit_code = 2


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
LINE_LIMIT = 200


def first_line(text: str, limit: int = LINE_LIMIT) -> str:
    """The first meaningful line of a message: its first non-blank line (joined with the next one when it
    only introduces it, "Error(s) in loading state_dict for Net:"), cut to its first sentence when longer
    than `limit` (torch's "Could not run ... backend." lists every backend after it)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[0]
    if line.endswith(":") and len(lines) > 1:
        line = f"{line} {lines[1]}"
    if len(line) > limit:
        line = _SENTENCE_END.split(line, maxsplit=1)[0]
        if len(line) > limit:
            line = line[: limit - 1] + "…"
    return line


def describe_error(exc: BaseException) -> str:
    """One line: a user error's message, else the exception type and message (`first_line`)."""
    if isinstance(exc, SystemExit):
        return f"the code called sys.exit({'' if exc.code is None else repr(exc.code)})"
    message = str(exc) if isinstance(exc, InspectlabError) else f"{type(exc).__name__}: {exc}"
    return first_line(message) if message.strip() and str(exc).strip() else type(exc).__name__
