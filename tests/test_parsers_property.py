"""Every parser of the command line, fed huge integers and non-ASCII text: it returns a valid value or raises
the tool's own error (InspectlabError, one line), never another exception. Numbers take ASCII digits only."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from inspectlab.core.arguments import parse_builder_args, parse_bytes, parse_floats, parse_model
from inspectlab.core.errors import InspectlabError
from inspectlab.core.naming import select
from inspectlab.core.shapes import MAX_DIM, MAX_ELEMENTS, parse_batches, parse_shape, parse_sizes
from inspectlab.render.columns import summary_columns

FAST = settings(max_examples=150, deadline=None)

HUGE = st.integers(min_value=0, max_value=10**40).map(str) | st.sampled_from(["9" * 5000, "1" + "0" * 19, "2147483648"])
UNICODE_DIGITS = st.sampled_from(["²", "³", "¹", "٣", "３", "߁", "𝟙", "໒", "Ⅻ", "½", "\u00a0", "\x00", "é", "-", "+",
                                  "_"])
PIECE = HUGE | UNICODE_DIGITS | st.text(max_size=6)
SEPARATOR = st.sampled_from([",", "x", "×", ", ", ",,", " ", "e", ".", "k", "GiB"])


@st.composite
def number_lists(draw: Any) -> str:
    """Texts shaped like the options' values: pieces (huge numbers, Unicode digits, any text) and separators."""
    pieces = draw(st.lists(PIECE, min_size=1, max_size=6))
    separators = draw(st.lists(SEPARATOR, min_size=len(pieces), max_size=len(pieces)))
    return "".join(p + s for p, s in zip(pieces, separators, strict=True))[: draw(st.integers(0, 6000))]


TEXTS = st.text(max_size=40) | number_lists()
ASCII_NUMBER = re.compile(r"\s*[0-9]+\s*")  # blanks around the number may be any


def only_our_error(parse: Callable[[], Any], short: bool = True) -> Any:
    """The parser's value, or None when it raised InspectlabError (whose message is one line, and short: a
    5000-digit value is not echoed whole)."""
    try:
        return parse()
    except InspectlabError as error:
        assert "\n" not in str(error) and (not short or len(str(error)) < 400), str(error)
        return None


@FAST
@given(TEXTS)
@example("99999999999999999999,3,4,4")
@example("17,1000000000000000000")
@example("1,3,²,4")
@example("1,٣,4")
@example("")
def test_parse_shape(text: str) -> None:
    shape = only_our_error(lambda: parse_shape(text))
    if shape is not None:
        assert all(ASCII_NUMBER.fullmatch(part) for part in re.split(r"[,x×]", text.strip()))
        assert 1 <= len(shape) <= 6 and all(0 < d <= MAX_DIM for d in shape)
        assert math.prod(shape) <= MAX_ELEMENTS


@FAST
@given(TEXTS)
@example("²")
@example("2147483648")
@example("1x" + "9" * 5000)
def test_parse_sizes(text: str) -> None:
    sizes = only_our_error(lambda: parse_sizes(text))
    if sizes is not None:
        assert sizes and all(0 < h <= MAX_DIM and 0 < w <= MAX_DIM for h, w in sizes)
        assert all(ASCII_NUMBER.fullmatch(part) for part in re.split(r"[,x×]", text))


@FAST
@given(TEXTS)
@example("²")
@example("1,8,32")
@example("99999999999999999999")
def test_parse_batches(text: str) -> None:
    batches = only_our_error(lambda: parse_batches(text))
    if batches is not None:
        assert batches and all(0 < b <= MAX_DIM for b in batches)
        assert all(ASCII_NUMBER.fullmatch(part) for part in text.split(","))


@FAST
@given(TEXTS)
@example("1e999")
@example("9" * 5000 + "TiB")
@example("²GB")
@example("1.5GiB")
def test_parse_bytes(text: str) -> None:
    value = only_our_error(lambda: parse_bytes(text))
    if value is not None:
        assert isinstance(value, int) and 0 <= value < 2**63
        assert text.isascii()


@FAST
@given(TEXTS)
@example("nan,0,0")
@example("inf")
@example("1e999")
@example("٣")
def test_parse_floats(text: str) -> None:
    values = only_our_error(lambda: parse_floats(text, "--mean"))
    if values is not None:
        assert all(math.isfinite(v) for v in values) and all(c.isascii() or c.isspace() for c in text)


@FAST
@given(st.lists(st.builds(lambda k, v: f"{k}={v}", st.text(max_size=8) | st.sampled_from(["depth", "n", "é"]),
                          TEXTS | st.sampled_from(["-" * 100000 + "1", "[" * 500, "9" * 5000, "(1,", "\x00"])),
                max_size=3) | st.lists(TEXTS, max_size=3))
def test_parse_builder_args(pairs: list[str]) -> None:
    kwargs = only_our_error(lambda: parse_builder_args(pairs))
    if kwargs is not None:
        assert all(key.isidentifier() for key in kwargs)


@FAST
@given(TEXTS | st.builds(lambda a, b: f"{a}:{b}", TEXTS, TEXTS))
def test_parse_model(text: str) -> None:
    choice = only_our_error(lambda: parse_model(text))
    if choice is not None:
        assert choice.model and isinstance(choice.args, dict)


@FAST
@given(TEXTS)
@example("")
@example(",")
def test_summary_columns(text: str) -> None:
    columns = only_our_error(lambda: summary_columns(text))
    if columns is not None:
        assert columns


NAMES = ["", "conv1", "layer1.0.conv1", "layer1.0.relu#2", "fc", "décodeur.٣"]


@FAST
@given(st.lists(TEXTS | st.builds(lambda t: "re:" + t, TEXTS), max_size=3))
@example(["re:(a"])
@example(["re:[z-a]"])
@example(["[", "layer*"])
@example(["re:" + "9" * 5000])
def test_select(patterns: list[str]) -> None:
    chosen = only_our_error(lambda: select(patterns, NAMES), short=False)  # naming echoes the whole pattern
    if chosen is not None:
        assert set(chosen) <= set(NAMES)


def test_select_with_a_huge_repetition_count() -> None:  # re raises OverflowError past 2**32
    only_our_error(lambda: select(["re:a{99999999999}"], NAMES))
