"""The detectors' rules: every threshold, window and severity, loaded from one TOML file.

This module owns the rules file. The defaults ship in the package (``default_rules.toml`` beside
this module, each key commented there and justified in ``docs/detection.md``); a deployment may
point ``USERMON_RULES`` (or ``usermon serve --rules``) at its own file, which overrides only the
keys it names. Loading validates everything at startup: an unknown section or key, a wrong type
or an out-of-range value is a :class:`RulesError` naming the file, the section and the key, so a
typo can never silently leave a detector on its default. The ``[responses]`` section (which
findings become which protection decisions) is in the same file and validated by
:mod:`usermon.processor.responses`; :func:`rule_documents` gives both modules the same documents.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from usermon.environment_variables import USERMON_RULES
from usermon.processor.model import SEVERITIES, Severity

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "AccountTakeoverRules",
    "BruteForceRules",
    "CampaignsRules",
    "CredentialStuffingRules",
    "DistributedBruteForceRules",
    "ImpossibleTravelRules",
    "PasswordSprayingRules",
    "Rules",
    "RulesError",
    "SignupAbuseRules",
    "SuspiciousLoginRules",
    "TorLoginRules",
    "VpnOrHostingLoginRules",
    "load_rules",
    "rule_documents",
]

DEFAULT_RULES_FILE = "default_rules.toml"
OTHER_SECTIONS = ("responses",)
"""Sections of the rules file that other modules validate (usermon.processor.responses)."""
ANONYMIZING_CATEGORIES = ("hosting", "vpn", "proxy", "tor")


class RulesError(ValueError):
    """The rules file is unreadable or names an unknown key or a bad value."""


# Each field declares what values it accepts through its metadata ``kind``; validation below
# is driven by it, so adding a threshold is one line here plus its comment in the TOML file.
FLAG = {"kind": "bool"}
COUNT = {"kind": "count"}  # a whole number >= 1
POSITIVE = {"kind": "positive"}  # seconds, speeds, distances, scores: a number > 0
RATIO = {"kind": "ratio"}  # between 0 and 1
SEVERITY = {"kind": "severity"}
CATEGORIES = {"kind": "categories"}
IPV4_PREFIX = {"kind": "prefix", "bits": 32}
IPV6_PREFIX = {"kind": "prefix", "bits": 128}


@dataclass(frozen=True)
class BruteForceRules:
    """Failures on one account from one source (the account+IP pair)."""

    enabled: bool = field(default=True, metadata=FLAG)
    window: float = field(default=3600.0, metadata=POSITIVE)
    failures: int = field(default=10, metadata=COUNT)
    high_failures: int = field(default=100, metadata=COUNT)


@dataclass(frozen=True)
class DistributedBruteForceRules:
    """Failures on one account from many sources."""

    enabled: bool = field(default=True, metadata=FLAG)
    window: float = field(default=3600.0, metadata=POSITIVE)
    failures: int = field(default=41, metadata=COUNT)
    sources: int = field(default=5, metadata=COUNT)
    rotating_failures: int = field(default=20, metadata=COUNT)
    rotating_sources: int = field(default=15, metadata=COUNT)


@dataclass(frozen=True)
class CredentialStuffingRules:
    """One source failing fast on many accounts, rarely succeeding."""

    enabled: bool = field(default=True, metadata=FLAG)
    window: float = field(default=600.0, metadata=POSITIVE)
    failures: int = field(default=31, metadata=COUNT)
    accounts: int = field(default=6, metadata=COUNT)
    max_success_ratio: float = field(default=0.1, metadata=RATIO)


@dataclass(frozen=True)
class PasswordSprayingRules:
    """One source or network trying many accounts a few times each, slowly."""

    enabled: bool = field(default=True, metadata=FLAG)
    window: float = field(default=86400.0, metadata=POSITIVE)
    accounts: int = field(default=10, metadata=COUNT)
    max_attempts_per_account: float = field(default=3.0, metadata=POSITIVE)
    max_success_ratio: float = field(default=0.1, metadata=RATIO)
    burst_window: float = field(default=600.0, metadata=POSITIVE)
    max_burst_share: float = field(default=0.5, metadata=RATIO)
    network_sources: int = field(default=3, metadata=COUNT)
    ipv4_prefix: int = field(default=24, metadata=IPV4_PREFIX)
    ipv6_prefix: int = field(default=48, metadata=IPV6_PREFIX)
    provider_window: float = field(default=3 * 86400.0, metadata=POSITIVE)
    provider_accounts: int = field(default=20, metadata=COUNT)
    provider_sources: int = field(default=10, metadata=COUNT)
    provider_categories: tuple[str, ...] = field(
        default=("hosting", "vpn", "proxy"), metadata=CATEGORIES
    )


@dataclass(frozen=True)
class AccountTakeoverRules:
    """A success on an attacked account, or from a source attacking others."""

    enabled: bool = field(default=True, metadata=FLAG)
    memory: float = field(default=86400.0, metadata=POSITIVE)


@dataclass(frozen=True)
class SuspiciousLoginRules:
    """Freeman et al. risk score of a successful login against the user's history."""

    enabled: bool = field(default=True, metadata=FLAG)
    min_history: int = field(default=3, metadata=COUNT)
    risk_threshold: float = field(default=30.0, metadata=POSITIVE)
    high_risk_threshold: float = field(default=80.0, metadata=POSITIVE)
    max_unseen_factor: float = field(default=10.0, metadata=POSITIVE)
    max_values: int = field(default=16, metadata=COUNT)
    profile_ttl: float = field(default=90 * 86400.0, metadata=POSITIVE)
    score_new_version: bool = field(default=False, metadata=FLAG)


