"""tor_login, vpn_or_hosting_login and impossible_travel."""

from __future__ import annotations

import dataclasses

from tests.detection.conftest import (
    HOSTING,
    HOUR,
    NEW_YORK,
    PARIS,
    T0,
    TOR_EXIT,
    VPN,
    Stream,
)

from usermon.processor.detectors.impossible_travel import haversine_km
from usermon.processor.rules import Rules


def test_a_failed_login_from_a_tor_exit_is_a_low_finding_on_the_exit(stream: Stream) -> None:
    stream.login(T0, "alice", "185.220.101.4", False, network=TOR_EXIT)
    (signal,) = stream.of("tor_login")
    assert signal.severity == "low"
    assert (signal.subject.type, signal.subject.id) == ("ip", "185.220.101.4")


def test_a_successful_login_from_a_tor_exit_is_a_high_finding_on_the_user(
    stream: Stream,
) -> None:
    stream.login(T0, "alice", "185.220.101.4", True, network=TOR_EXIT)
    (signal,) = stream.of("tor_login")
    assert signal.severity == "high"
    assert (signal.subject.type, signal.subject.id) == ("user", "h-alice")


def test_a_signup_from_a_tor_exit_is_medium(stream: Stream) -> None:
    stream.signup(T0, "newbie", "185.220.101.4", network=TOR_EXIT)
    (signal,) = stream.of("tor_login")
    assert signal.severity == "medium"
    assert signal.evidence["outcome"] == "signup"


def test_vpn_and_hosting_logins_are_reported_with_their_provider(stream: Stream) -> None:
    stream.login(T0, "alice", "89.187.0.1", True, network=VPN)
    stream.login(T0 + 1, "bob", "5.9.0.1", False, network=HOSTING)
    success, attempt = stream.of("vpn_or_hosting_login")
    assert (success.severity, success.subject.type) == ("medium", "user")
    assert success.evidence["network"] == "NordVPN"
    assert (attempt.severity, attempt.subject.type) == ("low", "ip")
    assert attempt.evidence["category"] == "hosting"
    assert stream.of("tor_login") == []


def test_categories_left_out_of_the_rules_are_not_reported() -> None:
    rules = Rules()
    rules = dataclasses.replace(
        rules,
        vpn_or_hosting_login=dataclasses.replace(rules.vpn_or_hosting_login, categories=("vpn",)),
    )
    stream = Stream(rules)
    stream.login(T0, "bob", "5.9.0.1", False, network=HOSTING)
    assert stream.of("vpn_or_hosting_login") == []


def test_paris_then_new_york_an_hour_later_is_impossible_travel(stream: Stream) -> None:
    stream.login(T0, "alice", "198.51.100.1", True, network=PARIS)
    stream.login(T0 + HOUR, "alice", "203.0.113.5", True, network=NEW_YORK)
    (signal,) = stream.of("impossible_travel")
    assert signal.severity == "high"
    assert signal.subject.id == "h-alice"
    assert 5800 < signal.evidence["distance_km"] < 5850
    assert signal.evidence["speed_kmh"] > 5000
    assert signal.evidence["from"]["trace_id"] is not None
    assert signal.related_ips == ("198.51.100.1",)


def test_paris_then_new_york_ten_hours_later_is_a_flight(stream: Stream) -> None:
    stream.login(T0, "alice", "198.51.100.1", True, network=PARIS)
    stream.login(T0 + 10 * HOUR, "alice", "203.0.113.5", True, network=NEW_YORK)
    assert stream.of("impossible_travel") == []


def test_travel_through_a_vpn_is_never_impossible(stream: Stream) -> None:
    stream.login(T0, "alice", "198.51.100.1", True, network=PARIS)
    stream.login(T0 + 60, "alice", "89.187.0.1", True, network=VPN)
    stream.login(T0 + 120, "alice", "185.220.101.4", True, network=TOR_EXIT)
    stream.login(T0 + 180, "alice", "198.51.100.1", True, network=PARIS)
    assert stream.of("impossible_travel") == []


def test_failed_logins_do_not_count_as_travel(stream: Stream) -> None:
    stream.login(T0, "alice", "198.51.100.1", True, network=PARIS)
    stream.login(T0 + 60, "alice", "203.0.113.5", False, network=NEW_YORK)
    assert stream.of("impossible_travel") == []


def test_haversine_matches_a_known_distance() -> None:
    # Paris - New York is about 5837 km along the great circle.
    assert abs(haversine_km(48.8566, 2.3522, 40.7128, -74.0060) - 5837) < 5
    assert haversine_km(10, 20, 10, 20) == 0
