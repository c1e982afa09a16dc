"""suspicious_login: a successful login whose risk is high for that user's history.

The score follows Freeman et al., "Who Are You? A Statistical Approach to Measuring User
Authenticity" (NDSS 2016): risk = product over features of p(value) / p(value | user), with the
features organised in two hierarchies, country -> ASN -> IP and device -> OS -> browser -> UA
(each level the child of the one before). This module's reading of the paper:

* Each hierarchy contributes one factor. Walk down from the top while the user has already used
  the login's value at that level (under the same parent: "AS 3215 in France"). At the deepest
  level seen, the factor is p(value) / p(value | user). When the next level down is new for the
  user, it is multiplied by 1 / p(new child | parent, user); the levels under a new one follow
  the population's distribution for numerator and denominator alike, so they cancel. A value
  new at the top scores 1 / p(new | user).
* p(value | user) is smoothed with Witten-Bell: a value seen ``c`` times among ``n`` logins with
  ``d`` distinct values gets ``c / (n + d)``, and "something new" gets ``d / (n + d)``: a user
  who always logs in from one country finds a new one ``n + 1`` times less likely, a traveller
  who already has many, only a little. Each "something new" factor is capped at
  ``max_unseen_factor`` so that one novelty alone does not decide.
* p(value) is the value's popularity: the share of users who have used it, add-one smoothed.
  (Freeman et al. count logins; counting users changes the population's counts only when a
  value is new for a user, which keeps the State cost of a familiar login low, and keeps one
  busy account from making its address look common.)

State per login: one read of the user's profile, one increment per hierarchy (a user's profile
is a counting map with one field per *path*, ``net|FR|3215|81.2.69.1``, from which every level's
count and distinct values are derived), and, when scoring, three reads of population counts.
Population counts are written only when a value is new for the user. A profile keeps at most
``max_values`` paths per hierarchy; beyond, new paths are recorded as ``*`` under the deepest
level already known, so the upper levels' counts stay exact and memory stays bounded. Users
with fewer than ``min_history`` successful logins are profiled but not scored. A signup adds its
network path to the profile (the address an account is created from is the owner's) and is
never scored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from usermon.processor.detectors.shared import (
    PREFIX,
    SharedCounts,
    profile_key,
    subject_for_user,
)
from usermon.processor.detectors.useragent import parse_user_agent
from usermon.processor.model import Event, Severity, Signal
from usermon.processor.rules import SuspiciousLoginRules
from usermon.processor.state import State

KIND = "suspicious_login"
GLOBAL_KEY = f"{PREFIX}risk:global"
USERS_FIELD = "users"


def _ua_digest(user_agent: str) -> str:
    # A full UA string is long; its digest keeps per-user maps small.
    return hashlib.blake2b(user_agent.encode("utf-8", "replace"), digest_size=8).hexdigest()


NET = "net"
AGENT = "agent"
FAMILY_NAMES = {NET: "network", AGENT: "agent"}  # as shown in the evidence
NET_LEVELS = ("country", "asn", "ip")
AGENT_LEVELS = ("device", "os", "browser", "ua")
OTHER = "*"  # a path's levels beyond the user's profile capacity


@lru_cache(maxsize=65536)
def _agent_path(user_agent: str | None) -> tuple[str, ...]:
    parsed = parse_user_agent(user_agent)
    digest = _ua_digest(user_agent) if user_agent else ""
    return (parsed.device, parsed.os, parsed.browser, digest)


def features(event: Event) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The login's two paths, top level first (an unknown level is ``""``)."""
    network = event.network
    country = (network.country or "") if network is not None else ""
    asn = str(network.asn) if network is not None and network.asn is not None else ""
    net = (country, asn, event.client_ip or "")
    return net, _agent_path(event.user_agent)


def _clean(value: str) -> str:
    # "|" separates a path's levels in a field name; "*" stands for "beyond capacity".
    return value.replace("|", "/") if "|" in value else (value if value != OTHER else "_")


