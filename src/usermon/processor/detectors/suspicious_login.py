"""suspicious_login: a successful login whose risk is high for that user's history, scored after
Freeman et al., "Who Are You? A Statistical Approach to Measuring User Authenticity" (NDSS 2016):
risk = product over features of p(value) / p(value | user), over the hierarchies country -> ASN ->
IP and device -> OS -> browser -> UA, smoothed with Witten-Bell for unseen values. A user's
profile is one counting map with a field per path (``net|FR|3215|81.2.69.1``) from which every
level's counts are derived, bounded by ``max_values`` paths per hierarchy. docs/detection.md
(*suspicious_login*) gives this module's reading of the paper and every parameter.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
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
from usermon.processor.planning import PlanView
from usermon.processor.rules import SuspiciousLoginRules
from usermon.processor.storage.state.base import State
from usermon.processor.storage.state.steps import Fields, IncrFields, Step

KIND = "suspicious_login"
_WORKED_KEPT = 4096  # successes whose plan_after's work observe takes over
GLOBAL_KEY = f"{PREFIX}risk:global"
USERS_FIELD = "users"


def ua_digest(user_agent: str) -> str:
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
    digest = ua_digest(user_agent) if user_agent else ""
    return (parsed.device, parsed.os, parsed.browser, digest)


@lru_cache(maxsize=65536)
def _clean_agent_path(user_agent: str | None) -> tuple[str, ...]:
    # The agent path as the profile stores it: cleaned once per user agent, not per login.
    return _clean_path(_agent_path(user_agent))


def agent_digest(user_agent: str | None) -> str:
    """The digest a profile keeps of a User-Agent string ("" for none)."""
    return _clean_agent_path(user_agent)[-1]


def agent_prefix(user_agent: str | None) -> str:
    """The profile field prefix of every User-Agent with this one's device, OS and browser."""
    return "|".join((AGENT, *_clean_agent_path(user_agent)[:-1], ""))


def _net_path(event: Event) -> tuple[str, ...]:
    network = event.network
    if network is None:
        return ("", "", event.client_ip or "")
    asn = "" if network.asn is None else str(network.asn)
    return (network.country or "", asn, event.client_ip or "")


def features(event: Event) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The login's two paths, top level first (an unknown level is ``""``)."""
    return _net_path(event), _agent_path(event.user_agent)


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
    """One hierarchy of the current login against the user's profile: what the score reads."""

    seen: int  # levels of this login's path, from the top, the user has used already
    count: int  # logins whose path shares those ``seen`` levels with this one (0 if none)
    distinct: int  # distinct values the user has at the deepest seen level (any parent; the
    # top level when none is seen)
    siblings: int  # distinct values at the first unseen level under this login's value above
    # it (0 when every level is seen)
    paths: int  # distinct paths stored for this hierarchy


_NO_WALK = _Walk(0, 0, 0, 0, 0)  # a hierarchy the user has no path in (never modified)


def _walk_rows(path: tuple[str, ...], rows: list[tuple[list[str], int]]) -> _Walk:
    """The walk of ``path`` over one hierarchy's profile rows (``values``: the field name split
    on ``|``, the family first; ``count``). Per level ``k``, the definition counts the logins
    whose path shares the first ``k + 1`` levels with this one, the distinct prefixes of
    ``k + 1`` levels, and the distinct level-``k`` values among paths sharing the first ``k``
    levels; the score reads one level of each, so only those are counted."""
    depth = len(path)
    if not rows:
        return _NO_WALK
    if len(rows) == 1:  # the usual profile (one device, one network)
        values, count = rows[0]
        shared = 0
        while shared < depth and values[shared + 1] == path[shared]:
            shared += 1
        seen = shared if count else 0
        return _Walk(seen, count if seen else 0, 1, 1 if seen < depth else 0, 1)
    # The logins sharing more than k levels are those of the rows sharing k + 1 or more: each
    # row's count is added once, under the levels it shares, and summed up from the bottom.
    by_shared = [0] * (depth + 1)
    shares = []
    first = path[0]
    for values, count in rows:
        shared = 0
        if values[1] == first:
            shared = 1
            while shared < depth and values[shared + 1] == path[shared]:
                shared += 1
        shares.append(shared)
        by_shared[shared] += count
    counts = [0] * depth
    below = 0
    for k in range(depth - 1, -1, -1):
        below += by_shared[k + 1]
        counts[k] = below
    seen = 0
    while seen < depth and counts[seen]:
        seen += 1
    level = seen - 1 if seen else 0
    if level == 0:
        distinct = len({values[1] for values, _ in rows})
    elif level == depth - 1:
        distinct = len(rows)  # every row is a path of its own (field names are distinct)
    else:
        distinct = len({tuple(values[1 : level + 2]) for values, _ in rows})
    siblings = 0
    if seen < depth:
        pairs = zip(rows, shares, strict=True)
        siblings = len({values[seen + 1] for (values, _), shared in pairs if shared >= seen})
    return _Walk(seen, counts[level] if seen else 0, distinct, siblings, len(rows))


