"""The engine's state primitives: windowed counters, windowed distinct sets, small records.

Aggregation and detectors keep all their state through this one small interface, keyed by
strings they choose (``"u:<hash>:fail"``, ``"ip:<addr>:users"``, ...). Time is always the
*event's* time in seconds; windows slide on it. Each primitive is one atomic step that also
returns the value the caller needs next, so that a shared backend (Redis, by a Lua script) can
serve several processor replicas with one round trip per step and no lost update.

Implementations: the in-memory one (also what the SQLite store snapshots) and Redis. Every
implementation is bounded: a key untouched for longer than its window expires, and the total
number of keys is capped (see each implementation for what is evicted first).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class State(Protocol):
    def add(self, key: str, t: float, window: float, n: int = 1) -> int:
        """Add ``n`` at event time ``t`` to the sliding-window counter ``key`` whose window is
        ``window`` seconds long; return the counter's total over ``(t - window, t]``.

        Events may arrive out of order: an ``add`` at a time earlier than the counter's newest
        is counted in its own bucket, and dropped (returning the current total) when it is older
        than the window plus the documented lateness."""
        ...

    def add_windows(
        self, key: str, t: float, windows: tuple[float, ...], n: int = 1
    ) -> tuple[int, ...]:
        """Like :meth:`add` for one counter read over several windows at once (e.g. 1 min,
        10 min, 1 h, 24 h): one atomic step, returning the total over each window in order.
        The counter's bucket resolution suits the shortest window; its retention the longest."""
        ...

    def count(self, key: str, t: float, window: float) -> int:
        """The counter's total over ``(t - window, t]``; 0 for an unknown key."""
        ...

    def add_distinct(self, key: str, member: str, t: float, window: float) -> int:
        """Record ``member`` at time ``t`` in the windowed distinct set ``key``; return how many
        distinct members were seen over ``(t - window, t]``. Implementations may estimate large
        cardinalities (HyperLogLog) but are exact up to at least 64 members."""
        ...

    def distinct_count(self, key: str, t: float, window: float) -> int:
        """How many distinct members ``key`` saw over ``(t - window, t]``."""
        ...

    def distinct_members(self, key: str, t: float, window: float, limit: int = 64) -> list[str]:
        """Up to ``limit`` members seen over ``(t - window, t]``, most recent first."""
        ...

    def incr_field(self, key: str, field: str, t: float, ttl: float, n: int = 1) -> int:
        """Add ``n`` to ``field`` of the counting map ``key`` (kept ``ttl`` seconds after its last
        change); return the field's new value. For per-user feature histograms (risk scoring)."""
        ...

    def fields(self, key: str) -> dict[str, int]:
        """All fields of the counting map ``key``; empty for an unknown key."""
        ...

    def get(self, key: str) -> dict[str, Any] | None:
        """The record stored at ``key``, or None."""
        ...

    def put(self, key: str, value: Mapping[str, Any], t: float, ttl: float) -> None:
        """Store a small JSON-serializable record, kept ``ttl`` seconds after event time ``t``."""
        ...
