"""Settings: flags > USERMON_* variables > defaults, validated at startup."""

from __future__ import annotations

import pytest

from usermon.processor.settings import SettingsError, resolve


def test_defaults_listen_on_loopback_with_the_sqlite_store() -> None:
    settings = resolve({}, env={})
    assert (settings.listen_host, settings.listen_port) == ("127.0.0.1", 4400)
    assert settings.store == "sqlite:///usermon.db"
    assert settings.token is None


def test_a_flag_wins_over_the_environment_which_wins_over_the_default() -> None:
    env = {"USERMON_STORE": "memory://", "USERMON_LATENESS": "60"}
    settings = resolve({"lateness": 5.0}, env=env)
    assert settings.store == "memory://"
    assert settings.lateness == 5.0


def test_a_non_loopback_address_without_a_token_is_refused() -> None:
    with pytest.raises(SettingsError, match="bearer token"):
        resolve({"listen": "0.0.0.0:4400"}, env={})


def test_a_non_loopback_address_with_a_token_from_the_environment_is_allowed() -> None:
    settings = resolve({"listen": "0.0.0.0:4400"}, env={"USERMON_TOKEN": "t"})
    assert settings.token == "t"


def test_the_grpc_listener_off_loopback_needs_a_token_too() -> None:
    with pytest.raises(SettingsError, match="bearer token"):
        resolve({"grpc_listen": "[::]:4317"}, env={})


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"listen": "4400"}, "HOST:PORT"),
        ({"listen": "localhost:http"}, "not a number"),
        ({"store": "usermon.db"}, "must be a URL"),
        ({"max_body_bytes": "lots"}, "must be a number"),
        ({"max_body_bytes": 10}, "at least"),
        ({"otlp_endpoint": "collector:4318"}, "http"),
        ({"log_level": "loud"}, "log-level"),
        ({"rules": "/nonexistent/rules.toml"}, "no such file"),
        ({"tor_refresh": -1}, "tor-refresh"),
    ],
)
def test_bad_values_fail_with_a_message_naming_the_setting(
    flags: dict[str, object], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        resolve(flags, env={})


def test_the_token_never_shows_in_the_settings_repr() -> None:
    settings = resolve({"token": "very-secret"}, env={})
    assert "very-secret" not in repr(settings)


def test_the_tor_list_is_refreshed_hourly_unless_told_otherwise() -> None:
    assert resolve({}, env={}).tor_refresh == 3600.0
    assert resolve({}, env={"USERMON_TOR_REFRESH": "600"}).tor_refresh == 600.0
    assert resolve({"tor_refresh": 0}, env={"USERMON_TOR_REFRESH": "600"}).tor_refresh == 0.0


def test_the_transport_limits_have_documented_defaults() -> None:
    settings = resolve({}, env={})
    assert settings.max_inflight_bytes == 2 * settings.max_body_bytes == 32 * 1024 * 1024
    assert settings.header_timeout == 10.0
    assert settings.body_timeout == 30.0


def test_the_byte_budget_follows_the_body_limit_and_cannot_be_below_twice_it() -> None:
    assert resolve({"max_body_bytes": 1_000_000}, env={}).max_inflight_bytes == 2_000_000
    env = {"USERMON_MAX_INFLIGHT_BYTES": "3000000", "USERMON_BODY_TIMEOUT": "5"}
    settings = resolve({"max_body_bytes": 1_000_000}, env=env)
    assert (settings.max_inflight_bytes, settings.body_timeout) == (3_000_000, 5.0)
    with pytest.raises(SettingsError, match="twice --max-body-bytes"):
        resolve({"max_body_bytes": 1_000_000, "max_inflight_bytes": 1_500_000}, env={})
    with pytest.raises(SettingsError, match="--header-timeout"):
        resolve({"header_timeout": 0}, env={})


def test_the_trace_url_comes_from_the_flag_then_the_environment() -> None:
    env = {"USERMON_TRACE_URL": "http://env:16686/trace/{trace_id}"}
    assert resolve({}, env=env).trace_url == "http://env:16686/trace/{trace_id}"
    flag = "https://flag/trace/{trace_id}"
    assert resolve({"trace_url": flag}, env=env).trace_url == flag
    assert resolve({}, env={}).trace_url is None


@pytest.mark.parametrize(
    "value", ["http://jaeger:16686/trace/", "jaeger:16686/trace/{trace_id}", "{trace_id}"]
)
def test_a_trace_url_without_the_placeholder_or_a_scheme_stops_startup(value: str) -> None:
    with pytest.raises(SettingsError, match=r"--trace-url / USERMON_TRACE_URL"):
        resolve({"trace_url": value}, env={})
