"""Automatic login and signup tracking for `Django`_'s authentication (``django.contrib.auth``).

.. _Django: https://www.djangoproject.com/

The instrumentor listens to Django's own signals, so every login path is covered without code:
``django.contrib.auth.login()`` (``LoginView``, the admin login, your own views) sends
``user_logged_in`` and becomes a successful ``usermon.login``; every failed
``django.contrib.auth.authenticate()`` sends ``user_login_failed`` and becomes a failed one; every
new row of ``AUTH_USER_MODEL`` (a signup form, the admin, ``createsuperuser``, plain ORM code)
sends ``post_save`` with ``created=True`` and becomes a ``usermon.signup``.

One account keeps one identity: all three events carry a single identifier, keyed by the user
model's ``USERNAME_FIELD`` (``username`` for Django's ``User``; ``email`` for a custom user model
whose login field is the e-mail address). On success and signup its value is read from the user,
on failure from the credentials passed to ``authenticate()``. The password never is.

Usage
-----

Zero code, with the OpenTelemetry launcher (``pip install 'usermon[django,sdk]'``):

.. code-block:: sh

    opentelemetry-instrument python manage.py runserver --noreload

Or by hand, before the first request (e.g. in ``wsgi.py`` / ``asgi.py`` / ``manage.py``):

.. code-block:: python

    from usermon.instrumentation.django import DjangoInstrumentor

    DjangoInstrumentor().instrument()

With ``opentelemetry-instrumentation-django`` active as well, the events land on Django's request
span; without it, the SDK records each one on a short span of its own.

Configuration
-------------

- ``USERMON_AUTO_MODE``: ``identification`` (default), ``anonymization`` or ``disabled``. An
  unknown value makes ``instrument()`` raise ``usermon.settings.ConfigurationError``. With
  ``disabled`` nothing is connected at all.
- ``USERMON_LOOKUP_USER_EXISTS=true``: failed logins also carry ``usermon.user.exists``, at the
  price of one indexed query per failure. Off by default, because ``user_login_failed`` does not
  say whether the account exists and learning it would cost that query.
- ``USERMON_TRUSTED_PROXIES``: which proxies may set the client address (see the SDK docs).
- Users created with ``raw=True`` (``loaddata`` fixtures) are not signups and are not reported.

Protection
----------

With protection on (``USERMON_PROTECT``, see ``docs/protection.md``) the instrumentor also
enforces the processor's decisions inside ``authenticate()`` (Django 5.0 and later), before any
authentication backend runs, so no password hash is computed for a refused attempt. That covers
``LoginView``, the admin login and every view of yours that calls ``authenticate()``:

- a decision about an address, a network or a campaign answers ``429 Too Many Requests`` with
  ``Retry-After`` (the seconds until the decision expires);
- a decision about an account (``user``, ``user_ip``) makes ``authenticate()`` return ``None``
  without trying a backend: the view answers exactly as for a wrong password (no oracle);
- ``USERMON_BLOCKED_VIEW`` (a Django setting: a dotted path or a function
  ``view(request, decision)``) answers refusals itself: its ``HttpResponse`` is sent, while
  ``None`` keeps the default answer above;
- a ``challenge`` decision calls the hook of ``usermon.set_challenge_handler``.

``instrument()`` also registers a Django system check (``manage.py check``, and ``runserver``
and ``migrate`` at startup): ``usermon.E001`` when ``USERMON_BLOCKED_VIEW`` is a dotted path that
cannot be imported, ``usermon.E002`` when it is neither a dotted path nor a function, instead of a
500 at the first refused login.

The refused attempt is reported as a failed ``usermon.login`` with ``usermon.login.blocked``.

API
---
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from contextvars import ContextVar
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from usermon import attributes as attrs
from usermon import enforcement
from usermon.decisions import Decision
from usermon.instrumentation._common import (
    attempt_claimed,
    auto_mode,
    guarded,
    open_instrumentation,
    tracer_from,
    unwrap,
    wrap,
)
from usermon.instrumentation.django.package import _instruments
from usermon.request_context import RequestInfo
from usermon.settings import get_settings
from usermon.tracking import record_login, record_signup

__all__ = ["DjangoInstrumentor", "LoginRefused"]

_logger = logging.getLogger("usermon.instrumentation.django")

_UID: Final = "usermon.instrumentation.django"

# The WSGI environ (or, under ASGI, the request's META) of the request in progress, for the
# user creations and request-less authenticate() calls that happen inside it. Kept by reference:
# turning it into a RequestInfo costs a header walk, paid only when an event needs it.
_current_request: ContextVar[Mapping[str, Any] | None] = ContextVar(
    "usermon_django_request", default=None
)


def _on_request_started(
    sender: Any, environ: Mapping[str, Any] | None = None, **kwargs: Any
) -> None:
    # WSGI only: under ASGI Django sends this signal through asend(), which runs receivers in a
    # task of their own, so a context variable set here would never reach the view. ASGI
    # requests are caught when their ASGIRequest is built instead (_asgi_request_init).
    if environ is not None:
        _current_request.set(environ)


def _on_request_finished(sender: Any, **kwargs: Any) -> None:
    # set(), not reset(): a WSGI worker thread keeps its context from one request to the next.
    _current_request.set(None)


def _asgi_request_init(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    wrapped(*args, **kwargs)
    with guarded("reading an ASGI request"):
        # Runs in the context of the handler coroutine, which the tasks serving the request
        # are created from afterwards: they all see the value.
        _current_request.set(instance.META)


# The tracer of instrument(tracer_provider=...); module state because BaseInstrumentor is a
# singleton whose __init__ runs on every construction.
_tracer: trace.Tracer | None = None
_delivering = False  # whether Django's exception handling turns LoginRefused into its response


def _request_info(request: Any) -> RequestInfo | None:
    """The client of ``request`` (a Django or DRF request), else of the request in progress."""
    meta = getattr(request, "META", None) if request is not None else None
    if not isinstance(meta, Mapping):
        meta = _current_request.get()
    return None if meta is None else RequestInfo.from_wsgi_environ(meta)


def _user_model() -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model()


def identifiers_of_user(user: Any) -> dict[str, str]:
    """The identifiers of a user object: ``{USERNAME_FIELD: its value}``, or ``{}``."""
    field = getattr(type(user), "USERNAME_FIELD", None) or "username"
    getter = getattr(user, "get_username", None)
    value = getter() if callable(getter) else getattr(user, field, None)
    return {field: str(value)} if value not in (None, "") else {}


def identifiers_of_credentials(credentials: Mapping[str, Any]) -> dict[str, str]:
    """The identifiers in the credentials given to ``authenticate()``: ``{USERNAME_FIELD: value}``.

    ``AuthenticationForm`` always passes the login as ``username=`` whatever the model's
    ``USERNAME_FIELD`` is (``ModelBackend`` maps it), so that keyword is read as a fallback, but
    reported under ``USERNAME_FIELD`` so failures match successes and signups.
    """
    field = _user_model().USERNAME_FIELD
    value = credentials.get(field)
    if value in (None, ""):
        value = credentials.get("username")
    return {field: str(value)} if value not in (None, "") else {}


def user_exists(identifiers: Mapping[str, str]) -> bool | None:
    """Whether the account exists, only if the settings allow the query; else ``None``."""
    if not get_settings().lookup_user_exists or not identifiers:
        return None
    model = _user_model()
    ((field, value),) = identifiers.items()
    return bool(model._default_manager.filter(**{field: value}).exists())


def _on_logged_in(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    with guarded("a Django login"):
        identifiers = identifiers_of_user(user)
        if identifiers:
            record_login(
                True,
                identifiers,
                request=_request_info(request),
                source=attrs.SOURCE_DJANGO,
                mode=auto_mode(),
                tracer=_tracer,
            )


def _on_login_failed(
    sender: Any, credentials: Mapping[str, Any] | None = None, request: Any = None, **kwargs: Any
) -> None:
    refused = _refused.get()
    if refused is not None:
        _refused.set(None)
    if attempt_claimed():
        return  # DRF reports this attempt itself
    with guarded("a failed Django login"):
        identifiers = identifiers_of_credentials(credentials or {})
        if refused is not None and refused == _attempt_key(request, identifiers):
            return  # refused before any backend ran: reported as blocked already
        if not identifiers:
            _logger.debug("failed login without a %s: not reported", "USERNAME_FIELD")
            return
        record_login(
            False,
            identifiers,
            request=_request_info(request),
            exists=user_exists(identifiers),
            source=attrs.SOURCE_DJANGO,
            mode=auto_mode(),
            tracer=_tracer,
        )


def _on_model_saved(
    sender: Any, instance: Any = None, created: bool = False, raw: bool = False, **kwargs: Any
) -> None:
    if not created or raw:
        return  # the common case, every update of every model: leave at once
    with guarded("a Django signup"):
        from django.conf import settings

        if sender._meta.label_lower != settings.AUTH_USER_MODEL.lower():
            return
        identifiers = identifiers_of_user(instance)
        if identifiers:
            record_signup(
                identifiers,
                request=_request_info(None),
                source=attrs.SOURCE_DJANGO,
                mode=auto_mode(),
                tracer=_tracer,
            )


class LoginRefused(Exception):
    """Raised out of ``authenticate()`` for a refused login that needs an answer of its own (a
    429, ``USERMON_BLOCKED_VIEW``, a challenge); Django's exception handling turns it into that
    response. The application never has to catch it."""

    def __init__(self, decision: Decision, response: Any = None) -> None:
        super().__init__(f"login refused by usermon decision {decision.id}")
        self.decision = decision
        self.response = response


# The attempt whose authenticate() was just left without backends, so that the
# user_login_failed Django sends for it is not reported a second time. Cleared by the next
# failed-login signal whatever it is; only the same request and login are skipped.
_refused: ContextVar[tuple[int, str] | None] = ContextVar("usermon_django_refused", default=None)


def _attempt_key(request: Any, identifiers: Mapping[str, str]) -> tuple[int, str]:
    return id(request), repr(sorted(identifiers.items()))


def blocked_view() -> Callable[..., Any] | None:
    """The ``USERMON_BLOCKED_VIEW`` setting as a function, or ``None``."""
    from django.conf import settings

    view = getattr(settings, "USERMON_BLOCKED_VIEW", None)
    if isinstance(view, str) and view:
        from django.utils.module_loading import import_string

        view = import_string(view)
    return view if callable(view) else None


def check_blocked_view(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Django system check of ``USERMON_BLOCKED_VIEW``: ``usermon.E001`` for a dotted path that
    cannot be imported, ``usermon.E002`` for a value that is neither a path nor a function."""
    from django.conf import settings
    from django.core import checks

    view = getattr(settings, "USERMON_BLOCKED_VIEW", None)
    if view is None or view == "":
        return []
    hint = "A view(request, decision) or its dotted path, e.g. 'myapp.views.login_refused'."
    if isinstance(view, str):
        from django.utils.module_loading import import_string

        try:
            view = import_string(view)
        except Exception as exc:  # ImportError, or the module's own error while importing
            return [
                checks.Error(
                    f"USERMON_BLOCKED_VIEW = {view!r} cannot be imported: {exc}",
                    hint=hint,
                    id="usermon.E001",
                )
            ]
    if not callable(view):
        return [
            checks.Error(
                f"USERMON_BLOCKED_VIEW must be a function or a dotted path, not {view!r}",
                hint=hint,
                id="usermon.E002",
            )
        ]
    return []


