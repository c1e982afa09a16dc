"""The user and address profiles the API serves, over whichever store the processor runs on.

This module owns the one way profiles get from the engine's state to the API: they are computed
from the state with :func:`~usermon.processor.aggregation.user_profile` and
:func:`~usermon.processor.aggregation.ip_profile`, here and never in a store. What a store does
with them depends on what it declares (:mod:`usermon.processor.storage.base`): a
:class:`~usermon.processor.storage.base.ProfileStore` (PostgreSQL) keeps the profiles of the users
and addresses each batch touched and serves them; an
:class:`~usermon.processor.storage.base.ActivityIndex` (Redis) keeps their ``last_seen`` so that
users can be listed, and profiles are read from the state when asked; any other store (memory,
SQLite) holds a :class:`~usermon.processor.storage.state.base.InProcessState`, listed by a scan and
read as of its watermark. Reads of many profiles go through the state's
:class:`~usermon.processor.storage.state.base.BatchReads` when it has it (a few round trips to
Redis instead of one per read). A profile read from a shared state is as of the subject's own
newest event (such a state has no clock of its own).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from usermon.processor.aggregation import ip_profile, last_seen, user_profile
from usermon.processor.storage.base import ActivityIndex, ProfileStore, Store
from usermon.processor.storage.state.base import BatchReads, InProcessState, State

__all__ = ["Profiles"]

_T = TypeVar("_T")


class Profiles:
    """The profiles of one store: :meth:`record` after each batch, the rest for the API."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # What the store and its state declare, asked once: neither changes while open.
        self._kept: ProfileStore | None = store if isinstance(store, ProfileStore) else None
        self._index: ActivityIndex | None = store if isinstance(store, ActivityIndex) else None
        state = store.state
        self._local: InProcessState | None = state if isinstance(state, InProcessState) else None
        self._batched: BatchReads | None = state if isinstance(state, BatchReads) else None

    def record(self, users: Iterable[str], ips: Iterable[str]) -> None:
        """Hand the store what it keeps of the users (hashes) and addresses a batch touched."""
        if self._kept is None and self._index is None:
            return  # profiles are read from the state when asked: nothing to hand over
        user_keys, ip_keys = sorted(set(users)), sorted(set(ips))
        if not user_keys and not ip_keys:
            return
        if self._kept is not None:
            profiles = self._read(
                [functools.partial(_user, h) for h in user_keys]
                + [functools.partial(_ip, a) for a in ip_keys]
            )
            found = len(user_keys)
            self._kept.save_profiles(
                [p for p in profiles[:found] if p is not None],
                [p for p in profiles[found:] if p is not None],
            )
        elif self._index is not None:
            seen = self._read(
                [functools.partial(_last_seen, "u:", h) for h in user_keys]
                + [functools.partial(_last_seen, "ip:", a) for a in ip_keys]
            )
            found = len(user_keys)
            self._index.index_activity(
                {k: t for k, t in zip(user_keys, seen[:found], strict=True) if t is not None},
                {k: t for k, t in zip(ip_keys, seen[found:], strict=True) if t is not None},
            )

    def users(self, *, since: float | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """User profiles, most recently seen first; ``since`` compares to ``last_seen``."""
        if self._kept is not None:
            return self._kept.users(since=since, limit=limit)
        if self._index is not None:
            hashes = self._index.recent_users(since=since, limit=limit)
            found = self._read([functools.partial(_user, h) for h in hashes])
            return [p for p in found if p is not None]
        state = self._local
        if state is None:
            return []
        # Rank by the profile records alone; build full profiles only for the page served.
        ranked: list[tuple[float, str]] = []
        for key in state.keys("u:"):
            seen = last_seen(state, key)
            if seen is not None and (since is None or seen >= since):
                ranked.append((seen, key[2:]))
        ranked.sort(reverse=True)
        now = state.watermark
        profiles = (user_profile(state, h, now) for _, h in ranked[:limit])
        return [p for p in profiles if p is not None]

    def user(self, user_hash: str) -> dict[str, Any] | None:
        if self._kept is not None:
            return self._kept.user(user_hash)
        return user_profile(self.store.state, user_hash, self._now())

    def ip(self, address: str) -> dict[str, Any] | None:
        if self._kept is not None:
            return self._kept.ip(address)
        return ip_profile(self.store.state, address, self._now())

    def _now(self) -> float | None:
        """The time profiles are read as of: a local state's watermark, else each subject's own
        newest event."""
        return None if self._local is None else self._local.watermark

    def _read(self, readers: Sequence[Callable[[State], _T]]) -> list[_T]:
        if self._batched is not None:
            return self._batched.read_batch(readers)
        state = self.store.state
        return [reader(state) for reader in readers]


def _user(user_hash: str, state: State) -> dict[str, Any] | None:
    return user_profile(state, user_hash, None)


def _ip(address: str, state: State) -> dict[str, Any] | None:
    return ip_profile(state, address, None)


def _last_seen(prefix: str, key: str, state: State) -> float | None:
    return last_seen(state, prefix + key)
