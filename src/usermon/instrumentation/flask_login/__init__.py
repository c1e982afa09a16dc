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

Protection
----------

Flask-Login never sees a password: your view checks it, then calls ``login_user``. So with
protection on (``docs/protection.md``) the instrumentor adds a ``before_request`` function to
every application that ``LoginManager`` is set up on (``LoginManager(app)`` or ``init_app``,
after ``instrument()``), which consults the decisions for a ``POST`` to the login endpoint
before your view runs, so a refused attempt never reaches your password check:

- the login endpoint is ``login_manager.login_view``, or the endpoints listed in
  ``app.config["USERMON_LOGIN_ENDPOINTS"]`` (for a blueprint: ``"auth.login"``);
- the identifier is read from the submitted form (or JSON body): the field named by
  ``app.config["USERMON_LOGIN_FIELD"]``, else the first of ``email``, ``username``, ``login``
  present, reported as ``{field: value}``; it must be the key your success events use (see
  *Identifiers*), or account decisions will not match;
- a decision about an address, a network or a campaign answers ``429`` with ``Retry-After``;
- a decision about an account answers with ``app.config["USERMON_BLOCKED_HANDLER"]``
  (``handler(decision)``, or its dotted path, returning anything a view may return), which is
  asked first for every refusal (``None`` keeps the default answer). Flask-Login has no
  failed-login response of its own to imitate: without the handler an account refusal is a
  plain ``401 Invalid credentials.``, which an attacker can tell apart from your view's answer.
  Point the handler at the same answer your view gives a wrong password to leave no oracle;
- a ``challenge`` decision calls the hook of ``usermon.set_challenge_handler`` with
  ``flask.request``.

It does not protect a login that happens elsewhere (another endpoint not listed, a login by
``GET``, an API that calls ``login_user`` after its own check): call ``usermon.check`` there.
The refused attempt is reported as a failed ``usermon.login`` with ``usermon.login.blocked``.

API
---
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Collection, Mapping
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
from usermon.instrumentation.flask_login.package import _instruments
from usermon.request_context import RequestInfo
from usermon.settings import get_settings
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


LOGIN_ENDPOINTS: Final = "USERMON_LOGIN_ENDPOINTS"
"""Flask config key: the endpoints whose ``POST`` is a login attempt (default: ``login_view``)."""

LOGIN_FIELD: Final = "USERMON_LOGIN_FIELD"
"""Flask config key: the form field holding the login identifier (default: the first of
``email``, ``username``, ``login`` present)."""

INVALID_CREDENTIALS: Final = "Invalid credentials.\n"

# The applications given our before_request function, so that uninstrument() takes it back.
_protected_apps: weakref.WeakSet[Any] = weakref.WeakSet()


def _init_app(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    result = wrapped(*args, **kwargs)
    with guarded("adding usermon protection to a Flask-Login application"):
        app = args[0] if args else kwargs.get("app")
        if app is not None and app not in _protected_apps:
            app.before_request(_protect_login)
            _protected_apps.add(app)
    return result


def _login_identifiers(request: Any, config: Mapping[str, Any]) -> dict[str, str]:
    data: Any = request.form
    if not data and request.is_json:
        data = request.get_json(silent=True)
        if not isinstance(data, Mapping):
            return {}
    field = config.get(LOGIN_FIELD)
    names = (field,) if isinstance(field, str) and field else _USER_ATTRIBUTES
    for name in names:
        value = data.get(name)
        if isinstance(value, str) and value:
            return {name: value}
    return {}


def _is_login(request: Any, app: Any) -> bool:
    if request.method != "POST" or request.endpoint is None:
        return False
    endpoints = app.config.get(LOGIN_ENDPOINTS)
    if endpoints is None:
        view = getattr(getattr(app, "login_manager", None), "login_view", None)
        endpoints = (view,) if isinstance(view, str) else ()
    elif isinstance(endpoints, str):
        endpoints = (endpoints,)
    if not endpoints:
        _warn_no_endpoint()
    return request.endpoint in endpoints


_warned_no_endpoint = False


def _warn_no_endpoint() -> None:
    global _warned_no_endpoint
    if not _warned_no_endpoint:
        _warned_no_endpoint = True
        _logger.warning(
            "usermon: protection is on but this Flask-Login application names no login endpoint "
            "(set login_manager.login_view or app.config[%r]); its logins are not checked",
            LOGIN_ENDPOINTS,
        )


def _protect_login() -> Any:
    """``before_request``: refuse a login attempt a decision refuses, before the view runs."""
    import flask

    decision: Decision | None = None
    identifiers: dict[str, str] = {}
    with guarded("checking a Flask-Login login against the decisions"):
        if get_settings().protect and _is_login(flask.request, flask.current_app):
            identifiers = _login_identifiers(flask.request, flask.current_app.config)
            info = RequestInfo.from_wsgi_environ(flask.request.environ)
            decision = enforcement.decision_for(info, identifiers)
    if decision is None:
        return None
    refused, response = enforcement.refuses(decision, flask.request)
    if not refused:
        return None
    with guarded("a refused Flask-Login login"):
        record_login(
            False,
            identifiers,
            request=_flask_request_info(),
            source=attrs.SOURCE_FLASK_LOGIN,
            mode=auto_mode(),
            tracer=_tracer,
            blocked_by=decision.id,
        )
    from usermon.instrumentation._flask import refusal_response

    hidden = flask.Response(INVALID_CREDENTIALS, status=401, mimetype="text/plain")
    return refusal_response(decision, response, hidden)


class FlaskLoginInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Report Flask-Login's ``user_logged_in`` signal as successful usermon logins, and enforce
    decisions on the login endpoint (see *Protection*).

    ``instrument(identifiers=...)`` optionally sets how a user object maps to identifiers; it
    also wraps ``LoginManager.init_app`` to add the protection ``before_request`` function.
    ``uninstrument()`` disconnects the receiver, unwraps, and removes that function. Without a
    recording span, events go on a span of usermon's own from ``tracer_provider`` (default: the
    global one).
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
        from flask_login import LoginManager

        wrap(LoginManager, "init_app", _init_app)

    def _uninstrument(self, **kwargs: Any) -> None:
        global _identifiers_of, _tracer
        from flask_login import LoginManager, signals

        signals.user_logged_in.disconnect(_on_logged_in)
        unwrap(LoginManager, "init_app")
        for app in list(_protected_apps):
            functions = app.before_request_funcs.get(None, [])
            if _protect_login in functions:
                functions.remove(_protect_login)
        _protected_apps.clear()
        _identifiers_of = default_identifiers
        _tracer = None
