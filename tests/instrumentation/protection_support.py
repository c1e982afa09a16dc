"""Protection in the instrumentation tests: a real decision stream server and a synced SDK.

The server is the one of the SDK tests (tests/sdk/decision_server.py), on 127.0.0.1. Expiry is
tested by moving the clock ``usermon.check`` compares ``until`` with, never by sleeping; the sync
is observed through ``usermon.protection_status()``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.sdk.decision_server import DecisionServer, decision

import usermon
from usermon import protection
from usermon.settings import get_settings

__all__ = [
    "Clock",
    "DecisionServer",
    "decision",
    "protect",
    "sync_again",
    "user_hash",
    "wait_until",
]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds (a hang, not a timing)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout} s: {usermon.protection_status()}")
        time.sleep(0.005)


def protect(server: DecisionServer) -> None:
    """Turn protection on against ``server`` and wait for its first answer to be applied."""
    usermon.configure(protect=True, decisions_url=server.url, decisions_interval=0.02)
    wait_until(lambda: usermon.protection_status().syncs > 0)


def sync_again() -> None:
    """Wait until an answer requested after now has been applied."""
    seen = usermon.protection_status().syncs
    wait_until(lambda: usermon.protection_status().syncs > seen + 1)


def user_hash(identifiers: dict[str, str]) -> str:
    """The ``user.hash`` the processor would name for ``identifiers``."""
    found = protection._user_hash(identifiers, get_settings())
    assert found is not None
    return found


class Clock:
    """The clock ``check()`` compares ``until`` with; tests move it forward."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now
