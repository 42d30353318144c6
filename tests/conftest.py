"""Test settings: under CI (CI=true, as .ci/run runs), property tests draw the same examples every run, so that
a CI result is reproducible; elsewhere they explore new examples each run. And the `offline` fixture shared by
the tests of the model sources (timm, smp, transformers), which must never download."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


class NetworkUsed(OSError):
    """Raised by the patched socket: something tried to reach the network."""


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """No network inside the test: HF_HUB_OFFLINE=1, and every socket connection and name lookup raises
    (and is recorded: the test fails afterwards if anything tried, even if the caller swallowed the error)."""
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise NetworkUsed(f"network access in an offline test: {args!r}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for owner, name in ((socket.socket, "connect"), (socket.socket, "connect_ex"), (socket, "getaddrinfo"),
                        (socket, "create_connection")):
        monkeypatch.setattr(owner, name, refuse)
    yield attempts
    assert not attempts, f"tried to reach the network: {attempts}"
