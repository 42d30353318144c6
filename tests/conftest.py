"""Test settings: under CI (CI=true, as .ci/run runs), property tests draw the same examples every run, so that
a CI result is reproducible; elsewhere they explore new examples each run."""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
