"""The store interface: everything the processor keeps, behind one object chosen by URL.

A store owns three things, each implementable with atomic operations on a shared backend:

* **state** — the engine's windowed :class:`~usermon.processor.storage.state.base.State` (in memory,
  in the SQLite store's snapshots, or in Redis shared by replicas);
* **intake** — the durable acceptance of a batch of events *before* the receiver acknowledges it
  (an append to a journal in one transaction; a replica sharing Redis + PostgreSQL may make its
  state updates and profile/finding writes the durable step instead);
* **findings** — merged, not overwritten: :meth:`Store.record_findings` receives *deltas* (an
  event count to add, a time range to widen, evidence to union), which PostgreSQL expresses as one
  ``INSERT ... ON CONFLICT DO UPDATE`` so two replicas growing one finding lose nothing.

A store is not the state: the :class:`~usermon.processor.storage.state.base.State` is the engine's
windowed primitives (counters, distinct sets, subject aggregates); the :class:`Store` holds one, and
everything else the processor keeps. Beyond that, a store may declare optional capabilities, each a
protocol checked with ``isinstance`` (never probed by attribute): :class:`SharedStore` (replicas
share it and adopt a dead one's journal), :class:`ProfileStore` (keeps the user and IP profiles the
API serves, in its own tables), :class:`ActivityIndex` (indexes users and addresses by
``last_seen``) and :class:`DecisionStore` (keeps the protection decisions, the allowlist and their
audit log; every shipped store has it). Profiles are computed from the state by the caller
(:mod:`usermon.processor.profiles`), never by a store.

:func:`open_store` picks the backend from the URL scheme: ``memory://``, ``sqlite:///path`` (the
default), ``redis://`` and ``postgresql://`` (imported only when used; they need the ``redis`` /
``postgresql`` extras).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from usermon.processor.model import Decision, Finding
from usermon.processor.storage.errors import StoreError
from usermon.processor.storage.state.base import State

__all__ = [
    "ALLOW_KINDS",
    "ActivityIndex",
    "AllowEntry",
    "AuditEntry",
    "DecisionChanges",
    "DecisionStore",
    "Health",
    "IntakeReceipt",
    "ProfileStore",
    "SharedStore",
    "Store",
    "open_store",
]


@dataclass(frozen=True, slots=True)
class Health:
    """What a health check found: ``ok`` and, when not, which component is down and why."""

    ok: bool
    components: dict[str, str] = field(default_factory=dict)  # name -> "ok" or the problem


@dataclass(frozen=True, slots=True)
class IntakeReceipt:
    """Proof a batch is durably taken: its position in the journal (0 for stores whose intake
    is the processing itself)."""

    position: int
    count: int


@runtime_checkable
class Store(Protocol):
    url: str
    """The URL the store was opened with, with any password removed (safe to log)."""

    @property
    def state(self) -> State:
        """The engine's windowed state."""
        ...

    # -- intake ------------------------------------------------------------------------------------

    def intake(self, blob: bytes, count: int) -> IntakeReceipt:
        """Durably take one batch of ``count`` events before it is acknowledged; ``blob`` is the
        batch as the receiver encodes it (opaque to the store: the receiver decodes it again on
        replay). All or nothing.

        Once this returns, a crash loses none of them: the processor replays what was taken but
        not yet checkpointed (:meth:`pending`) when it starts again. Raises :class:`StoreError`
        when the batch could not be made durable (the receiver answers 503)."""
        ...

    def pending(self) -> Iterable[tuple[int, bytes]]:
        """Batches taken but not yet covered by :meth:`checkpoint`, oldest first, as
        ``(position, blob)``: what a restarting processor replays."""
        ...

    def checkpoint(self, position: int, engine_snapshot: bytes) -> None:
        """Record that everything up to ``position`` is processed, with the engine's snapshot
        (its state and dedupe memory) as of that point, atomically; intake at or before it may be
        discarded. Stores whose state is shared and durable on its own may ignore the snapshot."""
        ...

    def load_checkpoint(self) -> tuple[int, bytes | None]:
        """The last checkpoint: ``(position, engine snapshot or None)``; ``(0, None)`` when none."""
        ...

    # -- findings ----------------------------------------------------------------------------------

    def record_findings(self, deltas: Sequence[Finding]) -> None:
        """Merge finding *deltas* by id, atomically per finding: add ``event_count``, take the
        min ``first_seen`` and max ``last_seen``, the highest severity, the newest summary, and
        the union of evidence lists (``trace_ids``, ``ips``, ``users``; bounded, newest kept)."""
        ...

    def record_batch(self, batch: int, found: Mapping[str, Sequence[Finding]]) -> list[Finding]:
        """Record what the events of journal batch ``batch`` found, each event once: ``found``
        maps an event's dedupe key to its finding deltas. Events recorded for this batch before
        (a replay, a replica adopting the batch, another replica recording it at the same time)
        are left out; the others are merged as :meth:`record_findings` does and marked recorded,
        in one transaction. The marks last as long as the batch is in a journal (the checkpoint
        that covers it removes them). Returns the deltas recorded, one per finding."""
        ...

    def findings(
        self,
        *,
        kind: str | None = None,
        severity: str | None = None,
        since: float | None = None,
        subject: str | None = None,
        limit: int = 100,
    ) -> list[Finding]:
        """Findings, newest ``last_seen`` first. ``severity`` is a minimum; ``since`` compares to
        ``last_seen``; ``subject`` matches the subject's id or its label."""
        ...

    def finding(self, finding_id: str) -> Finding | None: ...

    # -- lifecycle ---------------------------------------------------------------------------------

    def health(self) -> Health:
        """Whether every backend the store depends on answers."""
        ...

    def close(self) -> None:
        """Flush and release connections; the store is unusable afterwards."""
        ...


