"""Django: logins through django.contrib.auth's signals, signups through any user creation."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from usermon import attributes as attrs
from usermon import settings
from usermon.settings import ConfigurationError
from usermon.testing import CapturedEvents

pytestmark = pytest.mark.usefixtures("db")

PASSWORD = "correct horse"
CLIENT = {"REMOTE_ADDR": "203.0.113.7", "HTTP_USER_AGENT": "pytest-browser/1.0"}


@pytest.fixture
def instrumented(django_project: None) -> Iterator[None]:
    from usermon.instrumentation.django import DjangoInstrumentor

    DjangoInstrumentor().instrument()
    yield
    DjangoInstrumentor().uninstrument()


@pytest.fixture
def ada(db: None) -> object:
    """An existing account, created before the instrumentor is on (so: no signup event)."""
    from .django_site import make_user

    return make_user("ada", PASSWORD, email="ada@example.com", is_staff=True)


def _client() -> object:
    from django.test import Client

    return Client(**CLIENT)


def _identifier(event: object, key: str = "username") -> object:
    return event.attributes.get(attrs.IDENTIFIER_PREFIX + key)  # type: ignore[attr-defined]


@pytest.mark.usefixtures("ada", "instrumented")
def test_admin_login_is_one_successful_login_with_username_ip_and_user_agent(
    events: CapturedEvents,
) -> None:
    response = _client().post("/admin/login/", {"username": "ada", "password": PASSWORD})

    assert response.status_code == 302
    [event] = events.logins
    assert event.success is True
    assert _identifier(event) == "ada"
    assert event.attributes[attrs.SOURCE] == attrs.SOURCE_DJANGO
    assert event.attributes[attrs.CLIENT_ADDRESS] == "203.0.113.7"
    assert event.attributes[attrs.USER_AGENT] == "pytest-browser/1.0"


@pytest.mark.usefixtures("ada", "instrumented")
def test_admin_login_with_a_wrong_password_is_one_failed_login_without_the_password(
    events: CapturedEvents,
) -> None:
    response = _client().post("/admin/login/", {"username": "ada", "password": "hunter2"})

    assert response.status_code == 200  # the form again, with an error
    [event] = events.logins
    assert event.success is False
    assert _identifier(event) == "ada"
    assert event.attributes[attrs.CLIENT_ADDRESS] == "203.0.113.7"
    exported = repr(event.attributes) + repr(event.span_attributes)
    assert "hunter2" not in exported
    assert "*****" not in exported  # not even Django's masked placeholder


@pytest.mark.usefixtures("ada", "instrumented")
def test_login_view_reports_success_and_failure(events: CapturedEvents) -> None:
    client = _client()
    client.post("/accounts/login/", {"username": "ada", "password": "nope"})
    client.post("/accounts/login/", {"username": "ada", "password": PASSWORD})

    assert [event.success for event in events.logins] == [False, True]


@pytest.mark.usefixtures("ada", "instrumented")
def test_authenticate_failure_outside_a_request_is_reported_without_a_client(
    events: CapturedEvents,
) -> None:
    from django.contrib.auth import authenticate

    assert authenticate(username="ada", password="wrong") is None

    [event] = events.logins
    assert event.success is False
    assert _identifier(event) == "ada"
    assert attrs.CLIENT_ADDRESS not in event.attributes


@pytest.mark.usefixtures("ada", "instrumented")
def test_a_successful_authenticate_without_login_is_not_a_login(events: CapturedEvents) -> None:
    """Django says a login happened when login() runs; authenticate() alone only checks."""
    from django.contrib.auth import authenticate

    assert authenticate(username="ada", password=PASSWORD) is not None
    assert events.logins == []


@pytest.mark.usefixtures("ada", "instrumented")
def test_failed_login_for_an_unknown_account_has_no_exists_flag_by_default(
    events: CapturedEvents,
) -> None:
    from django.contrib.auth import authenticate
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        authenticate(username="nobody", password="x")

    [event] = events.logins
    assert attrs.USER_EXISTS not in event.attributes
    assert len(queries) == 1  # ModelBackend's own lookup, no query of ours


@pytest.mark.usefixtures("ada", "instrumented")
def test_lookup_user_exists_setting_adds_the_flag_to_failures(
    events: CapturedEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.contrib.auth import authenticate

    monkeypatch.setenv("USERMON_LOOKUP_USER_EXISTS", "true")
    settings.reset()
    authenticate(username="ada", password="wrong")
    authenticate(username="nobody", password="wrong")

    assert [event.attributes[attrs.USER_EXISTS] for event in events.logins] == [True, False]


@pytest.mark.usefixtures("instrumented")
def test_orm_user_creation_is_a_signup(events: CapturedEvents) -> None:
    from .django_site import make_user

    make_user("grace", PASSWORD)

    [signup] = events.signups
    assert _identifier(signup) == "grace"
    assert signup.attributes[attrs.SOURCE] == attrs.SOURCE_DJANGO


@pytest.mark.usefixtures("instrumented")
def test_signup_through_a_form_view_carries_the_client_of_the_request(
    events: CapturedEvents,
) -> None:
    response = _client().post(
        "/signup/",
        {"username": "grace", "password1": "Xy7!long-pass", "password2": "Xy7!long-pass"},
    )

    assert response.status_code == 201
    [signup] = events.signups
    assert _identifier(signup) == "grace"
    assert signup.attributes[attrs.CLIENT_ADDRESS] == "203.0.113.7"
    assert signup.attributes[attrs.USER_AGENT] == "pytest-browser/1.0"


@pytest.mark.usefixtures("instrumented")
def test_createsuperuser_is_a_signup(events: CapturedEvents) -> None:
    from django.core.management import call_command

    call_command(
        "createsuperuser", username="root", email="root@example.com", interactive=False, verbosity=0
    )

    [signup] = events.signups
    assert _identifier(signup) == "root"


@pytest.mark.usefixtures("instrumented")
def test_user_created_in_the_admin_is_a_signup(events: CapturedEvents) -> None:
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.create_superuser("boss", "boss@example.com", PASSWORD)
    client = _client()
    client.force_login(admin)
    events.clear()

    response = client.post(
        "/admin/auth/user/add/",
        {
            "username": "newbie",
            "password1": "Xy7!long-pass",
            "password2": "Xy7!long-pass",
            "usable_password": "true",
        },
    )

    assert response.status_code == 302, response.content[:500]
    [signup] = events.signups
    assert _identifier(signup) == "newbie"
    assert signup.attributes[attrs.CLIENT_ADDRESS] == "203.0.113.7"


@pytest.mark.usefixtures("ada", "instrumented")
def test_saving_an_existing_user_is_not_a_signup(ada: object, events: CapturedEvents) -> None:
    ada.first_name = "Ada"  # type: ignore[attr-defined]
    ada.save()  # type: ignore[attr-defined]

    assert events.signups == []


@pytest.mark.usefixtures("instrumented")
def test_signup_failure_and_success_of_one_account_share_one_identity(
    events: CapturedEvents,
) -> None:
    from django.contrib.auth import authenticate

    from .django_site import make_user

    make_user("linus", PASSWORD)
    authenticate(username="linus", password="wrong")
    _client().post("/accounts/login/", {"username": "linus", "password": PASSWORD})

    [signup] = events.signups
    failure, success = events.logins
    keys = {
        frozenset(k for k in event.attributes if k.startswith(attrs.IDENTIFIER_PREFIX))
        for event in (signup, failure, success)
    }
    assert keys == {frozenset({attrs.IDENTIFIER_PREFIX + "username"})}
    assert len({event.attributes[attrs.USER_HASH] for event in (signup, failure, success)}) == 1


@pytest.mark.usefixtures("ada", "instrumented")
def test_events_land_on_djangos_request_span_when_its_otel_instrumentation_is_on(
    events: CapturedEvents,
) -> None:
    from opentelemetry.instrumentation.django import DjangoInstrumentor as OtelDjango
    from opentelemetry.trace import SpanKind

    OtelDjango().instrument()
    try:
        _client().post("/accounts/login/", {"username": "ada", "password": PASSWORD})
    finally:
        OtelDjango().uninstrument()

    [event] = events.logins
    [span] = events.spans
    assert span.kind is SpanKind.SERVER
    assert span.attributes[attrs.TRACKED] is True
    assert span.attributes[attrs.USER_HASH] == event.attributes[attrs.USER_HASH]


@pytest.mark.usefixtures("ada", "instrumented")
def test_without_a_request_span_the_event_gets_a_span_of_its_own(events: CapturedEvents) -> None:
    _client().post("/accounts/login/", {"username": "ada", "password": PASSWORD})

    [span] = events.spans
    assert span.name == attrs.LOGIN_SPAN_NAME


@pytest.mark.usefixtures("ada", "instrumented")
def test_the_apps_own_exception_passes_through_untouched(events: CapturedEvents) -> None:
    from .django_site import DatabaseDown

    with pytest.raises(DatabaseDown, match="unreachable"):
        _client().post("/accounts/login/", {"username": "explode", "password": "x"})
    assert events.logins == []


@pytest.mark.usefixtures("ada", "instrumented")
def test_a_failure_of_ours_is_logged_and_the_login_goes_on(
    events: CapturedEvents, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import usermon.instrumentation.django as instrumentation

    def broken(user: object) -> dict[str, str]:
        raise RuntimeError("bug in usermon")

    monkeypatch.setattr(instrumentation, "identifiers_of_user", broken)
    with caplog.at_level(logging.ERROR, logger="usermon.instrumentation"):
        response = _client().post("/accounts/login/", {"username": "ada", "password": PASSWORD})

    assert response.status_code == 302
    assert events.logins == []
    assert "bug in usermon" in caplog.text


@pytest.mark.usefixtures("ada")
def test_instrumenting_twice_reports_each_login_once(
    django_project: None, events: CapturedEvents
) -> None:
    from usermon.instrumentation.django import DjangoInstrumentor

    DjangoInstrumentor().instrument()
    DjangoInstrumentor().instrument()
    try:
        _client().post("/accounts/login/", {"username": "ada", "password": PASSWORD})
    finally:
        DjangoInstrumentor().uninstrument()

    assert len(events.logins) == 1


@pytest.mark.usefixtures("ada")
def test_uninstrument_leaves_no_receiver_and_no_event(
    django_project: None, events: CapturedEvents
) -> None:
    from django.contrib.auth.signals import user_logged_in, user_login_failed
    from django.core.handlers.asgi import ASGIRequest
    from django.core.signals import request_finished, request_started
    from django.db.models.signals import post_save

    from usermon.instrumentation.django import DjangoInstrumentor

    signals = (user_logged_in, user_login_failed, post_save, request_started, request_finished)
    before = [len(signal.receivers) for signal in signals]
    asgi_init = ASGIRequest.__dict__["__init__"]
    DjangoInstrumentor().instrument()
    assert [len(signal.receivers) for signal in signals] == [n + 1 for n in before]
    assert ASGIRequest.__dict__["__init__"] is not asgi_init
    DjangoInstrumentor().uninstrument()

    assert [len(signal.receivers) for signal in signals] == before
    assert ASGIRequest.__dict__["__init__"] is asgi_init
    _client().post("/accounts/login/", {"username": "ada", "password": PASSWORD})
    assert events.logins == []


@pytest.mark.usefixtures("ada", "instrumented")
def test_anonymization_mode_exports_no_raw_username(
    events: CapturedEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USERMON_AUTO_MODE", "anonymization")
    monkeypatch.setenv("USERMON_HASH_KEY", "instrumentation-test-key-0123456789")
    settings.reset()
    _client().post("/accounts/login/", {"username": "ada", "password": PASSWORD})

    [event] = events.logins
    assert "ada" not in repr(event.attributes) + repr(event.span_attributes)
    assert event.attributes[attrs.USER_HASH]


def test_an_unknown_auto_mode_is_a_startup_error(
    django_project: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from usermon.instrumentation.django import DjangoInstrumentor

    monkeypatch.setenv("USERMON_AUTO_MODE", "identifcation")
    settings.reset()
    with pytest.raises(ConfigurationError, match="USERMON_AUTO_MODE"):
        DjangoInstrumentor().instrument()
    assert not DjangoInstrumentor().is_instrumented_by_opentelemetry


@pytest.mark.usefixtures("ada")
def test_disabled_auto_mode_connects_nothing(
    django_project: None, events: CapturedEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.contrib.auth.signals import user_logged_in

    from usermon.instrumentation.django import DjangoInstrumentor

    monkeypatch.setenv("USERMON_AUTO_MODE", "disabled")
    settings.reset()
    before = len(user_logged_in.receivers)
    DjangoInstrumentor().instrument()
    try:
        assert len(user_logged_in.receivers) == before
        _client().post("/accounts/login/", {"username": "ada", "password": PASSWORD})
    finally:
        DjangoInstrumentor().uninstrument()
    assert events.logins == []


@pytest.mark.usefixtures("instrumented")
def test_signup_under_asgi_carries_the_client_of_the_asgi_scope(events: CapturedEvents) -> None:
    """Django's ASGI handler announces the request with its scope, not a WSGI environ."""
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    # async_to_sync from this thread: Django runs the sync view back in this thread, on the
    # connection holding the test's in-memory database.
    response = async_to_sync(AsyncClient().post)(
        "/signup/",
        {"username": "grace", "password1": "Xy7!long-pass", "password2": "Xy7!long-pass"},
        headers={"User-Agent": "asgi-browser/1.0"},
    )

    assert response.status_code == 201
    [signup] = events.signups
    assert signup.attributes[attrs.CLIENT_ADDRESS] == "127.0.0.1"
    assert signup.attributes[attrs.USER_AGENT] == "asgi-browser/1.0"


@pytest.mark.usefixtures("ada")
def test_the_tracer_provider_given_to_instrument_records_the_spans_of_our_own(
    django_project: None,
) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from usermon.instrumentation.django import DjangoInstrumentor
    from usermon.testing import capture_events

    provider = TracerProvider()
    with capture_events() as global_events, capture_events(tracer_provider=provider) as own:
        DjangoInstrumentor().instrument(tracer_provider=provider)
        try:
            _client().post("/accounts/login/", {"username": "ada", "password": "wrong"})
        finally:
            DjangoInstrumentor().uninstrument()
    assert [event.span_name for event in own.logins] == [attrs.LOGIN_SPAN_NAME]
    assert global_events.logins == []
