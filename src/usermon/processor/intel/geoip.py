"""GeoIP and ASN lookups from MaxMind-format databases, through the ``maxminddb`` reader.

Works with GeoLite2 / GeoIP2 City and Country databases, GeoLite2 ASN, and the DB-IP "lite"
City and ASN databases, which share the MaxMind DB layout: ``country.iso_code``,
``location.latitude`` / ``longitude``; ``autonomous_system_number`` /
``autonomous_system_organization``. A database opens memory-mapped (the C extension when it is
installed), so a lookup is a tree walk of a few microseconds with no I/O on the hot path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

__all__ = ["AsnRecord", "Database", "GeoRecord", "IntelDatabaseError"]


class IntelDatabaseError(ValueError):
    """A configured database file cannot be opened as a MaxMind DB."""


@dataclass(frozen=True, slots=True)
class GeoRecord:
    country: str | None
    latitude: float | None
    longitude: float | None


@dataclass(frozen=True, slots=True)
class AsnRecord:
    asn: int | None
    organization: str | None


class Database:
    """One open MaxMind-format database."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import maxminddb  # the processor extra

        self.path = os.fspath(path)
        try:
            self._reader = maxminddb.open_database(self.path)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise IntelDatabaseError(f"{self.path}: not a readable MaxMind DB: {exc}") from exc
        meta = self._reader.metadata()
        self.database_type: str = meta.database_type
        self.build_epoch: int = meta.build_epoch
        self.node_count: int = meta.node_count
        self.ip_version: int = meta.ip_version

    def record(self, ip: str) -> dict[str, Any] | None:
        try:
            found = self._reader.get(ip)
        except ValueError:  # malformed address, or IPv6 in an IPv4-only database
            return None
        return found if isinstance(found, dict) else None

    def geo(self, ip: str) -> GeoRecord | None:
        record = self.record(ip)
        if record is None:
            return None
        country = record.get("country") or record.get("registered_country") or {}
        location = record.get("location") or {}
        return GeoRecord(
            country=country.get("iso_code"),
            latitude=_float(location.get("latitude")),
            longitude=_float(location.get("longitude")),
        )

    def asn(self, ip: str) -> AsnRecord | None:
        record = self.record(ip)
        if record is None:
            return None
        number = record.get("autonomous_system_number")
        return AsnRecord(
            asn=int(number) if isinstance(number, int) else None,
            organization=record.get("autonomous_system_organization"),
        )

    def close(self) -> None:
        self._reader.close()


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None