def _clean_path(path: tuple[str, ...]) -> tuple[str, ...]:
    # Per login: the path itself when no level needs cleaning (the usual case), without a copy.
    for value in path:
        if "|" in value or value == OTHER:
            return tuple(_clean(v) for v in path)
    return path


@dataclass(slots=True)
class _Walk:
    """One hierarchy of the current login against the user's profile."""

    counts: list[int]  # logins whose path shares the first k+1 levels with this one
    distinct: list[int]  # distinct values the user has at level k (any parent)
    siblings: list[int]  # distinct level-k values under this login's level-(k-1) value
    paths: int  # distinct paths stored for this hierarchy


def _walk(family: str, path: tuple[str, ...], profile: dict[str, int]) -> _Walk:
    depth = len(path)
    if not profile:  # a user's first login: nothing to walk
        return _Walk([0] * depth, [0] * depth, [0] * depth, 0)
    counts = [0] * depth
    level_values: list[set[tuple[str, ...]]] = [set() for _ in range(depth)]
    sibling_values: list[set[str]] = [set() for _ in range(depth)]
    paths = 0
    prefix = family + "|"
    for name, count in profile.items():
        if not name.startswith(prefix):
            continue
        values = name.split("|")[1:]
        if len(values) != depth:
            continue
        paths += 1
        shared = 0
        while shared < depth and values[shared] == path[shared]:
            shared += 1
        for k in range(depth):
            if k < shared:
                counts[k] += count
            level_values[k].add(tuple(values[: k + 1]))
            if k <= shared:
                sibling_values[k].add(values[k])
    return _Walk(counts, [len(v) for v in level_values], [len(v) for v in sibling_values], paths)


