"""What a client address's *network* is: its CIDR block at a configured prefix length.

Aggregation lists a user's networks and the detectors count failures per network; both take the
network of an address from :func:`network_of`, so the two can never disagree on what a network
is. IPv4 addresses take a path by arithmetic (the detectors ask on every event); anything else
goes through :mod:`ipaddress`, which reads every IPv6 form (compressed, full, embedded IPv4).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Final

__all__ = ["DEFAULT_IPV4_PREFIX", "DEFAULT_IPV6_PREFIX", "network_of"]

DEFAULT_IPV4_PREFIX: Final = 24
"""The usual IPv4 network of one site or one customer line: a /24."""

DEFAULT_IPV6_PREFIX: Final = 48
"""The usual IPv6 allocation to one site: a /48."""

_OCTETS: dict[str, int] = {str(value): value for value in range(256)}
"""Every string :class:`ipaddress.IPv4Address` accepts as one octet (ASCII decimal, no leading
zero, at most 255), with its value: one dictionary lookup validates and converts a part."""


def _ipv4_network(ip: str, prefix: int) -> str | None:
    """``network_of`` for a well-formed dotted-quad IPv4 address, by arithmetic; None for
    anything else (the caller then asks :mod:`ipaddress`, whose parsing is about 10 times
    slower and was the largest single cost of the detectors' shared step on a stream of new
    addresses). Accepts exactly what :class:`ipaddress.IPv4Address` accepts from a string."""
    parts = ip.split(".")
    if len(parts) != 4:
        return None
    octets = _OCTETS
    a, b, c, d = parts
    if a not in octets or b not in octets or c not in octets or d not in octets:
        return None
    if prefix == 24:  # the default: the parts are already canonical, as str() would print them
        return f"{a}.{b}.{c}.0/24"
    value = octets[a] << 24 | octets[b] << 16 | octets[c] << 8 | octets[d]
    value &= (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    return f"{value >> 24}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}/{prefix}"


@lru_cache(maxsize=65536)
def network_of(
    ip: str, ipv4_prefix: int = DEFAULT_IPV4_PREFIX, ipv6_prefix: int = DEFAULT_IPV6_PREFIX
) -> str | None:
    """The CIDR network of ``ip`` at the given prefix lengths (``192.0.2.0/24``,
    ``2001:db8::/48``), or None for a malformed address."""
    if ipv4_prefix.__class__ is int and 0 <= ipv4_prefix <= 32 and ":" not in ip:
        fast = _ipv4_network(ip, ipv4_prefix)
        if fast is not None:
            return fast
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    prefix = ipv4_prefix if address.version == 4 else ipv6_prefix
    return str(ipaddress.ip_network((address, prefix), strict=False))
