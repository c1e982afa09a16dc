"""Aggregation: one subject aggregate per user and per address, one State step each per event."""

from __future__ import annotations

from tests.support.state import CountingState

from usermon.processor.aggregation import aggregate, ip_profile, user_profile
from usermon.processor.model import Event, NetworkInfo
from usermon.processor.storage.state.memory import MemoryState

T0 = 1_750_000_000.0
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Firefox/128.0"


def login(t: float, *, success: bool, ip: str | None = "198.51.100.1", **more: object) -> Event:
    fields: dict[str, object] = {
        "user_hash": "h-alice",
        "user_id": "alice@example.com",
        "primary_key": "email",
        "user_agent": UA,
        "service": "shop",
        **more,
    }
    return Event(kind="login", time=t, success=success, client_ip=ip, **fields)  # type: ignore[arg-type]


def test_an_event_costs_one_state_step_per_user_and_one_per_address() -> None:
    state = CountingState()
    aggregate(login(T0, success=True), state)
    aggregate(login(T0 + 1, success=False, ip=None), state)
    aggregate(login(T0 + 2, success=False, user_hash=None), state)
    assert state.calls == {"fold_subject": 4}


def test_a_user_and_an_address_are_one_key_each() -> None:
    state = MemoryState()
    for i in range(5):
        aggregate(login(T0 + i, success=i % 2 == 0, ip=f"198.51.100.{i % 2}"), state)
    assert sorted(state.keys()) == ["ip:198.51.100.0", "ip:198.51.100.1", "u:h-alice"]


def test_a_user_profile_has_every_field_the_api_serves() -> None:
    state = MemoryState()
    aggregate(login(T0, success=False, ip="198.51.100.1"), state)
    aggregate(
        login(
            T0 + 30,
            success=True,
            ip="203.0.113.5",
            network=NetworkInfo(asn=64500, network_name="Example"),
            service="api",
        ),
        state,
    )
    aggregate(
        Event(kind="signup", time=T0 + 40, user_hash="h-alice", client_ip="203.0.113.5"), state
    )
    assert user_profile(state, "h-alice", T0 + 40) == {
        "user_hash": "h-alice",
        "label": "alice@example.com",
        "primary_key": "email",
        "first_seen": T0,
        "last_seen": T0 + 40,
        "services": ["shop", "api"],
        "last_success": {"time": T0 + 30, "ip": "203.0.113.5", "user_agent": UA},
        "successes": {"1m": 1, "10m": 1, "1h": 1, "24h": 1},
        "failures": {"1m": 1, "10m": 1, "1h": 1, "24h": 1},
        "signups": {"1m": 1, "10m": 1, "1h": 1, "24h": 1},
        "ips": ["203.0.113.5", "198.51.100.1"],
        "networks": ["AS64500", "203.0.113.0/24", "198.51.100.0/24"],
        "user_agents": [UA],
        "distinct_ips": 2,
    }


def test_an_ip_profile_has_every_field_the_api_serves() -> None:
    state = MemoryState()
    for i in range(3):
        aggregate(login(T0 + i * 300, success=i == 2, user_hash=f"h-{i % 2}"), state)
    assert ip_profile(state, "198.51.100.1", T0 + 600) == {
        "ip": "198.51.100.1",
        "first_seen": T0,
        "last_seen": T0 + 600,
        "successes": {"1m": 1, "10m": 1, "1h": 1, "24h": 1},
        "failures": {"1m": 0, "10m": 1, "1h": 2, "24h": 2},
        "signups": {"1m": 0, "10m": 0, "1h": 0, "24h": 0},
        "distinct_users": {"1m": 1, "10m": 2, "1h": 2, "24h": 2},
        "users": ["h-0", "h-1"],
    }


def test_a_long_user_agent_is_cut_in_the_profile_and_the_last_success() -> None:
    state = MemoryState()
    aggregate(login(T0, success=True, user_agent="x" * 2000), state)
    profile = user_profile(state, "h-alice", None)
    assert profile is not None
    assert profile["user_agents"] == ["x" * 512]
    assert profile["last_success"]["user_agent"] == "x" * 512


def test_profiles_read_as_of_none_are_as_of_the_subjects_newest_event() -> None:
    state = MemoryState()
    aggregate(login(T0, success=False), state)
    aggregate(login(T0 + 7200, success=False, user_hash="h-bob"), state)  # moves the state on
    assert user_profile(state, "h-alice", None) == user_profile(state, "h-alice", T0)
