"""The examples under ``opentelemetry-instrument``: events reach an OTLP receiver, zero code.

Each test starts an example application in a subprocess with the real OpenTelemetry launcher,
exactly as its README says, drives a signup and logins over HTTP, and checks the usermon events
that arrive at a local OTLP/HTTP receiver.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.support.protection import DecisionServer, decision
from tests.support.servers import free_port

from usermon import attributes as attrs
from usermon.pseudonymize import identity_hash

from .otlp_receiver import OTLPReceiver, ReceivedEvent

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LAUNCHER = str(Path(sys.executable).with_name("opentelemetry-instrument"))


def _otel_env(receiver: OTLPReceiver, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "USERMON_"))}
    env.update(
        OTEL_SERVICE_NAME="usermon-example",
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def _wait_until_serving(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the example exited early: {process.stdout.read()!r}")  # type: ignore[union-attr]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the example did not start listening")


@contextlib.contextmanager
def _run(command: list[str], cwd: Path, env: dict[str, str], port: int) -> Iterator[str]:
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        _wait_until_serving(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _request(
    url: str, data: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> int:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _basic(username: str, password: str) -> dict[str, str]:
    return {
        "Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    }


def _summary(events: list[ReceivedEvent]) -> list[tuple[str, object, object, object]]:
    return [
        (
            e.name,
            e.attributes.get(attrs.LOGIN_SUCCESS),
            e.attributes.get(attrs.SOURCE),
            next(
                (v for k, v in e.attributes.items() if k.startswith(attrs.IDENTIFIER_PREFIX)), None
            ),
        )
        for e in events
    ]


def test_django_example_reports_signup_logins_and_drf_logins(tmp_path: Path) -> None:
    project = EXAMPLES / "django"
    env_db = {"EXAMPLE_DB": str(tmp_path / "example.sqlite3")}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
        cwd=project,
        env={**os.environ, **env_db},
        check=True,
    )
    port = free_port()
    with OTLPReceiver() as receiver:
        env = _otel_env(receiver, DJANGO_SETTINGS_MODULE="exampleproject.settings", **env_db)
        command = [
            LAUNCHER,
            sys.executable,
            "manage.py",
            "runserver",
            f"127.0.0.1:{port}",
            "--noreload",
        ]
        with _run(command, project, env, port) as base:
            password = "Xy7!long-pass"
            assert (
                _request(
                    f"{base}/signup/",
                    {"username": "ada", "password1": password, "password2": password},
                )
                == 201
            )
            assert _request(f"{base}/login/", {"username": "ada", "password": "x"}) == 401
            assert _request(f"{base}/login/", {"username": "ada", "password": password}) in (
                200,
                302,
            )
            assert _request(f"{base}/api/whoami/", headers=_basic("ada", "wrong")) == 401
            events = receiver.wait_for(4)

    assert _summary(events) == [
        ("usermon.signup", None, "django", "ada"),
        ("usermon.login", False, "django", "ada"),
        ("usermon.login", True, "django", "ada"),
        ("usermon.login", False, "drf", "ada"),
    ]
    # OpenTelemetry's own Django instrumentation is on too: the events ride its request spans.
    assert all(e.span_name.startswith(("POST", "GET")) for e in events)
    assert all(e.span_attributes[attrs.TRACKED] is True for e in events)
    assert {e.attributes[attrs.CLIENT_ADDRESS] for e in events} == {"127.0.0.1"}


def test_flask_login_example_reports_its_logins(tmp_path: Path) -> None:
    port = free_port()
    with OTLPReceiver() as receiver:
        env = _otel_env(receiver, PORT=str(port))
        command = [LAUNCHER, sys.executable, "app.py"]
        with _run(command, EXAMPLES / "flask_login", env, port) as base:
            form = {"email": "ada@example.com", "password": "correct horse"}
            assert _request(f"{base}/signup", form) == 201
            assert _request(f"{base}/login", {**form, "password": "wrong"}) == 401
            assert _request(f"{base}/login", form) == 200
            events = receiver.wait_for(3)

    assert _summary(events) == [
        ("usermon.signup", None, "sdk", "ada@example.com"),
        ("usermon.login", False, "sdk", "ada@example.com"),
        ("usermon.login", True, "flask_login", "ada@example.com"),
    ]
    assert len({e.attributes[attrs.USER_HASH] for e in events}) == 1
    assert all(e.span_name.startswith("POST") for e in events)


def test_flask_httpauth_example_reports_basic_logins(tmp_path: Path) -> None:
    port = free_port()
    with OTLPReceiver() as receiver:
        env = _otel_env(receiver, PORT=str(port))
        command = [LAUNCHER, sys.executable, "app.py"]
        with _run(command, EXAMPLES / "flask_httpauth", env, port) as base:
            assert _request(f"{base}/basic") == 401  # no credentials: not an attempt
            assert _request(f"{base}/basic", headers=_basic("ada", "wrong")) == 401
            assert _request(f"{base}/basic", headers=_basic("ada", "correct horse")) == 200
            events = receiver.wait_for(2)

    assert _summary(events) == [
        ("usermon.login", False, "flask_httpauth", "ada"),
        ("usermon.login", True, "flask_httpauth", "ada"),
    ]
    assert all(e.span_name.startswith("GET") for e in events)


# -- the examples with protection on -------------------------------------------------------------


def _protected_env(
    receiver: OTLPReceiver, decisions: DecisionServer, **extra: str
) -> dict[str, str]:
    """The README's variables of protection, against the local decision stream server."""
    return _otel_env(
        receiver,
        USERMON_PROTECT="on",
        USERMON_DECISIONS_URL=decisions.url,
        USERMON_DECISIONS_INTERVAL="0.2",
        **extra,
    )


