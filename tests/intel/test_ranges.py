"""The IP-ranges table: CSV in, most specific range out, by binary search."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usermon.processor.intel.ranges import IpRanges, IpRangesError


def test_an_address_inside_a_range_gets_its_category_and_provider(ranges_csv: Path) -> None:
    table = IpRanges.load(ranges_csv)
    found = table.lookup("5.9.200.1")
    assert found is not None
    assert (found.category, found.name, found.cidr) == ("hosting", "Hetzner", "5.9.0.0/16")


def test_the_most_specific_range_wins(ranges_csv: Path) -> None:
    table = IpRanges.load(ranges_csv)
    inner = table.lookup("5.9.10.7")
    assert inner is not None
    assert (inner.category, inner.name) == ("vpn", "SomeVPN")
    after = table.lookup("5.9.11.0")  # back in the enclosing block after the nested one
    assert after is not None
    assert after.name == "Hetzner"


def test_range_edges_are_inclusive_and_outside_is_nothing(ranges_csv: Path) -> None:
    table = IpRanges.load(ranges_csv)
    assert table.lookup("5.9.0.0") is not None
    assert table.lookup("5.9.255.255") is not None
    assert table.lookup("5.8.255.255") is None
    assert table.lookup("5.10.0.0") is None


def test_ipv6_and_ipv4_mapped_addresses_are_looked_up(ranges_csv: Path) -> None:
    table = IpRanges.load(ranges_csv)
    v6 = table.lookup("2a01:4f8:1:2::3")
    assert v6 is not None
    assert v6.name == "Hetzner"
    mapped = table.lookup("::ffff:89.187.170.1")
    assert mapped is not None
    assert mapped.name == "NordVPN"


def test_malformed_addresses_find_nothing(ranges_csv: Path) -> None:
    table = IpRanges.load(ranges_csv)
    assert table.lookup("not-an-ip") is None
    assert table.lookup("") is None
    assert table.lookup("999.1.1.1") is None


def test_header_comments_and_blank_lines_are_skipped(ranges_csv: Path) -> None:
    assert len(IpRanges.load(ranges_csv)) == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.0/8,cloud,X\n", "line 1: category 'cloud' is not one of hosting, vpn"),
        ("cidr,category,name\n\n10.0.0.0/33,vpn,X\n", "line 3: '10.0.0.0/33' is not a CIDR"),
        ("10.0.0.0/8,vpn\n", "line 1: expected 3 fields"),
    ],
)
def test_bad_rows_are_named_with_their_line(text: str, message: str) -> None:
    with pytest.raises(IpRangesError, match=message):
        IpRanges.parse(text, "ranges.csv")


def _naive(blocks: list[tuple[str, str]], ip: str) -> str | None:
    """The baseline: scan every block, keep the longest prefix holding the address."""
    address = ipaddress.ip_address(ip)
    best: tuple[int, str] | None = None
    for cidr, name in blocks:
        network = ipaddress.ip_network(cidr)
        inside = address.version == network.version and address in network
        if inside and (best is None or network.prefixlen >= best[0]):
            best = (network.prefixlen, name)
    return best[1] if best else None


v4_blocks = st.lists(
    st.tuples(st.integers(0, 2**32 - 1), st.integers(8, 32)).map(
        lambda t: str(ipaddress.ip_network((t[0], t[1]), strict=False))
    ),
    min_size=1,
    max_size=40,
    unique=True,
)


@settings(max_examples=200, deadline=None)
@given(blocks=v4_blocks, probes=st.lists(st.integers(0, 2**32 - 1), max_size=30))
def test_lookups_agree_with_a_naive_scan_on_any_nested_blocks(
    blocks: list[str], probes: list[int]
) -> None:
    named = [(cidr, f"n{i}") for i, cidr in enumerate(blocks)]
    table = IpRanges([(cidr, "hosting", name) for cidr, name in named])
    # Probe random addresses and every block's edges, where off-by-ones live.
    addresses = [str(ipaddress.ip_address(p)) for p in probes]
    for cidr in blocks:
        network = ipaddress.ip_network(cidr)
        for edge in (int(network.network_address), int(network.broadcast_address)):
            for value in (edge - 1, edge, edge + 1):
                if 0 <= value < 2**32:
                    addresses.append(str(ipaddress.ip_address(value)))
    for ip in addresses:
        found = table.lookup(ip)
        assert (found.name if found else None) == _naive(named, ip), ip


def test_a_block_listed_twice_takes_its_last_row() -> None:
    table = IpRanges.parse("10.0.0.0/8,hosting,First\n10.0.0.0/8,vpn,Second\n")
    found = table.lookup("10.1.2.3")
    assert found is not None
    assert (found.category, found.name) == ("vpn", "Second")