@dataclass(frozen=True)
class TorLoginRules:
    """Login attempts and signups from Tor exit nodes."""

    enabled: bool = field(default=True, metadata=FLAG)
    attempt_severity: Severity = field(default="low", metadata=SEVERITY)
    success_severity: Severity = field(default="high", metadata=SEVERITY)
    signup_severity: Severity = field(default="medium", metadata=SEVERITY)


@dataclass(frozen=True)
class VpnOrHostingLoginRules:
    """Login attempts and signups from VPN, proxy or hosting ranges."""

    enabled: bool = field(default=True, metadata=FLAG)
    categories: tuple[str, ...] = field(default=("hosting", "vpn", "proxy"), metadata=CATEGORIES)
    attempt_severity: Severity = field(default="low", metadata=SEVERITY)
    success_severity: Severity = field(default="medium", metadata=SEVERITY)
    signup_severity: Severity = field(default="low", metadata=SEVERITY)


@dataclass(frozen=True)
class ImpossibleTravelRules:
    """Consecutive successful logins too far apart for the time between them."""

    enabled: bool = field(default=True, metadata=FLAG)
    max_speed_kmh: float = field(default=1000.0, metadata=POSITIVE)
    min_distance_km: float = field(default=500.0, metadata=POSITIVE)
    ignore_same_asn: bool = field(default=True, metadata=FLAG)
    memory: float = field(default=30 * 86400.0, metadata=POSITIVE)


@dataclass(frozen=True)
class SignupAbuseRules:
    """Many signups from one source."""

    enabled: bool = field(default=True, metadata=FLAG)
    window: float = field(default=3600.0, metadata=POSITIVE)
    signups: int = field(default=20, metadata=COUNT)
    burst_window: float = field(default=60.0, metadata=POSITIVE)
    burst_signups: int = field(default=6, metadata=COUNT)


@dataclass(frozen=True)
class CampaignsRules:
    """Site-wide baselines per service, and the campaigns that depart from them."""

    enabled: bool = field(default=True, metadata=FLAG)
    window: float = field(default=3600.0, metadata=POSITIVE)
    baseline: float = field(default=7 * 86400.0, metadata=POSITIVE)
    learn: float = field(default=86400.0, metadata=POSITIVE)
    min_failures: int = field(default=100, metadata=COUNT)
    surge: float = field(default=10.0, metadata=POSITIVE)
    spread: float = field(default=0.5, metadata=RATIO)
    min_signups: int = field(default=50, metadata=COUNT)
    signup_surge: float = field(default=10.0, metadata=POSITIVE)
    agent_share: float = field(default=0.5, metadata=RATIO)
    top: int = field(default=10, metadata=COUNT)
    fingerprint_coverage: float = field(default=0.8, metadata=RATIO)
    fingerprint_sample: int = field(default=32, metadata=COUNT)
    fingerprint_agents: int = field(default=4, metadata=COUNT)
    fingerprint_nets: int = field(default=8, metadata=COUNT)
    fingerprint_agent_users: float = field(default=0.01, metadata=RATIO)
    fingerprint_net_success: float = field(default=0.1, metadata=RATIO)
    source_failures: int = field(default=2, metadata=COUNT)
    rotating_agents: float = field(default=0.2, metadata=RATIO)


@dataclass(frozen=True)
class Rules:
    """All detectors' rules; one attribute per rules-file section, named as the finding kind."""

    brute_force: BruteForceRules = field(default_factory=BruteForceRules)
    distributed_brute_force: DistributedBruteForceRules = field(
        default_factory=DistributedBruteForceRules
    )
    credential_stuffing: CredentialStuffingRules = field(default_factory=CredentialStuffingRules)
    password_spraying: PasswordSprayingRules = field(default_factory=PasswordSprayingRules)
    account_takeover: AccountTakeoverRules = field(default_factory=AccountTakeoverRules)
    suspicious_login: SuspiciousLoginRules = field(default_factory=SuspiciousLoginRules)
    tor_login: TorLoginRules = field(default_factory=TorLoginRules)
    vpn_or_hosting_login: VpnOrHostingLoginRules = field(default_factory=VpnOrHostingLoginRules)
    impossible_travel: ImpossibleTravelRules = field(default_factory=ImpossibleTravelRules)
    signup_abuse: SignupAbuseRules = field(default_factory=SignupAbuseRules)
    campaigns: CampaignsRules = field(default_factory=CampaignsRules)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], origin: str = "rules") -> Rules:
        """Rules from a parsed TOML document: named keys override the defaults of ``cls()``."""
        return _apply(cls(), data, origin)


