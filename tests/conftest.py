"""Suite-wide fixtures: real services come from the environment that scripts/test sets up.

A test marked ``redis``, ``postgresql``, ``collector``, ``jaeger`` or ``browser`` needs that
service; run the suite with ``scripts/test`` (which starts them) or leave them out with
``pytest -m "not integration"``.
A marked test that runs without its service fails with a clear message instead of skipping, so
a missing service can never pass for a green run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from usermon import environment_variables, identifiers, settings

SERVICE_VARIABLES = {
    "redis": "USERMON_TEST_REDIS_URL",
    "postgresql": "USERMON_TEST_POSTGRESQL_URL",
    "collector": "USERMON_TEST_OTELCOL",
    "jaeger": "USERMON_TEST_JAEGER",
    "browser": "USERMON_TEST_CHROMIUM",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Every service-marked test is an integration test, whether or not it says so itself.
    for item in items:
        if any(item.get_closest_marker(name) for name in SERVICE_VARIABLES):
            item.add_marker(pytest.mark.integration)


def _service(name: str) -> str:
    variable = SERVICE_VARIABLES[name]
    value = os.environ.get(variable)
    if not value:
        pytest.fail(
            f"{variable} is not set: this test needs {name}. Run scripts/test, which starts it, "
            'or deselect integration tests with -m "not integration".',
            pytrace=False,
        )
    return value


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the real Redis server started by scripts/services."""
    return _service("redis")


@pytest.fixture(scope="session")
def postgresql_url() -> str:
    """URL of the real PostgreSQL server started by scripts/services."""
    return _service("postgresql")


@pytest.fixture(scope="session")
def otelcol_binary() -> str:
    """Path of the Collector binary built from collector-config/builder-config.yaml."""
    return _service("collector")


@pytest.fixture(scope="session")
def chromium_binary() -> str:
    """Path of Debian's Chromium (scripts/chromium), which Playwright drives."""
    return _service("browser")


@pytest.fixture(scope="session")
def jaeger_binary() -> str:
    """Path of the Jaeger (v2) binary built by scripts/build-jaeger."""
    return _service("jaeger")


USERMON_VARIABLES = tuple(
    value for name, value in vars(environment_variables).items() if name.startswith("USERMON_")
)
"""Every ``USERMON_*`` variable usermon reads (the SDK's and the processor's)."""


@pytest.fixture
def fresh_sdk_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No ``USERMON_*`` variable, no ``configure()`` override and no remembered warning, before
    and after the test (the SDK and instrumentation conftests make it autouse)."""
    for name in USERMON_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    settings.reset()
    identifiers.reset_warnings()
    yield
    settings.reset()
    identifiers.reset_warnings()
