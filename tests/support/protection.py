"""Protection in the SDK and instrumentation tests: a real decision stream server and a synced SDK.

The server is tests/sdk/decision_server.py, on 127.0.0.1. Expiry is tested by moving the clock
``usermon.check`` compares ``until`` with, never by sleeping; the sync is observed through
``usermon.protection_status()``.
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
    "synced_more",
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


def synced_more(than: int) -> Callable[[], bool]:
    """Whether more than ``than`` answers have been applied."""
    return lambda: usermon.protection_status().syncs > than


def protect(server: DecisionServer, **options: object) -> None:
    """Turn protection on against ``server`` (with more ``configure`` options) and wait for its
    first answer to be applied."""
    usermon.configure(protect=True, decisions_url=server.url, decisions_interval=0.02, **options)
    wait_until(synced_more(0))


def sync_again() -> None:
    """Wait until an answer requested after now has been applied (so a server-side change has
    been seen)."""
    wait_until(synced_more(usermon.protection_status().syncs + 1))


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
