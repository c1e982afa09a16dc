"""brute_force: many failed logins on one account from one source.

Counts failures of the account+IP pair (through the shared tally) and reports the account once
the pair reaches ``[brute_force] failures`` within ``window`` (medium), ``high_failures`` (high).
Every further failure grows the same finding.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from usermon.processor.detectors.campaign import campaign_of
from usermon.processor.detectors.shared import SharedCounts, subject_for_user
from usermon.processor.model import Event, Severity, Signal
from usermon.processor.rules import BruteForceRules
from usermon.processor.storage.state.base import State
from usermon.processor.storage.state.steps import Step

KIND = "brute_force"


class BruteForceDetector:
    name = KIND
    outcomes = frozenset(("failure",))  # (Selective)

    def __init__(self, rules: BruteForceRules, counts: SharedCounts) -> None:
        self.rules = rules
        self.counts = counts

    def plan(self, event: Event) -> Sequence[Step]:
        if event.kind != "login" or event.success or not event.user_hash or not event.client_ip:
            return ()
        return self.counts.plan(event)

    def observe(self, event: Event, state: State) -> Iterable[Signal]:
        if event.kind != "login" or event.success or not event.user_hash or not event.client_ip:
            return ()
        tally = self.counts.tally(event, state)
        failures = tally.pair_failures
        if failures < self.rules.failures:
            return ()
        severity: Severity = "high" if failures >= self.rules.high_failures else "medium"
        who = event.label or "an account"
        evidence: dict[str, object] = {
            "failures": failures,
            "ip": event.client_ip,
            "window": self.rules.window,
        }
        campaign = campaign_of(state, event, self.counts)
        if campaign is not None:
            evidence["campaign"] = campaign
        return (
            Signal(
                kind=KIND,
                severity=severity,
                subject=subject_for_user(event),
                summary=f"{failures} failed logins on {who} from {event.client_ip} "
                f"within {self.rules.window:g} s",
                event=event,
                evidence=evidence,
                related_ips=(event.client_ip,),
            ),
        )
