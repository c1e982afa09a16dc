"""The engine's state primitives: windowed counters, windowed distinct sets, small records,
windowed lists, and subject aggregates.

Aggregation and detectors keep all their state through this one small interface, keyed by
strings they choose (``"u:<hash>"``, ``"det:ip:<addr>:fail"``, ...). A *subject aggregate*
(:meth:`State.fold_subject`) is everything aggregation keeps of one user or one address, counters
and distinct sets included, updated by one step per event: the hot path's one State call per
subject. Time is always the
*event's* time in seconds; windows slide on it. Each primitive is one atomic step that also
returns the value the caller needs next, so that a shared backend (Redis, by a Lua script) can
serve several processor replicas with one round trip per step and no lost update.

Implementations: the in-memory one (also what the SQLite store snapshots) and Redis. Every
implementation is bounded: a key untouched for longer than its window expires, and the total
number of keys is capped (see each implementation for what is evicted first).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar, runtime_checkable

from usermon.processor.storage.state.steps import Step

_T = TypeVar("_T")


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

    # -- batched counting maps ---------------------------------------------------------------------

    def incr_fields(self, key: str, fields: Mapping[str, int], t: float, ttl: float) -> list[int]:
        """Add ``n`` to each ``field`` of the counting map ``key`` for every ``field: n`` of
        ``fields``, as one atomic step (one round trip on a shared backend); return the fields'
        new values, in ``fields``' order. The same as one :meth:`incr_field` per field, with no
        other writer in between: ``n`` may be 0 (a read that leaves the field at its value,
        creating it at 0) or negative (giving back). The map is kept ``ttl`` seconds after its
        last change, as with :meth:`incr_field`; an empty ``fields`` changes nothing.

        For the engine's dedupe (a batch's events claim their keys in one step per time bucket)
        and for risk scoring (a login's profile and popularity counts, one step per map)."""
        ...

    def get(self, key: str) -> dict[str, Any] | None:
        """The record stored at ``key``, or None."""
        ...

    def put(self, key: str, value: Mapping[str, Any], t: float, ttl: float) -> None:
        """Store a small JSON-serializable record, kept ``ttl`` seconds after event time ``t``."""
        ...

    def open_episode(
        self, key: str, opening: Mapping[str, Any], t: float, gap: float, ttl: float
    ) -> tuple[dict[str, Any], bool]:
        """The episode record ``key`` grown by a signal at event time ``t``, as one atomic step:
        when there is none, or its ``last`` is more than ``gap`` before ``t``, it becomes
        ``opening`` with ``last = t`` (opened); otherwise its ``last`` moves up to ``t`` and the
        rest stays. Kept ``ttl`` seconds after its ``last``. Returns the record and whether this
        call opened it: of several writers opening one episode at once, exactly one opens it
        and the others get its record, so they agree on whatever it names (a finding's id)."""
        ...

    # -- kept maps: small records by field, read and dropped whole --------------------------------

    def keep(self, key: str, field: str, value: Mapping[str, Any], t: float, ttl: float) -> None:
        """Set ``field`` of the kept map ``key`` to a small JSON-serializable record, as one
        atomic step; the map is kept ``ttl`` seconds after ``t`` (its last change) unless
        :meth:`drop` deletes it first. For what a batch's events found, kept with their claims
        until the batch's findings are recorded (docs/processor.md, *Findings*)."""
        ...

    def kept(self, key: str) -> dict[str, dict[str, Any]]:
        """Every field of the kept map ``key``; empty for an unknown key."""
        ...

    def drop(self, key: str) -> None:
        """Delete the kept map (or record) ``key``; nothing when there is none."""
        ...

    # -- windowed lists: a few small entries, appended and removed without a read first --------

    def append_entry(
        self, key: str, entry: Sequence[Any], t: float, window: float, cap: int
    ) -> None:
        """Append ``entry`` (a small JSON-serializable list) at event time ``t`` to the windowed
        list ``key``, as one atomic step: the entries appended at a time more than ``window``
        before ``t`` are dropped, ``entry`` goes last, and only the last ``cap`` appended are
        kept (``cap`` at most :data:`ENTRIES_CAP`); the list is kept ``window`` seconds after
        ``t``. Replicas appending at once lose none of their entries, which a read of the list
        followed by a write of it would."""
        ...

    def entries(self, key: str) -> list[tuple[float, list[Any]]]:
        """Every entry of the windowed list ``key`` with the time it was appended at, first
        appended first; empty for an unknown key. The caller filters by time: an entry past
        the window is dropped only by the next append."""
        ...

    def remove_entries(self, key: str, entries: Sequence[tuple[float, Sequence[Any]]]) -> None:
        """Remove from the windowed list ``key`` every entry equal to one of ``entries`` (as
        :meth:`entries` read them: time and entry), as one atomic step; entries appended since
        they were read stay."""
        ...

    # -- subject aggregates: everything known of one user or one address, one step per event --

    def fold_subject(
        self,
        key: str,
        t: float,
        windows: tuple[float, ...],
        ttl: float,
        outcome: int,
        members: tuple[str | None, ...] = (),
        *,
        label: str | None = None,
        primary_key: str | None = None,
        service: str | None = None,
        success: tuple[str | None, str | None] | None = None,
    ) -> None:
        """Fold one event at time ``t`` into the subject aggregate ``key``, in one atomic step.

        The aggregate keeps, in one place: the first and last event time; counter ``outcome``
        (an index into :data:`SUBJECT_OUTCOMES`) grown by one, read over ``windows`` with the
        same semantics as :meth:`add_windows`; ``members[i]`` (unless None) recorded in the
        subject's distinct set ``i`` (at most :data:`SUBJECT_MAX_SETS`) over the longest window,
        with the same semantics and member cap as :meth:`add_distinct`; ``label`` and
        ``primary_key`` replaced when given; ``service`` added to its first
        :data:`SUBJECT_MAX_SERVICES` services; and ``success`` (address, user agent) kept as the
        last success unless one newer than ``t`` is already there. The aggregate is kept
        ``ttl`` seconds after its newest event (``ttl`` at least the longest window); once it
        has been idle for more than :data:`SUBJECT_IDLE_WINDOWS` longest windows, an
        implementation may drop its counters and distinct sets and keep the record alone."""
        ...

    def read_subject(
        self,
        key: str,
        t: float | None,
        windows: tuple[float, ...] = (),
        limits: tuple[int, ...] = (),
    ) -> SubjectView | None:
        """The subject aggregate ``key`` as of time ``t`` (None: as of its own newest event),
        or None when there is none: its counters' totals over each of ``windows`` (as
        :meth:`count` reads them), and for each of its first ``len(limits)`` distinct sets, up
        to ``limits[i]`` members most recent first and the distinct count over each window (as
        :meth:`distinct_members` and :meth:`distinct_count` read them). With no windows and no
        limits, only the record part is read (cheap)."""
        ...

    # -- several steps at once ---------------------------------------------------------------

    def apply(self, steps: Sequence[Step]) -> list[Any]:
        """Run ``steps`` (:mod:`~usermon.processor.storage.state.steps`) in order as one atomic
        step: no other writer in between, and on a shared backend one server-side script and
        one round trip. Returns each step's result, as its primitive returns it; a
        :class:`~usermon.processor.storage.state.steps.Claim` that does not answer
        :data:`~usermon.processor.storage.state.steps.CLAIMED` ends the list there (the steps
        after it did not run). An in-process state runs them as direct calls
        (:func:`~usermon.processor.storage.state.steps.run_steps`)."""
        ...


# -- optional capabilities -------------------------------------------------------------------------


@runtime_checkable
class PipelinedState(Protocol):
    """A state that sends many :meth:`State.apply` at once (Redis: a batch's event scripts in
    one pipelined round trip)."""

    def apply_many(
        self,
        plans: Sequence[Sequence[Step]],
        records: Sequence[tuple[str, Mapping[str, Any], float, float]] = (),
    ) -> list[list[Any]]:
        """:meth:`State.put` of each ``(key, value, t, ttl)`` of ``records``, then
        :meth:`State.apply` of each plan, in order, each plan atomic on its own, all sent
        together (one round trip); returns the plans' results in order. On a failure, any of
        them may have run, each plan whole or not at all."""
        ...


@runtime_checkable
class BatchReads(Protocol):
    """A state that answers many reads in a few round trips (Redis): what reads every profile a
    batch touched should go through."""

    def read_batch(self, readers: Sequence[Callable[[State], _T]]) -> list[_T]:
        """Run read-only, deterministic functions of the state, their reads grouped together;
        return their results in order."""
        ...


@runtime_checkable
class CappedDedupe(Protocol):
    """A state whose dedupe maps have a cap (Redis): past it, events are claimed without being
    recorded, and counted here (docs/processor.md, *Ingest*)."""

    unrecorded_claims: int


@runtime_checkable
class InProcessState(State, Protocol):
    """A state in this process (memory): it can list its keys, and its clock is the newest event
    time it has seen, so profiles are read as of it."""

    watermark: float

    def keys(self, prefix: str = "") -> list[str]:
        """Live keys starting with ``prefix`` (O(keys))."""
        ...

    def usage(self) -> dict[str, int]:
        """How full the state is against its caps (keys held, the cap, what was evicted)."""
        ...


# -- windowed lists --------------------------------------------------------------------------------

ENTRIES_CAP: Final = 1024
"""The most entries :meth:`State.append_entry` may be asked to keep in one windowed list."""


def entry_json(entry: Sequence[Any]) -> str:
    """A windowed list's entry as every backend stores and compares it: compact JSON (equal
    entries, as :meth:`State.entries` reads them back, are spelled alike)."""
    return json.dumps(list(entry), separators=(",", ":"))


# -- subject aggregates ----------------------------------------------------------------------------

SUBJECT_OUTCOMES: Final = ("ok", "fail", "signup")
"""A subject aggregate's counters, in order: :meth:`State.fold_subject`'s ``outcome`` is an index
into this tuple, and :attr:`SubjectView.counts` follows it."""

OK: Final = 0
FAIL: Final = 1
SIGNUP: Final = 2

SUBJECT_MAX_SETS: Final = 4
"""Distinct sets one subject aggregate may keep (a user keeps three, an address one)."""

SUBJECT_MAX_SERVICES: Final = 16
"""Services a subject aggregate remembers (the first ones seen); later ones are not recorded."""

SUBJECT_IDLE_WINDOWS: Final = 2
"""A subject whose newest event is more than this many of its longest windows behind the
state's newest event time is *idle*: its counters and distinct sets may be dropped, its record
(first and last seen, label, primary key, services, last success) kept until its ttl.

Two windows, not one: as of the newest event time, a read over the subject's windows stops
seeing them one window and one bucket after its last event (a counter's rings reach one bucket
past their window); the second window leaves room for reads as of a time up to 11/12 of a
window earlier (22 h with 24 h windows: a late event's fold, a profile read as of a subject's
own newest event), so that dropping them changes no answer."""


@dataclass(frozen=True, slots=True)
class SubjectView:
    """What :meth:`State.read_subject` returns: one subject aggregate as of a time ``t``."""

    first_seen: float
    last_seen: float
    label: str | None
    primary_key: str | None
    services: tuple[str, ...]
    last_success: tuple[float, str | None, str | None] | None
    """Time, address and user agent of the newest success folded in, or None."""
    counts: tuple[tuple[int, ...], ...]
    """Per outcome (:data:`SUBJECT_OUTCOMES`), its total over each window read, in order."""
    members: tuple[tuple[str, ...], ...]
    """Per distinct set read, its members over the longest window, most recent first."""
    distinct: tuple[tuple[int, ...], ...]
    """Per distinct set read, how many distinct members it saw over each window read."""
