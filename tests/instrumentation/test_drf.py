"""Django REST Framework: HTTP Basic logins, and the views that hand out DRF and SimpleJWT tokens
for a username and password; one event per attempt."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from usermon import attributes as attrs
from usermon.testing import CapturedEvents

pytestmark = pytest.mark.usefixtures("db")

PASSWORD = "correct horse"


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _get(authorization: str | None = None) -> object:
    from django.test import Client

    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    return Client(REMOTE_ADDR="198.51.100.4").get("/api/whoami/", **headers)


@pytest.fixture
def ada(db: None) -> object:
    from .django_site import make_user

    return make_user("ada", PASSWORD)


@pytest.fixture
def both_instrumented(django_project: None) -> Iterator[None]:
    """Django's and DRF's instrumentors together, as opentelemetry-instrument turns them on."""
    from usermon.instrumentation.django import DjangoInstrumentor
    from usermon.instrumentation.drf import DRFInstrumentor

    DjangoInstrumentor().instrument()
    DRFInstrumentor().instrument()
    yield
    DRFInstrumentor().uninstrument()
    DjangoInstrumentor().uninstrument()


@pytest.mark.usefixtures("ada", "both_instrumented")
def test_basic_login_is_one_successful_drf_login(events: CapturedEvents) -> None:
    response = _get(_basic("ada", PASSWORD))

    assert response.status_code == 200
    [event] = events.logins
    assert event.success is True
    assert event.attributes[attrs.SOURCE] == attrs.SOURCE_DRF
    assert event.attributes[attrs.IDENTIFIER_PREFIX + "username"] == "ada"
    assert event.attributes[attrs.CLIENT_ADDRESS] == "198.51.100.4"


@pytest.mark.usefixtures("ada", "both_instrumented")
def test_one_failed_basic_attempt_is_exactly_one_event(events: CapturedEvents) -> None:
    """DRF's failure also fires Django's user_login_failed: still one event, from DRF."""
    response = _get(_basic("ada", "wrong"))

    assert response.status_code == 401
    [event] = events.logins
    assert event.success is False
    assert event.attributes[attrs.SOURCE] == attrs.SOURCE_DRF
    assert event.attributes[attrs.IDENTIFIER_PREFIX + "username"] == "ada"
    assert "wrong" not in repr(event.attributes)


@pytest.mark.usefixtures("ada", "both_instrumented")
def test_a_failed_basic_attempt_for_an_unknown_user_is_one_event(events: CapturedEvents) -> None:
    _get(_basic("mallory", "guess"))

    [event] = events.logins
    assert event.success is False
    assert event.attributes[attrs.IDENTIFIER_PREFIX + "username"] == "mallory"


@pytest.mark.usefixtures("ada", "both_instrumented")
def test_a_request_without_credentials_is_not_a_login_attempt(events: CapturedEvents) -> None:
    response = _get()

    assert response.status_code in (401, 403)
    assert events.logins == []


@pytest.mark.usefixtures("ada", "both_instrumented")
def test_drf_and_django_report_one_account_under_one_identity(events: CapturedEvents) -> None:
    from django.test import Client

    _get(_basic("ada", "wrong"))
    Client().post("/accounts/login/", {"username": "ada", "password": PASSWORD})

    drf, django = events.logins
    assert drf.attributes[attrs.SOURCE] == attrs.SOURCE_DRF
    assert django.attributes[attrs.SOURCE] == attrs.SOURCE_DJANGO
    assert drf.attributes[attrs.USER_HASH] == django.attributes[attrs.USER_HASH]


@pytest.mark.usefixtures("ada")
def test_with_only_the_django_instrumentor_a_drf_failure_is_reported_once_by_django(
    django_project: None, events: CapturedEvents
) -> None:
    from usermon.instrumentation.django import DjangoInstrumentor

    DjangoInstrumentor().instrument()
    try:
        _get(_basic("ada", "wrong"))
    finally:
        DjangoInstrumentor().uninstrument()

    [event] = events.logins
    assert event.attributes[attrs.SOURCE] == attrs.SOURCE_DJANGO


@pytest.mark.usefixtures("ada", "both_instrumented")
def test_the_apps_own_exception_passes_through_untouched(events: CapturedEvents) -> None:
    from .django_site import DatabaseDown

    with pytest.raises(DatabaseDown, match="unreachable") as raised:
        _get(_basic("explode", "x"))

    assert raised.traceback[-1].name == "authenticate"  # raised where the app raised it
    assert events.logins == []


def test_uninstrument_restores_basic_authentication_exactly(
    django_project: None, events: CapturedEvents
) -> None:
    from rest_framework.authentication import BasicAuthentication

    from usermon.instrumentation.drf import DRFInstrumentor

    original = BasicAuthentication.__dict__["authenticate_credentials"]
    DRFInstrumentor().instrument()
    assert BasicAuthentication.__dict__["authenticate_credentials"] is not original
    DRFInstrumentor().instrument()  # twice: harmless
    DRFInstrumentor().uninstrument()

    assert BasicAuthentication.__dict__["authenticate_credentials"] is original


@pytest.mark.usefixtures("ada")
def test_the_tracer_provider_given_to_instrument_records_the_spans_of_our_own(
    django_project: None,
) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from usermon.instrumentation.drf import DRFInstrumentor
    from usermon.testing import capture_events

    provider = TracerProvider()
    with capture_events() as global_events, capture_events(tracer_provider=provider) as own:
        DRFInstrumentor().instrument(tracer_provider=provider)
        try:
            _get(_basic("ada", PASSWORD))
        finally:
            DRFInstrumentor().uninstrument()
    assert [event.attributes[attrs.SOURCE] for event in own.logins] == [attrs.SOURCE_DRF]
    assert global_events.logins == []


def _token(path: str, password: str, ip: str = "198.51.100.4") -> object:
    from django.test import Client

    return Client(REMOTE_ADDR=ip).post(path, {"username": "ada", "password": password})


TOKEN_VIEWS = [
    pytest.param("/api/token/", 200, 400, id="drf-authtoken"),
    pytest.param("/api/jwt/", 200, 401, id="simplejwt"),
]


@pytest.mark.usefixtures("ada", "both_instrumented")
@pytest.mark.parametrize(("path", "ok", "refused"), TOKEN_VIEWS)
def test_a_token_handed_out_is_one_successful_login(
    events: CapturedEvents, path: str, ok: int, refused: int
) -> None:
    response = _token(path, PASSWORD)

    assert response.status_code == ok  # type: ignore[attr-defined]
    [event] = events.logins
    assert event.success is True
    assert event.attributes[attrs.SOURCE] == attrs.SOURCE_DRF
    assert event.attributes[attrs.IDENTIFIER_PREFIX + "username"] == "ada"
    assert event.attributes[attrs.CLIENT_ADDRESS] == "198.51.100.4"
    assert PASSWORD not in repr(event.attributes)


@pytest.mark.usefixtures("ada", "both_instrumented")
@pytest.mark.parametrize(("path", "ok", "refused"), TOKEN_VIEWS)
def test_a_token_refused_for_a_wrong_password_is_one_failed_login(
    events: CapturedEvents, path: str, ok: int, refused: int
) -> None:
    response = _token(path, "wrong")

    assert response.status_code == refused  # type: ignore[attr-defined]
    [event] = events.logins  # Django's user_login_failed, reported once
    assert event.success is False
    assert event.attributes[attrs.IDENTIFIER_PREFIX + "username"] == "ada"
    assert event.attributes[attrs.USER_HASH] == _hash_of_ada_success(path, events)


def _hash_of_ada_success(path: str, events: CapturedEvents) -> object:
    """The user hash of ada's successful token login: one account, one identity."""
    events.clear()
    _token(path, PASSWORD)
    [event] = events.logins
    return event.attributes[attrs.USER_HASH]


@pytest.mark.usefixtures("ada")
@pytest.mark.parametrize(("path", "ok", "refused"), TOKEN_VIEWS)
def test_uninstrument_stops_reporting_tokens_handed_out(
    django_project: None, events: CapturedEvents, path: str, ok: int, refused: int
) -> None:
    from usermon.instrumentation.drf import DRFInstrumentor

    DRFInstrumentor().instrument()
    DRFInstrumentor().uninstrument()

    assert _token(path, PASSWORD).status_code == ok  # type: ignore[attr-defined]
    assert events.logins == []
