"""Threat intelligence for the processor: GeoIP, ASN, Tor exits and IP ranges, all optional.

Every source is offline-capable: MaxMind-format databases (GeoLite2, DB-IP lite) and the
IP-ranges CSV are local files; the Tor exit list is a file or a URL refreshed on a schedule that
keeps its last good copy. :class:`Enricher` combines whichever are configured behind
``lookup(ip) -> NetworkInfo | None``; :func:`from_settings` builds it for ``usermon serve``, and
``usermon intel`` (:mod:`usermon.processor.intel.cli`) refreshes and reports them.
"""

from __future__ import annotations

from usermon.processor.intel.enricher import (
    Enricher,
    IntelPaths,
    build_enricher,
    from_settings,
    paths_from_environ,
)
from usermon.processor.intel.geoip import Database, IntelDatabaseError
from usermon.processor.intel.ranges import IpRange, IpRanges, IpRangesError
from usermon.processor.intel.tor import Refresher, TorExitList

__all__ = [
    "Database",
    "Enricher",
    "IntelDatabaseError",
    "IntelPaths",
    "IpRange",
    "IpRanges",
    "IpRangesError",
    "Refresher",
    "TorExitList",
    "build_enricher",
    "from_settings",
    "paths_from_environ",
]
