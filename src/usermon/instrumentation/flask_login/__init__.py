"""Automatic tracking of successful logins for `Flask-Login`_.

.. _Flask-Login: https://flask-login.readthedocs.io/

``flask_login.login_user()`` sends the ``user_logged_in`` signal; the instrumentor reports each
one as a successful ``usermon.login``, with the client address and User-Agent of the Flask
request. Logins restored from a "remember me" cookie (``user_loaded_from_cookie``) are not login
attempts and are not reported.

Flask-Login never sees a failed login: checking the password is your code's job, and so is the
one line that reports the failure, with the same identifier key the instrumentor uses for the
account (see *Identifiers* below)::

    user = User.query.filter_by(email=form.email.data).first()
    if user is None or not user.check_password(form.password.data):
        usermon.auth_track(False, {"email": form.email.data})
        return render_template("login.html", error="Invalid credentials"), 401
    login_user(user)          # reported automatically

Signups are not visible to Flask-Login either: call ``usermon.signup_track({"email": ...})`` where
your code creates the account, again with the same key.

Identifiers
-----------

One account must be reported under the same identifier keys everywhere. By default the
instrumentor takes the first of the user object's ``email``, ``username`` or ``login`` attributes
that holds a non-empty string, as ``{"email": ...}`` / ``{"username": ...}`` / ``{"login": ...}``;
a user with none of them is reported as ``{"user_id": user.get_id()}``. To choose yourself, pass a
function when instrumenting by hand::

    FlaskLoginInstrumentor().instrument(identifiers=lambda user: {"email": user.email})

Usage
-----

.. code-block:: sh

    opentelemetry-instrument flask --app app run

or by hand, before the first request:

.. code-block:: python

    from usermon.instrumentation.flask_login import FlaskLoginInstrumentor

    FlaskLoginInstrumentor().instrument()

With ``opentelemetry-instrumentation-flask`` active too, the events land on Flask's request span.

Configuration
-------------

- ``USERMON_AUTO_MODE``: ``identification`` (default), ``anonymization`` or ``disabled``; an
  unknown value makes ``instrument()`` raise ``usermon.settings.ConfigurationError``.
- ``USERMON_TRUSTED_PROXIES``: which proxies may set the client address.
- ``identifiers=`` (manual ``instrument()`` only): a function from the user object to its
  identifiers mapping.

API
---
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from usermon import attributes as attrs
from usermon.instrumentation._common import (
    auto_mode,
    guarded,
    open_instrumentation,
    tracer_from,
)
from usermon.instrumentation.flask_login.package import _instruments
from usermon.request_context import RequestInfo
from usermon.tracking import record_login

__all__ = ["FlaskLoginInstrumentor", "default_identifiers"]

_logger = logging.getLogger("usermon.instrumentation.flask_login")

_USER_ATTRIBUTES: Final = ("email", "username", "login")

IdentifiersOf = Callable[[Any], Mapping[str, object]]


def default_identifiers(user: Any) -> dict[str, str]:
    """The default identifiers of a Flask-Login user (see *Identifiers* above)."""
    for name in _USER_ATTRIBUTES:
        value = getattr(user, name, None)
        if isinstance(value, str) and value:
            return {name: value}
    get_id = getattr(user, "get_id", None)
    user_id = get_id() if callable(get_id) else None
    return {"user_id": str(user_id)} if user_id not in (None, "") else {}


# The function in use and the tracer of instrument(tracer_provider=...); module state because
# BaseInstrumentor is a singleton whose __init__ runs on every construction.
_identifiers_of: IdentifiersOf = default_identifiers
_tracer: trace.Tracer | None = None


def _flask_request_info() -> RequestInfo | None:
    import flask

    if not flask.has_request_context():
        return None
    return RequestInfo.from_wsgi_environ(flask.request.environ)


def _on_logged_in(sender: Any, user: Any = None, **extra: Any) -> None:
    with guarded("a Flask-Login login"):
        identifiers = _identifiers_of(user)
        record_login(
            True,
            identifiers,
            request=_flask_request_info(),
            source=attrs.SOURCE_FLASK_LOGIN,
            mode=auto_mode(),
            tracer=_tracer,
        )


class FlaskLoginInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Report Flask-Login's ``user_logged_in`` signal as successful usermon logins.

    ``instrument(identifiers=...)`` optionally sets how a user object maps to identifiers;
    ``uninstrument()`` disconnects the receiver. Without a recording span, events go on a span of
    usermon's own from ``tracer_provider`` (default: the global one).
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        global _identifiers_of, _tracer
        enabled = open_instrumentation(_instruments, "Flask-Login")
        identifiers = kwargs.get("identifiers")
        if identifiers is not None and not callable(identifiers):
            raise TypeError("identifiers= must be a function of the user object")
        if not enabled:
            return
        from flask_login import signals

        _identifiers_of = identifiers or default_identifiers
        _tracer = tracer_from(kwargs)
        # weak=False: the receiver is a module function, but say so rather than rely on it.
        signals.user_logged_in.connect(_on_logged_in, weak=False)

    def _uninstrument(self, **kwargs: Any) -> None:
        global _identifiers_of, _tracer
        from flask_login import signals

        signals.user_logged_in.disconnect(_on_logged_in)
        _identifiers_of = default_identifiers
        _tracer = None
