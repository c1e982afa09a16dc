"""tor_login and vpn_or_hosting_login: logins and signups from anonymizing networks.

Both read only the event's :class:`~usermon.processor.model.NetworkInfo` (filled by enrichment
from the Tor exit list and the IP-ranges CSV) and keep no state. A successful login is about the
user who logged in (subject ``user``, the higher severity); failed attempts and signups are about
the address they came from (subject ``ip``), so a campaign through a few exits grows a few
findings rather than one per targeted account. Failed logins from several addresses of one
hosting, VPN or proxy provider (``[password_spraying] provider_categories``) are about the
provider (subject ``network``, ``AS<n>``): a rotation through its addresses is one finding, and
none once the provider is known to be spraying (that finding carries them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from usermon.processor.detectors.shared import SharedCounts, subject_for_user
from usermon.processor.model import Event, Severity, Signal, Subject
from usermon.processor.rules import TorLoginRules, VpnOrHostingLoginRules
from usermon.processor.storage.state.base import State
from usermon.processor.storage.state.steps import Step

TOR_KIND = "tor_login"
VPN_KIND = "vpn_or_hosting_login"


def _signal(
    kind: str,
    event: Event,
    severity: Severity,
    what: str,
) -> Signal:
    assert event.client_ip is not None
    assert event.network is not None
    network = event.network
    provider = network.network_name or network.as_org
    where = f"{what} ({provider})" if provider and provider != what else what
    if event.kind == "signup":
        action = "signup"
    elif event.success:
        action = "successful login"
    else:
        action = "failed login"
    if event.kind == "login" and event.success and event.user_hash:
        subject = subject_for_user(event)
        summary = f"{action} of {event.label or 'a user'} from {where} {event.client_ip}"
    else:
        subject = Subject("ip", event.client_ip, provider)
        summary = f"{action} from {where} {event.client_ip}"
    return Signal(
        kind=kind,
        severity=severity,
        subject=subject,
        summary=summary,
        event=event,
        evidence={
            "ip": event.client_ip,
            "category": network.category,
            "network": provider,
            "outcome": action,
        },
        related_users=(event.user_hash,) if event.user_hash else (),
        related_ips=(event.client_ip,),
    )


def _severity(event: Event, attempt: Severity, success: Severity, signup: Severity) -> Severity:
    if event.kind == "signup":
        return signup
    return success if event.success else attempt


class TorLoginDetector:
    name = TOR_KIND

    def __init__(self, rules: TorLoginRules) -> None:
        self.rules = rules

    def plan(self, event: Event) -> Sequence[Step]:
        return ()  # no state

    def observe(self, event: Event, state: State) -> Iterable[Signal]:
        network = event.network
        if network is None or network.category != "tor" or not event.client_ip:
            return ()
        r = self.rules
        severity = _severity(event, r.attempt_severity, r.success_severity, r.signup_severity)
        return (_signal(TOR_KIND, event, severity, "Tor exit"),)


class VpnOrHostingLoginDetector:
    name = VPN_KIND

    def __init__(self, rules: VpnOrHostingLoginRules, counts: SharedCounts | None = None) -> None:
        self.rules = rules
        self.counts = counts

    def plan(self, event: Event) -> Sequence[Step]:
        network = event.network
        if network is None or network.category not in self.rules.categories:
            return ()
        if self.counts is None or not event.client_ip or event.kind != "login" or event.success:
            return ()
        return self.counts.plan(event)

    def observe(self, event: Event, state: State) -> Iterable[Signal]:
        network = event.network
        if network is None or network.category not in self.rules.categories:
            return ()
        if not event.client_ip:
            return ()
        r = self.rules
        severity = _severity(event, r.attempt_severity, r.success_severity, r.signup_severity)
        signal = _signal(VPN_KIND, event, severity, f"{network.category} network")
        if self.counts is None or event.kind != "login" or event.success:
            return (signal,)
        # Failed attempts from several addresses of one provider are one campaign: reported on
        # the provider, and not at all once it is known to be spraying (that finding has them).
        tally = self.counts.tally(event, state)
        if tally.provider is None or tally.provider_sources < 2:
            return (signal,)
        if tally.password_spraying("provider"):
            return ()
        provider = network.network_name or network.as_org
        return (
            dataclasses.replace(
                signal,
                subject=Subject("network", tally.provider, provider),
                summary=f"failed logins from {tally.provider_sources} addresses of "
                f"{network.category} network {provider or tally.provider}",
                evidence={**signal.evidence, "sources": tally.provider_sources},
                episode_gap=self.counts.rules.password_spraying.window,
            ),
        )
