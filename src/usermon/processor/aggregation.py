"""Per-user and per-IP aggregation: the user monitoring itself.

This module owns what the processor remembers about each user (keyed by ``user.hash``) and each
client address, through :class:`~usermon.processor.state.State` only, so the same code runs on
the in-memory state and on Redis. :func:`aggregate` folds one event in; :func:`user_profile` and
:func:`ip_profile` read a summary back for the API.

Per user: first and last seen, the label (``user.id`` when the app sends it), the services seen,
the last successful login (time, IP, user agent); successes, failures and signups over the
sliding :data:`WINDOWS` (1 min, 10 min, 1 h, 24 h); the distinct IPs, networks and user agents of
the last 24 h (bounded by the state's member cap). Per IP: the same counters, and the distinct
users it tried over the same windows. Every time is the event's own.
"""

from __future__ import annotations

from typing import Any

from usermon.processor.model import Event
from usermon.processor.state import State

__all__ = [
    "PROFILE_TTL",
    "WINDOWS",
    "WINDOW_NAMES",
    "aggregate",
    "ip_profile",
    "network_of",
    "user_profile",
]

WINDOWS: tuple[float, ...] = (60.0, 600.0, 3600.0, 86400.0)
"""The aggregation windows, in seconds."""

WINDOW_NAMES: tuple[str, ...] = ("1m", "10m", "1h", "24h")

DISTINCT_WINDOW = WINDOWS[-1]
"""Distinct IPs, networks, user agents and users are kept over the longest window."""

PROFILE_TTL = 30 * 86400.0
"""A user's or address's record (first/last seen, last success) outlives its counters: it is
kept 30 days after its last event, within the state's key cap."""

MAX_SERVICES = 16
MAX_USER_AGENT = 512  # longer user agents are cut: they are a feature, not a document

_COUNTERS = ("ok", "fail", "signup")


def network_of(event: Event) -> str | None:
    """What counts as the event's *network*: its ASN when enrichment knows it, else its
    provider name, else the address's /24 (IPv4) or /48 (IPv6)."""
    net = event.network
    if net is not None:
        if net.asn is not None:
            return f"AS{net.asn}"
        if net.network_name:
            return net.network_name
    ip = event.client_ip
    if not ip:
        return None
    if ":" in ip:
        return ":".join(ip.split(":")[:3]) + "::/48"
    head, _, _ = ip.rpartition(".")
    return f"{head}.0/24" if head else None


_SUFFIXES = {"ok": ":ok", "fail": ":fail", "signup": ":signup"}


def _counter(event: Event) -> str:
    if event.kind == "signup":
        return "signup"
    return "ok" if event.success else "fail"


