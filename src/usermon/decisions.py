"""Decisions as the application holds them: the stream's wire format and the in-memory index.

This module owns the SDK's side of the decision stream (``docs/protection.md``, "The decision
stream"): parsing one answer of ``GET /api/decisions/stream`` into :class:`Decision` objects and an
allowlist (rejecting a malformed answer as a whole, skipping and counting a decision it cannot use),
applying it to the current set (a full replacement or a delta), and building a
:class:`DecisionIndex` that answers "which decision applies to this request" without a scan:
dictionaries keyed by user hash, by ``(user hash, address)``, by User-Agent hash, and one dictionary
per prefix length that occurs (IPv4 and IPv6 apart) holding masked integer addresses, looked up
longest prefix first. It does no I/O; :mod:`usermon.protection` syncs and serves it.
"""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Final, Generic, TypeVar

__all__ = [
    "ACTIONS",
    "BLOCK",
    "CHALLENGE",
    "MAX_ALLOW_ENTRIES",
    "MAX_DECISIONS",
    "MAX_FINGERPRINT_PARTS",
    "SCOPES",
    "Allowlist",
    "Answer",
    "Decision",
    "DecisionIndex",
    "MalformedAnswer",
    "apply_answer",
    "ip_key",
    "parse_answer",
    "parse_fingerprint",
    "user_agent_hash",
]

BLOCK: Final = "block"
"""Refuse the attempt."""
CHALLENGE: Final = "challenge"
"""Ask for more proof (a CAPTCHA, a second factor) before going on."""
ACTIONS: Final = (BLOCK, CHALLENGE)
"""Known actions, strongest first."""

SCOPE_IP: Final = "ip"
SCOPE_NETWORK: Final = "network"
SCOPE_USER: Final = "user"
SCOPE_USER_IP: Final = "user_ip"
SCOPE_SERVICE_CAMPAIGN: Final = "service_campaign"
SCOPES: Final = (SCOPE_USER_IP, SCOPE_USER, SCOPE_IP, SCOPE_NETWORK, SCOPE_SERVICE_CAMPAIGN)
"""Known scopes, in the order :meth:`DecisionIndex.match` prefers them between equal actions."""

MAX_DECISIONS: Final = 50_000
"""Most decisions kept; past it, those expiring soonest are dropped (and counted). A full answer
of this many takes about 10 MB, within :data:`usermon.protection.MAX_BODY_BYTES`."""

MAX_ALLOW_ENTRIES: Final = 100_000
"""Most allowlist entries (networks and users together) an answer may carry; more is malformed."""

_STRENGTH: Final = {BLOCK: 0, CHALLENGE: 1}
_V6_FLAG: Final = 1 << 128  # keeps IPv6 keys apart from IPv4 ones in one int space
_MAPPED_V4: Final = 0xFFFF << 32


class MalformedAnswer(ValueError):
    """The answer does not follow the stream format; the whole answer is rejected."""


@dataclass(frozen=True, slots=True)
class Decision:
    """One decision of the processor, as :func:`usermon.check` returns it."""

    id: str
    action: str
    """``"block"`` or ``"challenge"``."""
    scope: str
    """``"ip"``, ``"network"``, ``"user"``, ``"user_ip"`` or ``"service_campaign"``."""
    value: str
    """What it applies to, as the processor wrote it (see ``docs/protection.md``)."""
    until: datetime
    """When it stops applying (UTC)."""
    reason: str
    origin: str
    """Who made it: a response rule's name, or a person."""
    created: datetime
    expires: float = field(compare=False)
    """``until`` as a POSIX timestamp: what :func:`usermon.check` compares with the clock."""

    @property
    def blocks(self) -> bool:
        """Whether the action is ``block``."""
        return self.action == BLOCK


