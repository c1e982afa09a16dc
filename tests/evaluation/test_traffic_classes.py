"""The distributed attack classes of issue 15 and their benign look-alikes, as generated: each
class has the shape the issue describes, its events are labelled, and asking for no classes leaves
the established traffic as it was."""

from __future__ import annotations

from collections import Counter

import pytest

from usermon.processor.simulate import Scenario, Traffic, generate
from usermon.processor.simulate.classes import ATTACK_CLASSES, BENIGN_CLASSES, HEADLESS_AGENT

SMALL = Scenario(seed=5, users=1500, days=14, campaigns_per_kind=2, campaign_classes=2)


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    return generate(SMALL)


def _events(traffic: Traffic, cid: str) -> list:  # type: ignore[type-arg]
    return [e for e, label in traffic.labelled() if label == cid]


def test_every_class_is_generated_and_labelled(traffic: Traffic) -> None:
    by_class = Counter(c.cls for c in traffic.campaigns.values() if c.cls)
    assert by_class == dict.fromkeys(ATTACK_CLASSES, 2)
    for c in traffic.campaigns.values():
        if c.cls:
            assert c.kind == ATTACK_CLASSES[c.cls]
            assert _events(traffic, c.id), c.id
    assert set(traffic.benign_classes) == set(BENIGN_CLASSES)
    assert all(traffic.benign_classes[name] for name in BENIGN_CLASSES)


def test_no_classes_leaves_the_established_traffic_unchanged(traffic: Traffic) -> None:
    plain = generate(Scenario(seed=5, users=1500, days=14, campaigns_per_kind=2))
    labelled = {(e.trace_id, label) for e, label in plain.labelled()}
    assert not plain.benign_classes
    assert not any(c.cls for c in plain.campaigns.values())
    # The same attempts are in the richer traffic (with the exists flag, and Chrome updated).
    richer = {(e.trace_id, label) for e, label in traffic.labelled()}
    assert labelled <= richer


def test_proxy_stuffing_uses_each_address_about_once_on_mostly_unknown_accounts(
    traffic: Traffic,
) -> None:
    cid = next(c.id for c in traffic.campaigns.values() if c.cls == "proxy_stuffing")
    events = _events(traffic, cid)
    assert len(events) >= 800
    per_ip = Counter(e.client_ip for e in events)
    assert max(per_ip.values()) <= 3
    assert sum(1 for e in events if e.exists is False) > 0.9 * len(events)
    assert 0 < sum(1 for e in events if e.success) < 0.05 * len(events)
    assert traffic.campaigns[cid].takeovers
    assert events[-1].time - events[0].time <= 2 * 3600


def test_combo_first_hit_starts_with_a_success(traffic: Traffic) -> None:
    cid = next(c.id for c in traffic.campaigns.values() if c.cls == "combo_first_hit")
    events = _events(traffic, cid)
    assert events[0].success
    assert not any(e.success for e in events[1:])
    assert {events[0].user_hash} == set(traffic.campaigns[cid].takeovers)


def test_signup_farm_and_rotating_brute_force_use_one_address_per_attempt(
    traffic: Traffic,
) -> None:
    for c in traffic.campaigns.values():
        if c.cls == "signup_farm":
            events = _events(traffic, c.id)
            assert len(events) >= 200
            assert len({e.client_ip for e in events}) == len(events)
            assert {e.user_agent for e in events} == {HEADLESS_AGENT}
        if c.cls == "rotating_brute_force":
            events = _events(traffic, c.id)
            assert len(events) == 30
            assert len({e.client_ip for e in events}) == 30
            assert len({e.user_hash for e in events}) == 1
            assert events[-1].time - events[0].time <= 1800


def test_slow_spray_is_slow_and_comes_from_one_provider(traffic: Traffic) -> None:
    for c in traffic.campaigns.values():
        if c.cls != "slow_spray_provider":
            continue
        events = _events(traffic, c.id)
        orgs = {info.as_org for e in events if (info := traffic.world.lookup(e.client_ip or ""))}
        assert len(orgs) == 1
        assert len({e.client_ip for e in events}) >= 24
        assert events[-1].time - events[0].time > 2 * 86400
        per_account = Counter(e.user_hash for e in events)
        assert max(per_account.values()) <= 3


def test_benign_look_alikes_are_benign(traffic: Traffic) -> None:
    for name, users in traffic.benign_classes.items():
        assert users <= traffic.benign_users, name
