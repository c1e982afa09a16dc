"""The enricher: everything threat intelligence knows of a client address, in one lookup.

Combines the optional sources (GeoIP database, ASN database, Tor exit list, IP-ranges CSV) into
one :class:`~usermon.processor.model.NetworkInfo`. A Tor exit wins over the ranges table for the
category; the ranges table names the provider. Results are memoized in a bounded map, dropped
whenever a source changes (a Tor list refresh), since a login stream repeats its addresses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Protocol

from usermon.environment_variables import (
    USERMON_ASN_DB,
    USERMON_GEOIP_DB,
    USERMON_IP_RANGES,
    USERMON_TOR_EXITS,
)
from usermon.processor.intel.geoip import Database
from usermon.processor.intel.ranges import IpRanges
from usermon.processor.intel.tor import DEFAULT_REFRESH_INTERVAL, Refresher, TorExitList
from usermon.processor.model import NetworkInfo

__all__ = ["Enricher", "IntelPaths", "build_enricher", "from_settings", "paths_from_environ"]

CACHE_SIZE = 65536


class IntelPaths(Protocol):
    """What :func:`from_settings` reads: the processor's settings have these attributes."""

    @property
    def geoip_db(self) -> str | None: ...
    @property
    def asn_db(self) -> str | None: ...
    @property
    def tor_exits(self) -> str | None: ...
    @property
    def ip_ranges(self) -> str | None: ...
    @property
    def tor_refresh(self) -> float:
        """Seconds between Tor list refreshes; 0 reads it once."""
        ...


class Enricher:
    """``lookup(ip) -> NetworkInfo | None`` over whichever sources are configured."""

    def __init__(
        self,
        geoip: Database | None = None,
        asn: Database | None = None,
        tor: TorExitList | None = None,
        ranges: IpRanges | None = None,
        refresher: Refresher | None = None,
    ) -> None:
        self.geoip = geoip
        self.asn = asn
        self.tor = tor
        self.ranges = ranges
        self.refresher = refresher
        self._cache: dict[str, NetworkInfo | None] = {}
        self._tor_exits = tor.exits if tor is not None else frozenset()

    def lookup(self, ip: str) -> NetworkInfo | None:
        """What is known of ``ip``; None when no source knows anything (or it is malformed)."""
        if self.tor is not None and self.tor.exits is not self._tor_exits:
            self._tor_exits = self.tor.exits  # refreshed: cached answers may be stale
            self._cache.clear()
        try:
            return self._cache[ip]
        except KeyError:
            pass
        info = self._lookup(ip)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[ip] = info
        return info

    def _lookup(self, ip: str) -> NetworkInfo | None:
        country = latitude = longitude = asn = as_org = category = name = None
        if self.geoip is not None:
            geo = self.geoip.geo(ip)
            if geo is not None:
                country, latitude, longitude = geo.country, geo.latitude, geo.longitude
            if self.asn is None:  # some single databases carry both
                number = self.geoip.asn(ip)
                if number is not None:
                    asn, as_org = number.asn, number.organization
        if self.asn is not None:
            number = self.asn.asn(ip)
            if number is not None:
                asn, as_org = number.asn, number.organization
        if self.ranges is not None:
            found = self.ranges.lookup(ip)
            if found is not None:
                category, name = found.category, found.name
        if self._tor_exits and ip in self._tor_exits:
            category, name = "tor", "tor"
        if (country, latitude, longitude, asn, as_org, category, name) == (None,) * 7:
            return None
        return NetworkInfo(
            country=country,
            latitude=latitude,
            longitude=longitude,
            asn=asn,
            as_org=as_org,
            category=category,
            network_name=name,
        )

    def close(self) -> None:
        """Stop refreshing and close the databases."""
        if self.refresher is not None:
            self.refresher.stop()
        for db in (self.geoip, self.asn):
            if db is not None:
                db.close()


def build_enricher(
    geoip_db: str | os.PathLike[str] | None = None,
    asn_db: str | os.PathLike[str] | None = None,
    tor_exits: str | None = None,
    ip_ranges: str | os.PathLike[str] | None = None,
    *,
    tor_cache: str | os.PathLike[str] | None = None,
    refresh_interval: float | None = DEFAULT_REFRESH_INTERVAL,
) -> Enricher:
    """An enricher over the given sources, each optional.

    Raises at once (configuration errors fail at startup) when a database or the ranges CSV
    cannot be read, or when the Tor source is a file that cannot be read. A Tor URL that cannot
    be fetched now is not an error: the processor runs without (or with the cached) list and
    keeps trying every ``refresh_interval`` seconds (None: never refresh).
    """
    geoip = Database(geoip_db) if geoip_db else None
    asn = Database(asn_db) if asn_db else None
    ranges = IpRanges.load(ip_ranges) if ip_ranges else None
    tor = refresher = None
    if tor_exits:
        tor = TorExitList(tor_exits, cache=tor_cache)
        tor.refresh()
        if not tor.is_url and tor.status().last_error is not None:
            raise ValueError(f"Tor exit list {tor_exits}: {tor.status().last_error}")
        if refresh_interval is not None:
            refresher = Refresher(tor, refresh_interval)
            refresher.start()
    return Enricher(geoip, asn, tor, ranges, refresher)


def from_settings(settings: IntelPaths) -> Enricher:
    """The enricher the processor's settings ask for (``usermon serve``)."""
    return build_enricher(
        settings.geoip_db,
        settings.asn_db,
        settings.tor_exits,
        settings.ip_ranges,
        refresh_interval=settings.tor_refresh or None,  # 0: read once at startup
    )


def paths_from_environ(environ: Mapping[str, str]) -> dict[str, str | None]:
    """The four intel sources named in ``environ`` (for hosts without processor settings)."""
    return {
        "geoip_db": environ.get(USERMON_GEOIP_DB) or None,
        "asn_db": environ.get(USERMON_ASN_DB) or None,
        "tor_exits": environ.get(USERMON_TOR_EXITS) or None,
        "ip_ranges": environ.get(USERMON_IP_RANGES) or None,
    }