@dataclass(frozen=True, slots=True)
class Allowlist:
    """Addresses and users that no decision ever refuses."""

    networks: tuple[str, ...] = ()
    """CIDRs (a single address is its own /32 or /128), as sent."""
    users: frozenset[str] = frozenset()
    """``user.hash`` values."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One parsed answer of the stream."""

    cursor: str
    full: bool
    new: tuple[Decision, ...]
    deleted: tuple[str, ...]
    allow: Allowlist
    skipped: int
    """Decisions left out: unknown scope or action, or a value the SDK cannot use."""


def ip_key(text: str) -> int | None:
    """An address as one int: IPv4 as is, IPv6 with bit 128 set, IPv4-mapped IPv6 as IPv4.

    ``socket.inet_pton`` parses in C, several times faster than :mod:`ipaddress`; it refuses
    what ``ipaddress`` refuses (IPv4 with leading zeros or fewer than four parts, zone ids), so
    such strings are not addresses here either. ``None`` for anything else.
    """
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except (OSError, TypeError, ValueError):
        pass
    try:
        value = int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
    except (OSError, TypeError, ValueError):
        return None
    if value >> 32 == 0xFFFF:
        return value & 0xFFFFFFFF
    return value | _V6_FLAG


def _network_key(text: str) -> tuple[int, int, int] | None:
    """``(version, prefix length, masked address >> host bits)`` of a CIDR or an address (its
    own /32 or /128); an IPv4-mapped IPv6 network of /96 or longer is the IPv4 network.

    Parsed with :func:`ip_key` rather than :mod:`ipaddress`, which is ten times slower: a full
    answer may carry tens of thousands of addresses. Host bits are ignored, as
    ``ipaddress.ip_network(strict=False)`` does.
    """
    if type(text) is not str:
        return None
    address, slash, length_text = text.strip().partition("/")
    key = ip_key(address)
    if key is None:
        return None
    if key & _V6_FLAG:
        version, bits, value = 6, 128, key ^ _V6_FLAG
    elif ":" in address:  # an IPv4-mapped IPv6 literal
        version, bits, value = 6, 128, key | _MAPPED_V4
    else:
        version, bits, value = 4, 32, key
    if slash:
        if not length_text.isdigit() or not length_text.isascii() or len(length_text) > 3:
            return None
        length = int(length_text)
        if length > bits:
            return None
    else:
        length = bits
    if version == 6 and length >= 96 and value >> 32 == 0xFFFF:
        return 4, length - 96, (value & 0xFFFFFFFF) >> (128 - length)
    return version, length, value >> (bits - length)


def user_agent_hash(user_agent: str) -> str:
    """The ``ua=`` part of a campaign fingerprint: SHA-256 hex of the User-Agent's UTF-8 bytes."""
    return hashlib.sha256(user_agent.encode("utf-8", "surrogatepass")).hexdigest()


MAX_FINGERPRINT_PARTS: Final = 32
"""Most ``ua`` and ``net`` parts one fingerprint may have, together (the processor writes at
most 12); a fingerprint with more is skipped, so a decision's cost at check time stays bounded."""


def parse_fingerprint(
    value: str,
) -> tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]] | None:
    """The parts of a ``service_campaign`` fingerprint the SDK can match: ``(uas, nets)``.

    ``value`` is ``;``-separated ``name=value`` parts. Each ``ua`` is a SHA-256 hex of a
    User-Agent, each ``net`` a CIDR; a login matches when its User-Agent is one of the ``ua``
    parts (if there are any) and its address is inside one of the ``net`` parts (if there are
    any). Other parts (``asn``, ...) are for people and ignored. ``None`` when neither ``ua`` nor
    ``net`` is usable (nothing the application could match), when a part is malformed, or when
    there are more than :data:`MAX_FINGERPRINT_PARTS`.
    """
    uas: list[str] = []
    nets: list[tuple[int, int, int]] = []
    for part in value.split(";"):
        name, sep, text = part.partition("=")
        if not sep:
            continue
        name = name.strip()
        text = text.strip()
        if name == "ua":
            text = text.lower()
            if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
                return None
            if text not in uas:
                uas.append(text)
        elif name == "net":
            net = _network_key(text)
            if net is None:
                return None
            if net not in nets:
                nets.append(net)
    if (not uas and not nets) or len(uas) + len(nets) > MAX_FINGERPRINT_PARTS:
        return None
    return tuple(uas), tuple(nets)


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.astimezone(timezone.utc)