def _walk(family: str, path: tuple[str, ...], profile: dict[str, int]) -> _Walk:
    """``path`` against the user's paths of ``family`` in ``profile``."""
    if not profile:  # a user's first login: nothing to walk
        return _NO_WALK
    width = len(path) + 1
    rows = []
    for name, count in profile.items():
        values = name.split("|")
        if values[0] == family and len(values) == width:
            rows.append((values, count))
    return _walk_rows(path, rows)


def _walks(
    net: tuple[str, ...], agent: tuple[str, ...], profile: dict[str, int]
) -> tuple[_Walk, _Walk, int]:
    """Both hierarchies' walks and the user's login history (the agent paths' counts, any
    depth), in one pass over the profile, each field name split once."""
    if not profile:
        return _NO_WALK, _NO_WALK, 0
    net_width, agent_width = len(net) + 1, len(agent) + 1
    net_rows: list[tuple[list[str], int]] = []
    agent_rows: list[tuple[list[str], int]] = []
    history = 0
    for name, count in profile.items():
        values = name.split("|")
        family = values[0]
        if family == AGENT:
            width = len(values)
            if width > 1:  # "agent|...": counted in the history whatever its depth
                history += count
                if width == agent_width:
                    agent_rows.append((values, count))
        elif family == NET and len(values) == net_width:
            net_rows.append((values, count))
    return _walk_rows(net, net_rows), _walk_rows(agent, agent_rows), history


def _address_key(ip: str) -> str:
    """State key of the counting map of how many users logged in from ``ip``."""
    return f"{PREFIX}risk:ip:{ip}"


def _population_field(level: str, value: str) -> str:
    """The population's counting-map field of ``value`` at ``level`` (not for addresses;
    written out inline where a login learns its values, as this runs for every level)."""
    return f"{level}|{value}"


