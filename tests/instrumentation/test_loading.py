"""How the instrumentors are found and loaded: entry points, lazy imports, the real auto loader."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points

import pytest
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from usermon import settings
from usermon.settings import ConfigurationError

INSTRUMENTORS = {
    "usermon_django": "usermon.instrumentation.django:DjangoInstrumentor",
    "usermon_drf": "usermon.instrumentation.drf:DRFInstrumentor",
    "usermon_flask_login": "usermon.instrumentation.flask_login:FlaskLoginInstrumentor",
    "usermon_flask_httpauth": "usermon.instrumentation.flask_httpauth:FlaskHTTPAuthInstrumentor",
}
FRAMEWORK_MODULES = ("django", "rest_framework", "flask", "flask_login", "flask_httpauth")


def test_every_instrumentor_is_registered_for_opentelemetry_instrument() -> None:
    found = {
        ep.name: ep.value
        for ep in entry_points(group="opentelemetry_instrumentor")
        if ep.name.startswith("usermon_")
    }

    assert found == INSTRUMENTORS
    for ep in entry_points(group="opentelemetry_instrumentor"):
        if ep.name in INSTRUMENTORS:
            assert issubclass(ep.load(), BaseInstrumentor)


def test_loading_the_entry_points_imports_no_framework() -> None:
    """The auto loader imports every entry point: that alone must not import any framework."""
    code = textwrap.dedent(
        f"""
        import json, sys
        from importlib.metadata import entry_points
        for ep in entry_points(group="opentelemetry_instrumentor"):
            if ep.name.startswith("usermon_"):
                ep.load()
        print(json.dumps([m for m in {FRAMEWORK_MODULES!r} if m in sys.modules]))
        """
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(output) == []


@pytest.mark.parametrize("name", sorted(INSTRUMENTORS))
def test_an_unknown_auto_mode_fails_instrument_loudly(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module, _, cls = INSTRUMENTORS[name].partition(":")
    instrumentor = getattr(__import__(module, fromlist=[cls]), cls)()
    monkeypatch.setenv("USERMON_AUTO_MODE", "anonymisation")
    settings.reset()

    with pytest.raises(ConfigurationError, match=r"USERMON_AUTO_MODE.*anonymisation"):
        instrumentor.instrument()
    assert not instrumentor.is_instrumented_by_opentelemetry


_LOADER_WITH_A_MISSING_FRAMEWORK = """
import importlib.abc, json, sys

HIDDEN = {hidden!r}

class NotInstalled(importlib.abc.MetaPathFinder):
    # Makes the framework look uninstalled: its modules cannot be imported ...
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN["modules"]:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())

import opentelemetry.instrumentation.dependencies as dependencies
real_version = dependencies.version

def version(distribution):
    # ... and its distribution has no version, which is what the dependency check asks.
    if distribution.lower().replace("_", "-") in HIDDEN["distributions"]:
        raise dependencies.PackageNotFoundError(distribution)
    return real_version(distribution)

dependencies.version = version

from opentelemetry.instrumentation.auto_instrumentation._load import (
    _load_distro, _load_instrumentors,
)

_load_instrumentors(_load_distro())

from usermon.instrumentation.flask_httpauth import FlaskHTTPAuthInstrumentor
from usermon.instrumentation.flask_login import FlaskLoginInstrumentor
from usermon.instrumentation.django import DjangoInstrumentor
from usermon.instrumentation.drf import DRFInstrumentor

print(json.dumps({{
    cls.__name__: cls().is_instrumented_by_opentelemetry
    for cls in (DjangoInstrumentor, DRFInstrumentor, FlaskLoginInstrumentor,
                FlaskHTTPAuthInstrumentor)
}}))
"""


@pytest.mark.parametrize(
    ("hidden", "expected_off"),
    [
        (
            {"modules": ["flask_login"], "distributions": ["flask-login"]},
            {"FlaskLoginInstrumentor"},
        ),
        (
            {"modules": ["rest_framework"], "distributions": ["djangorestframework"]},
            {"DRFInstrumentor"},
        ),
    ],
    ids=["flask-login-missing", "drf-missing"],
)
def test_a_missing_framework_switches_off_only_its_instrumentor(
    hidden: dict[str, list[str]], expected_off: set[str]
) -> None:
    """The real auto loader of opentelemetry-instrument, with one framework uninstalled."""
    # OpenTelemetry's own Django/Flask instrumentors are left out: the Django one needs a
    # DJANGO_SETTINGS_MODULE this bare process does not have.
    env = {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "django,flask", "PATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", _LOADER_WITH_A_MISSING_FRAMEWORK.format(hidden=hidden)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)

    assert {name for name, on in status.items() if not on} == expected_off