_FIELDS: Final = ("id", "action", "scope", "value", "until", "reason", "origin", "created")


def _decision(raw: object) -> Decision | None:
    """A decision of the answer, ``None`` to skip it; :class:`MalformedAnswer` if not one at all."""
    if not isinstance(raw, dict):
        raise MalformedAnswer("a decision is not a JSON object")
    for name in _FIELDS:
        if not isinstance(raw.get(name), str):
            raise MalformedAnswer(f"a decision's {name!r} is missing or not a string")
    action: str = raw["action"]
    scope: str = raw["scope"]
    value: str = raw["value"]
    if action not in _STRENGTH or scope not in SCOPES:
        return None  # a newer processor's vocabulary: skipped, counted
    until = _parse_time(raw["until"])
    created = _parse_time(raw["created"])
    if until is None or created is None or not raw["id"]:
        return None
    if scope == SCOPE_IP:
        if ip_key(value.strip()) is None:
            return None
    elif scope == SCOPE_NETWORK:
        if _network_key(value) is None:
            return None
    elif scope == SCOPE_USER:
        if not value:
            return None
    elif scope == SCOPE_USER_IP:
        user, sep, address = value.rpartition("|")
        if not sep or not user or ip_key(address.strip()) is None:
            return None
    elif parse_fingerprint(value) is None:
        return None
    return Decision(
        id=raw["id"],
        action=action,
        scope=scope,
        value=value,
        until=until,
        reason=raw["reason"],
        origin=raw["origin"],
        created=created,
        expires=until.timestamp(),
    )