# -- optional capabilities -------------------------------------------------------------------------


@runtime_checkable
class SharedStore(Protocol):
    """A store that processor replicas share: each keeps its own journal, and a replica adopts
    the journal of one whose heartbeat is older than :attr:`lease` (the service calls
    :meth:`adopt_orphans` every lease interval, and claims dedupe keys event by event)."""

    lease: float
    """Seconds without a heartbeat after which a replica counts as dead."""

    def adopt_orphans(self) -> list[tuple[int, bytes]]:
        """Take over the unprocessed batches of every replica whose lease ran out, and return
        exactly those, oldest first, as ``(position, blob)``, for this replica to process."""
        ...


@runtime_checkable
class ProfileStore(Protocol):
    """A store that keeps the user and IP profiles the API serves (PostgreSQL), rather than
    having them read from the state when asked. Profiles have the shape of
    :func:`~usermon.processor.aggregation.user_profile` and
    :func:`~usermon.processor.aggregation.ip_profile`."""

    def save_profiles(
        self, users: Sequence[Mapping[str, Any]], ips: Sequence[Mapping[str, Any]]
    ) -> None:
        """Upsert these profiles, keyed by ``user_hash`` / ``ip``; one with an older
        ``last_seen`` than the one kept never replaces it."""
        ...

    def users(self, *, since: float | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """User profiles, most recently seen first; ``since`` compares to ``last_seen``."""
        ...

    def user(self, user_hash: str) -> dict[str, Any] | None: ...

    def user_by_label(self, label: str) -> dict[str, Any] | None:
        """The profile of the most recently seen user with this label, from an index."""
        ...

    def ips(self, *, since: float | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Address profiles, most recently seen first; ``since`` compares to ``last_seen``."""
        ...

    def ip(self, address: str) -> dict[str, Any] | None: ...


@runtime_checkable
class ActivityIndex(Protocol):
    """A store that indexes users and addresses by ``last_seen`` (Redis, where the state cannot
    list its keys), so that the API can list the most recently seen."""

    def index_activity(self, users: Mapping[str, float], ips: Mapping[str, float]) -> None:
        """Record each user's and address's ``last_seen`` (which only moves forward)."""
        ...

    def recent_users(self, *, since: float | None = None, limit: int = 100) -> list[str]:
        """User hashes, most recently seen first; ``since`` compares to ``last_seen``."""
        ...

    def recent_ips(self, *, since: float | None = None, limit: int = 100) -> list[str]:
        """Addresses, most recently seen first; ``since`` compares to ``last_seen``."""
        ...


ALLOW_KINDS = ("network", "user")
"""What an allowlist entry names: a network (a CIDR or one address) or a ``user.hash``."""


@dataclass(frozen=True, slots=True)
class AllowEntry:
    """One allowlist entry: no automatic decision applies to it (docs/protection.md)."""

    kind: str  # one of ALLOW_KINDS
    value: str
    who: str
    created: float


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change to the decisions or the allowlist: ``op`` is ``add``, ``remove``, ``allow``
    or ``unallow``; ``subject`` a decision id or ``kind:value`` for the allowlist."""

    seq: int
    op: str
    subject: str
    who: str
    at: float
    detail: str


@dataclass(frozen=True, slots=True)
class DecisionChanges:
    """What changed in the decisions after a sequence number: the decisions added since (still
    present), the ids removed since, and the sequence number these changes bring a reader to."""

    sequence: int
    new: list[Decision]
    deleted: list[str]


@runtime_checkable
class DecisionStore(Protocol):
    """A store that keeps the protection decisions (durably, shared by replicas where the store
    is), the allowlist, and an audit log of every change to either. Each change takes the next
    number of a sequence that only grows; it is what the decision stream's cursor points into.
    An expired decision is not a change: readers drop it by its ``until``."""

    def decision_epoch(self) -> str:
        """An id of this store's sequence: a cursor from another epoch means nothing here."""
        ...

    def add_decisions(self, decisions: Sequence[Decision], who: str) -> list[Decision]:
        """Store ``decisions``; one whose id is taken already is left alone (two replicas making
        the same automatic decision make it once). Returns those added."""
        ...

    def remove_decisions(self, ids: Sequence[str], who: str) -> list[str]:
        """Remove these decisions from the active set; returns the ids that were present."""
        ...

    def decisions(
        self,
        *,
        now: float,
        include_inactive: bool = False,
        scope: str | None = None,
        value: str | None = None,
        finding: str | None = None,
        ids: Sequence[str] | None = None,
        limit: int = 1000,
    ) -> list[Decision]:
        """Decisions newest first: by default only the active ones (not removed, ``until`` after
        ``now``); ``ids`` keeps only those."""
        ...

    def count_decisions(self, scope: str, value: str, since: float) -> int:
        """How many decisions on ``scope``/``value`` were created at or after ``since``, removed
        and expired ones included (what escalation counts)."""
        ...

    def decision_changes(self, after: int, now: float) -> DecisionChanges | None:
        """The changes after sequence number ``after``; ``None`` when the log no longer reaches
        back there (or never reached it): the reader must take the full set."""
        ...

    def decision_sequence(self) -> int:
        """The sequence number of the last change."""
        ...

    def set_allowed(self, kind: str, value: str, who: str, *, allowed: bool = True) -> bool:
        """Add (or with ``allowed=False`` remove) an allowlist entry; whether anything changed."""
        ...

    def allowlist(self) -> list[AllowEntry]: ...

    def audit(self, limit: int = 100) -> list[AuditEntry]:
        """The newest changes first."""
        ...


_BACKENDS: dict[str, tuple[str, str, str]] = {
    # scheme: (module, factory, extra that provides its driver)
    "memory": ("usermon.processor.storage.memory", "MemoryStore", "processor"),
    "sqlite": ("usermon.processor.storage.sqlite", "SQLiteStore", "processor"),
    "redis": ("usermon.processor.storage.redis", "RedisStore", "redis"),
    "rediss": ("usermon.processor.storage.redis", "RedisStore", "redis"),
    "redis+sentinel": ("usermon.processor.storage.redis", "RedisStore", "redis"),
    "postgresql": ("usermon.processor.storage.postgresql", "PostgreSQLStore", "postgresql"),
    "postgres": ("usermon.processor.storage.postgresql", "PostgreSQLStore", "postgresql"),
}


def redact(url: str) -> str:
    """``url`` without its password, for logs and /healthz."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def open_store(url: str, **options: Any) -> Store:
    """Open the store ``url`` names: ``memory://``, ``sqlite:///path/to/file.db``,
    ``redis://...``, ``postgresql://...``. ``options`` go to the backend (e.g. ``max_keys``,
    ``state_url`` for PostgreSQL). Raises :class:`StoreError` with a clear message for an unknown
    scheme, a missing driver or a backend that is not written yet."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in _BACKENDS:
        known = ", ".join(
            f"{s}://" for s in ("memory", "sqlite", "redis", "redis+sentinel", "postgresql")
        )
        raise StoreError(f"unknown store URL scheme {scheme!r} in {redact(url)!r}: use {known}")
    module_name, factory_name, extra = _BACKENDS[scheme]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise StoreError(
                f"the {scheme}:// store is not available in this version of usermon "
                f"({module_name} is missing)"
            ) from exc
        raise StoreError(
            f"the {scheme}:// store needs {exc.name!r}: pip install 'usermon[{extra}]'"
        ) from exc
    factory = getattr(module, factory_name)
    store: Store = factory(url, **options)
    return store
