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

API
---
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any, Final

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from usermon import attributes as attrs
from usermon.instrumentation._common import (
    Patch,
    auto_mode,
    guarded,
    require,
    startup_settings,
)
from usermon.instrumentation.flask_httpauth.package import _instruments
from usermon.request_context import RequestInfo
from usermon.settings import Mode
from usermon.tracking import record_login

__all__ = ["FlaskHTTPAuthInstrumentor"]

_logger = logging.getLogger("usermon.instrumentation.flask_httpauth")

IDENTIFIER_KEY: Final = "username"
"""The identifier key of every Flask-HTTPAuth event."""

_patches: list[Patch] = []


def _wrap_authenticate(original: Callable[..., Any]) -> Callable[..., Any]:
    def authenticate(self: Any, auth: Any, stored_password: Any) -> Any:
        result = original(self, auth, stored_password)
        username = getattr(auth, "username", None) if auth else None
        if not username:
            return result  # no credentials: not a login attempt
        with guarded("a Flask-HTTPAuth login"):
            import flask

            record_login(
                result not in (None, False),
                {IDENTIFIER_KEY: str(username)},
                request=RequestInfo.from_wsgi_environ(flask.request.environ),
                source=attrs.SOURCE_FLASK_HTTPAUTH,
                mode=auto_mode(),
            )
        return result

    return authenticate


class FlaskHTTPAuthInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Report Flask-HTTPAuth Basic and Digest authentications as usermon login events.

    ``instrument()`` wraps ``HTTPBasicAuth.authenticate`` and ``HTTPDigestAuth.authenticate``;
    ``uninstrument()`` puts the originals back. ``tracer_provider`` is accepted and ignored.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        require(_instruments)
        settings = startup_settings()
        if settings.auto_mode is Mode.DISABLED:
            _logger.info("USERMON_AUTO_MODE=disabled: Flask-HTTPAuth logins are not tracked")
            return
        from flask_httpauth import HTTPBasicAuth, HTTPDigestAuth

        if not _patches:
            _patches.extend(
                Patch(cls, "authenticate", _wrap_authenticate)
                for cls in (HTTPBasicAuth, HTTPDigestAuth)
            )
        for patch in _patches:
            patch.apply()

    def _uninstrument(self, **kwargs: Any) -> None:
        for patch in _patches:
            patch.undo()
