"""Per-user and per-IP aggregation: the user monitoring itself.

This module owns what the processor remembers about each user (keyed by ``user.hash``) and each
client address, through :class:`~usermon.processor.storage.state.base.State` only, so the same code
runs on the in-memory state and on Redis. :func:`aggregate` folds one event in; :func:`user_profile`
and :func:`ip_profile` read a summary back for the API.

Per user: first and last seen, the label (``user.id`` when the app sends it), the services seen,
the last successful login (time, IP, user agent); successes, failures and signups over the
sliding :data:`WINDOWS` (1 min, 10 min, 1 h, 24 h); the distinct IPs, networks and user agents of
the last 24 h (bounded by the state's member cap). Per IP: the same counters, and the distinct
users it tried over the same windows. Every time is the event's own.

Each user and each address is one *subject aggregate* in the state (``u:<hash>``,
``ip:<address>``), and an event is folded into each with one atomic
:meth:`~usermon.processor.storage.state.base.State.fold_subject` step: two State calls per event,
whatever the backend. Its distinct sets are, in order: a user's IPs, named networks and user agents;
an address's users.
"""

from __future__ import annotations

from typing import Any

from usermon.processor.model import Event
from usermon.processor.network import network_of
from usermon.processor.storage.state.base import (
    FAIL,
    OK,
    SIGNUP,
    SUBJECT_MAX_SERVICES,
    State,
    SubjectView,
)
from usermon.processor.storage.state.steps import Fold

__all__ = [
    "PROFILE_TTL",
    "WINDOWS",
    "WINDOW_NAMES",
    "aggregate",
    "ip_profile",
    "ip_profile_of",
    "last_seen",
    "profile_read",
    "subject_keys",
    "user_profile",
    "user_profile_of",
]

WINDOWS: tuple[float, ...] = (60.0, 600.0, 3600.0, 86400.0)
"""The aggregation windows, in seconds."""

WINDOW_NAMES: tuple[str, ...] = ("1m", "10m", "1h", "24h")

DISTINCT_WINDOW = WINDOWS[-1]
"""Distinct IPs, networks, user agents and users are kept over the longest window."""

PROFILE_TTL = 30 * 86400.0
"""A user's or address's aggregate is kept 30 days after its last event, within the state's
key cap: its record (first/last seen, last success) outlives its windows."""

MAX_SERVICES = SUBJECT_MAX_SERVICES
MAX_USER_AGENT = 512  # longer user agents are cut: they are a feature, not a document


def _named_network(event: Event) -> str | None:
    """The network enrichment named for the event: its ASN, else its provider name, else None
    (a network known only as the address's prefix is :func:`network_of` of the address)."""
    net = event.network
    if net is None:
        return None
    if net.asn is not None:
        return f"AS{net.asn}"
    return net.network_name or None


_USER_SETS = (64, 64, 16)
"""What a user profile lists of its distinct sets (IPs, named networks, user agents)."""

_IP_SETS = (64,)
"""What an address profile lists of its distinct set (users)."""


def aggregate(event: Event, state: State) -> None:
    """Fold one event into the user's and the address's aggregates: one State step each.
    (Direct calls rather than :func:`aggregation_steps`' steps run one by one: this is every
    event's path on an in-process state, where building the steps would cost more than the
    calls; ``tests/processor/test_planning.py`` checks that the two agree.)"""
    t = event.time
    outcome = SIGNUP if event.kind == "signup" else OK if event.success else FAIL
    ip = event.client_ip or None
    # An attempt refused on a protection decision never reached the password check: it is no
    # failure of the account's, only evidence against the address.
    h = None if event.blocked else event.user_hash
    if h is not None:
        ua = event.user_agent
        ua = ua[:MAX_USER_AGENT] if ua else None
        # A network known only as the address's prefix is derived from the IPs when read;
        # only what enrichment names (ASN, provider) needs a set of its own.
        named = _named_network(event) if ip is not None else None
        state.fold_subject(
            "u:" + h,
            t,
            WINDOWS,
            PROFILE_TTL,
            outcome,
            (ip, named, ua),
            label=event.user_id,
            primary_key=event.primary_key,
            service=event.service,
            success=(event.client_ip, ua) if outcome == OK else None,
        )
    if ip is not None:
        state.fold_subject("ip:" + ip, t, WINDOWS, PROFILE_TTL, outcome, (event.user_hash,))


