"""Which keys a :class:`~usermon.processor.storage.state.memory.MemoryState` drops first when
its key cap is reached, and the loop that drops them. A flood of one-shot addresses creates
*flood-class* keys (each address's and each tried account's aggregate and counters, their
pairs) faster than anything else; what detection reads to judge the next login is *kept*: the
users' risk profiles and the population, the service's baselines and campaigns, takeover marks
on accounts and networks, open finding episodes, the engine's journal records, and the
aggregate of every user with a successful login on record (:func:`kept`). The cap evicts the
least recently touched flood-class key; a kept key met at the front of the map is moved to its
end instead, as long as kept keys fit in :data:`KEPT_SHARE` of the cap; beyond that share the
least recently touched kept keys go like the others. docs/processor.md (*Bounded memory*) says
what this guarantees and what it does not.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from typing import Final

from usermon.processor.storage.state.memory_entries import _Entry, _Person

__all__ = ["KEPT_FAMILIES", "KEPT_SHARE", "KeyCap", "kept"]

KEPT_FAMILIES: Final = (
    "det:risk:",  # suspicious_login: users' profiles, the population, addresses' user counts
    "det:svc:",  # campaign: the service's baselines, its campaigns and their fingerprints
    "det:travel:",  # impossible_travel: each user's last located login
    "det:ato:u:",  # account_takeover: accounts under attack
    "det:ato:net:",  # account_takeover: networks attacking accounts
    "f:",  # the engine: open finding episodes (one finding per episode)
    "j:",  # the engine: which events of a journal batch were judged
    "k:",  # the engine: what a batch found, until it is recorded
)
"""Key prefixes of the kept class (the detectors' and the engine's names for them). Keyed by
something a flood rotates for free (an address: ``det:ato:ip:``, ``det:risk:`` aside; an
account name that never logged in) means flood class: keeping those would let a flood fill the
kept share with its own keys."""

_HEADS: Final = (*KEPT_FAMILIES, "u:")

KEPT_SHARE: Final = 0.5
"""The share of the key cap that kept keys may fill before the least recently touched of them
are evicted too. A share, not the whole cap: a flood of kept keys (a signup farm creates a risk
profile per account) must still find room for the other keys, and the eviction loop moves at
most this many kept keys per turn through the map (one move per eviction on average at a half)."""


def kept(key: str, entry: _Entry) -> bool:
    """Whether ``key`` is of the kept class: a :data:`KEPT_FAMILIES` prefix, or the aggregate of
    a user (``u:``) with a successful login on record (a name tried in a combo list has none)."""
    if not key.startswith(_HEADS):
        return False
    if key[0] == "u" and key[1] == ":":
        return entry.__class__ is _Person and entry.ok_t is not None
    return True


class KeyCap:
    """The key cap's eviction, inherited by the memory state (its map and counters are declared
    here and set by the state's ``__init__``).

    Eviction takes keys from the front of the map (the least recently touched). It goes in
    *turns*, each as many keys as the map held when the turn began; in a turn, at most
    :attr:`kept_room` kept keys are moved to the end instead of evicted, which bounds what the
    moves cost (at most ``kept_room / (max_keys - kept_room)`` per evicted key over a turn: one
    at a half). A kept key met once that room is spent means kept keys do not fit: one pass over
    the map then counts them and picks the surplus, those that expire soonest (for one family,
    the least recently written), which are evicted as eviction meets them; the others are
    spared again, up to :attr:`kept_room` more in that turn, and then evicted in the order met.
    That pass is the only cost of kept keys outgrowing their share, once per turn at most."""

    max_keys: int
    watermark: float
    evicted: int
    _entries: OrderedDict[str, _Entry]
    _dropped: set[str] | None

    kept_room = 0
    """Kept keys spared per turn: :data:`KEPT_SHARE` of the cap (0: one LRU pool)."""
    kept_surplus_counts = 0
    """Passes that counted kept keys because they outgrew their share (see the class)."""
    _turn = 0  # keys the current turn has still to meet
    _spare = 0  # kept keys the current turn may still move to the end
    _counted = False  # whether the current turn counted the kept keys
    _surplus = 0  # kept keys still to evict, those expiring at or before _below
    _below = float("-inf")

    def _set_kept_share(self, share: float) -> None:
        if not 0 <= share < 1:
            raise ValueError("kept_share must be at least 0 and less than 1")
        self.kept_room = int(self.max_keys * share)

    def _evict(self, limit: int, gone: list[str] | None = None) -> None:
        """Drop keys from the front of the map until it holds at most ``limit``: expired keys
        (not counted), flood-class keys (counted in :attr:`evicted`), kept keys as the class
        docstring says. Keys dropped go to ``gone`` when given."""
        entries = self._entries
        mark = self.watermark
        room = self.kept_room
        dropped = self._dropped
        while len(entries) > limit:
            key, entry = next(iter(entries.items()))
            if entry.expires >= mark:
                if room:
                    if self._turn <= 0:
                        self._turn = len(entries)
                        self._spare = room
                        self._counted = False
                    self._turn -= 1
                    if key.startswith(_HEADS) and kept(key, entry):
                        if self._surplus and entry.expires <= self._below:
                            self._surplus -= 1
                        elif self._spare:
                            self._spare -= 1
                            entries.move_to_end(key)
                            continue
                        elif not self._counted:
                            self._count_kept()
                            self._turn += 1  # meet this key again, with the surplus known
                            continue
                self.evicted += 1
            del entries[key]
            if dropped is not None:
                dropped.add(key)
            if gone is not None:
                gone.append(key)

    def _count_kept(self) -> None:
        """Kept keys outgrew their room: count them and pick the surplus to evict first."""
        self.kept_surplus_counts += 1
        mark = self.watermark
        expiries = [
            e.expires
            for k, e in self._entries.items()
            if e.expires >= mark and k.startswith(_HEADS) and kept(k, e)
        ]
        surplus = len(expiries) - self.kept_room
        self._counted = True
        self._spare = self.kept_room
        self._surplus = max(0, surplus)
        self._below = heapq.nsmallest(surplus, expiries)[-1] if surplus > 0 else float("-inf")
