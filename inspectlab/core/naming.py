"""Module names: a call's label, a name's depth, and the one layer selector behind every `--layers`.

A module's qualified name is what `named_modules()` gives ("layer1.0.conv1"); the model itself is "" and
is shown as `(root)`. The k-th call (from 0) of a module is labelled `name#k` (the first call: `name`).
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Iterable, Sequence

from inspectlab.core.errors import InspectlabError
from inspectlab.core.shapes import quoted

ROOT = "(root)"
_PATTERN_CHARACTERS = re.compile(r"^re:|[*?\[\]\\^$()+|{}]")


def depth_of(name: str) -> int:
    """The depth of a qualified module name or call label: "" is 0, "layer1" 1, "layer1.0.conv1#2" 3."""
    name = name.split("#", 1)[0]
    return 0 if not name or name == ROOT else name.count(".") + 1


def call_label(name: str, call: int) -> str:
    """"layer1.0.relu", 2 -> "layer1.0.relu#2"; the first call keeps the plain name."""
    return name if call == 0 else f"{name}#{call}"


def leaf_label(label: str) -> str:
    """"layer1.0.conv1#2" -> "conv1#2": the last part of a name (tables indent by depth)."""
    return label.rsplit(".", 1)[-1]


def shown_name(name: str) -> str:
    """The model itself is shown as (root)."""
    return name or ROOT


def matches(pattern: str, name: str) -> bool:
    """Whether a qualified name (or call label) matches one --layers pattern: a glob (fnmatch: `*` also
    crosses dots) or, prefixed with `re:`, a regular expression that must match the whole name. The model
    itself matches as "" and as `(root)`."""
    shown = shown_name(name)
    if pattern.startswith("re:"):
        try:
            expression = re.compile(pattern[3:])
        except (re.error, OverflowError, RecursionError) as exc:  # a{99999999999}: OverflowError
            raise InspectlabError(f"malformed regular expression {quoted(pattern[3:])}: {exc}") from None
        return bool(expression.fullmatch(name) or expression.fullmatch(shown))
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(shown, pattern)


def select(patterns: Sequence[str] | str | None, names: Iterable[str], option: str = "--layers") -> list[str]:
    """The names that match any of `patterns`, in the given order (all of them when there is no pattern).
    A pattern that matches nothing raises, naming the nearest names."""
    names = list(names)
    if not patterns:
        return names
    if isinstance(patterns, str):
        patterns = [patterns]
    chosen: set[str] = set()
    for pattern in patterns:
        matched = {name for name in names if matches(pattern, name)}
        if not matched:
            raise InspectlabError(f"no module matches {option} {quoted(pattern)}{nearest(pattern, names)}")
        chosen |= matched
    return [name for name in names if name in chosen]


def nearest(pattern: str, candidates: Iterable[str], what: str = "names") -> str:
    """A "; nearest names: a, b" suffix for an error about `pattern` (else a few examples of the names)."""
    word = _PATTERN_CHARACTERS.sub("", pattern)
    shown = [shown_name(name) for name in candidates]
    close = difflib.get_close_matches(word, shown, n=5, cutoff=0.5) if word else []
    if not close:
        close = [name for name in shown if word and word in name][:5]
    if close:
        return f"; nearest {what}: {', '.join(close)}"
    return f"; {what} look like {', '.join(shown[1:4] if len(shown) > 3 else shown)} (see `inspectlab tree MODEL`)"


def did_you_mean(word: str, candidates: Iterable[str],
                 hint: str = "run `inspectlab list` for the zoo, or use tv:NAME or file.py:factory") -> str:
    """A "; did you mean X?" suffix naming the closest candidates, else "; " + hint."""
    close = difflib.get_close_matches(word.lower(), list(candidates), n=3, cutoff=0.5)
    if close:
        return "; did you mean " + " or ".join(close) + "?"
    return f"; {hint}"