def aggregate(event: Event, state: State) -> None:
    """Fold one event into the user's and the address's aggregates."""
    # Hot path (every event): keys by concatenation, attributes read once, no work for a write
    # that would change nothing.
    t = event.time
    counter = _counter(event)
    suffix = _SUFFIXES[counter]
    ip = event.client_ip
    h = event.user_hash
    if h is not None:
        prefix = "u:" + h
        state.add_windows(prefix + suffix, t, WINDOWS)
        record = state.get(prefix)
        if record is None:
            record = {"first_seen": t, "last_seen": t}
        else:
            if t < record["first_seen"]:
                record["first_seen"] = t
            if t > record["last_seen"]:
                record["last_seen"] = t
        user_id = event.user_id
        if user_id is not None:
            record["label"] = user_id
        primary_key = event.primary_key
        if primary_key is not None:
            record["primary_key"] = primary_key
        service = event.service
        if service:
            services = record.get("services")
            if services is None:
                services = record["services"] = []
            if service not in services and len(services) < MAX_SERVICES:
                services.append(service)
        ua = event.user_agent
        if counter == "ok" and record.get("ok_time", t) <= t:
            # Flat fields, not a nested object: this record is kept for every user.
            record["ok_time"] = t
            record["ok_ip"] = ip
            record["ok_ua"] = ua[:MAX_USER_AGENT] if ua else None
        state.put(prefix, record, t, PROFILE_TTL)
        if ip:
            state.add_distinct(prefix + ":ips", ip, t, DISTINCT_WINDOW)
            # A network known only as the address's prefix is derived from the IPs when read;
            # only what enrichment names (ASN, provider) needs a set of its own.
            net = event.network
            if net is not None and (net.asn is not None or net.network_name):
                named = network_of(event)
                assert named is not None
                state.add_distinct(prefix + ":nets", named, t, DISTINCT_WINDOW)
        if ua:
            state.add_distinct(prefix + ":uas", ua[:MAX_USER_AGENT], t, DISTINCT_WINDOW)
    if ip:
        prefix = "ip:" + ip
        state.add_windows(prefix + suffix, t, WINDOWS)
        if h is not None:
            state.add_distinct(prefix + ":users", h, t, DISTINCT_WINDOW)
        record = state.get(prefix)
        if record is None:
            record = {"first_seen": t, "last_seen": t}
            state.put(prefix, record, t, PROFILE_TTL)
        elif t > record["last_seen"] or t < record["first_seen"]:
            record["first_seen"] = min(record["first_seen"], t)
            record["last_seen"] = max(record["last_seen"], t)
            state.put(prefix, record, t, PROFILE_TTL)


def _networks(named: list[str], ips: list[str]) -> list[str]:
    out = list(named)
    for ip in ips:
        prefix = network_of(Event(kind="login", time=0.0, client_ip=ip))
        if prefix and prefix not in out:
            out.append(prefix)
    return out


def _windowed(state: State, key: str, now: float) -> dict[str, int]:
    return {name: state.count(key, now, w) for name, w in zip(WINDOW_NAMES, WINDOWS, strict=True)}


def user_profile(state: State, user_hash: str, now: float) -> dict[str, Any] | None:
    """The user's summary as of event time ``now`` (the stream's newest event time), or None."""
    prefix = "u:" + user_hash
    record = state.get(prefix)
    if record is None:
        return None
    ips = state.distinct_members(prefix + ":ips", now, DISTINCT_WINDOW)
    return {
        "user_hash": user_hash,
        "label": record.get("label"),
        "primary_key": record.get("primary_key"),
        "first_seen": record["first_seen"],
        "last_seen": record["last_seen"],
        "services": record.get("services", []),
        "last_success": (
            {"time": record["ok_time"], "ip": record["ok_ip"], "user_agent": record["ok_ua"]}
            if "ok_time" in record
            else None
        ),
        "successes": _windowed(state, prefix + ":ok", now),
        "failures": _windowed(state, prefix + ":fail", now),
        "signups": _windowed(state, prefix + ":signup", now),
        "ips": ips,
        "networks": _networks(state.distinct_members(prefix + ":nets", now, DISTINCT_WINDOW), ips),
        "user_agents": state.distinct_members(prefix + ":uas", now, DISTINCT_WINDOW, limit=16),
        "distinct_ips": state.distinct_count(prefix + ":ips", now, DISTINCT_WINDOW),
    }


def ip_profile(state: State, address: str, now: float) -> dict[str, Any] | None:
    """The address's summary as of event time ``now``, or None when it was never seen."""
    prefix = "ip:" + address
    record = state.get(prefix)
    if record is None:
        return None
    users = prefix + ":users"
    return {
        "ip": address,
        "first_seen": record["first_seen"],
        "last_seen": record["last_seen"],
        "successes": _windowed(state, prefix + ":ok", now),
        "failures": _windowed(state, prefix + ":fail", now),
        "signups": _windowed(state, prefix + ":signup", now),
        "distinct_users": {
            name: state.distinct_count(users, now, w)
            for name, w in zip(WINDOW_NAMES, WINDOWS, strict=True)
        },
        "users": state.distinct_members(users, now, DISTINCT_WINDOW),
    }
