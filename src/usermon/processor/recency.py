"""An ordered index of when each user or address was last seen, for pages of the most recent.

This module owns listing by recency without a scan, for states in this process (memory, SQLite)
that can only list their keys: :class:`RecencyIndex` keeps each key's newest event time in a dict
and a list of ``(time, key)`` in time order. An update appends (events mostly arrive in time
order; a late one is inserted in place), leaving the key's older entry behind as stale; a page is
read from the newest end, skipping stale entries, so it costs the page plus the stale entries
between its rows, never the whole index. When stale entries outnumber live ones the list is
rebuilt (amortized O(1) per update), dropping the oldest keys past ``max_keys`` (once they
exceed it by a tenth). It can also map
labels (``user.id``) to keys, so a user is found by its label without a scan.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

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
        self._order: list[tuple[float, str]] = []
        self._labels: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def touch(self, key: str, when: float, label: str | None = None) -> None:
        """``key`` had an event at ``when`` (an older time than the one kept changes nothing)."""
        if label is not None:
            self._labels[label] = key
        known = self._seen.get(key)
        if known is not None and known >= when:
            return
        self._seen[key] = when
        entry = (when, key)
        order = self._order
        if not order or order[-1] <= entry:
            order.append(entry)
        else:
            bisect.insort(order, entry)  # a late event: rare, a memmove
        if len(order) > 2 * len(self._seen) + 1024 or len(self._seen) > self._ceiling:
            self._compact()

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
        order = self._order
        seen = self._seen
        i = len(order) if after is None else bisect.bisect_left(order, after)
        while i > 0:
            i -= 1
            when, key = order[i]
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
        self._order = sorted((t, k) for k, t in self._seen.items())
        self._trim()

    def _compact(self) -> None:
        seen = self._seen
        self._order = [(t, k) for t, k in self._order if seen.get(k) == t]
        if len(self._labels) > 2 * len(seen) + 1024:  # labels of forgotten keys
            self._labels = {lb: k for lb, k in self._labels.items() if k in seen}
        self._trim()

    def _trim(self) -> None:
        surplus = len(self._order) - self.max_keys
        if surplus > 0:
            for _, key in self._order[:surplus]:
                del self._seen[key]
            del self._order[:surplus]
            self._labels = {lb: k for lb, k in self._labels.items() if k in self._seen}
