"""``usermon intel``: refresh the threat-intelligence sources and report what is loaded.

For each configured source (GeoIP database, ASN database, Tor exit list, IP-ranges CSV) it says
whether it loads, how many entries it holds, how old it is and whether that is stale, and, for a
Tor list given as a URL, fetches it now (where the network allows; with ``--tor-cache`` the
download is kept for the processor and for the next offline run). ``--lookup`` shows what the
combined sources know of an address. The exit status is 1 when a configured source cannot be
loaded, so the command doubles as a deployment check.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import time
from typing import Any

import click

from usermon import environment_variables as V

__all__ = ["STALE_AFTER", "intel", "report"]

DAY = 86400.0
STALE_AFTER = {
    # MaxMind rebuilds GeoLite2 twice a week, DB-IP lite monthly.
    "geoip": 45 * DAY,
    "asn": 45 * DAY,
    # The Tor Project regenerates the bulk exit list continuously; exits churn within hours.
    "tor": 6 * 3600.0,
    "ip_ranges": 30 * DAY,
}


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _aged(entry: dict[str, Any], kind: str, when: float | None, now: float) -> None:
    entry["date"] = _iso(when)
    if when is None:
        entry["age_days"] = None
        entry["stale"] = None
        return
    age = max(0.0, now - when)
    entry["age_days"] = round(age / DAY, 2)
    entry["stale"] = age > STALE_AFTER[kind]


def report(
    geoip_db: str | None,
    asn_db: str | None,
    tor_exits: str | None,
    ip_ranges: str | None,
    *,
    tor_cache: str | None = None,
    refresh: bool = True,
    now: float | None = None,
) -> tuple[list[dict[str, Any]], Any]:
    """One entry per source, and an enricher over those that loaded (None if none did)."""
    from usermon.processor.intel.enricher import Enricher
    from usermon.processor.intel.geoip import Database, IntelDatabaseError
    from usermon.processor.intel.ranges import IpRanges, IpRangesError
    from usermon.processor.intel.tor import TorExitList

    now = time.time() if now is None else now
    entries: list[dict[str, Any]] = []
    databases: dict[str, Database | None] = {"geoip": None, "asn": None}
    for kind, path in (("geoip", geoip_db), ("asn", asn_db)):
        if not path:
            continue
        entry: dict[str, Any] = {"source": kind, "location": path}
        try:
            db = Database(path)
        except IntelDatabaseError as exc:
            entry.update(loaded=False, error=str(exc))
        else:
            databases[kind] = db
            entry.update(loaded=True, type=db.database_type, entries=db.node_count)
            _aged(entry, kind, float(db.build_epoch), now)
        entries.append(entry)

    tor = None
    if tor_exits:
        tor = TorExitList(tor_exits, cache=tor_cache)
        entry = {"source": "tor", "location": tor_exits}
        if refresh or not tor.is_url:
            tor.refresh()
        status = tor.status()
        entry.update(
            loaded=status.count > 0,
            entries=status.count,
            skipped_lines=status.skipped_lines,
            fetched=_iso(status.loaded_at),
        )
        _aged(entry, "tor", status.source_time or status.loaded_at, now)
        if status.last_error:
            entry["error"] = status.last_error
        elif not refresh and tor.is_url:
            entry["note"] = "not refreshed (--no-refresh)" + (
                "" if status.count else "; no cached copy"
            )
        entries.append(entry)

    ranges = None
    if ip_ranges:
        entry = {"source": "ip_ranges", "location": ip_ranges}
        try:
            ranges = IpRanges.load(ip_ranges)
        except (OSError, IpRangesError) as exc:
            entry.update(loaded=False, error=str(exc))
        else:
            entry.update(loaded=True, entries=len(ranges), intervals=ranges.intervals)
            _aged(entry, "ip_ranges", os.stat(ip_ranges).st_mtime, now)
        entries.append(entry)

    if not any(e.get("loaded") for e in entries):
        return entries, None
    return entries, Enricher(databases["geoip"], databases["asn"], tor, ranges)


@click.command()
@click.option(
    "--geoip-db",
    envvar=V.USERMON_GEOIP_DB,
    metavar="PATH",
    help=f"MaxMind-format City or Country database [env {V.USERMON_GEOIP_DB}].",
)
@click.option(
    "--asn-db",
    envvar=V.USERMON_ASN_DB,
    metavar="PATH",
    help=f"MaxMind-format ASN database [env {V.USERMON_ASN_DB}].",
)
@click.option(
    "--tor-exits",
    envvar=V.USERMON_TOR_EXITS,
    metavar="PATH|URL",
    help=f"Tor bulk exit list, a file or an http(s) URL [env {V.USERMON_TOR_EXITS}], e.g. "
    "https://check.torproject.org/torbulkexitlist",
)
@click.option(
    "--ip-ranges",
    envvar=V.USERMON_IP_RANGES,
    metavar="PATH",
    help=f"IP-ranges CSV: cidr,category,name [env {V.USERMON_IP_RANGES}].",
)
@click.option(
    "--tor-cache",
    metavar="PATH",
    help="Keep the last good download of a Tor list URL in this file (read when offline).",
)
@click.option(
    "--refresh/--no-refresh",
    default=True,
    show_default=True,
    help="Fetch a Tor list URL now (else report the cached copy only).",
)
@click.option(
    "--lookup", "lookups", multiple=True, metavar="IP", help="Show what is known of IP (repeat)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def intel(
    geoip_db: str | None,
    asn_db: str | None,
    tor_exits: str | None,
    ip_ranges: str | None,
    tor_cache: str | None,
    refresh: bool,
    lookups: tuple[str, ...],
    as_json: bool,
) -> None:
    """Refresh threat-intelligence sources and report what is loaded."""
    # The report shows every refresh failure; the refresher's own log line would repeat it.
    intel_log = logging.getLogger("usermon.processor.intel")
    level = intel_log.level
    intel_log.setLevel(logging.ERROR)
    try:
        entries, enricher = report(
            geoip_db, asn_db, tor_exits, ip_ranges, tor_cache=tor_cache, refresh=refresh
        )
    finally:
        intel_log.setLevel(level)
    found: dict[str, Any] = {}
    for ip in lookups:
        info = enricher.lookup(ip) if enricher is not None else None
        found[ip] = None if info is None else dataclasses.asdict(info)
    failed = any(not e.get("loaded") for e in entries)
    if as_json:
        click.echo(json.dumps({"sources": entries, "lookups": found}, indent=2))
    else:
        _print(entries, found)
    if enricher is not None:
        enricher.close()
    if failed:
        raise SystemExit(1)


def _print(entries: list[dict[str, Any]], found: dict[str, Any]) -> None:
    if not entries:
        click.echo(
            "No threat-intelligence source configured. Set --geoip-db, --asn-db, --tor-exits "
            f"or --ip-ranges (or {V.USERMON_GEOIP_DB}, {V.USERMON_ASN_DB}, "
            f"{V.USERMON_TOR_EXITS}, {V.USERMON_IP_RANGES}); see docs/intel.md."
        )
    for e in entries:
        if not e.get("loaded"):
            state = "NOT LOADED"
        elif e.get("stale"):
            state = "stale"
        else:
            state = "ok"
        click.echo(f"{e['source']:<10} {state:<10} {e['location']}")
        details = []
        if "type" in e:
            details.append(e["type"])
        if e.get("entries") is not None:
            details.append(f"{e['entries']} entries")
        if e.get("date"):
            details.append(f"dated {e['date']} ({e['age_days']} days old)")
        if e.get("fetched") and e["source"] == "tor":
            details.append(f"loaded {e['fetched']}")
        if details:
            click.echo("           " + ", ".join(details))
        for key in ("error", "note"):
            if e.get(key):
                click.echo(f"           {key}: {e[key]}")
    for ip, info in found.items():
        if info is None:
            click.echo(f"{ip}: nothing known")
        else:
            shown = ", ".join(f"{k}={v}" for k, v in info.items() if v is not None)
            click.echo(f"{ip}: {shown}")
