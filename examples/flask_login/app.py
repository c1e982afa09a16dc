"""A Flask-Login application whose successful logins usermon tracks automatically.

Flask-Login sees only successful logins (``login_user``); the failed ones and the signups are
reported by the one ``usermon`` call each that docs/instrumentation.md describes. Users live in a
dict, so the example needs nothing but ``pip install 'usermon[flask,sdk]'``.

Run it under the OpenTelemetry launcher (see README.md)::

    opentelemetry-instrument python app.py
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from flask import Flask, request
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user
from werkzeug.security import check_password_hash, generate_password_hash

import usermon
from usermon.enforcement import hides_refusal


@dataclass
class User(UserMixin):  # type: ignore[misc]
    id: str
    email: str
    password_hash: str


USERS: dict[str, User] = {}

app = Flask(__name__)
app.config["SECRET_KEY"] = "example-only-not-a-secret"


# With protection on (USERMON_PROTECT=on, see README.md): POSTs to the "login" endpoint are
# checked against the processor's decisions before the view runs, and a locked account gets the
# very answer a wrong password gets below, so the refusal reveals nothing.
def refused_login(decision: usermon.Decision) -> tuple[str, int] | None:
    """A locked account gets the wrong-password answer; None: usermon's 429 for the rest."""
    return ("invalid credentials\n", 401) if hides_refusal(decision) else None


app.config["USERMON_LOGIN_ENDPOINTS"] = ["login"]
app.config["USERMON_BLOCKED_HANDLER"] = refused_login


# A login that looks like an attack campaign against the whole site (its User-Agent and network
# match the campaign's fingerprint) gets a "challenge": ask for more proof before the password is
# checked. A real site shows its CAPTCHA or asks for a second factor here; this example stands in
# for one with a form field, "captcha", that must say "solved".
def captcha_step(req: Any, decision: usermon.Decision) -> tuple[str, int] | None:
    """None lets the login go on; otherwise the answer sent instead of the login view's."""
    if req.form.get("captcha") == "solved":
        return None
    return "solve the CAPTCHA to log in\n", 403


usermon.set_challenge_handler(captcha_step)
login_manager = LoginManager(app)


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    return next((user for user in USERS.values() if user.id == user_id), None)


@app.post("/signup")
def signup() -> tuple[str, int]:
    email = request.form["email"]
    if email in USERS:
        return "already registered\n", 409
    USERS[email] = User(
        str(len(USERS) + 1), email, generate_password_hash(request.form["password"])
    )
    usermon.signup_track({"email": email})  # same key as the logins below
    return "account created\n", 201


@app.post("/login")
def login() -> tuple[str, int]:
    email = request.form["email"]
    user = USERS.get(email)
    if user is None or not check_password_hash(user.password_hash, request.form["password"]):
        usermon.auth_track(False, {"email": email})  # Flask-Login cannot see failures
        return "invalid credentials\n", 401
    login_user(user)  # reported by the usermon Flask-Login instrumentor
    return f"welcome {user.email}\n", 200


@app.get("/me")
@login_required
def me() -> str:
    return f"you are {current_user.email}\n"


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