def parse_answer(body: bytes) -> Answer:
    """Parse one answer of the stream; raise :class:`MalformedAnswer` if it breaks the format."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise MalformedAnswer(f"not JSON ({error})") from None
    if not isinstance(document, dict):
        raise MalformedAnswer("the answer is not a JSON object")
    cursor = document.get("cursor")
    full = document.get("full")
    new = document.get("new")
    deleted = document.get("deleted")
    allow = document.get("allow")
    if not isinstance(cursor, str):
        raise MalformedAnswer("'cursor' is missing or not a string")
    if not isinstance(full, bool):
        raise MalformedAnswer("'full' is missing or not a boolean")
    if not isinstance(new, list):
        raise MalformedAnswer("'new' is missing or not a list")
    if not isinstance(deleted, list) or not all(isinstance(i, str) for i in deleted):
        raise MalformedAnswer("'deleted' is missing or not a list of strings")
    if not isinstance(allow, dict):
        raise MalformedAnswer("'allow' is missing or not an object")
    networks = allow.get("networks")
    users = allow.get("users")
    if not isinstance(networks, list) or not isinstance(users, list):
        raise MalformedAnswer("'allow' needs 'networks' and 'users' lists")
    if len(networks) + len(users) > MAX_ALLOW_ENTRIES:
        raise MalformedAnswer(f"the allowlist has more than {MAX_ALLOW_ENTRIES} entries")
    for network in networks:
        # An allowlist entry that cannot be read cannot be honoured: the whole answer goes.
        if not isinstance(network, str) or _network_key(network) is None:
            raise MalformedAnswer(f"allowlist network {network!r} is not a CIDR or an address")
    if not all(isinstance(user, str) and user for user in users):
        raise MalformedAnswer("allowlist users must be non-empty strings")
    decisions: list[Decision] = []
    skipped = 0
    for raw in new:
        decision = _decision(raw)
        if decision is None:
            skipped += 1
        else:
            decisions.append(decision)
    return Answer(
        cursor=cursor,
        full=full,
        new=tuple(decisions),
        deleted=tuple(deleted),
        allow=Allowlist(tuple(networks), frozenset(users)),
        skipped=skipped,
    )


def apply_answer(
    current: Mapping[str, Decision], answer: Answer, now: float, limit: int = MAX_DECISIONS
) -> tuple[dict[str, Decision], int]:
    """The decision set after ``answer``, without expired decisions, and how many were dropped
    over ``limit`` (those expiring soonest go first)."""
    if answer.full:
        result: dict[str, Decision] = {}
    else:
        result = {k: d for k, d in current.items() if d.expires > now}
        for decision_id in answer.deleted:
            result.pop(decision_id, None)
    for decision in answer.new:
        if decision.expires > now:
            result[decision.id] = decision
        else:
            result.pop(decision.id, None)
    dropped = 0
    if len(result) > limit:
        keep = sorted(result.values(), key=lambda d: d.expires, reverse=True)[:limit]
        dropped = len(result) - limit
        result = {d.id: d for d in keep}
    return result, dropped


_Entries = tuple[Decision, ...]


def _order(decisions: Iterable[Decision]) -> _Entries:
    # Strongest first, then the one that lasts longest: the first unexpired entry is the answer.
    return tuple(sorted(decisions, key=lambda d: (_STRENGTH[d.action], -d.expires)))


_T = TypeVar("_T")


class _PrefixTable(Generic[_T]):
    """Longest-prefix match over the prefix lengths present: one dict per length."""

    __slots__ = ("v4", "v6")

    def __init__(self, entries: Mapping[tuple[int, int, int], _T]) -> None:
        v4: dict[int, dict[int, _T]] = {}
        v6: dict[int, dict[int, _T]] = {}
        for (version, length, masked), value in entries.items():
            (v4 if version == 4 else v6).setdefault(length, {})[masked] = value
        self.v4 = tuple((32 - n, v4[n]) for n in sorted(v4, reverse=True))
        self.v6 = tuple((128 - n, v6[n]) for n in sorted(v6, reverse=True))

    def lookup(self, key: int) -> Iterator[_T]:
        """Values of every prefix holding ``key`` (an :func:`ip_key`), longest prefix first."""
        if key & _V6_FLAG:
            address = key ^ _V6_FLAG
            for shift, table in self.v6:
                value = table.get(address >> shift)
                if value is not None:
                    yield value
        else:
            for shift, table in self.v4:
                value = table.get(key >> shift)
                if value is not None:
                    yield value

    def __bool__(self) -> bool:
        return bool(self.v4 or self.v6)


class DecisionIndex:
    """An immutable snapshot of the decisions and the allowlist, indexed for :meth:`match`."""

    __slots__ = (
        "allow_networks",
        "allow_users",
        "by_user",
        "by_user_ip",
        "campaign_nets",
        "campaigns_by_ua",
        "count",
        "decisions",
        "needs_user",
        "networks",
    )

    def __init__(self, decisions: Mapping[str, Decision], allow: Allowlist) -> None:
        self.decisions = dict(decisions)
        self.count = len(self.decisions)
        by_user: dict[str, list[Decision]] = {}
        by_user_ip: dict[tuple[str, int], list[Decision]] = {}
        networks: dict[tuple[int, int, int], list[Decision]] = {}
        by_ua: dict[str, list[tuple[tuple[tuple[int, int, int], ...], Decision]]] = {}
        campaign_nets: dict[tuple[int, int, int], list[Decision]] = {}
        for decision in self.decisions.values():
            scope = decision.scope
            value = decision.value
            if scope == SCOPE_USER:
                by_user.setdefault(value, []).append(decision)
            elif scope == SCOPE_USER_IP:
                user, _, address = value.rpartition("|")
                key = ip_key(address.strip())
                if key is not None:
                    by_user_ip.setdefault((user, key), []).append(decision)
            elif scope in (SCOPE_IP, SCOPE_NETWORK):
                network = _network_key(value)
                if network is not None:
                    networks.setdefault(network, []).append(decision)
            else:
                fingerprint = parse_fingerprint(value)
                if fingerprint is None:
                    continue
                uas, nets = fingerprint
                for ua in uas:  # one of its User-Agents, from one of its networks if any
                    by_ua.setdefault(ua, []).append((nets, decision))
                if not uas:  # one of its networks, whatever the User-Agent
                    for net in nets:
                        campaign_nets.setdefault(net, []).append(decision)
        self.by_user = {k: _order(v) for k, v in by_user.items()}
        self.by_user_ip = {k: _order(v) for k, v in by_user_ip.items()}
        self.networks = _PrefixTable({k: _order(v) for k, v in networks.items()})
        self.campaigns_by_ua = {
            ua: tuple(sorted(v, key=lambda nd: (_STRENGTH[nd[1].action], -nd[1].expires)))
            for ua, v in by_ua.items()
        }
        self.campaign_nets = _PrefixTable({k: _order(v) for k, v in campaign_nets.items()})
        allowed: dict[tuple[int, int, int], bool] = {}
        for text in allow.networks:
            network = _network_key(text)
            if network is not None:
                allowed[network] = True
        self.allow_networks = _PrefixTable(allowed)
        self.allow_users = allow.users
        self.needs_user = bool(self.by_user or self.by_user_ip or self.allow_users)

    def match(
        self, key: int | None, user_hash: str | None, ua_hash: str | None, now: float
    ) -> Decision | None:
        """The decision for a client address key, a ``user.hash`` and a User-Agent hash.

        The allowlist wins over everything. Otherwise the strongest action wins; between equal
        actions the order is ``user_ip``, ``user``, ``ip`` / ``network`` (longest prefix first),
        ``service_campaign``. Expired decisions are ignored. Kept flat (no generator, no helper
        call per table): it runs on every login.
        """
        if user_hash is not None and user_hash in self.allow_users:
            return None
        address = 0
        networks: tuple[tuple[int, dict[int, _Entries]], ...] = ()
        if key is not None:
            if key & _V6_FLAG:
                address = key ^ _V6_FLAG
                allowed = self.allow_networks.v6
                networks = self.networks.v6
            else:
                address = key
                allowed = self.allow_networks.v4
                networks = self.networks.v4
            for shift, allow_table in allowed:
                if address >> shift in allow_table:
                    return None
        challenge: Decision | None = None
        if user_hash is not None:
            if key is not None:
                for decision in self.by_user_ip.get((user_hash, key), ()):
                    if decision.expires > now:
                        if decision.action == BLOCK:
                            return decision
                        challenge = decision
                        break
            for decision in self.by_user.get(user_hash, ()):
                if decision.expires > now:
                    if decision.action == BLOCK:
                        return decision
                    challenge = challenge or decision
                    break
        for shift, table in networks:
            entries = table.get(address >> shift)
            if entries is not None:
                for decision in entries:
                    if decision.expires > now:
                        if decision.action == BLOCK:
                            return decision
                        challenge = challenge or decision
                        break
        if ua_hash is not None:
            for nets, decision in self.campaigns_by_ua.get(ua_hash, ()):
                if decision.expires > now and (not nets or _within(key, nets)):
                    if decision.action == BLOCK:
                        return decision
                    challenge = challenge or decision
        if key is not None and self.campaign_nets:
            for campaign_entries in self.campaign_nets.lookup(key):
                for decision in campaign_entries:
                    if decision.expires > now:
                        if decision.action == BLOCK:
                            return decision
                        challenge = challenge or decision
                        break
        return challenge


def _within(key: int | None, nets: tuple[tuple[int, int, int], ...]) -> bool:
    """Whether the address ``key`` is inside one of ``nets`` (a campaign's few networks)."""
    if key is None:
        return False
    if key & _V6_FLAG:
        address = key ^ _V6_FLAG
        for version, length, masked in nets:
            if version == 6 and address >> (128 - length) == masked:
                return True
        return False
    for version, length, masked in nets:  # noqa: SIM110 - a loop, no generator: every login
        if version == 4 and key >> (32 - length) == masked:
            return True
    return False
