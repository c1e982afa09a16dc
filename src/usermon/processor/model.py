"""The processor's data model: events in, findings out.

These types are the seams of the engine. Receivers decode OTLP into :class:`Event`;
enrichment fills :class:`NetworkInfo`; detectors turn events into :class:`Signal`; the engine
folds signals into :class:`Finding`, which the API, CLI and OTLP exporter serve. Everything here
is plain data with no I/O, so a detector can be tested with a list of events.
"""

from __future__ import annotations

import dataclasses
import hashlib
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal["login", "signup"]
Severity = Literal["low", "medium", "high", "critical"]
SubjectType = Literal["user", "ip", "network", "service"]
NetworkCategory = Literal["hosting", "vpn", "proxy", "tor"]

SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")
"""Severities in increasing order."""

SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}
"""A severity's place in :data:`SEVERITIES`, to compare two."""

FINDING_KINDS: tuple[str, ...] = (
    "brute_force",
    "distributed_brute_force",
    "credential_stuffing",
    "password_spraying",
    "account_takeover",
    "suspicious_login",
    "tor_login",
    "vpn_or_hosting_login",
    "impossible_travel",
    "signup_abuse",
)
"""Every finding kind the processor may report (DESIGN.md, the processor's outward contract)."""


MAX_REASONS = 5
"""Distinct rejection reasons a request or a batch reports (``partial_success``, the log)."""

MAX_REASON_LENGTH = 120
"""Characters of a rejection reason kept: reasons quote values the sender chose."""


def note_rejection(reasons: list[str], reason: str) -> None:
    """Keep ``reason`` among the first :data:`MAX_REASONS` distinct ones, cut to length."""
    if len(reasons) < MAX_REASONS:
        reason = reason[:MAX_REASON_LENGTH]
        if reason not in reasons:
            reasons.append(reason)


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    """What threat intelligence knows of a client address. Every field is optional."""

    country: str | None = None  # ISO 3166-1 alpha-2
    latitude: float | None = None
    longitude: float | None = None
    asn: int | None = None
    as_org: str | None = None
    category: NetworkCategory | None = None  # from the Tor list or the IP-ranges CSV
    network_name: str | None = None  # provider name from the IP-ranges CSV, or "tor"


_FLAG = {True: "1", False: "0", None: "-"}
_DEDUPE_DIGEST = hashlib.blake2b(digest_size=12)
"""An empty digest of the dedupe key's kind, copied for each key: a copy is cheaper than a new
digest taking its parameters (never updated itself)."""


@dataclass(slots=True)
class Event:
    """One usermon event as the engine sees it, decoded from a span event or a log record.

    Treat it as immutable (:meth:`with_network` returns a new one). It is not a frozen
    dataclass because a frozen one sets every field through ``object.__setattr__``, which was
    the largest part of decoding an event in Python (docs/performance.md, "Decoding").

    ``time`` is the event's own timestamp in seconds since the epoch: windows and detections run
    on it, never on arrival time, so a replay gives the same findings as the live stream.
    """

    kind: EventKind
    time: float
    success: bool | None = None  # login events only
    user_hash: str | None = None  # the aggregation key; None when no identifier was usable
    user_id: str | None = None  # primary key's value, identification mode only
    primary_key: str | None = None
    identifiers: tuple[tuple[str, str], ...] = ()
    client_ip: str | None = None
    user_agent: str | None = None
    exists: bool | None = None
    source: str | None = None
    service: str | None = None
    trace_id: str | None = None  # 32 lowercase hex digits
    span_id: str | None = None  # 16 lowercase hex digits
    time_ns: int = 0  # the exact timestamp as sent, in nanoseconds; 0 when not decoded from OTLP
    blocked: bool = False  # refused on a protection decision: not a password failure
    network: NetworkInfo | None = None  # filled by enrichment

    @property
    def dedupe_key(self) -> str:
        """Identity of the report: the same attempt exported twice (as a span event and as a
        log record in the SDK's ``both`` mode, or in a retried batch) has the same key, so it
        counts once; two attempts never share one. It digests the event's name, trace and span
        ids, exact timestamp (nanoseconds), and everything it says about the attempt: outcome,
        user hash, user id, primary key, identifiers, User-Agent, account existence, source,
        and whether it was refused on a decision.
        Not the client address, which a span event may take from its span and the log record
        of the same attempt cannot."""
        # Decoded text is never "" (an empty attribute is None), so `or ""` is unambiguous; the
        # digest keeps every key 24 characters whatever the values' sizes (one field per event
        # in the dedupe maps, shorter than the ids alone).
        head = (
            self.kind,
            self.trace_id or "",
            self.span_id or "",
            str(self.time_ns or round(self.time * 1e9)),
            _FLAG[self.success],
            self.user_hash or "",
            self.user_id or "",
            self.primary_key or "",
            self.user_agent or "",
            _FLAG[self.exists],
            self.source or "",
        )
        identifiers = self.identifiers
        if len(identifiers) == 1 and not self.blocked:  # the usual event: no comprehension
            text = "\x00".join((*head, *identifiers[0]))
        else:
            text = "\x00".join(
                (
                    *head,
                    *[part for pair in identifiers for part in pair],
                    *(("blocked",) if self.blocked else ()),  # keys of other events unchanged
                )
            )
        digest = _DEDUPE_DIGEST.copy()  # blake2b(raw, digest_size=12), without its set-up
        digest.update(text.encode("utf-8", "surrogatepass"))
        return digest.hexdigest()

    @property
    def label(self) -> str | None:
        """What to show a person for this user: the primary key's value when known."""
        return self.user_id

    def with_network(self, network: NetworkInfo | None) -> Event:
        """This event with ``network`` filled in: what ``dataclasses.replace`` returns, at less
        than half its cost (it walks the fields and builds keyword arguments on every call;
        enrichment calls this once per event)."""
        make: Callable[..., Event] = self.__class__  # mypy cannot count a starred tuple
        return make(*_EVENT_BUT_NETWORK(self), network)


