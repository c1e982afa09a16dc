"""The public surface of ``usermon`` and what importing it costs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import usermon

PUBLIC = [
    "ConfigurationError",
    "Decision",
    "EventSignal",
    "Mode",
    "ProtectionStatus",
    "TrackContext",
    "__version__",
    "auth_track",
    "check",
    "configure",
    "protection_status",
    "set_challenge_handler",
    "signup_track",
]


def test_all_is_sorted_and_complete() -> None:
    assert usermon.__all__ == sorted(usermon.__all__)
    assert usermon.__all__ == PUBLIC
    for name in usermon.__all__:
        assert hasattr(usermon, name), name


def test_public_callables_are_documented() -> None:
    for name in (
        "auth_track",
        "signup_track",
        "configure",
        "TrackContext",
        "check",
        "protection_status",
        "set_challenge_handler",
        "Decision",
        "ProtectionStatus",
    ):
        doc = getattr(usermon, name).__doc__
        assert doc, name
    assert "context=" in (usermon.auth_track.__doc__ or "")


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


HEAVY = [
    "opentelemetry.sdk",
    "opentelemetry.exporter",
    "opentelemetry.proto",
    "google.protobuf",
    "django",
    "flask",
    "werkzeug",
    "rest_framework",
    "redis",
    "psycopg",
    "starlette",
    "uvicorn",
    "maxminddb",
    "grpc",
    "usermon.processor",
    "usermon.instrumentation",
    "usermon.testing",
]


@pytest.mark.integration
def test_import_loads_only_the_standard_library_and_the_opentelemetry_api() -> None:
    result = _run(
        f"""
        import json, sys
        import usermon
        heavy = {HEAVY!r}
        loaded = sorted(
            name for name in sys.modules
            if any(name == h or name.startswith(h + ".") for h in heavy)
        )
        print(json.dumps(loaded))
        """
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


@pytest.mark.integration
def test_with_only_the_api_every_call_is_a_no_op_that_warns_once() -> None:
    """No SDK configured: nothing is exported and nothing raises; the one thing printed is the
    warning that says so, once: a silent no-op hid a broken exporter setup."""
    result = _run(
        """
        import usermon
        usermon.auth_track(True, {"email": "ada@example.com"})
        usermon.auth_track(False, email="ada@example.com",
                           context=usermon.TrackContext(client_ip="192.0.2.1", exists=True))
        usermon.signup_track(email="ada@example.com")
        usermon.configure(event_signal="both")
        usermon.auth_track(True, username="ada")
        print("done")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    [warning] = result.stderr.splitlines()
    assert warning.startswith("usermon: login and signup events will NOT be exported: ")
