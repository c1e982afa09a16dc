"""Configuration: argument > USERMON_* variable > default, validated, cached, never raising."""

from __future__ import annotations

import logging

import pytest

import usermon
from usermon import settings
from usermon.settings import ConfigurationError, EventSignal, Mode, get_settings

KEY = "0123456789abcdef-test-key"


def test_defaults() -> None:
    current = get_settings()
    assert current.mode is Mode.IDENTIFICATION
    assert current.auto_mode is Mode.IDENTIFICATION
    assert current.hash_key is None
    assert not current.trusted_proxies.enabled
    assert current.event_signal is EventSignal.SPAN
    assert current.strict is False
    assert current.lookup_user_exists is False
    assert current.config_error is None


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USERMON_MODE", " Anonymization ")
    monkeypatch.setenv("USERMON_AUTO_MODE", "disabled")
    monkeypatch.setenv("USERMON_HASH_KEY", KEY)
    monkeypatch.setenv("USERMON_TRUSTED_PROXIES", "2")
    monkeypatch.setenv("USERMON_EVENT_SIGNAL", "both")
    monkeypatch.setenv("USERMON_STRICT", "true")
    monkeypatch.setenv("USERMON_LOOKUP_USER_EXISTS", "1")
    current = get_settings()
    assert current.mode is Mode.ANONYMIZATION
    assert current.auto_mode is Mode.DISABLED
    assert current.hash_key == KEY.encode()
    assert current.trusted_proxies.hops == 2
    assert current.event_signal is EventSignal.BOTH
    assert current.strict is True
    assert current.lookup_user_exists is True


def test_configure_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USERMON_MODE", "disabled")
    assert usermon.configure(mode="identification").mode is Mode.IDENTIFICATION
    assert get_settings().mode is Mode.IDENTIFICATION


def test_configure_none_removes_an_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USERMON_MODE", "disabled")
    usermon.configure(mode=Mode.ANONYMIZATION)
    assert usermon.configure(mode=None).mode is Mode.DISABLED


def test_settings_are_cached_until_configure(monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_settings()
    monkeypatch.setenv("USERMON_MODE", "disabled")
    assert get_settings() is first  # the hot path does not re-read the environment
    settings.reset()
    assert get_settings().mode is Mode.DISABLED


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("mode", "loud", "USERMON_MODE"),
        ("auto_mode", "sometimes", "USERMON_AUTO_MODE"),
        ("event_signal", "smoke", "USERMON_EVENT_SIGNAL"),
        ("strict", "maybe", "USERMON_STRICT"),
        ("hash_key", "short", "too short"),
        ("trusted_proxies", "10.0.0.0/99", "USERMON_TRUSTED_PROXIES"),
    ],
)
def test_configure_rejects_bad_values(option: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        usermon.configure(**{option: value})
    assert get_settings().config_error is None  # the bad value was not applied


def test_configure_rejects_unknown_options() -> None:
    with pytest.raises(ConfigurationError, match="unknown usermon option"):
        usermon.configure(moda="identification")


def test_configuration_error_is_a_value_error() -> None:
    assert issubclass(ConfigurationError, ValueError)


def test_strict_validation_raises_on_a_bad_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USERMON_MODE", "loud")
    with pytest.raises(ConfigurationError, match="'loud' is not a mode"):
        get_settings(strict_validation=True)


def test_bad_environment_met_in_a_login_is_logged_once_and_emits_nothing_identifying(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("USERMON_MODE", "loud")
    with caplog.at_level(logging.ERROR, logger="usermon"):
        first = get_settings()
        settings.restore_overrides({})  # drops the cache, not the memory of what was reported
        get_settings()
    assert first.config_error is not None
    assert first.keyed_hash is None
    errors = [r for r in caplog.records if "configuration error" in r.getMessage()]
    assert len(errors) == 1
    assert errors[0].levelno == logging.ERROR


def test_strict_validation_after_a_lenient_read_still_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("USERMON_EVENT_SIGNAL", "smoke")
    assert get_settings().config_error is not None
    with pytest.raises(ConfigurationError):
        get_settings(strict_validation=True)


def test_anonymization_without_key_says_so_loudly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="usermon"):
        usermon.configure(mode="anonymization")
    assert "USERMON_HASH_KEY" in caplog.text
    assert "NO identifier" in caplog.text


def test_hash_key_is_not_in_the_repr() -> None:
    assert KEY not in repr(usermon.configure(hash_key=KEY))
