"""Protection end to end with the real processor: the examples under ``opentelemetry-instrument``
export straight to ``usermon serve`` and enforce the decisions it makes from what they exported.

Each test starts a processor (SQLite store, an admin and an application token, a rules file whose
brute-force block lasts seconds), then an example exactly as its README says with protection on
against it. The application sees 127.0.0.1 for every request; the example trusts it as a proxy
(``USERMON_TRUSTED_PROXIES``) so that ``X-Forwarded-For`` gives the attacker, the benign user and
the allowlisted address their own addresses. The scenario is the issue's: a brute force is refused
within the sync interval + 2 s of its finding, even with the right password, while a benign user
logs in; ``usermon unblock`` and expiry let it through again; an allowlisted address is never
refused; with the processor stopped logins keep working and stay fast, the synced decision holds
until its ``until``; protection resumes when the processor returns on the same store.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.servers import Subprocess, clean_environment, free_port, start_processor

from usermon.protection import MAX_BACKOFF

from .test_integration import EXAMPLES, LAUNCHER, _run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMIN = "admin-token-e2e-0123456789"
APP = "app-token-e2e-0123456789ab"
INTERVAL = 1.0  # USERMON_DECISIONS_INTERVAL
BLOCK_SECONDS = 10  # the rules file's brute-force duration: long enough to unblock, short to expire
FAILURES = 10  # the brute-force detector's default threshold

ATTACKER = "192.0.2.7"
BENIGN = "198.51.100.20"
ALLOWED = "203.0.113.5"
ATTACKER_2 = "192.0.2.99"
ATTACKER_3 = "192.0.2.150"

RULES = f"""
[responses]
escalation = 1.0

