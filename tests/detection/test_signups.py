"""signup_abuse."""

from __future__ import annotations

from tests.detection.conftest import T0, Stream


def test_six_signups_within_a_minute_from_one_ip_are_abuse(stream: Stream) -> None:
    for i in range(6):
        stream.signup(T0 + i * 9, f"bot{i}", "192.0.2.50")
    (signal,) = stream.of("signup_abuse")
    assert (signal.subject.type, signal.subject.id) == ("ip", "192.0.2.50")
    assert signal.evidence == {"signups": 6, "window": 60.0}
    assert signal.related_users == ("h-bot5",)


def test_five_signups_within_a_minute_are_not(stream: Stream) -> None:
    for i in range(5):
        stream.signup(T0 + i * 9, f"bot{i}", "192.0.2.50")
    assert stream.signals == []


def test_a_steady_stream_of_twenty_signups_within_the_hour_is_abuse(stream: Stream) -> None:
    for i in range(20):
        stream.signup(T0 + i * 150, f"bot{i}", "192.0.2.51")
    (signal,) = stream.of("signup_abuse")
    assert signal.evidence == {"signups": 20, "window": 3600.0}


def test_signups_from_different_addresses_do_not_add_up(stream: Stream) -> None:
    for i in range(30):
        stream.signup(T0 + i * 9, f"person{i}", f"198.51.100.{i}")
    assert stream.signals == []
