"""An ordered index of when each user or address was last seen, for pages of the most recent.

This module owns listing by recency without a scan, for states in this process (memory, SQLite)
that can only list their keys: :class:`RecencyIndex` keeps each key's newest event time in a dict
and the ``(time, key)`` entries in time order, as two parallel lists (a time list and a key list:
no tuple per update). An update appends (events mostly arrive in time order; a late one is
inserted in place), leaving the key's older entry behind as stale; a page is read from the newest
end, skipping stale entries, so it costs the page plus the stale entries between its rows, never
the whole index. When stale entries outnumber live ones the lists are rebuilt (amortized O(1) per
update), dropping the oldest keys past ``max_keys`` (once they exceed it by a tenth). It can also
map labels (``user.id``) to keys, so a user is found by its label without a scan. A batch is
taken in one call (:meth:`RecencyIndex.touch_all`), which is what the processor does after each.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from itertools import compress

__all__ = ["Cursor", "RecencyIndex"]

Cursor = tuple[float, str]
"""Where a page ended: the ``(last seen, key)`` of its last row; the next page starts below it."""


class RecencyIndex:
    """Keys by newest event time. Not thread-safe: the processor's lock guards it."""

    def __init__(self, max_keys: int = 2_000_000) -> None:
        self.max_keys = max_keys
        # Past the cap by a tenth, the oldest keys go: a rebuild per tenth, not per new key.
        self._ceiling = max_keys + max_keys // 10 + 16
        self._seen: dict[str, float] = {}
        # Entry i is (_times[i], _keys[i]); the entries are sorted as those pairs would be.
        self._times: list[float] = []
        self._keys: list[str] = []
        self._labels: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._seen)

    @property
    def entries(self) -> int:
        """Entries held, stale ones included (bounded by about twice the keys)."""
        return len(self._keys)

    def touch(self, key: str, when: float, label: str | None = None) -> None:
        """``key`` had an event at ``when`` (an older time than the one kept changes nothing)."""
        self.touch_all((key,), (when,), None if label is None else (label,))

    def touch_all(
        self,
        keys: Sequence[str | None],
        times: Sequence[float],
        labels: Sequence[str | None] | None = None,
    ) -> None:
        """:meth:`touch` for each ``keys[i]`` at ``times[i]`` with ``labels[i]``, in order; a
        None key is skipped. One call per batch: the per-event work is a dict lookup and, when
        the time is newer, a dict store and two appends."""
        if labels is not None:
            names = self._labels
            for key, label in zip(keys, labels, strict=True):
                if label is not None and key is not None:
                    names[label] = key
        seen = self._seen
        known_at = seen.get
        times_list, keys_list = self._times, self._keys
        last_t = times_list[-1] if times_list else float("-inf")
        last_k = keys_list[-1] if keys_list else ""
        for key, when in zip(keys, times, strict=True):
            if key is None:
                continue
            known = known_at(key)
            if known is not None and known >= when:
                continue
            seen[key] = when
            if when > last_t or (when == last_t and key >= last_k):
                times_list.append(when)
                keys_list.append(key)
                last_t, last_k = when, key
            else:  # a late event: rare, a memmove
                i = self._position(when, key, right=True)
                times_list.insert(i, when)
                keys_list.insert(i, key)
        if len(keys_list) > 2 * len(seen) + 1024 or len(seen) > self._ceiling:
            self._compact()

    def _position(self, when: float, key: str, *, right: bool = False) -> int:
        """Where ``(when, key)`` goes among the sorted entries (after equal ones if ``right``)."""
        lo = bisect.bisect_left(self._times, when)
        hi = bisect.bisect_right(self._times, when, lo)
        if right:
            return bisect.bisect_right(self._keys, key, lo, hi)
        return bisect.bisect_left(self._keys, key, lo, hi)

    def forget(self, key: str) -> None:
        """``key`` is gone from the state (its entries become stale)."""
        self._seen.pop(key, None)

    def by_label(self, label: str) -> str | None:
        key = self._labels.get(label)
        return key if key is not None and key in self._seen else None

    def newest(
        self, *, since: float | None = None, after: Cursor | None = None
    ) -> Iterator[tuple[float, str]]:
        """``(last seen, key)``, newest first, from below ``after`` down to ``since``."""
        times, keys = self._times, self._keys
        seen = self._seen
        i = len(keys) if after is None else self._position(*after)
        while i > 0:
            i -= 1
            when, key = times[i], keys[i]
            if since is not None and when < since:
                return
            if seen.get(key) == when:
                yield when, key

    def rebuild(self, items: Iterable[tuple[str, float, str | None]]) -> None:
        """Start over from ``(key, last seen, label)`` of every key (one scan of a state)."""
        self._seen = {}
        self._labels = {}
        for key, when, label in items:
            self._seen[key] = when
            if label is not None:
                self._labels[label] = key
        order = sorted((t, k) for k, t in self._seen.items())
        self._times = [t for t, _ in order]
        self._keys = [k for _, k in order]
        self._trim()

    def _compact(self) -> None:
        seen = self._seen
        live = [seen.get(k) == t for t, k in zip(self._times, self._keys, strict=True)]
        self._times = list(compress(self._times, live))
        self._keys = list(compress(self._keys, live))
        if len(self._labels) > 2 * len(seen) + 1024:  # labels of forgotten keys
            self._labels = {lb: k for lb, k in self._labels.items() if k in seen}
        self._trim()

    def _trim(self) -> None:
        surplus = len(self._keys) - self.max_keys
        if surplus > 0:
            for key in self._keys[:surplus]:
                self._seen.pop(key, None)  # a key forgotten and seen again may be here twice
            del self._times[:surplus]
            del self._keys[:surplus]
            self._labels = {lb: k for lb, k in self._labels.items() if k in self._seen}
