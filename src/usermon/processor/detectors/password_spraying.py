"""password_spraying: one source or network trying many accounts a few times each, slowly.

Reports the IP (or, when the attempts are spread over several addresses, its network at the
configured prefix) once over ``window`` it failed on at least ``accounts`` accounts, at most
``max_attempts_per_account`` times each on average, with at most ``max_success_ratio`` success,
and no more than ``max_burst_share`` of those failures within the last ``burst_window``: the
slowness is what tells spraying from credential stuffing. An address that is stuffing is not also
reported as spraying.

Low-and-slow spraying from dozens of addresses of one hosting provider stays under every
per-address count; so the addresses of a hosting, VPN or proxy network (``provider_categories``)
are also counted together by ASN over ``provider_window`` (days), and the provider is reported
(subject ``network``, id ``AS<n>``) once ``provider_sources`` of its addresses failed on
``provider_accounts`` accounts, a few times each: one finding for the whole campaign.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from usermon.processor.detectors.campaign import campaign_of
from usermon.processor.detectors.shared import SharedCounts
from usermon.processor.model import Event, Signal, Subject
from usermon.processor.rules import PasswordSprayingRules
from usermon.processor.storage.state.base import State
from usermon.processor.storage.state.steps import Step

KIND = "password_spraying"


class PasswordSprayingDetector:
    name = KIND
    outcomes = frozenset(("failure",))  # (Selective)

    def __init__(self, rules: PasswordSprayingRules, counts: SharedCounts) -> None:
        self.rules = rules
        self.counts = counts

    def plan(self, event: Event) -> Sequence[Step]:
        if event.kind != "login" or event.success or not event.client_ip:
            return ()
        return self.counts.plan(event)

    def observe(self, event: Event, state: State) -> Iterable[Signal]:
        if event.kind != "login" or event.success or not event.client_ip:
            return ()
        tally = self.counts.tally(event, state)
        network = event.network
        gap = None
        if tally.provider is not None and tally.password_spraying("provider"):
            # A provider's addresses spraying together are one campaign: one finding, open for
            # as long as attempts come less than a spraying window apart.
            rules = self.rules
            subject = Subject("network", tally.provider, network.as_org if network else None)
            failures, accounts = tally.provider_failures, tally.provider_accounts
            return (
                Signal(
                    kind=KIND,
                    severity="high"
                    if tally.provider_sources >= 3 * rules.provider_sources
                    else "medium",
                    subject=subject,
                    summary=f"{subject.label or subject.id}: {failures} failed logins spread over "
                    f"{accounts} accounts from {tally.provider_sources} of its addresses within "
                    f"{rules.provider_window:g} s",
                    event=event,
                    evidence=self._in_campaign(
                        {
                            "failures": failures,
                            "accounts": accounts,
                            "sources": tally.provider_sources,
                            "window": rules.provider_window,
                            "scope": "provider",
                        },
                        event,
                        state,
                    ),
                    related_users=(event.user_hash,) if event.user_hash else (),
                    related_ips=(event.client_ip,),
                    episode_gap=rules.window,
                ),
            )
        if tally.credential_stuffing():
            return ()  # one source, one attack: a slow stuffing run is stuffing, not also spraying
        if tally.password_spraying("ip"):
            subject = Subject("ip", event.client_ip, network.as_org if network else None)
            failures, accounts = tally.ip_failures[self.rules.window], tally.ip_accounts
        elif tally.network is not None and tally.password_spraying("network"):
            subject = Subject("network", tally.network, network.as_org if network else None)
            failures = tally.network_failures[self.rules.window]
            accounts = tally.network_accounts
        else:
            return ()
        return (
            Signal(
                kind=KIND,
                severity="medium",
                subject=subject,
                summary=f"{subject.id}: {failures} failed logins spread over {accounts} accounts "
                f"within {self.rules.window:g} s",
                event=event,
                evidence=self._in_campaign(
                    {
                        "failures": failures,
                        "accounts": accounts,
                        "window": self.rules.window,
                        "scope": subject.type,
                    },
                    event,
                    state,
                ),
                related_users=(event.user_hash,) if event.user_hash else (),
                related_ips=(event.client_ip,),
                episode_gap=gap,
            ),
        )

    def _in_campaign(self, evidence: dict[str, Any], event: Event, state: State) -> dict[str, Any]:
        """``evidence``, naming the service's campaign when this source belongs to it."""
        campaign = campaign_of(state, event, self.counts)
        if campaign is not None:
            evidence["campaign"] = campaign
        return evidence
