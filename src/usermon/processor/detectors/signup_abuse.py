"""signup_abuse: many account creations from one source.

One counter per IP read over two windows in one step: ``signups`` within ``window`` catches a
steady stream, ``burst_signups`` within ``burst_window`` a fast burst.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from usermon.processor.detectors.campaign import campaign_of
from usermon.processor.detectors.shared import PREFIX, SharedCounts
from usermon.processor.model import Event, Signal, Subject
from usermon.processor.rules import SignupAbuseRules
from usermon.processor.storage.state.base import State
from usermon.processor.storage.state.steps import AddWindows, Step

KIND = "signup_abuse"


class SignupAbuseDetector:
    name = KIND
    outcomes = frozenset(("signup",))  # (Selective)

    def __init__(self, rules: SignupAbuseRules, counts: SharedCounts | None = None) -> None:
        self.rules = rules
        self.counts = counts  # for the campaign an address belongs to (none: not looked up)
        self.windows = (rules.burst_window, rules.window)

    def plan(self, event: Event) -> Sequence[Step]:
        if event.kind != "signup" or not event.client_ip:
            return ()
        return (AddWindows(f"{PREFIX}ip:{event.client_ip}:signup", event.time, self.windows),)

    def observe(self, event: Event, state: State) -> Iterable[Signal]:
        if event.kind != "signup" or not event.client_ip:
            return ()
        r = self.rules
        burst, steady = state.add_windows(
            f"{PREFIX}ip:{event.client_ip}:signup", event.time, self.windows
        )
        if burst >= r.burst_signups:
            count, window = burst, r.burst_window
        elif steady >= r.signups:
            count, window = steady, r.window
        else:
            return ()
        network = event.network
        evidence: dict[str, object] = {"signups": count, "window": window}
        campaign = campaign_of(state, event, self.counts) if self.counts is not None else None
        if campaign is not None:
            evidence["campaign"] = campaign
        return (
            Signal(
                kind=KIND,
                severity="medium",
                subject=Subject("ip", event.client_ip, network.as_org if network else None),
                summary=f"{count} signups from {event.client_ip} within {window:g} s",
                event=event,
                evidence=evidence,
                related_users=(event.user_hash,) if event.user_hash else (),
            ),
        )
