"""Automatic login tracking for `Django REST Framework`_'s HTTP Basic authentication.

.. _Django REST Framework: https://www.django-rest-framework.org/

DRF authenticates every API request on its own and never calls ``django.contrib.auth.login()``,
so Django's ``user_logged_in`` never fires for it. This instrumentor wraps
``rest_framework.authentication.BasicAuthentication.authenticate_credentials``, the one place
where a Basic username and password meet: a returned user is a successful ``usermon.login``, an
``AuthenticationFailed`` a failed one (wrong password, unknown or inactive user). A request
without an ``Authorization: Basic`` header never reaches it and is not a login attempt. Basic
credentials are sent with every request, so every authenticated API request is one login event,
as with any stateless HTTP authentication.

One attempt, one event: a failed Basic login goes through ``django.contrib.auth.authenticate()``,
which also sends ``user_login_failed``. While DRF's attempt runs, the Django instrumentor stands
back, so the failure is reported once, with ``usermon.source = "drf"``. Identifiers follow the
Django rule (``{USERNAME_FIELD: value}``), so DRF and Django events of one account match.

What the other DRF authentication classes report:

- ``SessionAuthentication`` reads the session an earlier ``login()`` created: that login was
  reported by the Django instrumentor; later API requests on the session are not login attempts.
- ``TokenAuthentication`` (and JWT packages) check a bearer token: no username is involved and a
  token is a secret, so nothing is reported.
- The views that hand out tokens for a username and password are logins: DRF's
  ``obtain_auth_token`` (``AuthTokenSerializer``) and SimpleJWT's ``TokenObtainPairView`` and
  ``TokenObtainSlidingView`` (``TokenObtainSerializer``). Their serializers call
  ``authenticate()``, so a failure is reported by the Django instrumentor (``source =
  "django"``) and decisions are enforced there, with the serializer's own answer for a wrong
  password; a token handed out never passes through ``login()``, so this instrumentor wraps the
  serializers' ``validate`` and reports the success (``source = "drf"``). They are wrapped when
  their modules are first imported (SimpleJWT's needs Django's apps loaded). A serializer of
  yours that overrides ``validate`` without calling ``super()`` is not seen: report its
  successes with one ``usermon.auth_track(True, ...)`` under the ``USERNAME_FIELD`` key.

Usage
-----

.. code-block:: sh

    opentelemetry-instrument python manage.py runserver --noreload

or by hand:

.. code-block:: python

    from usermon.instrumentation.django import DjangoInstrumentor
    from usermon.instrumentation.drf import DRFInstrumentor

    DjangoInstrumentor().instrument()
    DRFInstrumentor().instrument()

Configuration
-------------

The same as :mod:`usermon.instrumentation.django`: ``USERMON_AUTO_MODE``,
``USERMON_LOOKUP_USER_EXISTS`` (a failed DRF login then carries ``usermon.user.exists`` at the cost
of one query), ``USERMON_TRUSTED_PROXIES``. A subclass that overrides ``authenticate_credentials``
without calling ``super()`` is not seen.

Protection
----------

With protection on (``docs/protection.md``) the wrapper consults the decisions before
``authenticate_credentials`` runs, so no password is checked for a refused attempt: a decision
about an address, a network or a campaign raises DRF's ``Throttled`` (429 with ``Retry-After``),
one about an account raises the ``AuthenticationFailed`` a wrong password raises (401, no
oracle). A challenge handler's response, or ``USERMON_BLOCKED_VIEW``'s, answers instead when the
Django instrumentor is on too (it delivers the response). The refused attempt is reported with
``usermon.login.blocked``.

API
---
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Collection
from types import ModuleType
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from usermon import attributes as attrs
from usermon import enforcement
from usermon.decisions import Decision
from usermon.instrumentation._common import (
    auto_mode,
    claim_attempt,
    guarded,
    open_instrumentation,
    tracer_from,
    unwrap,
    wrap,
)
from usermon.instrumentation.drf.package import _instruments
from usermon.tracking import record_login

__all__ = ["DRFInstrumentor"]

_logger = logging.getLogger("usermon.instrumentation.drf")

# The tracer of instrument(tracer_provider=...); module state because BaseInstrumentor is a
# singleton whose __init__ runs on every construction.
_tracer: trace.Tracer | None = None


def _credentials(userid: Any, password: Any, request: Any = None) -> tuple[Any, Any]:
    """``authenticate_credentials``'s ``userid`` and ``request`` however they were passed."""
    return userid, request


