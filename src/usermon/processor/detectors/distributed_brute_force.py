"""distributed_brute_force: many failed logins on one account from many sources.

Reports the account once its failures within ``window`` reach ``failures`` and came from at
least ``sources`` distinct IPs (a single source is :mod:`brute_force`'s job), or, when the
guesses rotate through many addresses (at least ``rotating_sources`` distinct ones: proxies or Tor
exits, one guess each), once they reach ``rotating_failures``: 30 guesses in half an hour are a
brute force however many addresses carry them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from usermon.processor.detectors.campaign import campaign_of
from usermon.processor.detectors.shared import SharedCounts, subject_for_user
from usermon.processor.model import Event, Signal
from usermon.processor.rules import DistributedBruteForceRules
from usermon.processor.storage.state.base import State
from usermon.processor.storage.state.steps import Step

KIND = "distributed_brute_force"


class DistributedBruteForceDetector:
    name = KIND
    outcomes = frozenset(("failure",))  # (Selective)

    def __init__(self, rules: DistributedBruteForceRules, counts: SharedCounts) -> None:
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
        if not tally.distributed_brute_force():
            return ()
        who = event.label or "an account"
        evidence: dict[str, object] = {
            "failures": tally.account_failures,
            "sources": tally.account_sources,
            "window": self.rules.window,
        }
        campaign = campaign_of(state, event, self.counts)
        if campaign is not None:
            evidence["campaign"] = campaign
        return (
            Signal(
                kind=KIND,
                severity="high",
                subject=subject_for_user(event),
                summary=f"{tally.account_failures} failed logins on {who} from "
                f"{tally.account_sources} sources within {self.rules.window:g} s",
                event=event,
                evidence=evidence,
                related_ips=(event.client_ip,),
            ),
        )
