"""The IP-ranges table: which provider and category (hosting, vpn, proxy, tor) owns an address.

Loaded from a CSV of ``cidr,category,name`` rows (a header row, blank lines and ``#`` comments
are allowed). CIDR blocks are either nested or disjoint, so the table is flattened once at load
into disjoint integer intervals where the most specific block wins (of a block listed twice, the
last row), one sorted array per address family; a lookup is one :func:`bisect.bisect_right` over
it: O(log n), never a scan. IPv4-mapped IPv6 addresses (``::ffff:a.b.c.d``) are looked up as the
IPv4 address they carry.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import os
import socket
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from usermon.processor.model import NetworkCategory

__all__ = ["CATEGORIES", "IpRange", "IpRanges", "IpRangesError", "address_key"]

CATEGORIES: tuple[NetworkCategory, ...] = ("hosting", "vpn", "proxy", "tor")
_V4_MAPPED = 0xFFFF << 32


class IpRangesError(ValueError):
    """The IP-ranges CSV has a row that is not ``cidr,category,name``."""


@dataclass(frozen=True, slots=True)
class IpRange:
    category: NetworkCategory
    name: str
    cidr: str


def address_key(ip: str) -> tuple[int, int] | None:
    """(family, integer) of an address, IPv4-mapped IPv6 folded to IPv4; None when malformed."""
    try:
        if ":" not in ip:
            return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, ip), "big")
        value = int.from_bytes(socket.inet_pton(socket.AF_INET6, ip.partition("%")[0]), "big")
    except (OSError, ValueError):
        return None
    if value >> 32 == 0xFFFF:
        return 4, value - _V4_MAPPED
    return 6, value


class _Table:
    """Disjoint [start, end] intervals of one address family, sorted, with their values."""

    __slots__ = ("ends", "starts", "values")

    def __init__(self, blocks: list[tuple[int, int, IpRange]]) -> None:
        starts: list[int] = []
        ends: list[int] = []
        values: list[IpRange] = []

        def emit(start: int, end: int, value: IpRange) -> None:
            if start <= end:
                starts.append(start)
                ends.append(end)
                values.append(value)

        # Parents sort before the blocks nested in them; a stack holds the open parents.
        stack: list[tuple[int, IpRange]] = []
        cursor = 0
        for start, end, value in sorted(blocks, key=lambda b: (b[0], -b[1])):
            while stack and stack[-1][0] < start:
                parent_end, parent = stack.pop()
                emit(cursor, parent_end, parent)
                cursor = parent_end + 1
            if stack:
                emit(cursor, start - 1, stack[-1][1])
            stack.append((end, value))
            cursor = start
        while stack:
            parent_end, parent = stack.pop()
            emit(cursor, parent_end, parent)
            cursor = parent_end + 1
        self.starts, self.ends, self.values = starts, ends, values

    def find(self, value: int) -> IpRange | None:
        i = bisect_right(self.starts, value) - 1
        if i >= 0 and value <= self.ends[i]:
            return self.values[i]
        return None


class IpRanges:
    """An immutable, searchable IP-ranges table."""

    def __init__(
        self,
        rows: Iterable[tuple[str, str, str]] = (),
        origin: str = "ip ranges",
        lines: list[int] | None = None,
    ) -> None:
        blocks: dict[int, list[tuple[int, int, IpRange]]] = {4: [], 6: []}
        self.rows = 0
        for i, (cidr, category, name) in enumerate(rows):
            line = lines[i] if lines is not None else i + 1
            try:
                network = ipaddress.ip_network(cidr.strip(), strict=False)
            except ValueError:
                raise IpRangesError(f"{origin}: line {line}: {cidr!r} is not a CIDR") from None
            category = category.strip().lower()
            if category not in CATEGORIES:
                raise IpRangesError(
                    f"{origin}: line {line}: category {category!r} is not one of "
                    + ", ".join(CATEGORIES)
                )
            value = IpRange(category, name.strip(), str(network))
            start, end = int(network.network_address), int(network.broadcast_address)
            family = network.version
            if family == 6 and start >> 32 == 0xFFFF and end >> 32 == 0xFFFF:
                family, start, end = 4, start - _V4_MAPPED, end - _V4_MAPPED
            blocks[family].append((start, end, value))
            self.rows += 1
        self._tables = {family: _Table(b) for family, b in blocks.items()}

    def __len__(self) -> int:
        return self.rows

    @property
    def intervals(self) -> int:
        """Disjoint intervals after flattening nested blocks (what a lookup searches)."""
        return sum(len(t.starts) for t in self._tables.values())

    def lookup(self, ip: str) -> IpRange | None:
        """The most specific range holding ``ip``, or None (also for a malformed address)."""
        key = address_key(ip)
        if key is None:
            return None
        return self._tables[key[0]].find(key[1])

    @classmethod
    def parse(cls, text: str, origin: str = "ip ranges") -> IpRanges:
        """A table from CSV text."""
        rows: list[tuple[str, str, str]] = []
        lines: list[int] = []
        reader = csv.reader(io.StringIO(text))
        for line, row in enumerate(reader, 1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if line == 1 and row[0].strip().lower() == "cidr":
                continue  # the header
            if len(row) != 3:
                raise IpRangesError(
                    f"{origin}: line {line}: expected 3 fields (cidr,category,name), got {len(row)}"
                )
            rows.append((row[0], row[1], row[2]))
            lines.append(line)
        return cls(rows, origin, lines)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> IpRanges:
        """A table from a CSV file; :class:`IpRangesError` (or OSError) when it is unusable."""
        return cls.parse(Path(path).read_text("utf-8"), os.fspath(path))
