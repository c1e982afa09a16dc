"""suspicious_login: a successful login whose risk is high for that user's history.

The score follows Freeman et al., "Who Are You? A Statistical Approach to Measuring User
Authenticity" (NDSS 2016): risk = product over features of p(value) / p(value | user), with the
features organised in two hierarchies, country -> ASN -> IP and device -> OS -> browser -> UA
(each level is the child of the one before). This module's reading of the paper:

* Each hierarchy contributes one factor. Walk down from the top while the user has already used
  the login's value at that level (a level's value is remembered together with its parent's, so
  "ASN 3215 in France" is one value). At the deepest level seen, the factor is
  p(value) / p(value | user). When the next level down is new for the user, the factor is
  multiplied by 1 / p(new child | parent, user); the levels under a new one follow the global
  distribution for both numerator and denominator, so they cancel. A value new at the top scores
  1 / p(new | user).
* p(value | user) is smoothed with Witten-Bell: a value seen ``c`` times among ``n`` with ``d``
  distinct values gets ``c / (n + d)``, and "something new" gets ``d / (n + d)``; a user who
  always logs in from one country finds a new one ``n + 1`` times less likely, a traveller who
  already has many, only a little. Each "something new" factor is capped at
  ``max_unseen_factor``, so a long history does not turn every novelty into an alarm.
* p(value) is the value's add-one smoothed share of all successful logins seen.

Per-user histograms are counting maps in State (one map per user, at most ``max_values`` values
per level, beyond which new values are not recorded); global counts are one map for the
hierarchies' upper levels and one small map per IP. Users with fewer than ``min_history``
successful logins are profiled but not scored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
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
TOTAL_FIELD = "n"
TOP_LEVEL = "device"  # always present: counting it gives the user's number of logins

Level = tuple[str, str, str]  # (level name, parent's value, value)


def _ua_digest(user_agent: str) -> str:
    # A full UA string is long; its digest keeps per-user maps small.
    return hashlib.blake2b(user_agent.encode("utf-8", "replace"), digest_size=8).hexdigest()


def _chain(pairs: list[tuple[str, str]]) -> list[Level]:
    out: list[Level] = []
    parent = ""
    for level, value in pairs:
        out.append((level, parent, value))
        parent = value
    return out


def features(event: Event) -> tuple[list[Level], list[Level]]:
    """The login's two hierarchies, top level first: (level, parent value, value)."""
    network = event.network
    net: list[tuple[str, str]] = []
    if network is not None:
        if network.country:
            net.append(("country", network.country))
        if network.asn is not None:
            net.append(("asn", str(network.asn)))
    if event.client_ip:
        net.append(("ip", event.client_ip))
    parsed = parse_user_agent(event.user_agent)
    agent = [("device", parsed.device), ("os", parsed.os), ("browser", parsed.browser)]
    if event.user_agent:
        agent.append(("ua", _ua_digest(event.user_agent)))
    return _chain(net), _chain(agent)


def _field(level: Level) -> str:
    return f"{level[0]}|{level[1]}|{level[2]}"


class SuspiciousLoginDetector:
    name = KIND

    def __init__(self, rules: SuspiciousLoginRules, counts: SharedCounts) -> None:
        self.rules = rules
        self.counts = counts

    def observe(self, event: Event, state: State) -> Iterable[Signal]:
        if event.kind != "login" or not event.success or not event.user_hash:
            return ()
        t, ttl = event.time, self.rules.profile_ttl
        user_key = profile_key(event.user_hash)
        # Read through the shared tally: account takeover looks at the same profile, and must
        # see it as it was before this login, whichever of the two runs first.
        profile = self.counts.tally(event, state).profile()
        net, agent = features(event)

        # Distinct values per level, and per (level, parent), from the one read of the map.
        distinct: dict[str, int] = {}
        for name in profile:
            kind, parent, _ = name.split("|", 2)
            distinct[kind] = distinct.get(kind, 0) + 1
            scoped = f"{kind}|{parent}"
            distinct[scoped] = distinct.get(scoped, 0) + 1
        history = sum(c for name, c in profile.items() if name.startswith(TOP_LEVEL + "|"))

        # Global counts before this login: each increment returns the new value.
        total = state.incr_field(GLOBAL_KEY, TOTAL_FIELD, t, ttl) - 1
        global_counts: dict[str, int] = {}
        max_values = self.rules.max_values
        for level in (*net, *agent):
            name = _field(level)
            if level[0] == "ip":
                count = state.incr_field(f"{PREFIX}risk:ip:{level[2]}", TOTAL_FIELD, t, ttl)
            else:
                count = state.incr_field(GLOBAL_KEY, f"{level[0]}|{level[2]}", t, ttl)
            global_counts[name] = count - 1
            if name in profile or distinct.get(level[0], 0) < max_values:
                state.incr_field(user_key, name, t, ttl)

        if history < self.rules.min_history:
            return ()
        factors = [
            self._factor(family, levels, profile, distinct, history, global_counts, total)
            for family, levels in (("network", net), ("agent", agent))
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

    def _factor(
        self,
        family: str,
        levels: list[Level],
        profile: dict[str, int],
        distinct: dict[str, int],
        history: int,
        global_counts: dict[str, int],
        total: int,
    ) -> dict[str, Any]:
        """One hierarchy's p(value) / p(value | user)."""
        cap = self.rules.max_unseen_factor
        deepest = -1
        for i, level in enumerate(levels):
            if not profile.get(_field(level)):
                break
            deepest = i
        result: dict[str, Any] = {
            "family": family,
            "seen_level": None,
            "seen_value": None,
            "new_level": None,
            "new_value": None,
        }
        if deepest < 0:
            if not levels:
                result["ratio"] = 1.0
                return result
            top = levels[0]
            d = distinct.get(top[0], 0)
            ratio = min(cap, (history + d) / d) if d else 1.0
            result.update(new_level=top[0], new_value=top[2])
        else:
            seen = levels[deepest]
            c = profile[_field(seen)]
            d = distinct[seen[0]]
            p_global = (global_counts[_field(seen)] + 1) / (total + 1)
            ratio = p_global * (history + d) / c
            result.update(seen_level=seen[0], seen_value=seen[2])
            if deepest + 1 < len(levels):
                child = levels[deepest + 1]
                siblings = distinct.get(f"{child[0]}|{child[1]}", 0)
                if siblings:
                    ratio *= min(cap, (c + siblings) / siblings)
                result.update(new_level=child[0], new_value=child[2])
        result["ratio"] = round(ratio, 4)
        return result