def _eventually(attempt: Callable[[], int], expected: int, timeout: float = 20.0) -> None:
    """Repeat an HTTP request until it answers ``expected`` (a decision is synced, or expires)."""
    deadline = time.monotonic() + timeout
    while (status := attempt()) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"still {status}, not {expected}, after {timeout} s")
        time.sleep(0.1)


def _refusals(receiver: OTLPReceiver) -> dict[str, tuple[object, object]]:
    """The decision id of each refused attempt received, with its source and identifier."""
    return {
        str(e.attributes[attrs.DECISION_ID]): (
            e.attributes[attrs.SOURCE],
            next(v for k, v in e.attributes.items() if k.startswith(attrs.IDENTIFIER_PREFIX)),
        )
        for e in receiver.wait_for(1)
        if e.attributes.get(attrs.LOGIN_BLOCKED) is True
        and e.attributes.get(attrs.LOGIN_SUCCESS) is False
    }


def test_flask_httpauth_example_refuses_blocked_logins_and_fails_open() -> None:
    port = free_port()
    with DecisionServer() as decisions, OTLPReceiver() as receiver:
        grace_hash = identity_hash((("username", "grace"),), None)
        decisions.add(decision("lock-grace", "user", grace_hash))
        env = _protected_env(receiver, decisions, PORT=str(port))
        command = [LAUNCHER, sys.executable, "app.py"]
        with _run(command, EXAMPLES / "flask_httpauth", env, port) as base:
            grace, ada = _basic("grace", "battery staple"), _basic("ada", "correct horse")
            # The right password of a locked account is refused as a wrong one: 401.
            _eventually(lambda: _request(f"{base}/basic", headers=grace), 401)
            assert _request(f"{base}/basic", headers=ada) == 200
            decisions.add(decision("block-local", "ip", "127.0.0.1", ttl=4))
            _eventually(lambda: _request(f"{base}/basic", headers=ada), 429)
            # The processor stops: the synced block holds until it expires, then logins work.
            decisions.down()
            assert _request(f"{base}/basic", headers=ada) == 429
            _eventually(lambda: _request(f"{base}/basic", headers=ada), 200)
            time.sleep(0.5)  # the last spans' batch
            refusals = _refusals(receiver)

    assert refusals == {
        "lock-grace": ("flask_httpauth", "grace"),
        "block-local": ("flask_httpauth", "ada"),
    }


def test_flask_login_example_refuses_before_its_login_view() -> None:
    port = free_port()
    with DecisionServer() as decisions, OTLPReceiver() as receiver:
        ada_hash = identity_hash((("email", "ada@example.com"),), None)
        decisions.add(decision("lock-ada", "user", ada_hash))
        env = _protected_env(receiver, decisions, PORT=str(port))
        command = [LAUNCHER, sys.executable, "app.py"]
        with _run(command, EXAMPLES / "flask_login", env, port) as base:
            form = {"email": "ada@example.com", "password": "correct horse"}
            assert _request(f"{base}/signup", form) == 201
            _eventually(lambda: _request(f"{base}/login", form), 401)  # as a wrong password
            decisions.delete("lock-ada")
            _eventually(lambda: _request(f"{base}/login", form), 200)
            decisions.add(decision("block-local", "ip", "127.0.0.1"))
            _eventually(lambda: _request(f"{base}/login", form), 429)
            time.sleep(0.5)
            refusals = _refusals(receiver)

    assert refusals == {
        "lock-ada": ("flask_login", "ada@example.com"),
        "block-local": ("flask_login", "ada@example.com"),
    }


def test_django_example_refuses_blocked_logins_in_django_and_drf(tmp_path: Path) -> None:
    project = EXAMPLES / "django"
    env_db = {"EXAMPLE_DB": str(tmp_path / "example.sqlite3")}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
        cwd=project,
        env={**os.environ, **env_db},
        check=True,
    )
    port = free_port()
    with DecisionServer() as decisions, OTLPReceiver() as receiver:
        env = _protected_env(
            receiver, decisions, DJANGO_SETTINGS_MODULE="exampleproject.settings", **env_db
        )
        command = [LAUNCHER, sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}"]
        with _run([*command, "--noreload"], project, env, port) as base:
            password = "Xy7!long-pass"
            signup = {"username": "ada", "password1": password, "password2": password}
            assert _request(f"{base}/signup/", signup) == 201
            form = {"username": "ada", "password": password}
            decisions.add(decision("lock-ada", "user", identity_hash((("username", "ada"),), None)))
            _eventually(lambda: _request(f"{base}/login/", form), 401)  # as a wrong password
            decisions.delete("lock-ada")
            decisions.add(decision("block-local", "ip", "127.0.0.1"))
            _eventually(lambda: _request(f"{base}/login/", form), 429)
            assert _request(f"{base}/api/whoami/", headers=_basic("ada", password)) == 429
            time.sleep(0.5)
            refused = [
                (e.attributes[attrs.SOURCE], e.attributes[attrs.DECISION_ID])
                for e in receiver.wait_for(1)
                if e.attributes.get(attrs.LOGIN_BLOCKED) is True
            ]

    assert ("django", "lock-ada") in refused
    assert ("django", "block-local") in refused
    assert ("drf", "block-local") in refused
