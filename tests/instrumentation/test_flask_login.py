"""Flask-Login: successful logins through its signal; failures by the documented one-liner."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from flask import Flask, request
from flask_login import LoginManager, UserMixin, login_user

import usermon
from usermon import attributes as attrs
from usermon.testing import CapturedEvents

PASSWORD = "correct horse"
CLIENT = {"REMOTE_ADDR": "192.0.2.10", "HTTP_USER_AGENT": "flask-test/2.0"}


@dataclass
class User(UserMixin):  # type: ignore[misc]
    id: str
    email: str
    password: str


USERS = {"ada@example.com": User("1", "ada@example.com", PASSWORD)}


def make_app() -> Flask:
    """A Flask-Login app whose login view reports failures the way the docs say."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY="flask-login-tests", TESTING=True)
    manager = LoginManager(app)
    manager.user_loader(lambda user_id: next((u for u in USERS.values() if u.id == user_id), None))

    @app.post("/login")
    def login() -> tuple[str, int]:
        email = request.form["email"]
        user = USERS.get(email)
        if user is None or user.password != request.form["password"]:
            usermon.auth_track(
                False, {"email": email}
            )  # the one line docs/instrumentation.md shows
            return "invalid credentials", 401
        login_user(user)
        return "welcome", 200

    return app


@pytest.fixture
def instrumented() -> Iterator[None]:
    from usermon.instrumentation.flask_login import FlaskLoginInstrumentor

    FlaskLoginInstrumentor().instrument()
    yield
    FlaskLoginInstrumentor().uninstrument()


def _login(app: Flask, email: str, password: str) -> int:
    response = app.test_client().post(
        "/login", data={"email": email, "password": password}, environ_base=CLIENT
    )
    return response.status_code


@pytest.mark.usefixtures("instrumented")
def test_login_user_is_a_successful_login_with_the_users_email_and_client(
    events: CapturedEvents,
) -> None:
    assert _login(make_app(), "ada@example.com", PASSWORD) == 200

    [event] = events.logins
    assert event.success is True
    assert event.attributes[attrs.SOURCE] == attrs.SOURCE_FLASK_LOGIN
    assert event.attributes[attrs.IDENTIFIER_PREFIX + "email"] == "ada@example.com"
    assert event.attributes[attrs.CLIENT_ADDRESS] == "192.0.2.10"
    assert event.attributes[attrs.USER_AGENT] == "flask-test/2.0"


@pytest.mark.usefixtures("instrumented")
def test_the_documented_failure_line_and_the_success_share_one_identity(
    events: CapturedEvents,
) -> None:
    app = make_app()
    assert _login(app, "ada@example.com", "wrong") == 401
    assert _login(app, "ada@example.com", PASSWORD) == 200

    failure, success = events.logins
    assert (failure.success, success.success) == (False, True)
    assert failure.attributes[attrs.CLIENT_ADDRESS] == "192.0.2.10"  # SDK reads Flask's request
    assert failure.attributes[attrs.USER_HASH] == success.attributes[attrs.USER_HASH]


def test_identifiers_can_be_chosen_when_instrumenting_by_hand(events: CapturedEvents) -> None:
    from usermon.instrumentation.flask_login import FlaskLoginInstrumentor

    FlaskLoginInstrumentor().instrument(identifiers=lambda user: {"login": user.id})
    try:
        _login(make_app(), "ada@example.com", PASSWORD)
    finally:
        FlaskLoginInstrumentor().uninstrument()

    [event] = events.logins
    assert event.attributes[attrs.IDENTIFIER_PREFIX + "login"] == "1"


def test_a_failure_of_ours_is_logged_and_the_login_goes_on(
    events: CapturedEvents, caplog: pytest.LogCaptureFixture
) -> None:
    from usermon.instrumentation.flask_login import FlaskLoginInstrumentor

    def broken(user: object) -> dict[str, str]:
        raise RuntimeError("bug in usermon")

    FlaskLoginInstrumentor().instrument(identifiers=broken)
    try:
        with caplog.at_level(logging.ERROR, logger="usermon.instrumentation"):
            assert _login(make_app(), "ada@example.com", PASSWORD) == 200
    finally:
        FlaskLoginInstrumentor().uninstrument()

    assert events.logins == []
    assert "bug in usermon" in caplog.text


@pytest.mark.usefixtures("instrumented")
def test_events_land_on_flasks_request_span_when_its_otel_instrumentation_is_on(
    events: CapturedEvents,
) -> None:
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.trace import SpanKind

    app = make_app()
    FlaskInstrumentor().instrument_app(app)
    try:
        _login(app, "ada@example.com", PASSWORD)
    finally:
        FlaskInstrumentor().uninstrument_app(app)

    [span] = events.spans
    assert span.kind is SpanKind.SERVER
    assert span.attributes[attrs.TRACKED] is True


def test_instrument_twice_then_uninstrument_leaves_no_receiver(events: CapturedEvents) -> None:
    from flask_login import user_logged_in

    from usermon.instrumentation.flask_login import FlaskLoginInstrumentor

    before = len(user_logged_in.receivers)
    FlaskLoginInstrumentor().instrument()
    FlaskLoginInstrumentor().instrument()
    assert len(user_logged_in.receivers) == before + 1
    _login(make_app(), "ada@example.com", PASSWORD)
    FlaskLoginInstrumentor().uninstrument()

    assert len(user_logged_in.receivers) == before
    _login(make_app(), "ada@example.com", PASSWORD)
    assert len(events.logins) == 1


def test_the_tracer_provider_given_to_instrument_records_the_spans_of_our_own() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from usermon.instrumentation.flask_login import FlaskLoginInstrumentor
    from usermon.testing import capture_events

    provider = TracerProvider()
    with capture_events() as global_events, capture_events(tracer_provider=provider) as own:
        FlaskLoginInstrumentor().instrument(tracer_provider=provider)
        try:
            _login(make_app(), "ada@example.com", PASSWORD)  # no request span: a span of ours
        finally:
            FlaskLoginInstrumentor().uninstrument()
    assert [event.span_name for event in own.logins] == [attrs.LOGIN_SPAN_NAME]
    assert global_events.logins == []