class SuspiciousLoginDetector:
    name = KIND
    outcomes = frozenset(("success", "signup"))  # (Selective)

    def __init__(self, rules: SuspiciousLoginRules, counts: SharedCounts) -> None:
        self.rules = rules
        self.counts = counts
        # What plan_after worked out for a success, by event (its profile as the plan read it,
        # the one observe then reads): observe takes it rather than walking the profile again.
        # Bounded: past the limit observe works it out again, with the same result.
        self._worked: dict[int, tuple[Event, Any, Step | None, Step | None]] = {}

    def plan(self, event: Event) -> Sequence[Step]:
        if event.kind == "signup":
            if event.user_hash and event.client_ip:
                return (Fields(profile_key(event.user_hash)),)
            return ()
        if not event.success or not event.user_hash:
            return ()
        return self.counts.plan(event)  # the profile, read through the tally

    def writes_after(self, event: Event) -> Sequence[str]:
        if event.user_hash and (event.success or event.kind == "signup"):
            return (profile_key(event.user_hash),)  # (the population's maps: never read early)
        return ()

    def plan_after(self, event: Event, state: State) -> Sequence[Step]:
        """What :meth:`observe` writes for ``event``, from the profile its plan read: the
        profile's paths, the population's counts, the address's (one step per map)."""
        if not event.user_hash:
            return ()
        if event.kind == "signup":
            if not event.client_ip:
                return ()
            profile = state.fields(profile_key(event.user_hash))
            learned, shared, address, ip = self._signup_steps(profile, event)
        elif event.success:
            profile = state.fields(profile_key(event.user_hash))
            worked = self._steps(event, profile)
            _, _, _, learned, shared, address, ip = worked
        else:
            return ()
        t, ttl = event.time, self.rules.profile_ttl
        steps: list[Step] = [IncrFields.of(profile_key(event.user_hash), learned, t, ttl)]
        population = address_step = None
        if shared:
            population = IncrFields.of(GLOBAL_KEY, shared, t, ttl)
            steps.append(population)
        if address is not None:
            address_step = IncrFields.of(_address_key(ip), {USERS_FIELD: address}, t, ttl)
            steps.append(address_step)
        if event.success:
            if len(self._worked) >= _WORKED_KEPT:
                self._worked.clear()
            self._worked[id(event)] = (event, worked, population, address_step)
        return steps

    def _steps(
        self, event: Event, profile: dict[str, int]
    ) -> tuple[
        tuple[tuple[str, tuple[str, ...], tuple[str, ...], _Walk], ...],
        int,
        bool,
        dict[str, int],
        dict[str, int],
        int | None,
        str,
    ]:
        """A successful login against the user's ``profile``: its hierarchies and walks, the
        user's history, whether it is scored, and what it writes (the profile's fields, the
        population's, the address's count or None) and its address."""
        net = _clean_path(_net_path(event))
        agent = _clean_agent_path(event.user_agent)
        net_walk, agent_walk, history = _walks(net, agent, profile)
        scored = history >= self.rules.min_history
        # One step per counting map: the profile's two paths; the population's values new for
        # the user and, when scoring, its reads (n = 0: incr_fields returns them after the
        # increments, as reads made after them would); the address's own user count.
        shared: dict[str, int] = {} if profile else {USERS_FIELD: 1}
        address: int | None = None  # what the address's count takes, when it is touched
        learned: dict[str, int] = {}
        hierarchies = (
            (NET, net, NET_LEVELS, net_walk),
            (AGENT, agent, AGENT_LEVELS, agent_walk),
        )
        for family, path, levels, walk in hierarchies:
            stored, new_address = self._learn(shared, family, path, levels, walk)
            learned[stored] = 1
            if new_address:
                address = 1
            seen = walk.seen
            if scored and seen:  # the score reads the deepest familiar value's popularity
                if levels[seen - 1] == "ip":
                    address = 0
                else:
                    shared.setdefault(f"{levels[seen - 1]}|{path[seen - 1]}", 0)
        if scored:
            shared.setdefault(USERS_FIELD, 0)
        return hierarchies, history, scored, learned, shared, address, net[-1]

    def observe(self, event: Event, state: State) -> Iterable[Signal]:
        if event.kind == "signup":
            if event.user_hash and event.client_ip:
                self._learn_signup(event, state)
            return ()
        if not event.success or not event.user_hash:
            return ()
        t = event.time
        # Read through the shared tally: account takeover looks at the same profile, and must
        # see it as it was before this login, whichever of the two runs first.
        tally = self.counts.tally(event, state)
        known = self._worked.pop(id(event), None) if self._worked else None
        population: dict[str, int] | None = None
        if known is not None and known[0] is event and state.__class__ is PlanView:
            # Planned: plan_after's steps made this login's writes, and their results (the
            # population's counts) are the plan's: read off them, with no call made again.
            assert isinstance(state, PlanView)
            _, worked, shared_step, address_step = known
            hierarchies, history, scored, learned, shared, address, ip = worked
            if not scored:
                return ()
            population = self._answered(state, shared, shared_step, address_step)
        else:
            worked = self._steps(event, tally.profile())
            hierarchies, history, scored, learned, shared, address, ip = worked
        if population is None:
            state.incr_fields(profile_key(event.user_hash), learned, t, self.rules.profile_ttl)
            population = self._count(state, shared, address, ip, t)

        if not scored:
            return ()
        users = population[USERS_FIELD]
        ratios = [
            self._ratio(population, path, levels, walk, history, users)
            for _, path, levels, walk in hierarchies
        ]
        risk = 1.0
        for ratio in ratios:
            risk *= ratio
        if risk < self.rules.risk_threshold:
            return ()  # the usual case: no evidence to build
        factors = [
            self._factor(family, path, levels, walk, ratio)
            for (family, path, levels, walk), ratio in zip(hierarchies, ratios, strict=True)
        ]
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

    def _learn(
        self,
        shared: dict[str, int],
        family: str,
        path: tuple[str, ...],
        levels: tuple[str, ...],
        walk: _Walk,
    ) -> tuple[str, bool]:
        """Count ``path``'s values new for the user into the population's map (``shared``,
        field -> 1); return the profile field the path adds to, and whether the address is new
        for the user (its count is a map of its own)."""
        seen = walk.seen
        new_address = False
        for k in range(seen, len(path)):  # new for this user: one more user has used it
            if levels[k] == "ip":
                new_address = True
            else:
                shared[f"{levels[k]}|{path[k]}"] = 1  # (_population_field, inline: per login)
        stored = path
        if seen < len(path) and walk.paths >= self.rules.max_values:
            stored = path[:seen] + (OTHER,) * (len(path) - seen)
        return "|".join((family, *stored)), new_address

    def _count(
        self, state: State, shared: dict[str, int], address: int | None, ip: str, t: float
    ) -> dict[str, int]:
        """Apply a login's population counts (one step per map); return the new values, by
        field, the address's under ``"ip"``."""
        ttl = self.rules.profile_ttl
        values: dict[str, int] = {}
        if shared:  # a familiar login, not scored, changes no population count
            values.update(zip(shared, state.incr_fields(GLOBAL_KEY, shared, t, ttl), strict=True))
        if address is not None:
            values["ip"] = state.incr_field(_address_key(ip), USERS_FIELD, t, ttl, address)
        return values

    @staticmethod
    def _answered(
        view: PlanView,
        shared: dict[str, int],
        shared_step: Step | None,
        address_step: Step | None,
    ) -> dict[str, int] | None:
        """What :meth:`_count` returns, from the results of plan_after's steps in ``view``;
        None when one is missing."""
        values: dict[str, int] = {}
        answers = view.answers
        if shared_step is not None:
            counted = answers.get(shared_step)
            if counted is None:
                return None
            values.update(zip(shared, counted, strict=True))
        if address_step is not None:
            counted = answers.get(address_step)
            if counted is None:
                return None
            values["ip"] = int(counted[0])
        return values

    def _learn_signup(self, event: Event, state: State) -> None:
        """The address an account is created from is its owner's.

        It enters the network history (not the device one, whose count is the login history
        that ``min_history`` asks for), so the owner's first logins from there are familiar: to
        this score, and to account takeover, which must not take the owner mistyping a password
        at home, right after a brute force on the new account, for the attacker getting in."""
        assert event.user_hash is not None
        user_key = profile_key(event.user_hash)
        learned, shared, address, ip = self._signup_steps(state.fields(user_key), event)
        state.incr_fields(user_key, learned, event.time, self.rules.profile_ttl)
        self._count(state, shared, address, ip, event.time)

    def _signup_steps(
        self, profile: dict[str, int], event: Event
    ) -> tuple[dict[str, int], dict[str, int], int | None, str]:
        """What a signup writes: the profile's field, the population's, the address's count
        (or None), and its address."""
        shared: dict[str, int] = {} if profile else {USERS_FIELD: 1}
        net = _clean_path(_net_path(event))
        stored, new_address = self._learn(shared, NET, net, NET_LEVELS, _walk(NET, net, profile))
        return {stored: 1}, shared, 1 if new_address else None, net[-1]

    def _ratio(
        self,
        population: dict[str, int],
        path: tuple[str, ...],
        levels: tuple[str, ...],
        walk: _Walk,
        history: int,
        users: int,
    ) -> float:
        """One hierarchy's p(value) / p(value | user), rounded as the evidence shows it (the
        risk is the product of the rounded ratios)."""
        cap = self.rules.max_unseen_factor
        seen = walk.seen
        if seen == 0:
            d = walk.distinct
            ratio = min(cap, (history + d) / d) if d else 1.0
        else:
            k = seen - 1
            c, d = walk.count, walk.distinct
            level = levels[k]
            popularity = population["ip" if level == "ip" else _population_field(level, path[k])]
            p_global = (popularity + 1) / (users + 1)
            ratio = min(1.0, p_global) * (history + d) / c
            # A new string under a browser the user already uses is that browser updated (every
            # Chrome user's string changes on one day): no risk unless score_new_version.
            if seen < len(path) and (levels[seen] != "ua" or self.rules.score_new_version):
                siblings = walk.siblings
                if siblings:
                    ratio *= min(cap, (c + siblings) / siblings)
        return round(ratio, 4)

    @staticmethod
    def _factor(
        family: str, path: tuple[str, ...], levels: tuple[str, ...], walk: _Walk, ratio: float
    ) -> dict[str, Any]:
        """One hierarchy's part of a finding's evidence: its ratio and the levels it turned on
        (built only for a login that makes a finding)."""
        seen = walk.seen
        result: dict[str, Any] = {
            "family": FAMILY_NAMES[family],
            "seen_level": None,
            "seen_value": None,
            "new_level": None,
            "new_value": None,
        }
        if seen == 0:
            result.update(new_level=levels[0], new_value=path[0])
        else:
            result.update(seen_level=levels[seen - 1], seen_value=path[seen - 1])
            if seen < len(path):
                result.update(new_level=levels[seen], new_value=path[seen])
        result["ratio"] = ratio
        return result
