"""Flask-HTTPAuth: HTTP Basic and Digest logins, with the username; no credentials, no event."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator

import pytest
from flask import Flask
from flask_httpauth import HTTPBasicAuth, HTTPDigestAuth
from werkzeug.http import parse_dict_header

from usermon import attributes as attrs
from usermon.testing import CapturedEvents

PASSWORDS = {"ada": "correct horse"}
CLIENT = {"REMOTE_ADDR": "192.0.2.20", "HTTP_USER_AGENT": "curl/8.0"}


class DatabaseDown(Exception):
    """The application's own failure inside its verify callback."""


def make_basic_app() -> Flask:
    app = Flask(__name__)
    app.config.update(TESTING=True)
    auth = HTTPBasicAuth()

    @auth.verify_password
    def verify(username: str, password: str) -> str | None:
        if username == "explode":
            raise DatabaseDown("the user database is unreachable")
        return username if username and PASSWORDS.get(username) == password else None

    @app.get("/private")
    @auth.login_required
    def private() -> str:
        return f"hello {auth.current_user()}"

    return app


def make_digest_app() -> Flask:
    app = Flask(__name__)
    app.config.update(TESTING=True, SECRET_KEY="digest-tests")
    auth = HTTPDigestAuth()
    auth.get_password(PASSWORDS.get)

    @app.get("/private")
    @auth.login_required
    def private() -> str:
        return f"hello {auth.username()}"

    return app


def _basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _digest_get(app: Flask, username: str, password: str) -> int:
    """The two-step Digest exchange a browser does: challenge, then the answer."""
    client = app.test_client()
    challenge = client.get("/private", environ_base=CLIENT)
    assert challenge.status_code == 401
    params = parse_dict_header(challenge.headers["WWW-Authenticate"].split(" ", 1)[1])

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - Digest auth is MD5

    ha1 = md5(f"{username}:{params['realm']}:{password}")
    ha2 = md5("GET:/private")
    nc, cnonce = "00000001", "0a4f113b"
    answer = md5(f"{ha1}:{params['nonce']}:{nc}:{cnonce}:auth:{ha2}")
    header = (
        f'Digest username="{username}", realm="{params["realm"]}", nonce="{params["nonce"]}", '
        f'uri="/private", qop=auth, nc={nc}, cnonce="{cnonce}", response="{answer}", '
        f'opaque="{params["opaque"]}"'
    )
    return client.get(
        "/private", headers={"Authorization": header}, environ_base=CLIENT
    ).status_code


@pytest.fixture
def instrumented() -> Iterator[None]:
    from usermon.instrumentation.flask_httpauth import FlaskHTTPAuthInstrumentor

    FlaskHTTPAuthInstrumentor().instrument()
    yield
    FlaskHTTPAuthInstrumentor().uninstrument()


@pytest.mark.usefixtures("instrumented")
def test_basic_success_is_a_login_with_the_username_and_client(events: CapturedEvents) -> None:
    response = (
        make_basic_app()
        .test_client()
        .get("/private", headers=_basic("ada", "correct horse"), environ_base=CLIENT)
    )

    assert response.status_code == 200
    [event] = events.logins
    assert event.success is True
    assert event.attributes[attrs.SOURCE] == attrs.SOURCE_FLASK_HTTPAUTH
    assert event.attributes[attrs.IDENTIFIER_PREFIX + "username"] == "ada"
    assert event.attributes[attrs.CLIENT_ADDRESS] == "192.0.2.20"
    assert event.attributes[attrs.USER_AGENT] == "curl/8.0"


@pytest.mark.usefixtures("instrumented")
def test_basic_wrong_password_is_a_failed_login_without_the_password(
    events: CapturedEvents,
) -> None:
    response = (
        make_basic_app()
        .test_client()
        .get("/private", headers=_basic("ada", "hunter2"), environ_base=CLIENT)
    )

    assert response.status_code == 401
    [event] = events.logins
    assert event.success is False
    assert event.attributes[attrs.IDENTIFIER_PREFIX + "username"] == "ada"
    assert "hunter2" not in repr(event.attributes)


@pytest.mark.usefixtures("instrumented")
def test_a_request_without_credentials_is_not_a_login_attempt(events: CapturedEvents) -> None:
    """Flask-HTTPAuth still calls verify_password('', '') for it; that is not a login."""
    response = make_basic_app().test_client().get("/private", environ_base=CLIENT)

    assert response.status_code == 401
    assert events.logins == []


@pytest.mark.usefixtures("instrumented")
def test_digest_success_is_a_login(events: CapturedEvents) -> None:
    assert _digest_get(make_digest_app(), "ada", "correct horse") == 200

    [event] = events.logins  # the unauthenticated challenge request is not an attempt
    assert event.success is True
    assert event.attributes[attrs.IDENTIFIER_PREFIX + "username"] == "ada"
    assert event.attributes[attrs.CLIENT_ADDRESS] == "192.0.2.20"


@pytest.mark.usefixtures("instrumented")
def test_digest_wrong_password_is_a_failed_login(events: CapturedEvents) -> None:
    assert _digest_get(make_digest_app(), "ada", "hunter2") == 401

    [event] = events.logins
    assert event.success is False
    assert event.attributes[attrs.IDENTIFIER_PREFIX + "username"] == "ada"


@pytest.mark.usefixtures("instrumented")
def test_the_apps_own_exception_passes_through_untouched(events: CapturedEvents) -> None:
    with pytest.raises(DatabaseDown, match="unreachable") as raised:
        make_basic_app().test_client().get("/private", headers=_basic("explode", "x"))

    assert raised.traceback[-1].name == "verify"
    assert events.logins == []


def test_instrument_twice_then_uninstrument_restores_both_classes(events: CapturedEvents) -> None:
    from usermon.instrumentation.flask_httpauth import FlaskHTTPAuthInstrumentor

    originals = [cls.__dict__["authenticate"] for cls in (HTTPBasicAuth, HTTPDigestAuth)]
    FlaskHTTPAuthInstrumentor().instrument()
    FlaskHTTPAuthInstrumentor().instrument()
    make_basic_app().test_client().get("/private", headers=_basic("ada", "correct horse"))
    FlaskHTTPAuthInstrumentor().uninstrument()

    assert [cls.__dict__["authenticate"] for cls in (HTTPBasicAuth, HTTPDigestAuth)] == originals
    make_basic_app().test_client().get("/private", headers=_basic("ada", "correct horse"))
    assert len(events.logins) == 1


def test_the_tracer_provider_given_to_instrument_records_the_spans_of_our_own() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from usermon.instrumentation.flask_httpauth import FlaskHTTPAuthInstrumentor
    from usermon.testing import capture_events

    provider = TracerProvider()
    with capture_events() as global_events, capture_events(tracer_provider=provider) as own:
        FlaskHTTPAuthInstrumentor().instrument(tracer_provider=provider)
        try:
            client = make_basic_app().test_client()
            client.get("/private", headers=_basic("ada", "correct horse"), environ_base=CLIENT)
        finally:
            FlaskHTTPAuthInstrumentor().uninstrument()
    assert [event.span_name for event in own.logins] == [attrs.LOGIN_SPAN_NAME]
    assert global_events.logins == []
