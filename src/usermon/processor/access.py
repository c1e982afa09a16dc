"""Who may call what on the processor: the admin token and the applications' tokens.

This module owns the rule. The admin token (``USERMON_TOKEN``) may do everything. An application
token (``USERMON_APP_TOKEN``, several allowed) may send events (``POST /v1/*``) and read the
decision stream (``GET /api/decisions/stream``): what every application instance needs, and
nothing that reveals other users (findings, profiles) or changes what is enforced (decisions, the
allowlist). With no token configured at all (loopback only, see settings), everything is open.
A request without a known token is 401; a known application token on an admin route is 403.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Final, Literal

__all__ = ["ADMIN", "APP", "Access", "Role"]

Role = Literal["admin", "app"]
ADMIN: Final = "admin"
APP: Final = "app"


class Access:
    """Checks a request's ``Authorization`` header against the configured tokens."""

    def __init__(self, admin: str | None, apps: Sequence[str] = ()) -> None:
        self._admin = admin.encode() if admin else None
        self._apps = [t.encode() for t in apps]

    @property
    def open(self) -> bool:
        """No token configured: every request may do everything."""
        return self._admin is None and not self._apps

    def role(self, authorization: str) -> Role | None:
        """The role of the bearer token in an ``Authorization`` header value, if it is known.
        Compares in constant time against every token (no early exit on a match)."""
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        given = value.strip().encode()
        admin = self._admin is not None and hmac.compare_digest(given, self._admin)
        app = False
        for token in self._apps:
            app |= hmac.compare_digest(given, token)
        if admin:
            return ADMIN
        return APP if app else None

    def check(self, authorization: str, need: Role) -> int | None:
        """``None`` when allowed, else the status to answer: 401 (no or unknown token) or 403
        (an application token on a route that needs the admin's)."""
        if self.open:
            return None
        role = self.role(authorization)
        if role is None:
            return 401
        if need == ADMIN and role != ADMIN:
            return 403
        return None