def _authenticate_credentials(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    from rest_framework.exceptions import AuthenticationFailed

    decision: Decision | None = None
    with guarded("checking a DRF Basic login against the decisions"):
        decision = _decision(args, kwargs)
    if decision is not None:
        _enforce(decision, args, kwargs)
    try:
        with claim_attempt():
            result = wrapped(*args, **kwargs)
    except AuthenticationFailed:
        with guarded("a failed DRF Basic login"):
            _report(False, None, args, kwargs)
        raise
    with guarded("a DRF Basic login"):
        _report(True, result, args, kwargs)
    return result


def _identifiers(userid: Any) -> dict[str, str]:
    from django.contrib.auth import get_user_model

    return {get_user_model().USERNAME_FIELD: str(userid)} if userid else {}


def _decision(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Decision | None:
    from usermon.instrumentation.django import _request_info
    from usermon.settings import get_settings

    if not get_settings().protect:
        return None
    userid, request = _credentials(*args, **kwargs)
    return enforcement.decision_for(_request_info(request), _identifiers(userid))


def _enforce(decision: Decision, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Raise the refusal ``decision`` calls for, or return to let the login go on."""
    from usermon.instrumentation import django as django_instrumentation

    userid, request = _credentials(*args, **kwargs)
    refused, response = enforcement.refuses(decision, request)
    if not refused:
        return
    with guarded("a refused DRF Basic login"):
        record_login(
            False,
            _identifiers(userid),
            request=django_instrumentation._request_info(request),
            source=attrs.SOURCE_DRF,
            mode=auto_mode(),
            tracer=_tracer,
            blocked_by=decision.id,
        )
    if django_instrumentation.delivers_refusals():
        # The view gets Django's HttpRequest, as every Django view does.
        django_request = getattr(request, "_request", request)
        answer = django_instrumentation.refusal_answer(django_request, decision, response)
        if answer is not None:
            raise django_instrumentation.LoginRefused(decision, answer)
    from rest_framework.exceptions import AuthenticationFailed, Throttled

    if enforcement.hides_refusal(decision):
        from django.utils.translation import gettext

        # The very message BasicAuthentication gives for a wrong password.
        raise AuthenticationFailed(gettext("Invalid username/password."))
    raise Throttled(wait=enforcement.retry_after(decision))


def _report(success: bool, result: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    # Imported from the Django instrumentor so both report one account under the same keys.
    from usermon.instrumentation.django import _request_info, identifiers_of_user, user_exists

    userid, request = _credentials(*args, **kwargs)
    if success:
        user = result[0] if isinstance(result, tuple) and result else None
        identifiers = identifiers_of_user(user) if user is not None else {}
    else:
        from django.contrib.auth import get_user_model

        identifiers = {get_user_model().USERNAME_FIELD: str(userid)} if userid else {}
    if identifiers:
        record_login(
            success,
            identifiers,
            request=_request_info(request),
            exists=None if success else user_exists(identifiers),
            source=attrs.SOURCE_DRF,
            mode=auto_mode(),
            tracer=_tracer,
        )


# The serializers of the views that hand out tokens for a username and password: (module, class).
_TOKEN_SERIALIZERS: Final = (
    ("rest_framework.authtoken.serializers", "AuthTokenSerializer"),
    ("rest_framework_simplejwt.serializers", "TokenObtainSerializer"),
)

_instrumented = False  # whether a token serializer imported from now on is wrapped


def _token_validate(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # A failure raises out of here, already reported (and refused) through authenticate().
    result = wrapped(*args, **kwargs)
    with guarded("a DRF token login"):
        user = getattr(instance, "user", None)  # SimpleJWT keeps it; DRF's returns it
        if user is None and isinstance(result, dict):
            user = result.get("user")
        if user is not None:
            from usermon.instrumentation.django import _request_info, identifiers_of_user

            context = getattr(instance, "context", None) or {}
            record_login(
                True,
                identifiers_of_user(user),
                request=_request_info(context.get("request")),
                source=attrs.SOURCE_DRF,
                mode=auto_mode(),
                tracer=_tracer,
            )
    return result


def _wrap_token_serializer(name: str, module: ModuleType) -> None:
    if _instrumented:
        with guarded("wrapping a DRF token serializer"):
            wrap(getattr(module, name), "validate", _token_validate)


class DRFInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Report DRF ``BasicAuthentication`` successes and failures, and the successes of the
    views that hand out tokens, as usermon login events.

    ``instrument()`` wraps ``BasicAuthentication.authenticate_credentials``, and
    ``AuthTokenSerializer.validate`` and SimpleJWT's ``TokenObtainSerializer.validate`` once
    their modules are imported; ``uninstrument()`` puts the originals back. Without a recording
    span, events go on a span of usermon's own from ``tracer_provider`` (default: the global
    one).
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        global _tracer
        if not open_instrumentation(_instruments, "DRF"):
            return
        from rest_framework.authentication import BasicAuthentication

        _tracer = tracer_from(kwargs)
        wrap(BasicAuthentication, "authenticate_credentials", _authenticate_credentials)
        import wrapt

        global _instrumented
        _instrumented = True
        for module, name in _TOKEN_SERIALIZERS:
            # Now if the module is imported already, else when it is: not before Django's apps
            # are loaded, which importing SimpleJWT's serializers needs.
            wrapt.register_post_import_hook(functools.partial(_wrap_token_serializer, name), module)

    def _uninstrument(self, **kwargs: Any) -> None:
        global _tracer, _instrumented
        from rest_framework.authentication import BasicAuthentication

        unwrap(BasicAuthentication, "authenticate_credentials")
        _instrumented = False
        for module, name in _TOKEN_SERIALIZERS:
            if module in sys.modules:
                unwrap(getattr(sys.modules[module], name), "validate")
        _tracer = None
