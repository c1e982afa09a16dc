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

from usermon import environment_variables, identifiers, settings
from usermon.testing import CapturedEvents, capture_events

USERMON_VARIABLES = (
    environment_variables.USERMON_MODE,
    environment_variables.USERMON_AUTO_MODE,
    environment_variables.USERMON_HASH_KEY,
    environment_variables.USERMON_TRUSTED_PROXIES,
    environment_variables.USERMON_EVENT_SIGNAL,
    environment_variables.USERMON_STRICT,
    environment_variables.USERMON_LOOKUP_USER_EXISTS,
)


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No USERMON_* variable, no override and no remembered warning around each test."""
    for name in USERMON_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    settings.reset()
    identifiers.reset_warnings()
    yield
    settings.reset()
    identifiers.reset_warnings()


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
