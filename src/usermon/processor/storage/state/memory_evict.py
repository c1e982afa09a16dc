"""Which keys a :class:`~usermon.processor.storage.state.memory.MemoryState` drops first when
its key cap is reached, and the loop that drops them. A flood of one-shot addresses creates
*flood-class* keys (each address's and each tried account's aggregate and counters, their
pairs) faster than anything else; what detection reads to judge the next login is *kept*: the
users' risk profiles and the population, the service's baselines and campaigns, takeover marks
on accounts and networks, open finding episodes, the engine's journal records, and the
aggregate of every user with a successful login on record (:func:`kept`). The cap evicts the
least recently touched flood-class key; a kept key met at the front of the map is moved to its
end instead, as long as kept keys fit in :data:`KEPT_SHARE` of the cap; beyond that share the
surplus goes, those closest to expiring first (:class:`KeyCap`). docs/processor.md (*Bounded
memory*) says what this guarantees and what it does not.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from typing import Final

from usermon.processor.storage.state.memory_entries import _Entry, _Person

__all__ = ["EVICT_CHUNK", "KEPT_FAMILIES", "KEPT_SHARE", "KeyCap", "kept"]

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
"""Key prefixes of the kept class (the detectors' and the engine's names for them). A family
keyed by what a flood rotates for free (an address: ``det:ip:``, ``det:ato:ip:``; an account
name that never logged in: ``det:u:``) is flood class: keeping it would let a flood fill the
kept share with its own keys. ``det:risk:ip:`` is an address's count of users who logged in
from it, written only by successes and signups."""

_HEADS: Final = (*KEPT_FAMILIES, "u:")

KEPT_SHARE: Final = 0.5
"""The share of the key cap that kept keys may fill before their surplus is evicted too. A
share, not the whole cap: a flood of kept keys (a signup farm creates a risk profile per
account) must still leave room for the other keys, and the eviction loop moves at most this
share of the cap per turn through the map (one move per eviction on average at a half)."""


EVICT_CHUNK: Final = 64
"""Keys evicted at once when the cap is reached (fewer below 64 Ki keys of cap: one below
1 Ki): one call per that many new keys at the cap rather than one per key."""


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

    kept_room: int
    """Kept keys spared per turn: :data:`KEPT_SHARE` of the cap (0: one LRU pool)."""
    evict_chunk: int
    """Keys evicted at once at the cap (:data:`EVICT_CHUNK`)."""
    kept_surplus_counts: int
    """Passes that counted kept keys because they outgrew their share (see the class):
    ``kept_overflows`` in :meth:`usage`, growing while the cap is too small for the users."""
    _turn: int  # keys the current turn has still to meet
    _spare: int  # kept keys the current turn may still move to the end
    _counted: bool  # whether the current turn counted the kept keys
    _surplus: int  # kept keys still to evict, those expiring at or before _below
    _below: float

    def _set_kept_share(self, share: float) -> None:
        """Called by the state's ``__init__``: sets every attribute eviction uses."""
        if not 0 <= share < 1:
            raise ValueError("kept_share must be at least 0 and less than 1")
        self.kept_room = int(self.max_keys * share)
        self.evict_chunk = max(1, min(EVICT_CHUNK, self.max_keys >> 10))
        self.kept_surplus_counts = 0
        self._turn = 0
        self._spare = 0
        self._counted = False
        self._surplus = 0
        self._below = float("-inf")

    def _evict(self, limit: int, gone: list[str] | None = None) -> None:
        """Drop keys from the front of the map until it holds at most ``limit``: expired keys
        (not counted), flood-class keys (counted in :attr:`evicted`), kept keys as the class
        docstring says. Keys dropped go to ``gone`` when given."""
        # At the cap this runs for every EVICT_CHUNK new keys: the keys are taken and sorted
        # out by comprehensions, and only a key whose first characters may name a kept family
        # gets a closer look (a tuple of prefixes costs 40-90 ns a prefix).
        entries = self._entries
        popitem = entries.popitem
        mark = self.watermark
        room = self.kept_room
        while len(entries) > limit:
            taken = [popitem(last=False) for _ in range(len(entries) - limit)]
            back: set[str] = set()
            if room:
                if self._turn <= 0:
                    self._turn = len(entries) + len(taken)
                    self._spare = room
                    self._counted = False
                self._turn -= len(taken)
                for key, entry in [
                    (k, e)
                    for k, e in taken
                    if ((c := k[:1]) == "d" and k[4:5] in "rsta")
                    or c in "fjk"
                    or (c == "u" and e.__class__ is _Person and e.ok_t is not None)
                ]:
                    if entry.expires >= mark and kept(key, entry) and self._spared(entry):
                        entries[key] = entry  # back in, at the end
                        back.add(key)
            self.evicted += sum([1 for _, e in taken if e.expires >= mark]) - len(back)
            if self._dropped is not None or gone is not None:
                out = [k for k, _ in taken if k not in back]
                if self._dropped is not None:
                    self._dropped.update(out)
                if gone is not None:
                    gone.extend(out)

    def _spared(self, entry: _Entry) -> bool:
        """Whether a live kept key just taken from the front goes back in (see the class)."""
        if self._surplus and entry.expires <= self._below:
            self._surplus -= 1
            return False
        if self._spare:
            self._spare -= 1
            return True
        if self._counted:
            return False
        self._count_kept(entry)
        return self._spared(entry)

    def _count_kept(self, taken: _Entry) -> None:
        """Kept keys outgrew their room: count them (with ``taken``; the rest of the chunk
        being evicted is out of the map, and not counted) and pick the surplus to evict
        first."""
        self.kept_surplus_counts += 1
        mark = self.watermark
        expiries = [
            e.expires
            for k, e in self._entries.items()
            if e.expires >= mark and k.startswith(_HEADS) and kept(k, e)
        ]
        expiries.append(taken.expires)
        surplus = len(expiries) - self.kept_room
        self._counted = True
        self._spare = self.kept_room
        self._surplus = max(0, surplus)
        self._below = heapq.nsmallest(surplus, expiries)[-1] if surplus > 0 else float("-inf")
