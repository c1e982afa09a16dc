"""The dashboard's sessions: who may see it, and which POSTs are the viewer's own.

Without a token (the processor then listens on loopback only) anyone who reaches the port sees
the dashboard, as the API. With a token, a browser signs in once at ``/login`` by entering it
(compared in constant time) and gets a session cookie: ``HttpOnly``, ``SameSite=Strict``,
``Secure`` when the request came over https, signed with HMAC-SHA256 under a key made at
random when the processor starts (a restart signs everyone out; the token never sits in the
cookie). Every POST must carry the CSRF token of its session (a synchronizer token derived from
the session with the same key) and, when the browser sends one, an ``Origin`` of this host.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["COOKIE", "SESSION_SECONDS", "Sessions"]

COOKIE = "usermon_session"
SESSION_SECONDS = 12 * 3600
"""A session lasts this long, then the token is asked again."""


class Sessions:
    """Issues and checks session cookies and their CSRF tokens for one processor."""

    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token else None
        self._key = secrets.token_bytes(32)

    @property
    def needs_login(self) -> bool:
        return self._token is not None

    def check_token(self, given: str) -> bool:
        if self._token is None:
            return True
        return hmac.compare_digest(given.strip().encode(), self._token)

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def issue(self, *, signed_in: bool) -> str:
        """A new session value: ``nonce.expiry.flag.signature``."""
        body = f"{secrets.token_hex(16)}.{int(time.time()) + SESSION_SECONDS}.{int(signed_in)}"
        return f"{body}.{self._sign(body)}"

    def session(self, request: Request) -> str | None:
        """The request's valid session value, or None (absent, forged, expired)."""
        value = request.cookies.get(COOKIE, "")
        body, _, signature = value.rpartition(".")
        parts = body.split(".")
        if len(parts) != 3 or not hmac.compare_digest(self._sign(body), signature):
            return None
        if not parts[1].isdigit() or int(parts[1]) < time.time():
            return None
        return value

    def signed_in(self, request: Request) -> bool:
        """Whether the request may see the dashboard."""
        if self._token is None:
            return True
        session = self.session(request)
        return session is not None and session.split(".")[2] == "1"

    def csrf(self, session: str) -> str:
        return self._sign("csrf:" + session)

    def valid_post(self, request: Request, form_csrf: str) -> bool:
        """Whether a POST comes from a page of this dashboard in this browser."""
        origin = request.headers.get("origin")
        if origin is not None and _netloc(origin) != request.headers.get("host", "").lower():
            return False
        session = self.session(request)
        return session is not None and hmac.compare_digest(self.csrf(session), form_csrf)

    def set_cookie(self, request: Request, response: Response, value: str) -> None:
        response.set_cookie(
            COOKIE,
            value,
            max_age=SESSION_SECONDS,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )


def _netloc(origin: str) -> str:
    """``host[:port]`` of an ``Origin`` header (``null`` and other oddities give "")."""
    _, sep, rest = origin.partition("://")
    return rest.lower() if sep else ""
