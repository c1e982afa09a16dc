"""The demo's example application: a small Flask shop whose logins and signups usermon tracks.

It is instrumented the way docs/instrumentation.md tells an application to be: Flask-Login's
``login_user`` is reported by :class:`~usermon.instrumentation.flask_login.FlaskLoginInstrumentor`
(installed by the demo), failed logins and signups by one ``usermon`` call each, with the same
``email`` identifier everywhere. Accounts live in memory; passwords are hashed with a deliberately
cheap PBKDF2 work factor so that a laptop can serve a credential-stuffing run in a few seconds (a
real application keeps Werkzeug's default). With protection on, the Flask-Login instrumentor
refuses logins the processor decided against before the login view runs; the shop answers a refused
account as a wrong password (``USERMON_BLOCKED_HANDLER``, as docs/protection.md advises) and
counts each refusal by client address and decision origin, for the demo's summary. A login under a
``challenge`` decision is where a real shop asks for its second factor; this one has none, so
:func:`challenge_counter` counts the login by account and lets it go on.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from flask import Flask, request
from flask_login import LoginManager, UserMixin, login_user
from werkzeug.security import check_password_hash, generate_password_hash

import usermon
from usermon.enforcement import ChallengeHandler, hides_refusal

# Demo only: a few thousand PBKDF2 rounds, so hundreds of logins a second fit on one core.
DEMO_PASSWORD_METHOD = "pbkdf2:sha256:2000"  # noqa: S105 - a hashing method, not a password


@dataclass
class Account(UserMixin):  # type: ignore[misc]  # Flask-Login ships no type hints
    id: str
    email: str
    password_hash: str


def challenge_counter(challenges: Counter[tuple[str, str]]) -> ChallengeHandler:
    """A challenge handler (``usermon.set_challenge_handler``) that counts each challenged login
    in ``challenges[(email, decision origin)]`` and lets it go on: the shop has no second factor
    to ask for."""
    lock = threading.Lock()

    def challenged(flask_request: Any, decision: usermon.Decision) -> None:
        with lock:
            challenges[(str(flask_request.form.get("email", "")), decision.origin)] += 1

    return challenged


def create_app(refusals: Counter[tuple[str, str]] | None = None) -> Flask:
    """A fresh shop with no accounts: ``POST /signup`` and ``POST /login`` take ``email`` and
    ``password`` form fields; ``GET /healthz`` answers ``ok``. Each login refused on a decision
    counts one in ``refusals[(client address, decision origin)]``."""
    app = Flask("usermon-demo-shop")
    app.config["SECRET_KEY"] = "usermon-demo-only"  # noqa: S105 - a throwaway demo session key
    accounts: dict[str, Account] = {}
    lock = threading.Lock()

    def refused_login(decision: usermon.Decision) -> Any:
        if refusals is not None:
            with lock:
                refusals[(request.access_route[-1], decision.origin)] += 1
        if hides_refusal(decision):  # an account: the same answer as a wrong password
            return "invalid credentials\n", 401
        return None  # an address: usermon's 429 with Retry-After

    app.config["USERMON_LOGIN_ENDPOINTS"] = ["login"]  # the guarded view (no login_view here)
    app.config["USERMON_BLOCKED_HANDLER"] = refused_login
    login_manager = LoginManager(app)

    @login_manager.user_loader  # type: ignore[untyped-decorator]
    def load_user(user_id: str) -> Account | None:
        return next((a for a in accounts.values() if a.id == user_id), None)

    @app.post("/signup")
    def signup() -> tuple[str, int]:
        email = request.form["email"]
        with lock:
            if email in accounts:
                return "already registered\n", 409
            accounts[email] = Account(
                str(len(accounts) + 1),
                email,
                generate_password_hash(request.form["password"], DEMO_PASSWORD_METHOD),
            )
        usermon.signup_track({"email": email})
        return "account created\n", 201

    @app.post("/login")
    def login() -> tuple[str, int]:
        email = request.form["email"]
        account = accounts.get(email)
        if account is None or not check_password_hash(
            account.password_hash, request.form["password"]
        ):
            usermon.auth_track(False, {"email": email})  # Flask-Login never sees failures
            return "invalid credentials\n", 401
        login_user(account)  # reported by the Flask-Login instrumentor
        return "welcome\n", 200

    @app.get("/healthz")
    def healthz() -> str:
        return "ok\n"

    return app
