"""Campaign fingerprints: what an application can match at login time, derived from a campaign.

An application knows two things about a login before it checks the password: the User-Agent and
the client address. A campaign's fingerprint is therefore a few User-Agent digests (``ua=``, the
SHA-256 the SDK computes) and a few client networks (``net=``, the /24 or /48 the detectors
count), chosen to cover most of the campaign's attempts and to leave the service's ordinary
traffic alone (docs/protection.md, "Campaign fingerprints"; docs/detection.md, "Campaign
fingerprints"). While a campaign runs, :func:`observe` keeps two bounded heavy-hitter summaries
in its record (Misra-Gries: ``AGENT_SLOTS`` User-Agents, ``NET_SLOTS`` networks; every item
holding more than ``1 / (slots + 1)`` of the attempts is kept, its count underestimated by at
most that share), and :func:`derive` turns them, with what the service's baseline says about
the candidates, into a :class:`Fingerprint`: a pure function, tested over lists of events.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from usermon.decisions import user_agent_hash

__all__ = [
    "AGENT_SLOTS",
    "NET_SLOTS",
    "Fingerprint",
    "derive",
    "matches",
    "observe",
    "parse",
]

AGENT_SLOTS: Final = 8
"""User-Agents a campaign's summary tracks (each a SHA-256 and a short digest: ~110 bytes)."""
NET_SLOTS: Final = 16
"""Client networks a campaign's summary tracks (~30 bytes each)."""


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """A campaign's fingerprint: a login matches when its User-Agent digest is one of ``agents``
    (or there are none) and its network is one of ``nets`` (or there are none)."""

    agents: tuple[str, ...]
    nets: tuple[str, ...]
    coverage: float
    """The share of the campaign's summarized attempts it matches (a lower bound)."""

    @property
    def value(self) -> str:
        """The ``service_campaign`` decision value: ``ua=<sha256>;...;net=<cidr>;...``, sorted so
        that one fingerprint is always written the same way (one decision, not several)."""
        parts = [f"ua={a}" for a in sorted(self.agents)] + [f"net={n}" for n in sorted(self.nets)]
        return ";".join(parts)


@lru_cache(maxsize=4096)
def agent_keys(user_agent: str) -> tuple[str, str]:
    """A User-Agent's SHA-256 (what the SDK matches) and its 8-byte BLAKE2b digest (what the
    service's population of User-Agents is counted by, see suspicious_login)."""
    short = hashlib.blake2b(user_agent.encode("utf-8", "replace"), digest_size=8).hexdigest()
    return user_agent_hash(user_agent), short


def _summarize(summary: dict[str, Any], item: str, slots: int, extra: Any = None) -> None:
    """One Misra-Gries step: count ``item``; when the summary is full, every entry gives one
    back and the empty ones leave. Entries are ``[count]`` or ``[count, extra]``."""
    entry = summary.get(item)
    if entry is not None:
        entry[0] += 1
        return
    if len(summary) < slots:
        summary[item] = [1] if extra is None else [1, extra]
        return
    for key in list(summary):
        summary[key][0] -= 1
        if summary[key][0] <= 0:
            del summary[key]


def observe(record: dict[str, Any], user_agent: str | None, net: str | None) -> None:
    """Count one attempt of the campaign whose record is ``record`` into its summaries."""
    record["n"] = int(record.get("n", 0)) + 1
    agents = record.setdefault("ua", {})
    if user_agent:
        sha, short = agent_keys(user_agent)
        _summarize(agents, sha, AGENT_SLOTS, short)
    else:
        _summarize(agents, "", AGENT_SLOTS)  # no User-Agent: nothing an application can match
    _summarize(record.setdefault("net", {}), net or "", NET_SLOTS)


def due(record: Mapping[str, Any], min_sample: int) -> bool:
    """Whether the fingerprint is derived again at this attempt: at ``min_sample`` attempts,
    then at each doubling, then every 1024 (a stable campaign keeps one fingerprint, so one
    decision; a changing one is followed)."""
    n = int(record.get("n", 0))
    if n < min_sample:
        return False
    return n & (n - 1) == 0 or n % 1024 == 0


def _pick(
    counts: Iterable[tuple[str, int]], total: int, coverage: float, limit: int
) -> tuple[tuple[str, ...], int]:
    """The fewest items, largest first, covering ``coverage`` of ``total`` (at most ``limit``);
    with what they cover. An empty item (nothing to match) is never picked."""
    picked: list[str] = []
    covered = 0
    for item, count in sorted(counts, key=lambda kv: (-kv[1], kv[0])):
        if covered >= coverage * total or len(picked) >= limit:
            break
        if not item or count <= 0:
            continue
        picked.append(item)
        covered += count
    return tuple(picked), covered


def derive(
    total: int,
    agents: Mapping[str, int],
    nets: Mapping[str, int],
    *,
    common_agents: Collection[str] | None,
    busy_nets: Collection[str],
    coverage: float,
    max_agents: int,
    max_nets: int,
) -> Fingerprint | None:
    """The fingerprint of a campaign of ``total`` attempts whose User-Agent digests (SHA-256)
    and networks were counted as ``agents`` and ``nets``, or None when nothing an application
    can match covers ``coverage`` of it without taking in the service's ordinary traffic.

    ``common_agents``: the candidates the service's own users log in with (None: unknown, no
    baseline to tell); ``busy_nets``: the candidate networks with ordinary successful logins.
    In order of preference: User-Agents alone, when they cover the campaign and none is common
    (robust to a proxy pool that rotates networks); networks (with the User-Agents too when
    those cover it, which only narrows); else nothing.
    """
    if total <= 0:
        return None
    picked_agents, by_agents = _pick(agents.items(), total, coverage, max_agents)
    agents_cover = by_agents >= coverage * total
    distinct = (
        agents_cover
        and common_agents is not None
        and not any(agent in common_agents for agent in picked_agents)
    )
    if distinct:
        return Fingerprint(picked_agents, (), by_agents / total)
    candidates = [(net, n) for net, n in nets.items() if net not in busy_nets]
    picked_nets, by_nets = _pick(candidates, total, coverage, max_nets)
    if by_nets < coverage * total:
        return None
    if agents_cover:
        # Both parts must match: a lower bound of what both cover is what either misses.
        share = max(0.0, (by_agents + by_nets - total) / total)
        return Fingerprint(picked_agents, picked_nets, share)
    return Fingerprint((), picked_nets, by_nets / total)


def parse(value: str) -> Fingerprint | None:
    """A fingerprint from its decision value (None for an empty one)."""
    agents = tuple(p[3:] for p in value.split(";") if p.startswith("ua="))
    nets = tuple(p[4:] for p in value.split(";") if p.startswith("net="))
    if not agents and not nets:
        return None
    return Fingerprint(agents, nets, 0.0)


def matches(
    fingerprint: Fingerprint, user_agent: str | None, net: Callable[[], str | None]
) -> bool:
    """Whether a login with ``user_agent`` from network ``net()`` (computed only when needed)
    shares the fingerprint, as the SDK would match it."""
    if fingerprint.agents and (
        not user_agent or agent_keys(user_agent)[0] not in fingerprint.agents
    ):
        return False
    return not fingerprint.nets or net() in fingerprint.nets