_EVENT_BUT_NETWORK: Callable[[Event], tuple[Any, ...]] = operator.attrgetter(
    *(f.name for f in dataclasses.fields(Event) if f.name != "network")
)
"""Every field of an :class:`Event` but ``network``, in order, as one tuple: with ``network``
after them, the positional arguments of ``Event`` (``network`` is its last field; a test checks
this against ``dataclasses.replace``)."""


@dataclass(frozen=True, slots=True)
class Subject:
    """Who or what a finding is about."""

    type: SubjectType
    id: str  # user hash, IP address, network (CIDR / ASN / provider), or service.name
    label: str | None = None  # human label: the user's primary key value, a network's name

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "label": self.label}


@dataclass(frozen=True, slots=True)
class Signal:
    """A detector's verdict on one event: "this event is part of attack ``kind`` on ``subject``".

    The engine folds signals into findings: a signal for a (kind, subject) that already has an
    open finding grows it (last_seen, event_count, evidence) instead of opening another.
    """

    kind: str
    severity: Severity
    subject: Subject
    summary: str
    event: Event
    evidence: Mapping[str, Any] = field(default_factory=dict)  # detector-specific details
    related_users: tuple[str, ...] = ()  # user hashes involved beyond event.user_hash
    related_ips: tuple[str, ...] = ()
    episode_gap: float | None = None
    """How long the finding stays open without a signal (None: the engine's ``FINDING_GAP``): a
    slow campaign, hours between its attempts, stays one finding for as long as it goes on."""
    finding: str | None = None
    """The id of the finding this signal opens when it opens one (None: the engine derives it);
    a detector that names its finding elsewhere (a campaign, in the findings that belong to it)
    sets it, so that both names agree."""


@dataclass(slots=True)
class Finding:
    """A detected attack or risky login, as served by ``GET /api/findings``."""

    id: str
    kind: str
    severity: Severity
    subject: Subject
    first_seen: float
    last_seen: float
    event_count: int
    summary: str
    evidence: dict[str, Any]  # always has "trace_ids", "ips", "users" lists (bounded)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "severity": self.severity,
            "subject": self.subject.to_json(),
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "event_count": self.event_count,
            "summary": self.summary,
            "evidence": self.evidence,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Finding:
        """The finding :meth:`to_json` wrote (what the SQLite and Redis stores keep)."""
        subject = data["subject"]
        return cls(
            id=data["id"],
            kind=data["kind"],
            severity=data["severity"],
            subject=Subject(subject["type"], subject["id"], subject.get("label")),
            first_seen=data["first_seen"],
            last_seen=data["last_seen"],
            event_count=data["event_count"],
            summary=data["summary"],
            evidence=data["evidence"],
        )


DecisionAction = Literal["block", "challenge"]
DecisionScope = Literal["ip", "network", "user", "user_ip", "service_campaign"]

DECISION_ACTIONS: tuple[DecisionAction, ...] = ("block", "challenge")
"""What an application does with a login a decision matches (docs/protection.md)."""

DECISION_SCOPES: tuple[DecisionScope, ...] = (
    "ip",
    "network",
    "user",
    "user_ip",
    "service_campaign",
)
"""What a decision's ``value`` names: an address, a CIDR, a ``user.hash``,
``"<user.hash>|<address>"`` or a campaign fingerprint (docs/protection.md, "Scopes")."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What the applications should do with the logins of one subject until ``until``, as served
    by ``GET /api/decisions`` and the decision stream. ``origin`` says who made it: a finding
    (``finding:<id>``), a response rule (``response:<kind>``) or a person (``manual:<who>``).
    Times are seconds since the epoch."""

    id: str
    action: DecisionAction
    scope: DecisionScope
    value: str
    until: float
    reason: str
    origin: str
    created: float
    finding: str | None = None  # the finding it answers, for automatic decisions

    def active(self, now: float) -> bool:
        return self.until > now

    def to_json(self) -> dict[str, Any]:
        """The wire form: the stream's eight fields, times in RFC 3339 UTC, and ``finding``."""
        return {
            "id": self.id,
            "action": self.action,
            "scope": self.scope,
            "value": self.value,
            "until": rfc3339(self.until),
            "reason": self.reason,
            "origin": self.origin,
            "created": rfc3339(self.created),
            "finding": self.finding,
        }

    def to_row(self) -> dict[str, Any]:
        """Every field as stored (times as numbers)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Decision:
        fields: dict[str, Any] = {f.name: row.get(f.name) for f in dataclasses.fields(cls)}
        return cls(**fields)


def rfc3339(seconds: float) -> str:
    """``seconds`` since the epoch as an RFC 3339 UTC time (``2026-12-07T15:00:00Z``)."""
    import datetime as dt

    moment = dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc)
    text = moment.isoformat(timespec="seconds" if moment.microsecond == 0 else "milliseconds")
    return text.replace("+00:00", "Z")