def aggregation_steps(event: Event) -> list[Fold]:
    """The steps :func:`aggregate` makes for ``event`` (the user's fold, the address's), for
    the engine's plans."""
    steps: list[Fold] = []
    t = event.time
    outcome = SIGNUP if event.kind == "signup" else OK if event.success else FAIL
    ip = event.client_ip or None
    # An attempt refused on a protection decision never reached the password check: it is no
    # failure of the account's, only evidence against the address.
    h = None if event.blocked else event.user_hash
    if h is not None:
        ua = event.user_agent
        ua = ua[:MAX_USER_AGENT] if ua else None
        # A network known only as the address's prefix is derived from the IPs when read;
        # only what enrichment names (ASN, provider) needs a set of its own.
        named = _named_network(event) if ip is not None else None
        steps.append(
            Fold(
                "u:" + h,
                t,
                WINDOWS,
                PROFILE_TTL,
                outcome,
                (ip, named, ua),
                label=event.user_id,
                primary_key=event.primary_key,
                service=event.service,
                success=(event.client_ip, ua) if outcome == OK else None,
            )
        )
    if ip is not None:
        steps.append(Fold("ip:" + ip, t, WINDOWS, PROFILE_TTL, outcome, (event.user_hash,)))
    return steps


def _networks(named: tuple[str, ...], ips: tuple[str, ...]) -> list[str]:
    out = list(named)
    for ip in ips:
        prefix = network_of(ip)
        if prefix and prefix not in out:
            out.append(prefix)
    return out


def _windowed(counts: tuple[int, ...]) -> dict[str, int]:
    return dict(zip(WINDOW_NAMES, counts, strict=True))


def user_profile(state: State, user_hash: str, now: float | None) -> dict[str, Any] | None:
    """The user's summary as of event time ``now`` (the stream's newest event time; None: the
    user's own newest event), or None."""
    view = state.read_subject("u:" + user_hash, now, WINDOWS, _USER_SETS)
    return None if view is None else user_profile_of(view, user_hash)


def user_profile_of(view: SubjectView, user_hash: str) -> dict[str, Any]:
    """:func:`user_profile` of the user's subject as read (``read_subject`` with
    :data:`WINDOWS` and :func:`profile_read`'s limits)."""
    ips, named, uas = view.members
    return {
        "user_hash": user_hash,
        "label": view.label,
        "primary_key": view.primary_key,
        "first_seen": view.first_seen,
        "last_seen": view.last_seen,
        "services": list(view.services),
        "last_success": (
            None
            if view.last_success is None
            else dict(zip(("time", "ip", "user_agent"), view.last_success, strict=True))
        ),
        "successes": _windowed(view.counts[OK]),
        "failures": _windowed(view.counts[FAIL]),
        "signups": _windowed(view.counts[SIGNUP]),
        "ips": list(ips),
        "networks": _networks(named, ips),
        "user_agents": list(uas),
        "distinct_ips": view.distinct[0][-1],
    }


def ip_profile(state: State, address: str, now: float | None) -> dict[str, Any] | None:
    """The address's summary as of event time ``now`` (None: its own newest event), or None
    when it was never seen."""
    view = state.read_subject("ip:" + address, now, WINDOWS, _IP_SETS)
    return None if view is None else ip_profile_of(view, address)


def ip_profile_of(view: SubjectView, address: str) -> dict[str, Any]:
    """:func:`ip_profile` of the address's subject as read (as :func:`user_profile_of`)."""
    return {
        "ip": address,
        "first_seen": view.first_seen,
        "last_seen": view.last_seen,
        "successes": _windowed(view.counts[OK]),
        "failures": _windowed(view.counts[FAIL]),
        "signups": _windowed(view.counts[SIGNUP]),
        "distinct_users": _windowed(view.distinct[0]),
        "users": list(view.members[0]),
    }


def profile_read(key: str) -> tuple[int, ...]:
    """The limits a profile reads the subject at ``key`` (``u:…`` or ``ip:…``) with."""
    return _USER_SETS if key.startswith("u:") else _IP_SETS


def subject_keys(event: Event) -> tuple[str, ...]:
    """The subjects :func:`aggregate` folds ``event`` into (user first, then address)."""
    ip = event.client_ip
    h = None if event.blocked else event.user_hash
    if h is not None:
        return ("u:" + h, "ip:" + ip) if ip else ("u:" + h,)
    return ("ip:" + ip,) if ip else ()


def last_seen(state: State, key: str) -> float | None:
    """The newest event time of the user (``u:<hash>``) or address (``ip:<address>``) whose
    aggregate is at ``key``, or None: the cheap read the stores rank profiles by."""
    view = state.read_subject(key, None)
    return None if view is None else view.last_seen
