"""The decision index and the stream format, without a server: the matcher against ``ipaddress``."""

from __future__ import annotations

import ipaddress
import json
import time
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usermon.decisions import (
    Allowlist,
    Answer,
    DecisionIndex,
    MalformedAnswer,
    apply_answer,
    ip_key,
    parse_answer,
)

from .decision_server import decision

NOW = time.time()


def parsed(*items: dict[str, object], allow: dict[str, list[str]] | None = None) -> Answer:
    body = {
        "cursor": "1",
        "full": True,
        "new": list(items),
        "deleted": [],
        "allow": allow or {"networks": [], "users": []},
    }
    return parse_answer(json.dumps(body).encode())


def index_of(*items: dict[str, object], allow: dict[str, list[str]] | None = None) -> DecisionIndex:
    answer = parsed(*items, allow=allow)
    decisions, _ = apply_answer({}, answer, NOW)
    return DecisionIndex(decisions, answer.allow)


# -- the CIDR matcher against ipaddress as the oracle --------------------------------------------

ipv4_networks = st.builds(
    lambda address, length: ipaddress.ip_network(f"{address}/{length}", strict=False),
    st.ip_addresses(v=4),
    st.integers(min_value=0, max_value=32),
)
ipv6_networks = st.builds(
    lambda address, length: ipaddress.ip_network(f"{address}/{length}", strict=False),
    st.ip_addresses(v=6),
    st.integers(min_value=0, max_value=128),
)
mapped_networks = st.builds(
    lambda address, length: ipaddress.ip_network(f"::ffff:{address}/{96 + length}", strict=False),
    st.ip_addresses(v=4),
    st.integers(min_value=0, max_value=32),
)


@st.composite
def networks_and_address(draw: st.DrawFn) -> tuple[list[tuple[object, str]], str]:
    family = draw(
        st.sampled_from([ipv4_networks, ipv6_networks, st.one_of(ipv4_networks, mapped_networks)])
    )
    networks = draw(st.lists(family, min_size=1, max_size=12, unique=True))
    actions = draw(
        st.lists(
            st.sampled_from(["block", "challenge"]),
            min_size=len(networks),
            max_size=len(networks),
        )
    )
    # Half the time, an address inside one of the networks (else a random one rarely hits).
    inside = draw(st.booleans())
    if inside:
        network = draw(st.sampled_from(networks))
        offset = draw(st.integers(min_value=0, max_value=network.num_addresses - 1))
        address = str(network.network_address + offset)
    else:
        address = str(draw(st.ip_addresses(v=networks[0].version)))
    return list(zip(networks, actions, strict=True)), address


MAPPED = ipaddress.ip_network("::ffff:0:0/96")


def _as_v4(
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(MAPPED):
        v4 = ipaddress.IPv4Address(int(network.network_address) & 0xFFFFFFFF)
        return ipaddress.ip_network(f"{v4}/{network.prefixlen - 96}")
    return network


def _contains(network: ipaddress.IPv4Network | ipaddress.IPv6Network, text: str) -> bool:
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.version == network.version and address in network


@settings(max_examples=300, deadline=None)
@given(networks_and_address())
def test_network_matching_agrees_with_ipaddress(
    case: tuple[list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]], str],
) -> None:
    networks, address = case
    items = [
        decision(f"n{i}", "network", str(network), action=action, now=datetime.now(timezone.utc))
        for i, (network, action) in enumerate(networks)
    ]
    index = index_of(*items)
    key = ip_key(address)
    assert key is not None
    found = index.match(key, None, None, NOW)
    # The oracle: among the networks holding the address, a block if any, the longest first;
    # an IPv4-mapped IPv6 address or network is IPv4 (docs/protection.md).
    holding = sorted(
        (
            (action != "block", -_as_v4(network).prefixlen, f"n{i}")
            for i, (network, action) in enumerate(networks)
            if _contains(_as_v4(network), address)
        ),
    )
    # Two decisions on the same network (a /96 of mapped IPv6 is IPv4's /0) with the same
    # action tie: either answers.
    best = {name for rank, length, name in holding if (rank, length) == holding[0][:2]}
    assert (found.id if found else None) in (best or {None})


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)))
def test_ip_keys_are_one_per_address(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    key = ip_key(str(address))
    assert key is not None
    assert ip_key(address.exploded) == key
    if isinstance(address, ipaddress.IPv4Address):
        assert ip_key(f"::ffff:{address}") == key
    elif address.ipv4_mapped is not None:
        assert key == ip_key(str(address.ipv4_mapped))
    else:
        assert key != ip_key(str(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)))


