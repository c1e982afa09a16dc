"""credential_stuffing: one source failing fast on many accounts, rarely succeeding.

Reports the IP once, within ``window``, it has ``failures`` failures across at least
``accounts`` distinct accounts and at most ``max_success_ratio`` of its attempts succeeded (the
ratio is what keeps a busy office NAT, with many users and a few typos, quiet). While a
credential-stuffing campaign runs on the service, the finding names it (``campaign``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from usermon.processor.detectors.campaign import campaign_key, campaign_of
from usermon.processor.detectors.shared import SharedCounts
from usermon.processor.model import Event, Signal, Subject
from usermon.processor.rules import CredentialStuffingRules
from usermon.processor.storage.state.base import State
from usermon.processor.storage.state.steps import Get, Step

KIND = "credential_stuffing"


class CredentialStuffingDetector:
    name = KIND
    outcomes = frozenset(("failure",))  # (Selective)

    def __init__(self, rules: CredentialStuffingRules, counts: SharedCounts) -> None:
        self.rules = rules
        self.counts = counts
        counts.declare(self._reads)

    def plan(self, event: Event) -> Sequence[Step]:
        if event.kind != "login" or event.success or not event.client_ip:
            return ()
        return self.counts.plan(event)  # with :meth:`_reads` in it

    @staticmethod
    def _reads(event: Event) -> Sequence[Step]:
        if event.kind != "login" or event.success or not event.client_ip or not event.service:
            return ()
        return (Get(campaign_key(event.service, KIND)),)  # the campaign it may belong to

    def observe(self, event: Event, state: State) -> Iterable[Signal]:
        if event.kind != "login" or event.success or not event.client_ip:
            return ()
        tally = self.counts.tally(event, state)
        if not tally.credential_stuffing():
            return ()
        window = self.rules.window
        failures = tally.ip_failures[window]
        accounts = tally.ip_accounts_within(window)
        ratio = tally.success_ratio("ip", window)
        network = event.network
        evidence: dict[str, Any] = {
            "failures": failures,
            "accounts": accounts,
            "success_ratio": round(ratio, 4),
            "window": window,
        }
        # An address stuffing as part of its service's campaign is one of its sources: the
        # finding names the campaign (one record read, on a stuffing address's failures only).
        campaign = campaign_of(state, event, self.counts)
        if campaign is not None:
            evidence["campaign"] = campaign
        return (
            Signal(
                kind=KIND,
                severity="high",
                subject=Subject("ip", event.client_ip, network.as_org if network else None),
                summary=f"{event.client_ip}: {failures} failed logins on {accounts} accounts "
                f"within {window:g} s, {ratio:.0%} success",
                event=event,
                evidence=evidence,
                related_users=(event.user_hash,) if event.user_hash else (),
            ),
        )
