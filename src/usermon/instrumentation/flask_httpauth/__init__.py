"""Automatic login tracking for `Flask-HTTPAuth`_'s HTTP Basic and Digest authentication.

.. _Flask-HTTPAuth: https://flask-httpauth.readthedocs.io/

``HTTPBasicAuth.authenticate`` and ``HTTPDigestAuth.authenticate`` are where Flask-HTTPAuth
decides whether the credentials of a request are good. The instrumentor wraps both: a user (or
``True``) is a successful ``usermon.login``, ``None`` / ``False`` a failed one, each with
``{"username": <the username the client sent>}`` and the client address and User-Agent of the
Flask request. A request without credentials (no ``Authorization`` header, another scheme, or an
empty username) is not a login attempt and is not reported, even though Flask-HTTPAuth still
calls ``verify_password("", "")`` for it. A 403 from a role check is not a login failure: the
credentials were good, and the login is reported as successful.

HTTP authentication sends the credentials with every request, so every authenticated request is
one login event. ``HTTPTokenAuth`` carries no username and a token is a secret: it is not
instrumented.

Identifiers: the key is ``username``. If your application reports signups
(``usermon.signup_track``) or other logins for the same accounts, use ``{"username": ...}`` there
too, so downstream sees one identity.

Usage
-----

.. code-block:: sh

    opentelemetry-instrument flask --app app run

or by hand, before the first request:

.. code-block:: python

    from usermon.instrumentation.flask_httpauth import FlaskHTTPAuthInstrumentor

    FlaskHTTPAuthInstrumentor().instrument()

Configuration
-------------

- ``USERMON_AUTO_MODE``: ``identification`` (default), ``anonymization`` or ``disabled``; an
  unknown value makes ``instrument()`` raise ``usermon.settings.ConfigurationError``.
- ``USERMON_TRUSTED_PROXIES``: which proxies may set the client address.

Protection
----------

With protection on (``docs/protection.md``), ``authenticate`` first consults the decisions for
the username and the client address; a refused attempt never reaches your ``verify_password``
(or, for Digest, the comparison with the stored hash), so no password hash is computed:

- a decision about an address, a network or a campaign answers ``429`` with ``Retry-After``;
- a decision about an account fails the authentication as a wrong password does: your
  ``error_handler`` answers, exactly as usual (no oracle);
- ``app.config["USERMON_BLOCKED_HANDLER"]`` (a function ``handler(decision)``, or its dotted
  path) answers refusals itself: anything a view may return is sent, ``None`` keeps the
  default answer above;
- a ``challenge`` decision calls the hook of ``usermon.set_challenge_handler`` with
  ``flask.request``.

The refused attempt is reported as a failed ``usermon.login`` with ``usermon.login.blocked``.

API
---
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from usermon import attributes as attrs
from usermon import enforcement
from usermon.decisions import Decision
from usermon.instrumentation._common import (
    auto_mode,
    guarded,
    open_instrumentation,
    tracer_from,
    unwrap,
    wrap,
)
from usermon.instrumentation.flask_httpauth.package import _instruments
from usermon.request_context import RequestInfo
from usermon.settings import get_settings
from usermon.tracking import record_login

__all__ = ["FlaskHTTPAuthInstrumentor"]

_logger = logging.getLogger("usermon.instrumentation.flask_httpauth")

IDENTIFIER_KEY: Final = "username"
"""The identifier key of every Flask-HTTPAuth event."""

# The tracer of instrument(tracer_provider=...); module state because BaseInstrumentor is a
# singleton whose __init__ runs on every construction.
_tracer: trace.Tracer | None = None


def _auth_argument(auth: Any, stored_password: Any = None) -> Any:
    """``authenticate``'s ``auth`` however it was passed."""
    return auth


def _authenticate(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    decision: Decision | None = None
    with guarded("checking a Flask-HTTPAuth login against the decisions"):
        if get_settings().protect:
            decision = _decision(args, kwargs)
    if decision is not None:
        import flask

        refused, response = enforcement.refuses(decision, flask.request)
        if refused:
            return _refuse(decision, response, args, kwargs)
    result = wrapped(*args, **kwargs)
    with guarded("a Flask-HTTPAuth login"):
        auth = _auth_argument(*args, **kwargs)
        username = getattr(auth, "username", None) if auth else None
        if username:  # else no credentials: not a login attempt
            import flask

            record_login(
                result not in (None, False),
                {IDENTIFIER_KEY: str(username)},
                request=RequestInfo.from_wsgi_environ(flask.request.environ),
                source=attrs.SOURCE_FLASK_HTTPAUTH,
                mode=auto_mode(),
                tracer=_tracer,
            )
    return result


def _decision(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Decision | None:
    import flask

    auth = _auth_argument(*args, **kwargs)
    username = getattr(auth, "username", None) if auth else None
    if not username:
        return None  # no credentials: not a login attempt
    request = RequestInfo.from_wsgi_environ(flask.request.environ)
    return enforcement.decision_for(request, {IDENTIFIER_KEY: str(username)})


def _refuse(
    decision: Decision, response: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Report the refused attempt, then answer it: ``None`` is Flask-HTTPAuth's own failure."""
    import flask

    from usermon.instrumentation._flask import refusal_response

    with guarded("a refused Flask-HTTPAuth login"):
        auth = _auth_argument(*args, **kwargs)
        record_login(
            False,
            {IDENTIFIER_KEY: str(auth.username)},
            request=RequestInfo.from_wsgi_environ(flask.request.environ),
            source=attrs.SOURCE_FLASK_HTTPAUTH,
            mode=auto_mode(),
            tracer=_tracer,
            blocked_by=decision.id,
        )
    answer = refusal_response(decision, response, None)
    if answer is None:
        return None  # as a wrong password: the application's error_handler answers
    flask.abort(answer)


def _classes() -> tuple[type, ...]:
    from flask_httpauth import HTTPBasicAuth, HTTPDigestAuth

    return HTTPBasicAuth, HTTPDigestAuth


class FlaskHTTPAuthInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Report Flask-HTTPAuth Basic and Digest authentications as usermon login events.

    ``instrument()`` wraps ``HTTPBasicAuth.authenticate`` and ``HTTPDigestAuth.authenticate``;
    ``uninstrument()`` puts the originals back. Without a recording span, events go on a span of
    usermon's own from ``tracer_provider`` (default: the global one).
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        global _tracer
        if not open_instrumentation(_instruments, "Flask-HTTPAuth"):
            return
        _tracer = tracer_from(kwargs)
        for cls in _classes():
            wrap(cls, "authenticate", _authenticate)

    def _uninstrument(self, **kwargs: Any) -> None:
        global _tracer
        for cls in _classes():
            unwrap(cls, "authenticate")
        _tracer = None