def test_the_allowlist_matches_by_prefix_too() -> None:
    index = index_of(
        decision("n", "network", "10.0.0.0/8"),
        allow={"networks": ["10.1.0.0/16", "2001:db8::/32"], "users": []},
    )
    assert index.match(ip_key("10.1.9.9"), None, None, NOW) is None
    assert index.match(ip_key("10.2.9.9"), None, None, NOW) is not None


# -- the format ---------------------------------------------------------------------------------


def test_a_decision_reads_every_field() -> None:
    answer = parsed(decision("d", "user_ip", "abc|2001:db8::1", action="challenge", extra=1))
    [d] = answer.new
    assert (d.id, d.action, d.scope, d.value) == ("d", "challenge", "user_ip", "abc|2001:db8::1")
    assert d.until.tzinfo is timezone.utc
    assert d.created.tzinfo is timezone.utc
    assert d.expires == d.until.timestamp()
    assert not d.blocks


@pytest.mark.parametrize(
    "until",
    ["2030-01-01T00:00:00Z", "2030-01-01T00:00:00.5+00:00", "2030-01-01T01:00:00+01:00"],
)
def test_rfc3339_times_in_any_offset(until: str) -> None:
    [d] = parsed(decision("d", "ip", "192.0.2.1", until=until)).new
    assert d.until.year == 2030
    assert d.until.hour == 0


def test_a_time_without_offset_skips_the_decision() -> None:
    answer = parsed(decision("d", "ip", "192.0.2.1", until="2030-01-01T00:00:00"))
    assert answer.new == ()
    assert answer.skipped == 1


@pytest.mark.parametrize(
    "body",
    [
        {
            "cursor": "1",
            "full": "yes",
            "new": [],
            "deleted": [],
            "allow": {"networks": [], "users": []},
        },
        {
            "cursor": "1",
            "full": True,
            "new": {},
            "deleted": [],
            "allow": {"networks": [], "users": []},
        },
        {
            "cursor": "1",
            "full": True,
            "new": [],
            "deleted": [1],
            "allow": {"networks": [], "users": []},
        },
        {"cursor": "1", "full": True, "new": [], "deleted": []},
        {"cursor": "1", "full": True, "new": [], "deleted": [], "allow": {"networks": []}},
        {
            "cursor": "1",
            "full": True,
            "new": [],
            "deleted": [],
            "allow": {"networks": [], "users": [""]},
        },
        {
            "cursor": "1",
            "full": True,
            "new": [[]],
            "deleted": [],
            "allow": {"networks": [], "users": []},
        },
    ],
)
def test_a_broken_shape_rejects_the_whole_answer(body: dict[str, object]) -> None:
    with pytest.raises(MalformedAnswer):
        parse_answer(json.dumps(body).encode())


def test_a_delta_adds_replaces_deletes_and_purges() -> None:
    first = parsed(decision("a", "ip", "192.0.2.1"), decision("b", "ip", "192.0.2.2"))
    current, _ = apply_answer({}, first, NOW)
    delta = Answer(
        cursor="2",
        full=False,
        new=parsed(decision("c", "ip", "192.0.2.3"), decision("b", "ip", "192.0.2.9")).new,
        deleted=("a", "unknown"),
        allow=Allowlist(),
        skipped=0,
    )
    after, dropped = apply_answer(current, delta, NOW)
    assert sorted(after) == ["b", "c"]
    assert after["b"].value == "192.0.2.9"
    assert dropped == 0
    later, _ = apply_answer(after, Answer("3", False, (), (), Allowlist(), 0), NOW + 7200)
    assert later == {}


def test_over_the_limit_the_decisions_expiring_soonest_are_dropped() -> None:
    answer = parsed(*(decision(f"d{i}", "ip", f"192.0.2.{i}", ttl=100 + i) for i in range(10)))
    kept, dropped = apply_answer({}, answer, NOW, limit=4)
    assert dropped == 6
    assert sorted(kept) == ["d6", "d7", "d8", "d9"]
