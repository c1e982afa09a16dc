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
  token is a secret, so nothing is reported. The view that hands out tokens
  (``obtain_auth_token``) calls ``authenticate()``: its failures are reported by the Django
  instrumentor (``source = "django"``); report its successes with one ``auth_track(True, ...)``
  call in your view, using the same ``USERNAME_FIELD`` key.

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

API
---
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from usermon import attributes as attrs
from usermon.instrumentation._common import (
    Patch,
    auto_mode,
    claim_attempt,
    guarded,
    require,
    startup_settings,
)
from usermon.instrumentation.drf.package import _instruments
from usermon.settings import Mode
from usermon.tracking import record_login

__all__ = ["DRFInstrumentor"]

_logger = logging.getLogger("usermon.instrumentation.drf")

_patches: list[Patch] = []


def _wrap_authenticate_credentials(original: Callable[..., Any]) -> Callable[..., Any]:
    from rest_framework.exceptions import AuthenticationFailed

    # Imported from the Django instrumentor so both report one account under the same keys.
    from usermon.instrumentation.django import (
        _request_info,
        identifiers_of_user,
        user_exists,
    )

    def authenticate_credentials(self: Any, userid: str, password: str, request: Any = None) -> Any:
        try:
            with claim_attempt():
                result = original(self, userid, password, request)
        except AuthenticationFailed:
            with guarded("a failed DRF Basic login"):
                from django.contrib.auth import get_user_model

                identifiers = {get_user_model().USERNAME_FIELD: str(userid)} if userid else {}
                if identifiers:
                    record_login(
                        False,
                        identifiers,
                        request=_request_info(request),
                        exists=user_exists(identifiers),
                        source=attrs.SOURCE_DRF,
                        mode=auto_mode(),
                    )
            raise
        with guarded("a DRF Basic login"):
            user = result[0] if isinstance(result, tuple) and result else None
            identifiers = identifiers_of_user(user) if user is not None else {}
            if identifiers:
                record_login(
                    True,
                    identifiers,
                    request=_request_info(request),
                    source=attrs.SOURCE_DRF,
                    mode=auto_mode(),
                )
        return result

    return authenticate_credentials


class DRFInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Report DRF ``BasicAuthentication`` successes and failures as usermon login events.

    ``instrument()`` wraps ``BasicAuthentication.authenticate_credentials``;
    ``uninstrument()`` puts the original back. ``tracer_provider`` is accepted and ignored.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        require(_instruments)
        settings = startup_settings()
        if settings.auto_mode is Mode.DISABLED:
            _logger.info("USERMON_AUTO_MODE=disabled: DRF logins are not tracked")
            return
        from rest_framework.authentication import BasicAuthentication

        if not _patches:
            _patches.append(
                Patch(
                    BasicAuthentication, "authenticate_credentials", _wrap_authenticate_credentials
                )
            )
        for patch in _patches:
            patch.apply()

    def _uninstrument(self, **kwargs: Any) -> None:
        for patch in _patches:
            patch.undo()
