"""usermon.testing: what users' own test suites get to capture usermon events."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import usermon
from usermon import attributes as attrs
from usermon.settings import ConfigurationError, Mode, get_settings
from usermon.testing import capture_events, configured


def test_capture_events_returns_logins_and_signups_as_simple_objects() -> None:
    with capture_events() as events:
        usermon.signup_track(email="ada@example.com")
        usermon.auth_track(False, email="ada@example.com")
        usermon.auth_track(True, email="ada@example.com")
    assert [event.name for event in events] == [
        attrs.SIGNUP_EVENT,
        attrs.LOGIN_EVENT,
        attrs.LOGIN_EVENT,
    ]
    assert [event.success for event in events.logins] == [False, True]
    assert events.signups[0].success is None
    assert events.signups[0].attributes[attrs.USER_ID] == "ada@example.com"
    assert events.logins[1].span_attributes[attrs.TRACKED] is True


def test_capture_sees_only_events_of_its_own_block() -> None:
    usermon.auth_track(True, email="before@example.com")
    with capture_events() as events:
        usermon.auth_track(True, email="inside@example.com")
    usermon.auth_track(True, email="after@example.com")
    assert [e.attributes[attrs.USER_ID] for e in events] == ["inside@example.com"]


def test_clear_forgets_captured_events() -> None:
    with capture_events() as events:
        usermon.auth_track(True, email="ada@example.com")
        events.clear()
        assert len(events) == 0
        assert events.spans == []


def test_capture_with_an_explicit_tracer_provider() -> None:
    provider = TracerProvider()
    tracer = provider.get_tracer("app")
    with (
        capture_events(tracer_provider=provider) as events,
        tracer.start_as_current_span("POST /login"),
    ):
        usermon.auth_track(True, username="ada")
    [event] = events
    assert event.span_name == "POST /login"
    provider.shutdown()


def test_configured_restores_the_previous_options() -> None:
    usermon.configure(mode="disabled")
    with configured(mode="identification", event_signal="both") as inside:
        assert inside.mode is Mode.IDENTIFICATION
    assert get_settings().mode is Mode.DISABLED
    assert get_settings().event_signal.value == "span"


def test_configured_restores_even_when_the_options_are_bad() -> None:
    with pytest.raises(ConfigurationError), configured(mode="loud"):
        pass  # pragma: no cover - configure raises before the block runs
    assert get_settings().mode is Mode.IDENTIFICATION


def test_tracer_provider_is_the_global_sdk_one() -> None:
    assert isinstance(trace.get_tracer_provider(), TracerProvider)
