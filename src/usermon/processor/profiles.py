"""The user and address profiles the API serves, over whichever store the processor runs on.

This module owns the one way profiles get from the engine's state to the API: they are computed
from the state with :func:`~usermon.processor.aggregation.user_profile` and
:func:`~usermon.processor.aggregation.ip_profile`, here and never in a store. What a store does
with them depends on what it declares (:mod:`usermon.processor.storage.base`): a
:class:`~usermon.processor.storage.base.ProfileStore` (PostgreSQL) keeps the profiles of the users
and addresses each batch touched and serves them; an
:class:`~usermon.processor.storage.base.ActivityIndex` (Redis) keeps their ``last_seen`` so that
they can be listed, and profiles are read from the state when asked; any other store (memory,
SQLite) holds a :class:`~usermon.processor.storage.state.base.InProcessState`, read as of its
watermark and listed through a :class:`~usermon.processor.recency.RecencyIndex` built by one
scan when the processor starts (:meth:`Profiles.index`) and kept up to date from each batch's
events (:meth:`Profiles.saw`), so a page costs the page, not the state. Reads of many profiles go
through the state's :class:`~usermon.processor.storage.state.base.BatchReads` when it has it (a
few round trips to Redis instead of one per read). A profile read from a shared state is as of the
subject's own newest event (such a state has no clock of its own).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from usermon.processor.aggregation import (
    ip_profile,
    ip_profile_of,
    last_seen,
    user_profile,
    user_profile_of,
)
from usermon.processor.model import Event
from usermon.processor.recency import Cursor, RecencyIndex
from usermon.processor.storage.base import ActivityIndex, ProfileStore, Store
from usermon.processor.storage.state.base import BatchReads, InProcessState, State, SubjectView

__all__ = ["Page", "Profiles"]

Page = tuple[list[dict[str, Any]], Cursor | None]
"""Profiles, and the cursor of the next page (None: this was the last)."""

_FALLBACK_MAX = 10_000
"""A store with no index of its own pages by reading this many rows at most below a cursor."""

_T = TypeVar("_T")


class Profiles:
    """The profiles of one store: :meth:`record` after each batch, the rest for the API."""

    def __init__(self, store: Store, *, max_keys: int = 500_000) -> None:
        self.store = store
        # What the store and its state declare, asked once: neither changes while open.
        self._kept: ProfileStore | None = store if isinstance(store, ProfileStore) else None
        self._index: ActivityIndex | None = store if isinstance(store, ActivityIndex) else None
        state = store.state
        self._local: InProcessState | None = state if isinstance(state, InProcessState) else None
        self._batched: BatchReads | None = state if isinstance(state, BatchReads) else None
        # Bounded as the state is (--max-keys): a key the state evicted is dropped from the
        # index when a page finds no profile for it, or as the oldest past the cap.
        self._user_index = RecencyIndex(max_keys)
        self._ip_index = RecencyIndex(max_keys)
        self._indexed = False  # built from the state at startup (index()) or the first listing

    def saw(self, events: Iterable[Event]) -> None:
        """Keep a local state's recency indexes up to date with a processed batch."""
        if self._local is None or not self._indexed:
            return
        batch = events if isinstance(events, list | tuple) else list(events)
        times = [event.time for event in batch]
        self._user_index.touch_all(
            [event.user_hash for event in batch], times, [event.user_id for event in batch]
        )
        self._ip_index.touch_all([event.client_ip or None for event in batch], times)

    def index(self, *, rebuild: bool = False) -> None:
        """Build the recency indexes of a local state now (the processor does, once its state is
        restored) rather than at the first listing; ``rebuild`` scans again (after the state was
        written other than through the engine). No-op for other stores."""
        if rebuild:
            self._indexed = False
        if self._local is not None:
            self._ensure_index(self._local)

    def _ensure_index(self, state: InProcessState) -> None:
        if self._indexed:
            return

        def read(prefix: str) -> list[tuple[str, float, str | None]]:
            out = []
            for key in state.keys(prefix):
                view = state.read_subject(key, None)
                if view is not None:
                    out.append((key[len(prefix) :], view.last_seen, view.label))
            return out

        self._user_index.rebuild(read("u:"))
        self._ip_index.rebuild(read("ip:"))
        self._indexed = True

    @property
    def labels_indexed(self) -> bool:
        """Whether :meth:`user_by_label` finds every label from an index (PostgreSQL's, or a
        local state's), else a caller scans."""
        return self._kept is not None or self._local is not None

    def user_by_label(self, label: str) -> dict[str, Any] | None:
        """The profile of the user most recently seen with ``label``, from an index; None when
        no user has it, or where nothing indexes labels (:attr:`labels_indexed`)."""
        if self._kept is not None:
            return self._kept.user_by_label(label)
        if self._local is None:
            return None
        self._ensure_index(self._local)
        user_hash = self._user_index.by_label(label)
        return None if user_hash is None else self.user(user_hash)

    def users_page(
        self, *, since: float | None = None, limit: int = 100, after: Cursor | None = None
    ) -> Page:
        """User profiles, most recently seen first, below the cursor ``after``."""
        state = self._local
        if state is None:
            return self._fallback_page("user_hash", self._users_listed, since, limit, after)
        self._ensure_index(state)
        return self._page(self._user_index, since, limit, after, self.user)

    def ips_page(
        self, *, since: float | None = None, limit: int = 100, after: Cursor | None = None
    ) -> Page:
        """Address profiles, most recently seen first, below the cursor ``after``."""
        state = self._local
        if state is None:
            return self._fallback_page("ip", self._ips_listed, since, limit, after)
        self._ensure_index(state)
        return self._page(self._ip_index, since, limit, after, self.ip)

    @staticmethod
    def _page(
        index: RecencyIndex,
        since: float | None,
        limit: int,
        after: Cursor | None,
        read: Callable[[str], dict[str, Any] | None],
    ) -> Page:
        rows: list[dict[str, Any]] = []
        last: Cursor | None = None
        gone: list[str] = []
        for when, key in index.newest(since=since, after=after):
            if len(rows) == limit:
                return rows, last
            profile = read(key)
            if profile is None:
                gone.append(key)  # expired or evicted from the state
                continue
            rows.append(profile)
            last = (when, key)
        for key in gone:
            index.forget(key)
        return rows, None

    @staticmethod
    def _fallback_page(
        key: str,
        listed: Callable[[float | None, int], list[dict[str, Any]]],
        since: float | None,
        limit: int,
        after: Cursor | None,
    ) -> Page:
        """A page from a store's own listing (``listed``, newest first), below ``after``: the
        store has no cursor of its own, so a page after the first reads at most
        ``_FALLBACK_MAX`` rows to find its place."""
        rows = listed(since, limit + 1 if after is None else _FALLBACK_MAX)
        if after is not None:
            rows = [r for r in rows if (r["last_seen"], r[key]) < after]
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (rows[-1]["last_seen"], rows[-1][key]) if more and rows else None

    def record(
        self,
        users: Iterable[str],
        ips: Iterable[str],
        subjects: Mapping[str, SubjectView] | None = None,
    ) -> None:
        """Hand the store what it keeps of the users (hashes) and addresses a batch touched.
        ``subjects`` holds those already read (``u:<hash>``, ``ip:<address>``: the engine's
        planned runs read each back in the script of its last fold); the others are read here."""
        if self._kept is None and self._index is None:
            return  # profiles are read from the state when asked: nothing to hand over
        user_keys, ip_keys = sorted(set(users)), sorted(set(ips))
        if not user_keys and not ip_keys:
            return
        known = subjects or {}
        if self._kept is not None:
            profiles = self._read(
                [_known(known, "u:", h, user_profile_of, _user) for h in user_keys]
                + [_known(known, "ip:", a, ip_profile_of, _ip) for a in ip_keys]
            )
            found = len(user_keys)
            self._kept.save_profiles(
                [p for p in profiles[:found] if p is not None],
                [p for p in profiles[found:] if p is not None],
            )
        elif self._index is not None:
            seen = self._read(
                [_known(known, "u:", h, _view_seen, _last_seen_of("u:")) for h in user_keys]
                + [_known(known, "ip:", a, _view_seen, _last_seen_of("ip:")) for a in ip_keys]
            )
            found = len(user_keys)
            self._index.index_activity(
                {k: t for k, t in zip(user_keys, seen[:found], strict=True) if t is not None},
                {k: t for k, t in zip(ip_keys, seen[found:], strict=True) if t is not None},
            )

    def users(self, *, since: float | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """User profiles, most recently seen first; ``since`` compares to ``last_seen``."""
        return self.users_page(since=since, limit=limit)[0]

    def _users_listed(self, since: float | None, limit: int) -> list[dict[str, Any]]:
        if self._kept is not None:
            return self._kept.users(since=since, limit=limit)
        if self._index is not None:
            hashes = self._index.recent_users(since=since, limit=limit)
            found = self._read([functools.partial(_user, h) for h in hashes])
            return [p for p in found if p is not None]
        return []

    def _ips_listed(self, since: float | None, limit: int) -> list[dict[str, Any]]:
        if self._kept is not None:
            return self._kept.ips(since=since, limit=limit)
        if self._index is not None:
            addresses = self._index.recent_ips(since=since, limit=limit)
            found = self._read([functools.partial(_ip, a) for a in addresses])
            return [p for p in found if p is not None]
        return []

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


def _last_seen_of(prefix: str) -> Callable[[str, State], float | None]:
    return functools.partial(_last_seen, prefix)


def _view_seen(view: SubjectView, _key: str) -> float:
    return view.last_seen


def _known(
    known: Mapping[str, SubjectView],
    prefix: str,
    key: str,
    of_view: Callable[[SubjectView, str], _T],
    read: Callable[[str, State], _T | None],
) -> Callable[[State], _T | None]:
    """A reader of the subject ``prefix + key``: from its view when ``known`` has it (reading
    nothing), else from the state."""
    view = known.get(prefix + key)
    if view is None:
        return functools.partial(read, key)
    result = of_view(view, key)
    return lambda _state: result
