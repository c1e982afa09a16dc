"""A campaign against a whole site, challenged end to end: the Flask-Login example under
``opentelemetry-instrument``, protection on, exporting to a real ``usermon serve``.

A few users sign up and log in with their browsers; then a credential-stuffing tool goes through
a proxy pool (every attempt from another address of three networks, one User-Agent, accounts that
do not exist here). The processor reports one campaign on the service, derives its fingerprint
(the tool's User-Agent: none of the users logs in with it), answers it with a ``challenge`` on
``service_campaign``; the application syncs it and sends the tool's next logins to its CAPTCHA
step, while a user with a browser, from home or even from one of the pool's networks, logs in as
usual. The rules file shrinks the campaign's windows from hours to seconds (and its minimum
volume to match); the rest is the shipped defaults."""

from __future__ import annotations

import contextlib
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.servers import free_port

from usermon.decisions import user_agent_hash

from .test_integration import EXAMPLES, LAUNCHER, _run
from .test_protection_with_processor import ADMIN, Example, _example_env, _processor

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BOT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
POOL = ("203.0.113", "192.0.2", "198.18.0")  # the proxy pool's networks
HOMES = ("198.51.100.20", "198.51.100.21", "198.51.100.22")
USERS = ("ada@example.com", "grace@example.com", "alan@example.com")
PASSWORD = "correct horse"
LEARN = 12.0  # seconds of the service's stream before it is judged
WINDOW = 10.0  # the campaign's window: at least min_failures within it

RULES = f"""
[campaigns]
window = {WINDOW:g}
baseline = 3600
learn = {LEARN:g}
min_failures = 12
fingerprint_sample = 8
"""


def _post(base: str, path: str, form: dict[str, str], ip: str, agent: str) -> int:
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{base}{path}",
        data=urllib.parse.urlencode(form).encode(),
        headers={"X-Forwarded-For": ip, "User-Agent": agent},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _login(base: str, email: str, ip: str, agent: str, **extra: str) -> int:
    return _post(base, "/login", {"email": email, "password": PASSWORD, **extra}, ip, agent)


def _eventually(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def test_a_proxy_stuffing_campaign_is_challenged_and_the_users_are_not(tmp_path: Path) -> None:
    port = free_port()
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    example = Example(
        name="flask_login",
        cwd=EXAMPLES / "flask_login",
        command=lambda port: [LAUNCHER, sys.executable, "app.py"],
        env={"PORT": str(port)},
        login=lambda base, user, password, ip: (0, 0.0),
        ok=(200,),
    )
    with contextlib.ExitStack() as stack:
        processor = stack.enter_context(_processor("memory://", rules, tmp_path / "processor.log"))
        admin = stack.enter_context(
            httpx.Client(
                base_url=processor.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5
            )
        )
        env = _example_env(example, processor)
        base = stack.enter_context(_run(example.command(port), example.cwd, env, port))

        # Ordinary life: the users sign up and log in from home with their browsers.
        started = time.monotonic()
        for email, home, agent in zip(USERS, HOMES, (FIREFOX, CHROME, FIREFOX), strict=True):
            assert (
                _post(base, "/signup", {"email": email, "password": PASSWORD}, home, agent) == 201
            )
            for _ in range(3):
                assert _login(base, email, home, agent) == 200
        # Learned for a window past `learn`: the quiet baseline's rate is then at most one
        # failure a window, so min_failures is the bar, however slow the machine.
        time.sleep(max(0.0, LEARN + WINDOW + 1 - (time.monotonic() - started)))

        # The tool through the pool: one attempt per address, accounts unknown here.
        for i in range(60):
            ip = f"{POOL[i % 3]}.{i // 3 + 1}"
            status = _post(
                base, "/login", {"email": f"combo{i}@mail.test", "password": "x"}, ip, BOT
            )
            assert status in (401, 403)

        def campaign() -> dict[str, Any] | None:
            found = admin.get("/api/findings", params={"kind": "credential_stuffing"}).json()
            for finding in found["findings"]:
                if finding["subject"]["type"] == "service" and finding["evidence"].get(
                    "fingerprint"
                ):
                    return dict(finding)
            return None

        finding = _eventually(campaign, timeout=20)
        assert finding is not None, "no campaign finding with a fingerprint"
        assert finding["subject"]["id"] == "flask_login-example"
        assert finding["evidence"]["fingerprint"] == f"ua={user_agent_hash(BOT)}"
        [decision] = admin.get("/api/findings/" + finding["id"]).json()["decisions"]
        made = admin.get("/api/decisions", params={"scope": "service_campaign"}).json()
        assert [(d["id"], d["action"]) for d in made["decisions"]] == [(decision, "challenge")]

        # The tool's next logins, from new addresses of the pool or elsewhere, meet the CAPTCHA
        # step, right password or not; with the CAPTCHA solved, the login goes on.
        challenged = _eventually(
            lambda: _login(base, USERS[0], f"{POOL[0]}.200", BOT) == 403, timeout=10
        )
        assert challenged
        assert _login(base, USERS[1], "100.64.9.9", BOT) == 403
        assert _login(base, USERS[1], "100.64.9.9", BOT, captcha="solved") == 200
        # The users, from home and from one of the pool's networks, are not challenged.
        for email, home in zip(USERS, HOMES, strict=True):
            assert _login(base, email, home, FIREFOX) == 200
        assert _login(base, USERS[2], f"{POOL[1]}.250", CHROME) == 200