def _check_value(origin: str, where: str, f: dataclasses.Field[Any], value: Any) -> Any:
    kind = f.metadata["kind"]

    def bad(expected: str) -> RulesError:
        return RulesError(f"{origin}: {where} must be {expected}, got {value!r}")

    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if kind == "count":
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise bad("a whole number >= 1")
        return value
    if kind == "positive":
        if not is_number or value <= 0:
            raise bad("a number > 0")
        return float(value)
    if kind == "ratio":
        if not is_number or not 0 <= value <= 1:
            raise bad("a number between 0 and 1")
        return float(value)
    if kind == "severity":
        if value not in SEVERITIES:
            raise bad("one of " + ", ".join(SEVERITIES))
        return value
    if kind == "prefix":
        bits = f.metadata["bits"]
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= bits:
            raise bad(f"a prefix length between 0 and {bits}")
        return value
    if kind == "categories":
        if not isinstance(value, list) or any(v not in ANONYMIZING_CATEGORIES for v in value):
            raise bad("a list drawn from " + ", ".join(ANONYMIZING_CATEGORIES))
        return tuple(value)
    raise AssertionError(f"unknown rule kind {kind}")  # pragma: no cover - a bug here, not input


def _apply(base: Rules, data: Mapping[str, Any], origin: str) -> Rules:
    sections = {f.name: f for f in dataclasses.fields(Rules)}
    replaced: dict[str, Any] = {}
    for name, table in data.items():
        if name in OTHER_SECTIONS:
            continue
        if name not in sections:
            raise RulesError(
                f"{origin}: unknown section [{name}]; known sections: {', '.join(sections)}"
            )
        if not isinstance(table, Mapping):
            raise RulesError(f"{origin}: [{name}] must be a table of keys")
        current = getattr(base, name)
        keys = {f.name: f for f in dataclasses.fields(current)}
        changes: dict[str, Any] = {}
        for key, value in table.items():
            if key not in keys:
                raise RulesError(
                    f"{origin}: unknown key {key!r} in [{name}]; known keys: {', '.join(keys)}"
                )
            changes[key] = _check_value(origin, f"[{name}] {key}", keys[key], value)
        section = dataclasses.replace(current, **changes)
        _check_section(origin, name, section)
        replaced[name] = section
    return dataclasses.replace(base, **replaced)


def _check_section(origin: str, name: str, section: Any) -> None:
    """Cross-key consistency that single values cannot express."""
    if isinstance(section, BruteForceRules) and section.high_failures < section.failures:
        raise RulesError(f"{origin}: [{name}] high_failures must be >= failures")
    if (
        isinstance(section, SuspiciousLoginRules)
        and section.high_risk_threshold < section.risk_threshold
    ):
        raise RulesError(f"{origin}: [{name}] high_risk_threshold must be >= risk_threshold")
    if isinstance(section, PasswordSprayingRules) and section.burst_window >= section.window:
        raise RulesError(f"{origin}: [{name}] burst_window must be shorter than window")
    if isinstance(section, SignupAbuseRules) and section.burst_window > section.window:
        raise RulesError(f"{origin}: [{name}] burst_window must not exceed window")
    if isinstance(section, CampaignsRules) and section.baseline <= section.window:
        raise RulesError(f"{origin}: [{name}] baseline must be longer than window")
    campaigns = isinstance(section, CampaignsRules)
    if campaigns and not section.window < section.learn <= section.baseline:
        # learn <= window leaves no history before the window to judge it by (and a rate over
        # nothing); learn > baseline is never reached, so nothing would ever be judged.
        raise RulesError(
            f"{origin}: [{name}] learn must be longer than window and at most baseline"
        )


def _parse(text: str, origin: str) -> dict[str, Any]:
    try:
        document: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{origin}: not valid TOML: {exc}") from exc
    return document


def default_rules_text() -> str:
    """The shipped default rules file, comments included."""
    return (resources.files("usermon.processor") / DEFAULT_RULES_FILE).read_text("utf-8")


def rule_documents(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """The parsed rules files in force, as ``(origin, document)``: the shipped defaults, then the
    file at ``path``, else the one named in ``USERMON_RULES``, if any."""
    documents = [(DEFAULT_RULES_FILE, _parse(default_rules_text(), DEFAULT_RULES_FILE))]
    if path is None:
        env = os.environ if environ is None else environ
        path = env.get(USERMON_RULES) or None
    if path is None:
        return documents
    origin = os.fspath(path)
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise RulesError(f"{origin}: cannot read rules file: {exc.strerror or exc}") from exc
    documents.append((origin, _parse(text, origin)))
    return documents


def load_rules(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Rules:
    """The rules in force: the shipped defaults, overridden by the file at ``path``, else by the
    file named in ``USERMON_RULES``. Raises :class:`RulesError` on any problem."""
    rules = Rules()
    for origin, document in rule_documents(path, environ):
        rules = _apply(rules, document, origin)
    return rules
