"""Poison for the stores: text no UTF-8 encoder takes, written straight into a state and a
finding (past the decoder, as a version that let it in did), for the stored-data tests."""

from __future__ import annotations

from usermon.processor.aggregation import aggregate
from usermon.processor.model import Event, Finding, Subject
from usermon.processor.storage.state.base import State

from .payloads import T0

LONE = "\ud800"
"""A lone surrogate: Python holds it, UTF-8 refuses it."""

FIXED = "\ufffd"
"""What it reads back as once repaired or rendered."""

USER = "h-poisoned"  # a hash a URL can name; its label, user agent and service are poisoned
IP = "192.0.2.9"


def poison_state(state: State) -> None:
    """One login whose label, user agent and service hold a lone surrogate, and a second user
    whose hash itself is one, both from :data:`IP`."""
    for user_hash in (USER, "h-" + LONE):
        aggregate(
            Event(
                kind="login",
                time=T0,
                success=True,
                user_hash=user_hash,
                user_id="alice" + LONE,
                primary_key="email",
                client_ip=IP,
                user_agent="Mozilla" + LONE,
                service="shop" + LONE,
            ),
            state,
        )


def poisoned_finding() -> Finding:
    return Finding(
        id="f-poisoned",
        kind="brute_force",
        severity="medium",
        subject=Subject("user", USER, "alice" + LONE),
        first_seen=T0,
        last_seen=T0,
        event_count=3,
        summary="3 failed logins for alice" + LONE,
        evidence={"trace_ids": [], "ips": [IP], "users": ["h-" + LONE]},
    )
