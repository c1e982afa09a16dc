"""Fixtures of the instrumentation tests: captured events, fresh settings, one Django project.

The global TracerProvider can be set only once per process: events are captured with
:func:`usermon.testing.capture_events`, which attaches to whatever SDK provider is global (and
sets a plain one if none is). Django can be configured only once per process: the project in
``django_site`` is set up the first time a Django test asks for it, and each test runs inside a
transaction that is rolled back, so tests never see each other's users.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support.protection import Clock, DecisionServer

from usermon import enforcement, protection
from usermon.testing import CapturedEvents, capture_events


@pytest.fixture(autouse=True)
def fresh_settings(fresh_sdk_settings: None) -> None:
    """Every test here starts and ends with fresh settings (tests/conftest.py)."""


@pytest.fixture
def events() -> Iterator[CapturedEvents]:
    """The usermon events recorded during the test, as they would be exported."""
    with capture_events() as captured:
        yield captured


@pytest.fixture(scope="session")
def django_project() -> None:
    """The shared Django test project (see django_site), configured and migrated once."""
    from .django_site import setup

    setup()


@pytest.fixture
def db(django_project: None) -> Iterator[None]:
    """Run the test inside a transaction that is rolled back afterwards."""
    from django.db import transaction

    atomic = transaction.atomic()
    atomic.__enter__()
    try:
        yield
    finally:
        transaction.set_rollback(True)
        atomic.__exit__(None, None, None)


@pytest.fixture
def decision_server() -> Iterator[DecisionServer]:
    """A real decision stream server on 127.0.0.1; protection and the challenge hook are reset
    after the test."""
    with DecisionServer() as running:
        yield running
    protection.stop()
    enforcement.set_challenge_handler(None)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The clock decisions expire by, moved forward by the test."""
    controlled = Clock()
    monkeypatch.setattr(protection, "_clock", controlled)
    return controlled
