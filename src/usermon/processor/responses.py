"""Responses: which findings become which decisions, for how long, escalating for repeat offenders.

This module owns the rule from findings to decisions, and nothing else: no store, no clock of its
own. The rules file's ``[responses]`` section (defaults in ``default_rules.toml``, each justified in
docs/protection.md) names, per finding kind, an ``action``, a ``scope`` and a ``duration``;
:func:`respond` turns a list of findings into the decisions they call for, given the allowlist,
what is already decided and how many decisions each subject had lately. A repeat offender's
duration is multiplied by ``escalation`` per earlier decision on the same subject within
``recidive_window``, capped at ``max_duration`` (fail2ban's recidive jail). A finding about the
whole service (a campaign) only ever produces ``challenge`` on ``service_campaign``: blocking every
login that looks like an attack's would block the site.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from usermon.processor.model import (
    DECISION_ACTIONS,
    DECISION_SCOPES,
    FINDING_KINDS,
    Decision,
    Finding,
)
from usermon.processor.network import network_of
from usermon.processor.queries import parse_duration

__all__ = [
    "MAX_DURATION",
    "Allowlist",
    "Response",
    "Responses",
    "ResponsesError",
    "decision_id",
    "load_responses",
    "parse_responses",
    "respond",
]

MAX_DURATION = 365 * 86_400.0
"""The longest decision anyone may make (a year): longer is a typo, or a job for a firewall."""

SUBJECT_SCOPE = "subject"
"""A response ``scope`` meaning "the finding's own subject": an address, a network or a user."""

_STRENGTH = {"challenge": 1, "block": 2}


class ResponsesError(ValueError):
    """The ``[responses]`` section names an unknown kind or key, or a bad value."""


@dataclass(frozen=True, slots=True)
class Response:
    """What one finding kind produces."""

    action: str
    scope: str  # a decision scope, or SUBJECT_SCOPE
    duration: float


@dataclass(frozen=True, slots=True)
class Responses:
    """The ``[responses]`` section: per kind, and the escalation of repeat offenders."""

    enabled: bool = True
    escalation: float = 2.0
    recidive_window: float = 86_400.0
    max_duration: float = 7 * 86_400.0
    kinds: Mapping[str, Response] = field(default_factory=dict)

    def for_kind(self, kind: str) -> Response | None:
        return self.kinds.get(kind) if self.enabled else None


_GLOBAL_KEYS = {"enabled", "escalation", "recidive_window", "max_duration"}
_SERVICE_KINDS = ("campaign",)  # findings about the whole service (subject type "service")


def parse_responses(
    section: Mapping[str, Any], origin: str, base: Responses | None = None
) -> Responses:
    """The ``[responses]`` table of a rules file over ``base`` (its keys override, a kind's
    table replaces that kind's response); raises :class:`ResponsesError` naming what is wrong."""
    base = base or Responses()
    values: dict[str, Any] = {
        "enabled": base.enabled,
        "escalation": base.escalation,
        "recidive_window": base.recidive_window,
        "max_duration": base.max_duration,
    }
    kinds = dict(base.kinds)
    known = (*FINDING_KINDS, *_SERVICE_KINDS)
    for key, value in section.items():
        where = f"{origin}: [responses] {key}"
        if key == "enabled":
            if not isinstance(value, bool):
                raise ResponsesError(f"{where} must be true or false, got {value!r}")
            values[key] = value
        elif key == "escalation":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1:
                raise ResponsesError(f"{where} must be a number >= 1, got {value!r}")
            values[key] = float(value)
        elif key in ("recidive_window", "max_duration"):
            values[key] = _duration(value, where)
        elif key in known:
            if not isinstance(value, Mapping):
                raise ResponsesError(f"{where} must be a table (action, scope, duration)")
            response = _response(key, value, f"{origin}: [responses.{key}]")
            if response is None:
                kinds.pop(key, None)  # action = "none": this kind produces no decision
            else:
                kinds[key] = response
        else:
            raise ResponsesError(
                f"{where}: unknown key; known: {', '.join(sorted(_GLOBAL_KEYS))} and the finding "
                f"kinds ({', '.join(known)})"
            )
    return Responses(kinds=kinds, **values)


def load_responses(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Responses:
    """The responses in force: the shipped defaults' ``[responses]``, overridden by the rules file
    at ``path`` (else ``USERMON_RULES``). Raises :class:`ResponsesError` (a ``ValueError``, as the
    rules' own errors) on any problem."""
    from usermon.processor.rules import rule_documents

    responses = Responses()
    for origin, document in rule_documents(path, environ):
        section = document.get("responses")
        if section is None:
            continue
        if not isinstance(section, Mapping):
            raise ResponsesError(f"{origin}: [responses] must be a table")
        responses = parse_responses(section, origin, responses)
    return responses


def _duration(value: Any, where: str) -> float:
    try:
        return parse_duration(value, maximum=MAX_DURATION)
    except (TypeError, ValueError) as exc:
        raise ResponsesError(f"{where}: {exc}") from None


def _response(kind: str, table: Mapping[str, Any], where: str) -> Response | None:
    if table.get("action") == "none":
        return None
    unknown = set(table) - {"action", "scope", "duration"}
    if unknown:
        raise ResponsesError(
            f"{where}: unknown key(s) {sorted(unknown)}; known: action, scope, duration"
        )
    missing = {"action", "scope", "duration"} - set(table)
    if missing:
        raise ResponsesError(f"{where}: missing {', '.join(sorted(missing))}")
    action, scope = table["action"], table["scope"]
    if action == "none":
        return None
    if action not in DECISION_ACTIONS:
        raise ResponsesError(f"{where} action must be one of {', '.join(DECISION_ACTIONS)} or none")
    scopes = (*DECISION_SCOPES, SUBJECT_SCOPE)
    if scope not in scopes:
        raise ResponsesError(f"{where} scope must be one of {', '.join(scopes)}")
    if (scope == "service_campaign" or kind in _SERVICE_KINDS) and action != "challenge":
        raise ResponsesError(
            f"{where}: a campaign's logins are challenged, never blocked (it would block the site)"
        )
    return Response(action, scope, _duration(table["duration"], f"{where} duration"))


@dataclass(frozen=True, slots=True)
class Allowlist:
    """Networks and users no automatic decision applies to."""

    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    users: frozenset[str] = frozenset()

    @classmethod
    def of(cls, entries: Iterable[tuple[str, str]]) -> Allowlist:
        """From ``(kind, value)`` pairs: ``network`` (a CIDR or an address) or ``user``."""
        networks, users = [], set()
        for kind, value in entries:
            if kind == "user":
                users.add(value)
            else:
                try:
                    networks.append(ipaddress.ip_network(value, strict=False))
                except ValueError:
                    continue  # validated when added; an unreadable one covers nothing
        return cls(tuple(networks), frozenset(users))

    def covers_ip(self, value: str) -> bool:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return False
        return any(address in net for net in self.networks if net.version == address.version)

    def covers_network(self, value: str) -> bool:
        """Whether a decision on this network would touch an allowlisted address."""
        try:
            wanted = ipaddress.ip_network(value, strict=False)
        except ValueError:
            return False
        return any(wanted.overlaps(net) for net in self.networks if net.version == wanted.version)

    def covers(self, scope: str, value: str) -> bool:
        if scope == "ip":
            return self.covers_ip(value)
        if scope == "network":
            return self.covers_network(value)
        if scope == "user":
            return value in self.users
        if scope == "user_ip":
            user, _, ip = value.partition("|")
            return user in self.users or self.covers_ip(ip)
        return False


def _target(finding: Finding, scope: str) -> tuple[str, str] | None:
    """The decision's (scope, value) for this finding, or None when it names no such value."""
    subject = finding.subject
    ip = finding.evidence.get("ip")
    ip = ip if isinstance(ip, str) and ip else None
    if scope == SUBJECT_SCOPE:
        if subject.type == "service":
            return _target(finding, "service_campaign")
        scope = {"ip": "ip", "network": "network", "user": "user"}.get(subject.type, "")
        return _target(finding, scope) if scope else None
    if scope == "ip":
        value = subject.id if subject.type == "ip" else ip
        return _valid_ip("ip", value)
    if scope == "network":
        if subject.type == "network":
            return _valid_network(subject.id)
        address = subject.id if subject.type == "ip" else ip
        network = network_of(address) if address else None
        return _valid_network(network) if network else None
    if scope == "user":
        return ("user", subject.id) if subject.type == "user" and subject.id else None
    if scope == "user_ip":
        if subject.type != "user" or not subject.id or ip is None:
            return None
        checked = _valid_ip("ip", ip)
        return ("user_ip", f"{subject.id}|{checked[1]}") if checked else None
    if scope == "service_campaign":
        fingerprint = finding.evidence.get("fingerprint")
        if subject.type != "service" or not isinstance(fingerprint, str) or not fingerprint:
            return None
        return "service_campaign", fingerprint
    return None


def _valid_ip(scope: str, value: str | None) -> tuple[str, str] | None:
    try:
        return (scope, str(ipaddress.ip_address(value))) if value else None
    except ValueError:
        return None


def _valid_network(value: str) -> tuple[str, str] | None:
    try:
        return "network", str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        return None  # a network subject named by its provider, not a CIDR


def decision_id(origin: str, scope: str, value: str, generation: int) -> str:
    """A deterministic id: two replicas answering one finding make one decision."""
    raw = "\x00".join((origin, scope, value, str(generation))).encode("utf-8", "surrogatepass")
    return "d-" + hashlib.blake2b(raw, digest_size=10).hexdigest()


def respond(
    findings: Sequence[Finding],
    responses: Responses,
    *,
    allowlist: Allowlist,
    held: Callable[[str, str], str | None],
    repeats: Callable[[str, str], int],
    now: float,
) -> list[Decision]:
    """The decisions ``findings`` call for.

    ``held(scope, value)`` is the strongest action of the subject's active decisions, if any: a
    subject already decided as strongly is skipped (a finding grows with every batch; it is
    answered once). ``repeats(scope, value)`` is how many decisions the subject had within the
    recidive window: the duration is ``duration * escalation ** repeats``, capped. Allowlisted
    subjects get nothing."""
    out: dict[tuple[str, str], Decision] = {}
    for finding in findings:
        # A finding about the whole service is a campaign, whatever attack it is (stuffing,
        # a signup farm): answered by the campaign's response, never as its kind would be.
        kind = "campaign" if finding.subject.type == "service" else finding.kind
        response = responses.for_kind(kind)
        if response is None:
            continue
        target = _target(finding, response.scope)
        if target is None or allowlist.covers(*target):
            continue
        strength = _STRENGTH[response.action]
        current = held(*target)
        if current is not None and _STRENGTH[current] >= strength:
            continue
        earlier = out.get(target)
        if earlier is not None and _STRENGTH[earlier.action] >= strength:
            continue
        scope, value = target
        count = repeats(scope, value)
        duration = min(
            response.duration * responses.escalation ** min(count, 64), responses.max_duration
        )
        origin = f"response:{kind}"
        reason = f"{kind}: {finding.summary}"
        if count:
            reason += f" (repeat offender: {count} earlier decision(s), duration escalated)"
        out[target] = Decision(
            id=decision_id(f"{origin}:{finding.id}", scope, value, count),
            action=response.action,  # type: ignore[arg-type]
            scope=scope,  # type: ignore[arg-type]
            value=value,
            until=now + duration,
            reason=reason[:500],
            origin=origin,
            created=now,
            finding=finding.id,
        )
    return list(out.values())