[responses.brute_force]
action = "block"
scope = "user_ip"
duration = "{BLOCK_SECONDS}s"
"""


@dataclass
class Example:
    """How to start one example and log into it."""

    name: str
    cwd: Path
    command: Callable[[int], list[str]]
    env: dict[str, str]
    login: Callable[[str, str, str, str], tuple[int, float]]  # base, user, password, ip
    ok: tuple[int, ...]
    prepare: Callable[[str], None] = lambda base: None


def _timed(request: urllib.request.Request) -> tuple[int, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            status = int(response.status)
    except urllib.error.HTTPError as error:
        status = int(error.code)
    return status, time.monotonic() - started


def _basic_login(base: str, user: str, password: str, ip: str) -> tuple[int, float]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "X-Forwarded-For": ip}
    return _timed(urllib.request.Request(f"{base}/basic", headers=headers))  # noqa: S310


def _form(base: str, path: str, data: dict[str, str], ip: str = "") -> tuple[int, float]:
    headers = {"X-Forwarded-For": ip} if ip else {}
    body = urllib.parse.urlencode(data).encode()
    return _timed(urllib.request.Request(f"{base}{path}", data=body, headers=headers))  # noqa: S310


PASSWORDS = {"ada": "correct horse", "grace": "battery staple"}  # the Flask-HTTPAuth accounts
DJANGO_PASSWORD = "Xy7!long-pass"


def _flask_httpauth(tmp_path: Path, port: int) -> Example:
    return Example(
        name="flask_httpauth",
        cwd=EXAMPLES / "flask_httpauth",
        command=lambda port: [LAUNCHER, sys.executable, "app.py"],
        env={"PORT": str(port)},
        login=lambda base, user, password, ip: _basic_login(base, user, password, ip),
        ok=(200,),
    )


def _django(tmp_path: Path, port: int) -> Example:
    project = EXAMPLES / "django"
    db = {"EXAMPLE_DB": str(tmp_path / "example.sqlite3")}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
        cwd=project,
        env={**os.environ, **db},
        check=True,
    )

    def prepare(base: str) -> None:
        for user in ("ada", "grace"):
            signup = {"username": user, "password1": DJANGO_PASSWORD, "password2": DJANGO_PASSWORD}
            assert _form(base, "/signup/", signup)[0] == 201

    return Example(
        name="django",
        cwd=project,
        command=lambda port: [
            LAUNCHER,
            sys.executable,
            "manage.py",
            "runserver",
            f"127.0.0.1:{port}",
            "--noreload",
        ],
        env={"DJANGO_SETTINGS_MODULE": "exampleproject.settings", **db},
        login=lambda base, user, password, ip: _form(
            base, "/login/", {"username": user, "password": password}, ip
        ),
        ok=(200, 302),
        prepare=prepare,
    )


class Scenario:
    """The running example and processor, with the steps the test reads as sentences."""

    def __init__(self, example: Example, base: str, processor: Subprocess) -> None:
        self.example = example
        self.base = base
        self.processor = processor
        self.admin = httpx.Client(
            base_url=processor.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5
        )

    def password(self, user: str) -> str:
        return PASSWORDS[user] if self.example.name == "flask_httpauth" else DJANGO_PASSWORD

    def login(self, user: str, ip: str, *, right: bool = True) -> tuple[bool, float]:
        """One attempt; whether it succeeded, and how long the application took to answer."""
        status, elapsed = self.example.login(
            self.base, user, self.password(user) if right else "wrong-guess", ip
        )
        assert status in (*self.example.ok, 401), status  # a refusal of a pair looks like 401
        return status in self.example.ok, elapsed

    def brute_force(self, user: str, ip: str) -> None:
        for _ in range(FAILURES):
            assert self.login(user, ip, right=False)[0] is False

    def finding(self, ip: str, timeout: float = 20.0) -> tuple[dict[str, Any], float]:
        """The brute-force finding whose latest evidence is ``ip``, and when it was first seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for found in self.admin.get("/api/findings").json()["findings"]:
                if found["kind"] == "brute_force" and found["evidence"].get("ip") == ip:
                    return found, time.monotonic()
            time.sleep(0.05)
        raise AssertionError(f"no brute_force finding for {ip} within {timeout} s")

    def until(self, outcome: bool, user: str, ip: str, timeout: float) -> float:
        """Log in with the right password until it succeeds (``True``) or is refused; when."""
        deadline = time.monotonic() + timeout
        while self.login(user, ip)[0] is not outcome:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{user} from {ip}: not {outcome} within {timeout} s; "
                    f"the processor's decisions: {self._decisions_for(ip)}"
                )
            time.sleep(0.05)
        return time.monotonic()

    def decisions(self, **params: str) -> list[dict[str, Any]]:
        return list(self.admin.get("/api/decisions", params=params).json()["decisions"])

    def _decisions_for(self, ip: str) -> object:
        """What the processor decided about ``ip``, or why it could not be asked (a message)."""
        try:
            return [(d["value"], d["until"]) for d in self.decisions() if ip in d["value"]]
        except (httpx.HTTPError, KeyError, ValueError) as error:
            return f"unknown ({type(error).__name__}: {error})"


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The real ``usermon`` command line, with the admin token in the environment."""
    return subprocess.run(
        [sys.executable, "-m", "usermon.cli", *args, "--url", url],
        env=clean_environment(USERMON_TOKEN=ADMIN),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@contextlib.contextmanager
def _processor(store: str, rules: Path, log: Path, port: int | None = None) -> Iterator[Subprocess]:
    running = start_processor(
        store,
        "--token",
        ADMIN,
        "--app-token",
        APP,
        "--rules",
        str(rules),
        port=port,
        log=log,
    )
    try:
        yield running
    finally:
        running.stop()


def _example_env(example: Example, processor: Subprocess) -> dict[str, str]:
    """The README's protection variables, exporting OTLP/HTTP straight to the processor."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "USERMON_"))}
    env.update(
        OTEL_SERVICE_NAME=f"{example.name}-example",
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_ENDPOINT=processor.url,
        OTEL_EXPORTER_OTLP_HEADERS=f"Authorization=Bearer%20{APP}",
        OTEL_BSP_SCHEDULE_DELAY="100",  # the spans leave within 0.1 s, not the default 5 s
        USERMON_PROTECT="on",
        USERMON_DECISIONS_URL=processor.url,
        USERMON_DECISIONS_TOKEN=APP,
        USERMON_DECISIONS_INTERVAL=f"{INTERVAL:g}",
        USERMON_TRUSTED_PROXIES="127.0.0.1",  # the test client is the application's proxy
        PYTHONUNBUFFERED="1",
        **example.env,
    )
    return env


