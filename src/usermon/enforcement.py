"""Enforcing decisions where logins happen: the rules the framework integrations share.

This module owns what a refusal is, independently of any framework: which decision applies to a
login attempt (:func:`decision_for`, a fail-open wrapper of :func:`usermon.check` that skips all
work while protection is off), whether a decision refuses the attempt (``block`` always;
``challenge`` only when the application's challenge hook, set with
:func:`set_challenge_handler`, answers with a response), which refusals are answered with a 429
and ``Retry-After`` (a decision about an address, a network or a campaign) and which look like an
ordinary failed login (a decision about an account: no oracle telling an attacker the account is
locked), and how many seconds ``Retry-After`` says. The integrations turn that into their
framework's responses (``docs/protection.md``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from usermon.decisions import BLOCK, SCOPE_USER, SCOPE_USER_IP, Decision
from usermon.protection import check
from usermon.request_context import RequestInfo, resolve_client_ip
from usermon.settings import get_settings

__all__ = [
    "TOO_MANY_ATTEMPTS",
    "ChallengeHandler",
    "decision_for",
    "hides_refusal",
    "refuses",
    "retry_after",
    "set_challenge_handler",
]

_logger = logging.getLogger("usermon")

ChallengeHandler = Callable[[Any, Decision], Any]
"""``handler(request, decision)``: ``None`` lets the login go on (the challenge is passed, e.g. a
valid CAPTCHA answer came with the request); anything else is the response sent instead."""

TOO_MANY_ATTEMPTS: Final = "Too many login attempts. Try again later.\n"
"""Body of the default 429 answer."""

_USER_SCOPES: Final = frozenset({SCOPE_USER, SCOPE_USER_IP})

_LOG_EVERY: Final = 60.0

_handler: ChallengeHandler | None = None
_warned_no_handler = False
_last_failure_log = -_LOG_EVERY


def set_challenge_handler(handler: ChallengeHandler | None) -> None:
    """Register the application's challenge step (its CAPTCHA or second factor), or remove it.

    The integrations call ``handler(request, decision)`` for a login attempt under a
    ``challenge`` decision, before any password is checked, with the framework's request (a Django
    ``HttpRequest``, a DRF ``Request``, Flask's ``request``). Return ``None`` to let the login go
    on, or a response to send instead (a Django ``HttpResponse``, anything a Flask view may
    return). Without a handler a ``challenge`` lets the login go on (logged once).
    """
    global _handler
    if handler is not None and not callable(handler):
        raise TypeError("the challenge handler must be a function (request, decision)")
    _handler = handler


def decision_for(
    request: RequestInfo | None, identifiers: Mapping[str, object] | None
) -> Decision | None:
    """The decision that applies to a login attempt of ``identifiers`` from ``request``'s client.

    ``None`` while protection is off (no work at all), when nothing applies, or on any failure of
    ours: enforcement fails open, like :func:`usermon.check`.
    """
    try:
        settings = get_settings()
        if not settings.protect:
            return None
        ip = agent = None
        if request is not None:
            ip = resolve_client_ip(request, settings.trusted_proxies)
            agent = request.user_agent
        return check(ip=ip, identifiers=identifiers or None, user_agent=agent)
    except Exception as error:
        if _strict():
            raise
        global _last_failure_log
        now = time.monotonic()
        if now - _last_failure_log >= _LOG_EVERY:  # at most one line a minute
            _last_failure_log = now
            _logger.warning(
                "usermon: protection check failed (%s); the login goes on", type(error).__name__
            )
        return None


def refuses(decision: Decision, request: Any) -> tuple[bool, Any]:
    """Whether ``decision`` refuses the attempt, and the challenge handler's response if any.

    A ``block`` refuses. A ``challenge`` calls the registered handler (the application's own
    code: its exceptions pass through untouched) and refuses when it returns a response; with
    no handler registered the login goes on.
    """
    if decision.action == BLOCK:
        return True, None
    handler = _handler
    if handler is None:
        _warn_no_handler(decision)
        return False, None
    response = handler(request, decision)
    return response is not None, response


def hides_refusal(decision: Decision) -> bool:
    """Whether the refusal must look like an ordinary failed login (a decision about an
    account), rather than a 429 (a decision about an address, a network or a campaign)."""
    return decision.scope in _USER_SCOPES


def retry_after(decision: Decision) -> int:
    """Seconds until ``decision`` expires, rounded up, at least 1: the ``Retry-After`` value."""
    return max(1, math.ceil(decision.expires - time.time()))


def _warn_no_handler(decision: Decision) -> None:
    global _warned_no_handler
    if _warned_no_handler:
        return
    _warned_no_handler = True
    _logger.warning(
        "usermon: a challenge decision (%s) applies but no challenge handler is registered "
        "(usermon.set_challenge_handler); the login goes on",
        decision.id,
    )


def _strict() -> bool:
    try:
        return get_settings().strict
    except Exception:
        return False