def refusal_answer(request: Any, decision: Decision, challenge_response: Any) -> Any:
    """The application's own answer to a refusal: the challenge handler's response, else
    ``USERMON_BLOCKED_VIEW``'s (the application's view: its errors are its own); ``None`` for
    usermon's default."""
    if challenge_response is not None:
        return challenge_response
    view = blocked_view()
    return view(request, decision) if view is not None else None


def refusal_response(refusal: LoginRefused) -> Any:
    """The response to a refused login: the application's answer, else a 429."""
    if refusal.response is not None:
        return refusal.response
    from django.http import HttpResponse

    return HttpResponse(
        enforcement.TOO_MANY_ATTEMPTS,
        status=429,
        content_type="text/plain; charset=utf-8",
        headers={"Retry-After": str(enforcement.retry_after(refusal.decision))},
    )


def delivers_refusals() -> bool:
    """Whether a :class:`LoginRefused` raised now becomes its response (the instrumentor is on)."""
    return _delivering


def _backends_args(request: Any = None, **credentials: Any) -> tuple[Any, dict[str, Any]]:
    return request, credentials


def _compatible_backends(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # authenticate() asks this generator for the backends to try, before any of them runs.
    if attempt_claimed():
        return wrapped(*args, **kwargs)  # DRF enforced the decisions for this attempt already
    decision: Decision | None = None
    identifiers: dict[str, str] = {}
    request: Any = None
    with guarded("checking a Django login against the decisions"):
        request, credentials = _backends_args(*args, **kwargs)
        if get_settings().protect:
            identifiers = identifiers_of_credentials(credentials)
            decision = enforcement.decision_for(_request_info(request), identifiers)
    if decision is None:
        return wrapped(*args, **kwargs)
    refused, response = enforcement.refuses(decision, request)
    if not refused:
        return wrapped(*args, **kwargs)
    with guarded("a refused Django login"):
        record_login(
            False,
            identifiers,
            request=_request_info(request),
            source=attrs.SOURCE_DJANGO,
            mode=auto_mode(),
            tracer=_tracer,
            blocked_by=decision.id,
        )
    answer = refusal_answer(request, decision, response)
    if answer is None and enforcement.hides_refusal(decision):
        _refused.set(_attempt_key(request, identifiers))
        return iter(())  # no backend tried: authenticate() fails as for a wrong password
    raise LoginRefused(decision, answer)


def _response_for_exception(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    refusal = args[1] if len(args) > 1 else kwargs.get("exc")
    if isinstance(refusal, LoginRefused):
        return refusal_response(refusal)
    return wrapped(*args, **kwargs)


class DjangoInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Report Django logins, failed logins and user creations as usermon events.

    ``instrument()`` connects receivers to ``user_logged_in``, ``user_login_failed``,
    ``post_save``, ``request_started`` and ``request_finished`` and wraps ``ASGIRequest.__init__``
    (to know the client of an ASGI request); ``uninstrument()`` undoes exactly those. Events go
    on the current span; when none is recording, on a span of usermon's own from
    ``tracer_provider`` (default: the global one).
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        global _tracer, _delivering
        if not open_instrumentation(_instruments, "Django"):
            return
        from django.core.handlers.asgi import ASGIRequest

        _tracer = tracer_from(kwargs)
        for signal, receiver in _receivers():
            signal.connect(receiver, weak=False, dispatch_uid=_UID)
        wrap(ASGIRequest, "__init__", _asgi_request_init)
        import django.contrib.auth as auth
        from django.core.handlers import exception

        if hasattr(auth, "_get_compatible_backends"):  # Django 5.0 and later
            wrap(auth, "_get_compatible_backends", _compatible_backends)
        elif get_settings().protect:
            _logger.warning("usermon: decisions are enforced in Django 5.0 and later only")
        wrap(exception, "response_for_exception", _response_for_exception)
        from django.core import checks

        checks.register(check_blocked_view, "usermon")
        _delivering = True

    def _uninstrument(self, **kwargs: Any) -> None:
        global _tracer, _delivering
        import django.contrib.auth as auth
        from django.core.handlers import exception
        from django.core.handlers.asgi import ASGIRequest

        for signal, _receiver in _receivers():
            signal.disconnect(dispatch_uid=_UID)
        unwrap(ASGIRequest, "__init__")
        unwrap(auth, "_get_compatible_backends")
        unwrap(exception, "response_for_exception")
        from django.core.checks.registry import registry

        registry.registered_checks.discard(check_blocked_view)
        _delivering = False
        _current_request.set(None)
        _tracer = None


def _receivers() -> list[tuple[Any, Any]]:
    from django.contrib.auth import signals as auth_signals
    from django.core import signals as core_signals
    from django.db.models import signals as model_signals

    return [
        (auth_signals.user_logged_in, _on_logged_in),
        (auth_signals.user_login_failed, _on_login_failed),
        (model_signals.post_save, _on_model_saved),
        (core_signals.request_started, _on_request_started),
        (core_signals.request_finished, _on_request_finished),
    ]
