"""One definition of an address's network, shared by aggregation and the detectors."""

from __future__ import annotations

import ipaddress

import pytest

from usermon.processor.aggregation import aggregate, user_profile
from usermon.processor.model import Event
from usermon.processor.network import _ipv4_network, network_of
from usermon.processor.storage.state.memory import MemoryState


def test_networks_are_taken_at_the_configured_prefixes() -> None:
    assert network_of("192.0.2.77", 24, 48) == "192.0.2.0/24"
    assert network_of("192.0.2.77", 16, 48) == "192.0.0.0/16"
    assert network_of("2001:db8:1234:5678::1", 24, 48) == "2001:db8:1234::/48"
    assert network_of("2001:db8:1234:5678::1", 24, 64) == "2001:db8:1234:5678::/64"
    assert network_of("not an ip", 24, 48) is None


@pytest.mark.parametrize(
    "ip",
    [
        "2001:db8::1",
        "2001:DB8::1",
        "2001:db8:0:0:0:0:0:1",
        "2001:0db8:0000:0000:0000:0000:0000:0001",
        "2001:db8:0:ffff::2",
        "2001:db8::ffff:1.2.3.4",
    ],
)
def test_an_ipv6_network_is_the_same_from_compressed_and_full_forms(ip: str) -> None:
    assert network_of(ip) == "2001:db8::/48"


def test_ipv6_networks_keep_every_group_of_the_prefix() -> None:
    assert network_of("2001:db8:a::1") == "2001:db8:a::/48"
    assert network_of("::1") == "::/48"
    assert network_of("fe80:1:2:3:4:5:6:7") == "fe80:1:2::/48"


def test_a_users_networks_are_those_of_network_of() -> None:
    state = MemoryState()
    for t, ip in enumerate(["2001:db8::1", "2001:0db8:0000:0000::2", "198.51.100.7"]):
        event = Event(kind="login", time=1.0e9 + t, success=True, client_ip=ip, user_hash="h")
        aggregate(event, state)
    profile = user_profile(state, "h", None)
    assert profile is not None
    assert sorted(profile["networks"]) == ["198.51.100.0/24", "2001:db8::/48"]


def test_the_ipv4_shortcut_agrees_with_ipaddress() -> None:
    # The arithmetic path must accept exactly what ipaddress accepts, at every prefix.
    candidates = [
        "192.0.2.77", "0.0.0.0", "255.255.255.255", "10.0.0.1", "01.2.3.4", "1.2.3.00",
        "256.1.1.1", "1.2.3", "1.2.3.4.5", "1..3.4", "1.2.3.", " 1.2.3.4", "1.2.3.4 ",
        "+1.2.3.4", "1.2.3.-4", "1.2.3.\u0664", "١.2.3.4", "0x1.2.3.4", "1.2.3.4/24",
        "001.2.3.4", "1.2.3.255", "1.2.3.1000", "",
    ]  # fmt: skip
    for ip in candidates:
        for prefix in (0, 8, 16, 23, 24, 25, 32):
            try:
                address = ipaddress.IPv4Address(ip)
            except ValueError:
                expected = None
            else:
                expected = str(ipaddress.ip_network((address, prefix), strict=False))
            assert _ipv4_network(ip, prefix) == expected, (ip, prefix)