@pytest.mark.parametrize("make", [_flask_httpauth, _django], ids=["flask_httpauth", "django"])
def test_a_brute_force_on_an_example_is_refused_by_the_processors_decision(
    tmp_path: Path, make: Callable[[Path, int], Example]
) -> None:
    port = free_port()
    example = make(tmp_path, port)
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    store = f"sqlite:///{tmp_path / 'usermon.db'}"
    log = tmp_path / "processor.log"
    with contextlib.ExitStack() as stack:
        processor = stack.enter_context(_processor(store, rules, log))
        env = _example_env(example, processor)
        base = stack.enter_context(_run(example.command(port), example.cwd, env, port))
        example.prepare(base)
        s = Scenario(example, base, processor)
        stack.callback(s.admin.close)

        # A brute force: refused within the sync interval + 2 s of its finding, right password
        # or not, while the benign user (the same account elsewhere, another account) logs in.
        s.brute_force("ada", ATTACKER)
        found, found_at = s.finding(ATTACKER)
        refused_at = s.until(False, "ada", ATTACKER, timeout=INTERVAL + 10)
        assert refused_at - found_at <= INTERVAL + 2
        assert s.login("ada", BENIGN)[0] is True
        assert s.login("grace", BENIGN)[0] is True
        assert s.login("ada", ATTACKER)[0] is False
        [decision] = s.admin.get(f"/api/findings/{found['id']}").json()["decisions"]

        # usermon unblock lets it through again.
        unblocked = _cli(processor.url, "unblock", decision)
        assert unblocked.returncode == 0, unblocked.stderr
        s.until(True, "ada", ATTACKER, timeout=INTERVAL + 2)

        # Another failure grows the finding: a new block, which expires at its until.
        assert s.login("ada", ATTACKER, right=False)[0] is False
        s.until(False, "ada", ATTACKER, timeout=INTERVAL + 5)
        [again] = [d for d in s.decisions() if d["value"].endswith(f"|{ATTACKER}")]
        assert again["id"] != decision
        s.until(True, "ada", ATTACKER, timeout=BLOCK_SECONDS + 5)
        assert time.time() >= _epoch(again["until"]) - 0.5  # not before its until

        # An allowlisted address is never refused, even after its own brute-force finding.
        allowed = _cli(processor.url, "allow", ALLOWED)
        assert allowed.returncode == 0, allowed.stderr
        time.sleep(INTERVAL + 0.5)  # the allowlist reaches the application
        s.brute_force("grace", ALLOWED)
        s.finding(ALLOWED)
        watch_until = time.monotonic() + INTERVAL + 2
        while time.monotonic() < watch_until:
            assert s.login("grace", ALLOWED)[0] is True
            time.sleep(0.1)
        assert not [d for d in s.decisions() if ALLOWED in d["value"]]

        # The processor stops: the synced block holds until its until, logins stay fast.
        s.brute_force("grace", ATTACKER_2)
        s.until(False, "grace", ATTACKER_2, timeout=INTERVAL + 10)
        [held] = [d for d in s.decisions() if d["value"].endswith(f"|{ATTACKER_2}")]
        processor.stop(signal.SIGTERM)
        assert processor.process.returncode == 0
        slowest = 0.0
        while time.time() < _epoch(held["until"]) - 1:
            succeeded, elapsed = s.login("grace", ATTACKER_2)
            assert succeeded is False  # still refused from the application's copy
            ok, benign_elapsed = s.login("ada", BENIGN)
            assert ok is True
            slowest = max(slowest, elapsed, benign_elapsed)
            time.sleep(0.2)
        s.until(True, "grace", ATTACKER_2, timeout=5)
        assert slowest <= 2.0

        # It comes back on the same store and port: a new brute force is refused again. While it
        # was down the sync backed off (jittered, up to MAX_BACKOFF between attempts), so
        # protection returns by the next attempt, plus the export and the sync of the decision.
        # A block shorter than that wait could expire before the application ever syncs it, so
        # the processor comes back with rules whose block outlasts the backoff.
        lasting = tmp_path / "lasting.toml"
        lasting.write_text(RULES.replace(f'"{BLOCK_SECONDS}s"', f'"{int(MAX_BACKOFF) * 3}s"'))
        stack.enter_context(_processor(store, lasting, log, port=processor.port))
        s.brute_force("ada", ATTACKER_3)
        s.until(False, "ada", ATTACKER_3, timeout=MAX_BACKOFF + INTERVAL + 15)
        assert s.login("ada", BENIGN)[0] is True


def _epoch(rfc3339: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()
