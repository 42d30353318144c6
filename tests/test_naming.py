"""One layer selector behind every --layers (dump, rf): globs, re:REGEX, (root), and the nearest names."""

from __future__ import annotations

import pytest

from inspectlab import api
from inspectlab.core.errors import InspectlabError
from inspectlab.core.naming import call_label, depth_of, leaf_label, select

NAMES = ["", "layer1", "layer1.0", "layer1.0.conv1", "layer2", "fc"]


def test_globs_regexes_and_root():
    assert select(["layer1*"], NAMES) == ["layer1", "layer1.0", "layer1.0.conv1"]
    assert select(["re:layer\\d"], NAMES) == ["layer1", "layer2"]
    assert select(["(root)", "fc"], NAMES) == ["", "fc"]
    assert select(None, NAMES) == NAMES


def test_a_pattern_matching_nothing_names_the_nearest():
    with pytest.raises(InspectlabError, match="nearest names: .*layer1"):
        select(["layer"], NAMES)
    with pytest.raises(InspectlabError, match="malformed regular expression"):
        select(["re:("], NAMES)


def test_depth_and_labels():
    assert [depth_of(n) for n in ("", "(root)", "layer1", "layer1.0.conv1#2")] == [0, 0, 1, 3]
    assert call_label("relu", 0) == "relu" and call_label("relu", 2) == "relu#2"
    assert leaf_label("layer1.0.conv1#2") == "conv1#2"


def test_rf_and_dump_read_patterns_alike():
    rf_rows = {row["name"] for row in api.receptive_field("lenet5", depth=1, layers="re:conv\\d").layers}
    dumped = {entry["layer"] for entry in api.dump("lenet5", layers=["re:conv\\d"]).manifest["entries"]}
    assert rf_rows == dumped == {"conv1", "conv2"}