class SuspiciousLoginDetector:
    name = KIND

    def __init__(self, rules: SuspiciousLoginRules, counts: SharedCounts) -> None:
        self.rules = rules
        self.counts = counts

    def observe(self, event: Event, state: State) -> Iterable[Signal]:
        if event.kind == "signup":
            if event.user_hash and event.client_ip:
                self._learn_signup(event, state)
            return ()
        if not event.success or not event.user_hash:
            return ()
        t, ttl = event.time, self.rules.profile_ttl
        user_key = profile_key(event.user_hash)
        # Read through the shared tally: account takeover looks at the same profile, and must
        # see it as it was before this login, whichever of the two runs first.
        profile = self.counts.tally(event, state).profile()
        raw_net, raw_agent = features(event)
        net, agent = _clean_path(raw_net), _clean_path(raw_agent)
        walks = {NET: _walk(NET, net, profile), AGENT: _walk(AGENT, agent, profile)}
        history = sum(c for name, c in profile.items() if name.startswith(AGENT + "|"))
        if not profile:
            state.incr_field(GLOBAL_KEY, USERS_FIELD, t, ttl)
        for family, path, levels in ((NET, net, NET_LEVELS), (AGENT, agent, AGENT_LEVELS)):
            self._learn(state, user_key, family, path, levels, walks[family], t)

        if history < self.rules.min_history:
            return ()
        users = state.incr_field(GLOBAL_KEY, USERS_FIELD, t, ttl, 0)
        factors = [
            self._factor(state, family, path, levels, walks[family], history, users, t)
            for family, path, levels in ((NET, net, NET_LEVELS), (AGENT, agent, AGENT_LEVELS))
        ]
        risk = 1.0
        for factor in factors:
            risk *= factor["ratio"]
        if risk < self.rules.risk_threshold:
            return ()
        severity: Severity = "high" if risk >= self.rules.high_risk_threshold else "medium"
        drivers = [f for f in sorted(factors, key=lambda f: -f["ratio"]) if f["ratio"] > 1]
        novel = ", ".join(f"{f['new_level']} {f['new_value']}" for f in drivers if f["new_level"])
        who = event.label or "a user"
        return (
            Signal(
                kind=KIND,
                severity=severity,
                subject=subject_for_user(event),
                summary=f"unusual login for {who} from {event.client_ip} (risk {risk:.0f}"
                + (f"; new {novel})" if novel else ")"),
                event=event,
                evidence={
                    "risk": round(risk, 2),
                    "threshold": self.rules.risk_threshold,
                    "history": history,
                    "features": factors,
                    "drivers": [f["family"] for f in drivers],
                },
                related_ips=(event.client_ip,) if event.client_ip else (),
            ),
        )

    def _popularity(self, state: State, level: str, value: str, t: float, n: int) -> int:
        """How many users have used ``value`` at ``level`` (after adding ``n``)."""
        if level == "ip":
            return state.incr_field(
                f"{PREFIX}risk:ip:{value}", USERS_FIELD, t, self.rules.profile_ttl, n
            )
        return state.incr_field(GLOBAL_KEY, f"{level}|{value}", t, self.rules.profile_ttl, n)

    def _learn(
        self,
        state: State,
        user_key: str,
        family: str,
        path: tuple[str, ...],
        levels: tuple[str, ...],
        walk: _Walk,
        t: float,
    ) -> None:
        """Add ``path`` to the user's profile, and its values new for the user to the
        population's counts."""
        seen = 0
        while seen < len(path) and walk.counts[seen]:
            seen += 1
        for k in range(seen, len(path)):  # new for this user: one more user has used it
            self._popularity(state, levels[k], path[k], t, 1)
        stored = path
        if seen < len(path) and walk.paths >= self.rules.max_values:
            stored = path[:seen] + (OTHER,) * (len(path) - seen)
        state.incr_field(user_key, "|".join((family, *stored)), t, self.rules.profile_ttl)

    def _learn_signup(self, event: Event, state: State) -> None:
        """The address an account is created from is its owner's.

        It enters the network history (not the device one, whose count is the login history
        that ``min_history`` asks for), so the owner's first logins from there are familiar: to
        this score, and to account takeover, which must not take the owner mistyping a password
        at home, right after a brute force on the new account, for the attacker getting in."""
        assert event.user_hash is not None
        t = event.time
        user_key = profile_key(event.user_hash)
        profile = state.fields(user_key)
        if not profile:
            state.incr_field(GLOBAL_KEY, USERS_FIELD, t, self.rules.profile_ttl)
        net = _clean_path(features(event)[0])
        self._learn(state, user_key, NET, net, NET_LEVELS, _walk(NET, net, profile), t)

    def _factor(
        self,
        state: State,
        family: str,
        path: tuple[str, ...],
        levels: tuple[str, ...],
        walk: _Walk,
        history: int,
        users: int,
        t: float,
    ) -> dict[str, Any]:
        """One hierarchy's p(value) / p(value | user)."""
        cap = self.rules.max_unseen_factor
        seen = 0
        while seen < len(path) and walk.counts[seen]:
            seen += 1
        result: dict[str, Any] = {
            "family": FAMILY_NAMES[family],
            "seen_level": None,
            "seen_value": None,
            "new_level": None,
            "new_value": None,
        }
        if seen == 0:
            d = walk.distinct[0]
            ratio = min(cap, (history + d) / d) if d else 1.0
            result.update(new_level=levels[0], new_value=path[0])
        else:
            k = seen - 1
            c, d = walk.counts[k], walk.distinct[k]
            popularity = self._popularity(state, levels[k], path[k], t, 0)
            p_global = (popularity + 1) / (users + 1)
            ratio = min(1.0, p_global) * (history + d) / c
            result.update(seen_level=levels[k], seen_value=path[k])
            if seen < len(path):
                siblings = walk.siblings[seen]
                if siblings:
                    ratio *= min(cap, (c + siblings) / siblings)
                result.update(new_level=levels[seen], new_value=path[seen])
        result["ratio"] = round(ratio, 4)
        return result
