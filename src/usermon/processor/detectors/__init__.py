"""Detectors: one small class per attack pattern, each fed every enriched event.

:func:`default_detectors` builds the set the processor runs, configured from the rules file
(:mod:`usermon.processor.rules`). The login detectors built together share one
:class:`~usermon.processor.detectors.shared.SharedCounts`, so an event's failures per account,
IP and network are counted once however many detectors read them.

Driving them by hand (a test, a replay)::

    state = MemoryState()
    detectors = default_detectors()
    for event in events:
        for detector in detectors:
            signals.extend(detector.observe(event, state))
"""

from __future__ import annotations

from usermon.processor.detectors.account_takeover import AccountTakeoverDetector
from usermon.processor.detectors.base import Detector
from usermon.processor.detectors.brute_force import BruteForceDetector
from usermon.processor.detectors.campaign import CampaignDetector
from usermon.processor.detectors.credential_stuffing import CredentialStuffingDetector
from usermon.processor.detectors.distributed_brute_force import DistributedBruteForceDetector
from usermon.processor.detectors.impossible_travel import ImpossibleTravelDetector
from usermon.processor.detectors.password_spraying import PasswordSprayingDetector
from usermon.processor.detectors.shared import SharedCounts
from usermon.processor.detectors.signup_abuse import SignupAbuseDetector
from usermon.processor.detectors.suspicious_login import SuspiciousLoginDetector
from usermon.processor.detectors.tor_login import TorLoginDetector, VpnOrHostingLoginDetector
from usermon.processor.model import Event, Signal
from usermon.processor.rules import Rules, load_rules
from usermon.processor.storage.state.base import State

__all__ = [
    "AccountTakeoverDetector",
    "BruteForceDetector",
    "CampaignDetector",
    "CredentialStuffingDetector",
    "Detector",
    "DistributedBruteForceDetector",
    "ImpossibleTravelDetector",
    "PasswordSprayingDetector",
    "SharedCounts",
    "SignupAbuseDetector",
    "SuspiciousLoginDetector",
    "TorLoginDetector",
    "VpnOrHostingLoginDetector",
    "default_detectors",
    "run_detectors",
]


def default_detectors(rules: Rules | None = None) -> list[Detector]:
    """Every enabled detector, configured from ``rules`` (default: :func:`load_rules`, i.e. the
    shipped defaults overridden by ``USERMON_RULES``)."""
    if rules is None:
        rules = load_rules()
    counts = SharedCounts(rules)
    candidates: list[tuple[bool, Detector]] = [
        (rules.brute_force.enabled, BruteForceDetector(rules.brute_force, counts)),
        (
            rules.distributed_brute_force.enabled,
            DistributedBruteForceDetector(rules.distributed_brute_force, counts),
        ),
        (
            rules.credential_stuffing.enabled,
            CredentialStuffingDetector(rules.credential_stuffing, counts),
        ),
        (
            rules.password_spraying.enabled,
            PasswordSprayingDetector(rules.password_spraying, counts),
        ),
        (
            rules.account_takeover.enabled,
            AccountTakeoverDetector(rules.account_takeover, counts),
        ),
        (rules.suspicious_login.enabled, SuspiciousLoginDetector(rules.suspicious_login, counts)),
        (rules.tor_login.enabled, TorLoginDetector(rules.tor_login)),
        (
            rules.vpn_or_hosting_login.enabled,
            VpnOrHostingLoginDetector(rules.vpn_or_hosting_login, counts),
        ),
        (rules.impossible_travel.enabled, ImpossibleTravelDetector(rules.impossible_travel)),
        (rules.signup_abuse.enabled, SignupAbuseDetector(rules.signup_abuse, counts)),
        (rules.campaigns.enabled, CampaignDetector(rules.campaigns, counts)),
    ]
    return [detector for enabled, detector in candidates if enabled]


def run_detectors(detectors: list[Detector], event: Event, state: State) -> list[Signal]:
    """Every signal ``detectors`` raise for one event, in detector order."""
    signals: list[Signal] = []
    for detector in detectors:
        signals.extend(detector.observe(event, state))
    return signals
