"""The synthetic traffic generator: seeded, labelled, realistic enough to find false positives."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from pathlib import Path

import pytest

from usermon import attributes
from usermon.processor.model import FINDING_KINDS, Event
from usermon.processor.simulate import Scenario, Traffic, batches, generate
from usermon.processor.simulate.traffic import distance_km

SMALL = Scenario(seed=11, users=800, days=14, campaigns_per_kind=2)


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    return generate(SMALL)


def test_same_seed_gives_the_same_traffic(traffic: Traffic) -> None:
    again = generate(SMALL)
    assert again.events == traffic.events
    assert again.labels == traffic.labels


def test_another_seed_gives_other_traffic(traffic: Traffic) -> None:
    other = generate(Scenario(seed=12, users=800, days=14, campaigns_per_kind=2))
    assert [e.user_hash for e in other.events[:50]] != [e.user_hash for e in traffic.events[:50]]


def test_events_are_in_event_time_order_with_a_label_each(traffic: Traffic) -> None:
    times = [e.time for e in traffic.events]
    assert times == sorted(times)
    assert len(traffic.labels) == len(traffic.events)


def test_every_finding_kind_has_its_campaigns_and_their_events(traffic: Traffic) -> None:
    by_kind: dict[str, int] = defaultdict(int)
    for c in traffic.campaigns.values():
        by_kind[c.kind] += 1
    assert by_kind == dict.fromkeys(FINDING_KINDS, 2)
    labelled = {label for label in traffic.labels if label is not None}
    assert labelled == set(traffic.campaigns)


def test_a_day_of_traffic_spans_the_scenario_days_on_event_time(traffic: Traffic) -> None:
    first, last = traffic.events[0].time, traffic.events[-1].time
    assert SMALL.start <= first < SMALL.start + 86400
    assert last >= SMALL.start + 86400


def test_trace_ids_are_unique_and_well_formed(traffic: Traffic) -> None:
    ids = [e.trace_id for e in traffic.events]
    assert len(set(ids)) == len(ids)
    assert all(t is not None and len(t) == 32 and int(t, 16) for t in ids)


def test_benign_users_are_untouched_by_campaigns(traffic: Traffic) -> None:
    victims = {v for c in traffic.campaigns.values() for v in c.victims}
    assert traffic.benign_users
    assert not victims & traffic.benign_users


def test_no_benign_event_comes_from_an_attacker_address(traffic: Traffic) -> None:
    attackers = {ip for c in traffic.campaigns.values() for ip in c.attacker_ips}
    benign_ips = {e.client_ip for e, label in traffic.labelled() if label is None}
    assert not attackers & benign_ips


def _benign(traffic: Traffic) -> list[Event]:
    return [e for e, label in traffic.labelled() if label is None]


def test_benign_traffic_has_typos_that_end_in_success(traffic: Traffic) -> None:
    events = _benign(traffic)
    failed = {e.user_hash for e in events if e.kind == "login" and not e.success}
    succeeded = {e.user_hash for e in events if e.success}
    assert len(failed) > 20
    # Only mistyped e-mails (accounts that do not exist) never succeed.
    assert len(failed - succeeded) < len(failed) * 0.2


def test_an_office_puts_dozens_of_users_behind_one_address(traffic: Traffic) -> None:
    users_by_ip: dict[str, set[str]] = defaultdict(set)
    for e in _benign(traffic):
        users_by_ip[e.client_ip or ""].add(e.user_hash or "")
    busiest = max(users_by_ip.values(), key=len)
    assert len(busiest) >= 30


def test_phones_change_address_within_their_carrier(traffic: Traffic) -> None:
    ips_by_user: dict[str, set[str]] = defaultdict(set)
    for e in _benign(traffic):
        if e.user_agent and "Mobile" in e.user_agent:
            ips_by_user[e.user_hash or ""].add(e.client_ip or "")
    movers = [ips for ips in ips_by_user.values() if len(ips) > 1]
    assert movers
    for ips in movers:
        networks = {traffic.world.network_of(ip) for ip in ips}
        assert len(networks) == 1
        assert next(iter(networks)).role == "mobile"  # type: ignore[union-attr]


def test_benign_travellers_change_country_at_most_at_airliner_speed(traffic: Traffic) -> None:
    last: dict[str, tuple[float, str]] = {}
    moves = 0
    for e in _benign(traffic):
        if not e.success:
            continue
        info = traffic.world.lookup(e.client_ip or "")
        assert info is not None
        assert info.country is not None
        previous = last.get(e.user_hash or "")
        if previous and previous[1] != info.country:
            moves += 1
            hours = (e.time - previous[0]) / 3600
            assert distance_km(previous[1], info.country) / hours < 900
        last[e.user_hash or ""] = (e.time, info.country)
    assert moves >= 1


def test_benign_signups_arrive_at_a_normal_rate(traffic: Traffic) -> None:
    per_ip: dict[str, int] = defaultdict(int)
    for e in _benign(traffic):
        if e.kind == "signup":
            per_ip[e.client_ip or ""] += 1
    assert per_ip
    assert max(per_ip.values()) <= 2


def test_the_world_knows_tor_exits_vpns_and_hosting(traffic: Traffic) -> None:
    categories: dict[str, str | None] = {}
    for c in traffic.campaigns.values():
        for ip in c.attacker_ips:
            info = traffic.world.lookup(ip)
            assert info is not None
            categories[c.kind] = categories.get(c.kind) or info.category
    assert categories["tor_login"] == "tor"
    assert categories["vpn_or_hosting_login"] in ("vpn", "hosting")
    assert traffic.world.lookup("192.0.2.1") is None


def test_intel_files_describe_the_same_world(traffic: Traffic, tmp_path: Path) -> None:
    paths = traffic.world.write_intel(tmp_path)
    exits = paths["tor_exits"].read_text().split()
    assert set(exits) == traffic.world.tor_exits
    header, *rows = paths["ip_ranges"].read_text().splitlines()
    assert header == "cidr,category,name"
    for row in rows:
        cidr, category, _name = row.split(",")
        ipaddress.ip_network(cidr)
        assert category in ("hosting", "vpn", "proxy")


def test_otlp_batches_carry_the_events_as_span_events(traffic: Traffic) -> None:
    events = traffic.events[:300]
    requests = list(batches(events, size=128))
    assert len(requests) == 3
    spans = [
        span
        for request in requests
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]
    assert [s.trace_id.hex() for s in spans] == [e.trace_id for e in events]
    for span, event in zip(spans, events, strict=True):
        (span_event,) = span.events
        assert span_event.time_unix_nano == int(event.time * 1e9)
        attrs = {kv.key: kv.value for kv in span_event.attributes}
        assert attrs[attributes.USER_HASH].string_value == event.user_hash
        assert attrs[attributes.CLIENT_ADDRESS].string_value == event.client_ip
        if event.kind == "login":
            assert span_event.name == attributes.LOGIN_EVENT
            assert attrs[attributes.LOGIN_SUCCESS].bool_value is event.success
        else:
            assert span_event.name == attributes.SIGNUP_EVENT
        span_attrs = {kv.key: kv.value for kv in span.attributes}
        assert span_attrs[attributes.TRACKED].bool_value is True
