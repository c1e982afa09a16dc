"""Protection in Flask-HTTPAuth and Flask-Login apps: decisions synced from a real stream server,
enforced through Flask's test client before the application's own password check runs (each app
counts its password checks)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, request
from tests.support.protection import (
    Clock,
    DecisionServer,
    decision,
    protect,
    sync_again,
    user_hash,
    wait_until,
)
from werkzeug.security import check_password_hash, generate_password_hash

import usermon
from usermon import attributes as attrs
from usermon.testing import CapturedEvents

PASSWORD = "correct horse"
ATTACKER = "203.0.113.66"
HASHES = {"ada": generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")}


class Checks:
    """How many passwords the application checked."""

    count = 0


def _check(username: str, password: str) -> bool:
    Checks.count += 1
    stored = HASHES.get(username)
    return stored is not None and check_password_hash(stored, password)


# -- Flask-HTTPAuth --------------------------------------------------------------------------


@pytest.fixture
def basic_app() -> Iterator[Flask]:
    from flask_httpauth import HTTPBasicAuth

    from usermon.instrumentation.flask_httpauth import FlaskHTTPAuthInstrumentor

    FlaskHTTPAuthInstrumentor().instrument()
    app = Flask(__name__)
    app.config.update(TESTING=True)
    auth = HTTPBasicAuth()

    @auth.verify_password
    def verify(username: str, password: str) -> str | None:
        return username if username and _check(username, password) else None

    @auth.error_handler
    def failed(status: int) -> tuple[str, int]:
        return "who are you?", status

    @app.get("/private")
    @auth.login_required
    def private() -> str:
        return f"hello {auth.current_user()}"

    yield app
    FlaskHTTPAuthInstrumentor().uninstrument()


def _basic(app: Flask, password: str = PASSWORD, ip: str = ATTACKER) -> Any:
    Checks.count = 0
    token = base64.b64encode(f"ada:{password}".encode()).decode()
    return app.test_client().get(
        "/private", headers={"Authorization": f"Basic {token}"}, environ_base={"REMOTE_ADDR": ip}
    )


def test_httpauth_a_blocked_address_gets_429_before_verify_password(
    basic_app: Flask, decision_server: DecisionServer, events: CapturedEvents
) -> None:
    decision_server.add(decision("d-1", "ip", ATTACKER, ttl=300))
    protect(decision_server)

    response = _basic(basic_app)

    assert response.status_code == 429
    assert 290 <= int(response.headers["Retry-After"]) <= 300
    assert Checks.count == 0
    [event] = events.logins
    assert event.success is False
    assert event.attributes[attrs.LOGIN_BLOCKED] is True
    assert event.attributes[attrs.DECISION_ID] == "d-1"
    assert event.attributes[attrs.SOURCE] == attrs.SOURCE_FLASK_HTTPAUTH


def test_httpauth_a_locked_account_gets_the_apps_own_failure(
    basic_app: Flask, decision_server: DecisionServer, events: CapturedEvents
) -> None:
    wrong = _basic(basic_app, password="hunter2")
    decision_server.add(decision("d-1", "user", user_hash({"username": "ada"})))
    protect(decision_server)
    events.clear()

    response = _basic(basic_app)

    assert (response.status_code, response.data) == (wrong.status_code, wrong.data)
    assert response.headers.get("WWW-Authenticate") == wrong.headers.get("WWW-Authenticate")
    assert Checks.count == 0
    [event] = events.logins
    assert event.attributes[attrs.LOGIN_BLOCKED] is True


def test_httpauth_an_allowlisted_address_is_never_refused(
    basic_app: Flask, decision_server: DecisionServer
) -> None:
    decision_server.allow = {"networks": ["203.0.113.0/24"], "users": []}
    decision_server.add(decision("d-1", "ip", ATTACKER))
    protect(decision_server)

    assert _basic(basic_app).status_code == 200
    assert Checks.count == 1


def test_httpauth_the_blocked_handler_config_answers_instead(
    basic_app: Flask, decision_server: DecisionServer
) -> None:
    basic_app.config["USERMON_BLOCKED_HANDLER"] = lambda found: (f"no ({found.id})", 403)
    decision_server.add(decision("d-1", "ip", ATTACKER))
    protect(decision_server)

    response = _basic(basic_app)

    assert (response.status_code, response.data) == (403, b"no (d-1)")


def test_httpauth_a_blocked_handler_returning_none_keeps_the_default_answers(
    basic_app: Flask, decision_server: DecisionServer
) -> None:
    wrong = _basic(basic_app, password="hunter2")
    basic_app.config["USERMON_BLOCKED_HANDLER"] = lambda found: None
    decision_server.add(decision("d-1", "user", user_hash({"username": "ada"})))
    protect(decision_server)

    assert _basic(basic_app).data == wrong.data
    decision_server.delete("d-1")
    decision_server.add(decision("d-2", "ip", ATTACKER))
    sync_again()
    assert _basic(basic_app).status_code == 429


def test_httpauth_a_challenge_calls_the_hook(
    basic_app: Flask, decision_server: DecisionServer
) -> None:
    seen: list[str] = []

    def captcha(flask_request: Any, found: usermon.Decision) -> Any:
        seen.append(flask_request.remote_addr)
        return None if flask_request.headers.get("X-Captcha") == "solved" else ("captcha", 401)

    usermon.set_challenge_handler(captcha)
    decision_server.add(decision("d-1", "ip", ATTACKER, action="challenge"))
    protect(decision_server)

    refused = _basic(basic_app)
    assert (refused.status_code, refused.data, Checks.count) == (401, b"captcha", 0)
    token = base64.b64encode(f"ada:{PASSWORD}".encode()).decode()
    passed = basic_app.test_client().get(
        "/private",
        headers={"Authorization": f"Basic {token}", "X-Captcha": "solved"},
        environ_base={"REMOTE_ADDR": ATTACKER},
    )
    assert passed.status_code == 200
    assert seen == [ATTACKER, ATTACKER]


def test_httpauth_with_the_processor_down_decisions_expire_then_logins_go_on(
    basic_app: Flask, decision_server: DecisionServer, clock: Clock
) -> None:
    decision_server.add(decision("d-1", "ip", ATTACKER, ttl=30))
    protect(decision_server)
    decision_server.down()
    wait_until(lambda: usermon.protection_status().failures > 0)

    assert _basic(basic_app).status_code == 429
    clock.now += 31
    assert _basic(basic_app).status_code == 200


# -- Flask-Login -----------------------------------------------------------------------------


@pytest.fixture
def login_app() -> Iterator[Flask]:
    from flask_login import LoginManager, UserMixin, login_user

    from usermon.instrumentation.flask_login import FlaskLoginInstrumentor

    class User(UserMixin):  # type: ignore[misc]
        def __init__(self, username: str) -> None:
            self.id = self.username = username

    FlaskLoginInstrumentor().instrument()
    app = Flask(__name__)
    app.config.update(SECRET_KEY="protection-tests", TESTING=True)
    manager = LoginManager(app)  # after instrument(): protection is added to this app
    manager.login_view = "login"
    manager.user_loader(User)

    @app.route("/login", methods=["GET", "POST"])
    def login() -> tuple[str, int]:
        username = request.form["username"]
        if not _check(username, request.form["password"]):
            usermon.auth_track(False, {"username": username})
            return "invalid credentials", 401
        login_user(User(username))
        return "welcome", 200

    yield app
    FlaskLoginInstrumentor().uninstrument()


def _form(app: Flask, password: str = PASSWORD, ip: str = ATTACKER) -> Any:
    Checks.count = 0
    return app.test_client().post(
        "/login", data={"username": "ada", "password": password}, environ_base={"REMOTE_ADDR": ip}
    )


def test_flask_login_a_blocked_address_gets_429_before_the_view(
    login_app: Flask, decision_server: DecisionServer, events: CapturedEvents
) -> None:
    decision_server.add(decision("d-1", "network", "203.0.113.0/24", ttl=90))
    protect(decision_server)

    response = _form(login_app)

    assert response.status_code == 429
    assert 80 <= int(response.headers["Retry-After"]) <= 90
    assert Checks.count == 0
    [event] = events.logins
    assert event.attributes[attrs.LOGIN_BLOCKED] is True
    assert event.attributes[attrs.SOURCE] == attrs.SOURCE_FLASK_LOGIN
    assert event.attributes[attrs.IDENTIFIER_PREFIX + "username"] == "ada"


def test_flask_login_a_locked_account_gets_the_configured_failed_login_answer(
    login_app: Flask, decision_server: DecisionServer
) -> None:
    login_app.config["USERMON_BLOCKED_HANDLER"] = lambda found: ("invalid credentials", 401)
    wrong = _form(login_app, password="hunter2")
    decision_server.add(decision("d-1", "user", user_hash({"username": "ada"})))
    protect(decision_server)

    response = _form(login_app)

    assert (response.status_code, response.data) == (wrong.status_code, wrong.data)
    assert Checks.count == 0


def test_flask_login_a_locked_account_without_a_handler_gets_a_plain_401(
    login_app: Flask, decision_server: DecisionServer
) -> None:
    decision_server.add(decision("d-1", "user", user_hash({"username": "ada"})))
    protect(decision_server)

    response = _form(login_app)

    assert (response.status_code, response.data) == (401, b"Invalid credentials.\n")
    assert Checks.count == 0


def test_flask_login_only_the_login_endpoint_is_guarded(
    login_app: Flask, decision_server: DecisionServer
) -> None:
    @login_app.post("/other")
    def other() -> str:
        return "not a login"

    decision_server.add(decision("d-1", "ip", ATTACKER))
    protect(decision_server)

    client = login_app.test_client()
    assert client.post("/other", environ_base={"REMOTE_ADDR": ATTACKER}).status_code == 200
    assert client.get("/login", environ_base={"REMOTE_ADDR": ATTACKER}).status_code != 429


def test_flask_login_an_allowlisted_address_is_never_refused(
    login_app: Flask, decision_server: DecisionServer
) -> None:
    decision_server.allow = {"networks": [ATTACKER], "users": []}
    decision_server.add(decision("d-1", "ip", ATTACKER))
    protect(decision_server)

    assert _form(login_app).status_code == 200


def test_flask_login_without_a_decision_the_login_is_normal(
    login_app: Flask, decision_server: DecisionServer
) -> None:
    protect(decision_server)

    assert _form(login_app).status_code == 200
    assert Checks.count == 1


def test_flask_login_uninstrument_removes_the_guard(
    login_app: Flask, decision_server: DecisionServer
) -> None:
    from usermon.instrumentation.flask_login import FlaskLoginInstrumentor

    decision_server.add(decision("d-1", "ip", ATTACKER))
    protect(decision_server)
    FlaskLoginInstrumentor().uninstrument()

    assert _form(login_app).status_code == 200


def test_flask_login_without_a_login_endpoint_says_so_and_checks_nothing(
    login_app: Flask,
    decision_server: DecisionServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from usermon.instrumentation import flask_login

    login_app.login_manager.login_view = None  # type: ignore[attr-defined]
    decision_server.add(decision("d-1", "ip", ATTACKER))
    protect(decision_server)
    monkeypatch.setattr(flask_login, "_warned_no_endpoint", False)

    assert _form(login_app).status_code == 200
    assert "names no login endpoint" in caplog.text
