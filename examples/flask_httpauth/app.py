"""A Flask-HTTPAuth API whose Basic and Digest logins usermon tracks automatically.

``/basic`` is protected by HTTP Basic, ``/digest`` by HTTP Digest; both are reported by the
usermon Flask-HTTPAuth instrumentor with no usermon code here. Needs only
``pip install 'usermon[flask,sdk]'``.

Run it under the OpenTelemetry launcher (see README.md)::

    opentelemetry-instrument python app.py
"""

from __future__ import annotations

import os

from flask import Flask
from flask_httpauth import HTTPBasicAuth, HTTPDigestAuth
from werkzeug.security import check_password_hash, generate_password_hash

# Example accounts: ada / correct horse, grace / battery staple.
PASSWORDS = {"ada": "correct horse", "grace": "battery staple"}
HASHES = {name: generate_password_hash(password) for name, password in PASSWORDS.items()}

app = Flask(__name__)
app.config["SECRET_KEY"] = "example-only-not-a-secret"  # Digest keeps its nonce in the session
basic = HTTPBasicAuth()
digest = HTTPDigestAuth()


@basic.verify_password
def verify_password(username: str, password: str) -> str | None:
    if username in HASHES and check_password_hash(HASHES[username], password):
        return username
    return None


@digest.get_password
def get_password(username: str) -> str | None:
    # Digest needs the plain password (or its HA1, with use_ha1_pw=True) on the server side.
    return PASSWORDS.get(username)


@app.get("/basic")
@basic.login_required
def basic_area() -> str:
    return f"hello {basic.current_user()} (Basic)\n"


@app.get("/digest")
@digest.login_required
def digest_area() -> str:
    return f"hello {digest.username()} (Digest)\n"


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5001")))
