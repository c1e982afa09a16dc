"""The ``postgresql://`` store: the intake journal, findings and profiles in PostgreSQL, shared by
processor replicas, with the engine's state in Redis (``state_url``) or, for one replica, in its
memory saved with its checkpoints. It owns the connection pool, the versioned migrations
(``migrations/postgresql/*.sql``, applied once under an advisory lock), the journal that replicas
adopt from a dead one, findings merged by id in one upsert each, profile upserts, and decisions,
the allowlist and their audit log, changed under one advisory lock so the decision stream's cursor
never skips a change another replica was committing. URL options
and the topology are in docs/deploy.md; how the in-memory state is checkpointed, in
docs/processor.md.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from usermon.processor.findings import MAX_EVIDENCE, merge_events
from usermon.processor.model import SEVERITY_RANK, Decision, Finding, Subject
from usermon.processor.storage.base import (
    AllowEntry,
    AuditEntry,
    DecisionChanges,
    Health,
    IntakeReceipt,
    redact,
)
from usermon.processor.storage.checkpoints import ROW_PER_KEY, SnapshotSchedule
from usermon.processor.storage.decisions import DECISION_RETENTION, MAX_LOG, PurgeSchedule
from usermon.processor.storage.errors import StoreError
from usermon.processor.storage.repair import (
    scrub_marshal,
    scrub_text,
    storable_json,
    storable_text,
)
from usermon.processor.storage.state.base import State
from usermon.processor.storage.state.memory import DEFAULT_MAX_KEYS, MemoryState

if TYPE_CHECKING:
    from usermon.processor.storage.state.redis import RedisState

__all__ = ["PostgreSQLStore", "migrations"]

log = logging.getLogger(__name__)

DEFAULT_SCHEMA = "public"
DEFAULT_LEASE = 30.0
"""Seconds without a heartbeat after which a replica counts as dead and its intake is adopted."""

DEFAULT_POOL_MAX = 8
REDIS_CHECK_INTERVAL = 1.0
"""Intake checks that Redis answers at most this often (seconds), so that a Redis outage turns
ingest into 503 within about a second instead of piling up a backlog nobody can process."""

_OUR_OPTIONS = {"schema", "replica", "lease", "pool_max", "state_url", "state_prefix"}
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

_MERGE_FINDING = """
INSERT INTO usermon_findings AS f (id, kind, severity, subject_type, subject_id, subject_label,
                                   first_seen, last_seen, event_count, summary, evidence)
VALUES (%(id)s, %(kind)s, %(severity)s, %(subject_type)s, %(subject_id)s, %(subject_label)s,
        %(first_seen)s, %(last_seen)s, %(event_count)s, %(summary)s, %(evidence)s::jsonb)
ON CONFLICT (id) DO UPDATE SET
    severity = CASE
        WHEN usermon_severity_rank(EXCLUDED.severity) > usermon_severity_rank(f.severity)
        THEN EXCLUDED.severity ELSE f.severity END,
    subject_type = CASE WHEN EXCLUDED.last_seen >= f.last_seen
                        THEN EXCLUDED.subject_type ELSE f.subject_type END,
    subject_id = CASE WHEN EXCLUDED.last_seen >= f.last_seen
                      THEN EXCLUDED.subject_id ELSE f.subject_id END,
    subject_label = CASE WHEN EXCLUDED.last_seen >= f.last_seen
                         THEN EXCLUDED.subject_label ELSE f.subject_label END,
    summary = CASE WHEN EXCLUDED.last_seen >= f.last_seen THEN EXCLUDED.summary ELSE f.summary END,
    first_seen = least(f.first_seen, EXCLUDED.first_seen),
    last_seen = greatest(f.last_seen, EXCLUDED.last_seen),
    event_count = f.event_count + EXCLUDED.event_count,
    evidence = f.evidence || EXCLUDED.evidence || jsonb_build_object(
        'trace_ids', usermon_union(EXCLUDED.evidence -> 'trace_ids', f.evidence -> 'trace_ids',
                                   %(max_evidence)s),
        'ips', usermon_union(EXCLUDED.evidence -> 'ips', f.evidence -> 'ips', %(max_evidence)s),
        'users', usermon_union(EXCLUDED.evidence -> 'users', f.evidence -> 'users',
                               %(max_evidence)s))
"""

# A batch's profiles in one statement, whatever their number: each table's rows as three arrays.
_UPSERT_PROFILES = """
WITH users AS (
    INSERT INTO usermon_users AS p (user_hash, last_seen, profile)
    SELECT k, t, j::jsonb FROM unnest(%b::text[], %b::float8[], %b::text[]) AS r (k, t, j)
    ON CONFLICT (user_hash) DO UPDATE SET last_seen = EXCLUDED.last_seen,
                                          profile = EXCLUDED.profile
    WHERE EXCLUDED.last_seen >= p.last_seen
), ips AS (
    INSERT INTO usermon_ips AS p (ip, last_seen, profile)
    SELECT k, t, j::jsonb FROM unnest(%b::text[], %b::float8[], %b::text[]) AS r (k, t, j)
    ON CONFLICT (ip) DO UPDATE SET last_seen = EXCLUDED.last_seen, profile = EXCLUDED.profile
    WHERE EXCLUDED.last_seen >= p.last_seen
)
SELECT 1
"""

_DECISION_COLUMNS = "id, action, scope, value, until, reason, origin, created, finding"
_DECISION_LOCK = "SELECT pg_advisory_xact_lock(hashtext('usermon_decisions'))"


def _decision_from_row(row: Sequence[Any]) -> Decision:
    fid, action, scope, value, until, reason, origin, created, finding = row
    return Decision(fid, action, scope, value, until, reason, origin, created, finding)


_FINDING_COLUMNS = (
    "id, kind, severity, subject_type, subject_id, subject_label, first_seen, last_seen, "
    "event_count, summary, evidence"
)


def migrations() -> list[tuple[int, str, str]]:
    """The shipped migrations, oldest first, as ``(version, name, sql)``: files named
    ``NNNN_what.sql`` in ``migrations/postgresql/``."""
    folder = resources.files("usermon.processor.storage").joinpath("migrations/postgresql")
    out = []
    for entry in folder.iterdir():
        match = re.match(r"^(\d{4})_(\w+)\.sql$", entry.name)
        if match:
            out.append((int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    return sorted(out)


def _finding_from_row(row: Sequence[Any]) -> Finding:
    (fid, kind, severity, stype, sid, label, first, last, count, summary, evidence) = row
    return Finding(
        id=fid,
        kind=kind,
        severity=severity,
        subject=Subject(type=stype, id=sid, label=label),
        first_seen=first,
        last_seen=last,
        event_count=int(count),
        summary=summary,
        evidence=evidence,
    )


class PostgreSQLStore:
    """The ``postgresql://`` store (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        state_url: str | None = None,
        max_keys: int = DEFAULT_MAX_KEYS,
        replica: str | None = None,
        schema: str | None = None,
        lease: float | None = None,
        pool_max: int | None = None,
        state_prefix: str | None = None,
        **options: Any,
    ) -> None:
        if options:
            raise StoreError(f"unknown postgresql store options: {', '.join(sorted(options))}")
        self.url = redact(url)
        parts = urlsplit(url)
        ours = dict(parse_qsl(parts.query))
        libpq_query = [(k, v) for k, v in parse_qsl(parts.query) if k not in _OUR_OPTIONS]
        conninfo = parts._replace(scheme="postgresql", query=urlencode(libpq_query)).geturl()
        self.schema = schema or ours.get("schema", DEFAULT_SCHEMA)
        if not _SCHEMA_NAME.match(self.schema):
            raise StoreError(f"schema must be a plain SQL identifier, not {self.schema!r}")
        self.replica = (
            replica
            or ours.get("replica")
            or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        )
        try:
            self.lease = float(lease if lease is not None else ours.get("lease", DEFAULT_LEASE))
            size = int(pool_max if pool_max is not None else ours.get("pool_max", DEFAULT_POOL_MAX))
        except ValueError:
            raise StoreError("lease and pool_max must be numbers") from None
        if self.lease <= 0 or size < 1:
            raise StoreError("lease must be positive and pool_max at least 1")
        state_url = state_url or ours.get("state_url")
        state_prefix = state_prefix or ours.get("state_prefix")

        self._pool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=size,
            kwargs={"autocommit": False, "connect_timeout": 3},
            configure=self._configure,
            check=ConnectionPool.check_connection,
            timeout=2.0,  # how long intake waits for a connection before answering 503
            reconnect_timeout=0,  # keep trying for ever: the processor recovers by itself
            name=f"usermon-{self.replica}",
            open=False,
        )
        self._redis: RedisState | None = None
        self._state: State
        self._schedule = SnapshotSchedule(ROW_PER_KEY)  # this replica's, without Redis
        try:
            # One direct connection first: a wrong address or password fails now, clearly,
            # instead of after the pool's wait; it also applies the migrations.
            with psycopg.connect(conninfo, connect_timeout=3) as conn:
                self._configure(conn)
                self._migrate(conn)
            self._pool.open(wait=True, timeout=10.0)
            self._register()
            if state_url:
                from usermon.processor.storage.state.redis import RedisState

                # Not UTF-8 in Redis reads as U+FFFD; a lone surrogate is written as "?".
                try:
                    self._redis = RedisState.from_url(
                        state_url, prefix=state_prefix or "usermon:", encoding_errors="replace"
                    )
                except ValueError as exc:  # a malformed URL
                    raise StoreError(f"cannot use the state {redact(state_url)}: {exc}") from None
                self._state = self._redis
                self._redis.ping()
            else:
                log.warning(
                    "the postgresql store has no shared state (USERMON_STATE_URL): windows are "
                    "kept in this replica's memory, so run exactly one replica"
                )
                # Now, not in load_checkpoint: the engine is built on this very state object.
                self._state = self._load_state(max_keys)
        except (psycopg.Error, OSError, StoreError) as exc:
            self._pool.close()
            raise StoreError(f"cannot open the store {self.url}: {exc}") from exc
        except Exception as exc:
            self._pool.close()
            if type(exc).__module__.startswith("redis"):
                where = redact(state_url or "")
                raise StoreError(f"cannot reach the state store {where}: {exc}") from exc
            raise
        self._redis_checked = time.monotonic()
        self._redis_ok = True
        self._purges = PurgeSchedule()  # of decisions past their retention
        self._closing = threading.Event()
        self._heartbeat = threading.Thread(
            target=self._beat, name=f"usermon-heartbeat-{self.replica}", daemon=True
        )
        self._heartbeat.start()

    # -- connections -------------------------------------------------------------------------------

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        # Every connection works in the store's schema; SET is transactional, so commit it.
        conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(self.schema)))
        conn.commit()

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection[Any]]:
        """One transaction on a pooled connection; any database failure becomes StoreError."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except StoreError:
            raise
        except (psycopg.Error, OSError) as exc:
            raise StoreError(f"postgresql unavailable: {exc}") from exc
        except Exception as exc:
            if type(exc).__name__ == "PoolTimeout":
                raise StoreError(f"postgresql unavailable: {exc}") from exc
            raise

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            # One replica at a time: the others wait here, then find the work done.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('usermon_migrations'))")
            conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS usermon_schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM usermon_schema_migrations")}
            for version, name, script in migrations():
                if version in done:
                    continue
                log.info("applying usermon migration %04d_%s", version, name)
                conn.execute(script.encode("utf-8"))
                conn.execute(
                    "INSERT INTO usermon_schema_migrations (version, name) VALUES (%s, %s)",
                    (version, name),
                )

    def schema_version(self) -> int:
        """The newest migration applied to the database."""
        with self._tx() as conn:
            row = conn.execute("SELECT max(version) FROM usermon_schema_migrations").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    # An upsert, never a bare UPDATE: after an outage longer than the lease another replica may
    # have taken this one for dead and deleted its row, and a replica without a row would never
    # be adopted from when it really dies.
    _HEARTBEAT = (
        "INSERT INTO usermon_replicas (replica) VALUES (%s)"
        " ON CONFLICT (replica) DO UPDATE SET heartbeat = now()"
    )

    def _register(self) -> None:
        with self._pool.connection() as conn:
            conn.execute(self._HEARTBEAT, (self.replica,))

    def _beat(self) -> None:
        while not self._closing.wait(self.lease / 3):
            try:
                with self._tx() as conn:
                    conn.execute(self._HEARTBEAT, (self.replica,))
            except StoreError as exc:
                log.warning("usermon heartbeat failed (will retry): %s", exc)

    @property
    def state(self) -> State:
        return self._state

    # -- intake ------------------------------------------------------------------------------------

    def _check_redis(self) -> None:
        if self._redis is None:
            return
        now = time.monotonic()
        if self._redis_ok and now - self._redis_checked < REDIS_CHECK_INTERVAL:
            return
        try:
            self._redis.ping()
        except Exception as exc:
            self._redis_ok = False
            raise StoreError(f"redis unavailable: {exc}") from exc
        self._redis_ok = True
        self._redis_checked = now

    def intake(self, blob: bytes, count: int) -> IntakeReceipt:
        # With the shared state down, nothing taken now could be processed: refuse (503) and let
        # the senders retry rather than pile up a backlog.
        self._check_redis()
        with self._tx() as conn:
            row = conn.execute(
                "INSERT INTO usermon_intake (replica, blob, count) VALUES (%s, %s, %s)"
                " RETURNING position",
                (self.replica, blob, count),
            ).fetchone()
        assert row is not None
        return IntakeReceipt(int(row[0]), count)

    def adopt_orphans(self) -> list[tuple[int, bytes]]:
        """Take over the unprocessed batches of every replica whose heartbeat is older than the
        lease, and return exactly those, oldest first, for this replica to process (a running
        processor calls it every ``lease`` seconds; :meth:`pending` calls it at startup)."""
        with self._tx() as conn:
            rows = conn.execute(
                "UPDATE usermon_intake SET replica = %(me)s WHERE replica IN ("
                " SELECT replica FROM usermon_replicas"
                " WHERE replica <> %(me)s"
                " AND heartbeat < now() - make_interval(secs => %(lease)s))"
                " RETURNING position, blob",
                {"me": self.replica, "lease": self.lease},
            ).fetchall()
            dead = [
                name
                for (name,) in conn.execute(
                    "DELETE FROM usermon_replicas WHERE replica <> %(me)s"
                    " AND heartbeat < now() - make_interval(secs => %(lease)s)"
                    " RETURNING replica",
                    {"me": self.replica, "lease": self.lease},
                )
            ]
            if dead:
                # Their in-memory state (a store without Redis) goes with them: the batches
                # adopted here are replayed into this replica's own state, and nobody reads
                # another replica's.
                conn.execute("DELETE FROM usermon_state_rows WHERE replica = ANY(%s)", (dead,))
                conn.execute("DELETE FROM usermon_state_base WHERE replica = ANY(%s)", (dead,))
        if rows:
            log.warning("adopted %d unprocessed batches of dead replicas", len(rows))
        return sorted((int(position), bytes(blob)) for position, blob in rows)

    def pending(self) -> Iterable[tuple[int, bytes]]:
        """This replica's unprocessed batches, after adopting those of dead replicas (whose
        heartbeat is older than the lease). Call it at startup, before taking new batches."""
        self.adopt_orphans()
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT position, blob FROM usermon_intake WHERE replica = %s ORDER BY position",
                (self.replica,),
            ).fetchall()
        return [(int(position), bytes(blob)) for position, blob in rows]

    # -- checkpoints -------------------------------------------------------------------------------

    def _load_state(self, max_keys: int) -> MemoryState:
        """This replica's in-memory state as its last checkpoint saved it (empty if none did):
        the base and the rows on top in order, or a whole state pickled in ``snapshot`` by a
        version before the rows (moved to the base at the next checkpoint)."""
        state = MemoryState(max_keys=max_keys)
        dropped: list[str] = []
        repaired = 0

        def repair(blob: bytes) -> bytes:
            nonlocal repaired
            clean, changed = scrub_marshal(bytes(blob))
            repaired += changed
            return clean

        with self._tx() as conn, conn.cursor(binary=True) as cur:
            row = cur.execute(
                "SELECT snapshot, state_header FROM usermon_replicas WHERE replica = %s",
                (self.replica,),
            ).fetchone()
            snapshot, header = row if row is not None else (None, None)
            if header is not None:
                base = cur.execute(
                    "SELECT data FROM usermon_state_base WHERE replica = %s", (self.replica,)
                ).fetchone()
                # Never None: a checkpoint writes a header only with a base in place, and
                # adoption deletes both.
                if base is not None:
                    state = MemoryState.load(repair(base[0]), max_keys)
                    cur.execute(
                        "SELECT key, row FROM usermon_state_rows WHERE replica = %s ORDER BY seq",
                        (self.replica,),
                    )
                    self._schedule.loaded(cur.rowcount)
                    rows = ((k, None if r is None else repair(r)) for k, r in cur)
                    dropped = state.apply_rows(header, rows)
            elif snapshot is not None:
                legacy = _legacy_snapshot(snapshot)
                if legacy is not None:
                    state = MemoryState.load(repair(legacy[1]), max_keys)
        if repaired:
            # Text that no encoder takes, saved by a version that let it in: replaced by
            # U+FFFD, and saved whole at the next checkpoint.
            log.warning("replaced lone surrogates in %d stored state blobs", repaired)
            self._schedule.base_missing = True
        state.track_changes(dropped=dropped)
        return state

    def checkpoint(self, position: int, engine_snapshot: bytes) -> None:
        memory = self._state if isinstance(self._state, MemoryState) else None
        header = base = None
        rows: list[tuple[str, bytes | None]] = []
        if memory is not None:
            # Without a shared state, the state itself must survive a restart: the rows of the
            # keys changed since the last checkpoint, on top of the last whole snapshot, or the
            # whole state when they would be too many (checkpoints.py). Serialized before the
            # transaction.
            header = memory.header()
            if self._schedule.whole_due(memory.pending_changes, len(memory)):
                base = memory.dump()
            else:
                rows = memory.changes()
        with self._tx() as conn:
            # With the batches, the marks that their findings were recorded.
            conn.execute(
                "WITH done AS (DELETE FROM usermon_intake WHERE replica = %s AND position <= %s"
                " RETURNING position) DELETE FROM usermon_recorded_batches"
                " WHERE position IN (SELECT position FROM done)",
                (self.replica, position),
            )
            # This row before the state, in the order adopt_orphans takes them (journal, row,
            # state): a replica adopting this one's batches deletes the row and then the state,
            # so whichever transaction locks the row first completes before the other touches
            # the state (and the adopter spares a row whose heartbeat this upsert renewed).
            conn.execute(
                "INSERT INTO usermon_replicas (replica, position, snapshot, state_header)"
                " VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (replica) DO UPDATE SET position = EXCLUDED.position,"
                " snapshot = EXCLUDED.snapshot, state_header = EXCLUDED.state_header,"
                " heartbeat = now()",
                (self.replica, position, engine_snapshot, header),
            )
            if memory is not None:
                if base is None and not self._has_base(conn):
                    # Deleted by a replica that took this one for dead (an outage longer than
                    # the lease): rows alone would not rebuild the state.
                    base, rows = memory.dump(), []
                self._save_state(conn, base, rows)
        if memory is not None:
            memory.changes_saved()
            self._schedule.saved(whole=base is not None, rows=len(rows))

    def _has_base(self, conn: psycopg.Connection[Any]) -> bool:
        found = conn.execute(
            "SELECT 1 FROM usermon_state_base WHERE replica = %s", (self.replica,)
        ).fetchone()
        return found is not None

    def _save_state(
        self,
        conn: psycopg.Connection[Any],
        base: bytes | None,
        rows: Sequence[tuple[str, bytes | None]],
    ) -> None:
        if base is not None:
            conn.execute(
                "INSERT INTO usermon_state_base (replica, data) VALUES (%s, %s)"
                " ON CONFLICT (replica) DO UPDATE SET data = EXCLUDED.data",
                (self.replica, base),
            )
            conn.execute("DELETE FROM usermon_state_rows WHERE replica = %s", (self.replica,))
            return
        if not rows:
            return
        # COPY, binary: the rows in one stream, the blobs as they are (no statement per row).
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY usermon_state_rows (replica, key, row) FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(["text", "text", "bytea"])
            replica = self.replica
            for key, row in rows:
                copy.write_row((replica, key, row))

    def load_checkpoint(self) -> tuple[int, bytes | None]:
        # The state itself was loaded when the store opened (see _load_state).
        with self._tx() as conn:
            row = conn.execute(
                "SELECT position, snapshot, state_header FROM usermon_replicas WHERE replica = %s",
                (self.replica,),
            ).fetchone()
        if row is None or row[1] is None:
            return (int(row[0]) if row else 0), None
        snapshot = bytes(row[1])
        if row[2] is None:
            legacy = _legacy_snapshot(snapshot)
            if legacy is not None:
                return int(row[0]), legacy[0]
        return int(row[0]), snapshot

    # -- findings ----------------------------------------------------------------------------------

    @staticmethod
    def _finding_rows(deltas: Sequence[Finding]) -> list[dict[str, Any]]:
        # Sorted by id, so that two replicas' transactions lock rows in the same order. Text
        # PostgreSQL would refuse (a lone surrogate, NUL) is replaced: refused, it would fail
        # every batch that touches the finding. The evidence goes as JSON text, serialized once.
        return [
            {
                "id": storable_text(d.id),
                "kind": d.kind,
                "severity": d.severity,
                "subject_type": d.subject.type,
                "subject_id": storable_text(d.subject.id),
                "subject_label": d.subject.label and storable_text(d.subject.label),
                "first_seen": d.first_seen,
                "last_seen": d.last_seen,
                "event_count": d.event_count,
                "summary": storable_text(d.summary),
                "evidence": storable_json(d.evidence),
                "max_evidence": MAX_EVIDENCE,
            }
            for d in sorted(deltas, key=lambda d: d.id)
        ]

    def record_findings(self, deltas: Sequence[Finding]) -> None:
        if not deltas:
            return
        rows = self._finding_rows(deltas)
        with self._tx() as conn, conn.cursor() as cur:
            cur.executemany(_MERGE_FINDING, rows)

    def record_batch(self, batch: int, found: Mapping[str, Sequence[Finding]]) -> list[Finding]:
        if not found:
            return []
        with self._tx() as conn, conn.cursor() as cur:
            # The batch's row first, locked: another replica recording the batch waits here
            # and then sees which events this one recorded.
            cur.execute(
                "INSERT INTO usermon_recorded_batches (position) VALUES (%s)"
                " ON CONFLICT DO NOTHING",
                (batch,),
            )
            row = cur.execute(
                "SELECT events FROM usermon_recorded_batches WHERE position = %s FOR UPDATE",
                (batch,),
            ).fetchone()
            done = set(row[0]) if row else set()
            new = [key for key in found if key not in done]
            if not new:
                return []
            deltas = merge_events(found, done)
            if deltas:
                cur.executemany(_MERGE_FINDING, self._finding_rows(deltas))
            cur.execute(
                "UPDATE usermon_recorded_batches SET events = events || %s::text[]"
                " WHERE position = %s",
                (new, batch),
            )
        return deltas

    def findings(
        self,
        *,
        kind: str | None = None,
        severity: str | None = None,
        since: float | None = None,
        subject: str | None = None,
        limit: int = 100,
    ) -> list[Finding]:
        where = []
        params: list[Any] = []
        if kind is not None:
            where.append("kind = %s")
            params.append(kind)
        if severity is not None:
            if severity not in SEVERITY_RANK:
                raise StoreError(f"unknown severity {severity!r}")
            where.append("usermon_severity_rank(severity) >= usermon_severity_rank(%s)")
            params.append(severity)
        if since is not None:
            where.append("last_seen >= %s")
            params.append(since)
        if subject is not None:
            where.append("(subject_id = %s OR subject_label = %s)")
            params.extend([subject, subject])
        query = f"SELECT {_FINDING_COLUMNS} FROM usermon_findings"  # noqa: S608 - constants
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY last_seen DESC, id LIMIT %s"
        params.append(limit)
        with self._tx() as conn:
            rows = conn.execute(query.encode(), params).fetchall()
        return [_finding_from_row(row) for row in rows]

    def finding(self, finding_id: str) -> Finding | None:
        with self._tx() as conn:
            row = conn.execute(
                f"SELECT {_FINDING_COLUMNS} FROM usermon_findings WHERE id = %s".encode(),  # noqa: S608
                (finding_id,),
            ).fetchone()
        return _finding_from_row(row) if row else None

    # -- decisions (DecisionStore) -----------------------------------------------------------------

    def decision_epoch(self) -> str:
        with self._tx() as conn:
            row = conn.execute("SELECT epoch FROM usermon_decision_epoch WHERE id = 1").fetchone()
        return str(row[0]) if row else ""

    def _log(
        self, conn: psycopg.Connection[Any], op: str, subject: str, who: str, at: float, detail: str
    ) -> None:
        conn.execute(
            "INSERT INTO usermon_decision_log (op, subject, who, at, detail)"
            " VALUES (%s, %s, %s, %s, %s)",
            (op, subject, who, at, detail),
        )

    def _trim_log(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(
            "DELETE FROM usermon_decision_log WHERE seq <= "
            "(SELECT max(seq) FROM usermon_decision_log) - %s",
            (MAX_LOG,),
        )

    def add_decisions(self, decisions: Sequence[Decision], who: str) -> list[Decision]:
        if not decisions:
            return []
        added = []
        with self._tx() as conn:
            conn.execute(_DECISION_LOCK)
            for d in decisions:
                row = conn.execute(
                    f"INSERT INTO usermon_decisions ({_DECISION_COLUMNS})"  # noqa: S608 - constants
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (id) DO NOTHING RETURNING id".encode(),
                    (
                        d.id,
                        d.action,
                        d.scope,
                        scrub_text(d.value),
                        d.until,
                        scrub_text(d.reason),
                        scrub_text(d.origin),
                        d.created,
                        d.finding,
                    ),
                ).fetchone()
                if row is None:
                    continue
                detail = f"{d.action} {d.scope} {d.value}: {d.reason}"
                self._log(conn, "add", d.id, scrub_text(who), d.created, scrub_text(detail))
                added.append(d)
            if added:
                self._trim_log(conn)
        if added:
            self._purges.after_adding(self.purge_decisions)
        return added

    def purge_decisions(self, now: float | None = None) -> list[str]:
        """Delete the decisions that ended (expired or removed) more than DECISION_RETENTION
        before ``now`` (the clock by default); returns their ids. Their audit entries stay.
        The store does it by itself when it adds decisions (PurgeSchedule)."""
        self._purges.ran()
        before = (time.time() if now is None else now) - DECISION_RETENTION
        with self._tx() as conn:
            conn.execute(_DECISION_LOCK)
            rows = conn.execute(
                # least() skips a NULL: a decision never removed ended at its until.
                "DELETE FROM usermon_decisions WHERE least(until, removed) < %s RETURNING id",
                (before,),
            ).fetchall()
        return sorted(r[0] for r in rows)

    def remove_decisions(self, ids: Sequence[str], who: str) -> list[str]:
        if not ids:
            return []
        at = time.time()
        with self._tx() as conn:
            conn.execute(_DECISION_LOCK)
            rows = conn.execute(
                "UPDATE usermon_decisions SET removed = %s"
                " WHERE id = ANY(%s) AND removed IS NULL RETURNING id",
                (at, list(ids)),
            ).fetchall()
            done = sorted(r[0] for r in rows)
            for decision_id in done:
                self._log(conn, "remove", decision_id, scrub_text(who), at, "")
        return done

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
        where: list[str] = []
        params: list[Any] = []
        if not include_inactive:
            where.append("removed IS NULL AND until > %s")
            params.append(now)
        for column, wanted in (("scope", scope), ("value", value), ("finding", finding)):
            if wanted is not None:
                where.append(f"{column} = %s")
                params.append(wanted)
        if ids is not None:
            where.append("id = ANY(%s)")
            params.append(list(ids))
        query = f"SELECT {_DECISION_COLUMNS} FROM usermon_decisions"  # noqa: S608 - constants
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY created DESC, id LIMIT %s"
        params.append(limit)
        with self._tx() as conn:
            rows = conn.execute(query.encode(), params).fetchall()
        return [_decision_from_row(r) for r in rows]

    def count_decisions(self, scope: str, value: str, since: float) -> int:
        with self._tx() as conn:
            row = conn.execute(
                "SELECT count(*) FROM usermon_decisions"
                " WHERE scope = %s AND value = %s AND created >= %s",
                (scope, value, since),
            ).fetchone()
        return int(row[0]) if row else 0

    def decision_sequence(self) -> int:
        with self._tx() as conn:
            row = conn.execute("SELECT coalesce(max(seq), 0) FROM usermon_decision_log").fetchone()
        return int(row[0]) if row else 0

    def decision_changes(self, after: int, now: float) -> DecisionChanges | None:
        with self._tx() as conn:
            low, high = conn.execute(
                "SELECT coalesce(min(seq), 0), coalesce(max(seq), 0) FROM usermon_decision_log"
            ).fetchone() or (0, 0)
            if after > high or (high and after < low - 1) or (not high and after):
                return None
            rows = conn.execute(
                "SELECT l.seq, l.op, l.subject, d.removed, d.id, d.action, d.scope, d.value,"
                " d.until, d.reason, d.origin, d.created, d.finding"
                " FROM usermon_decision_log l LEFT JOIN usermon_decisions d ON d.id = l.subject"
                " WHERE l.seq > %s AND l.seq <= %s AND l.op IN ('add', 'remove') ORDER BY l.seq",
                (after, high),
            ).fetchall()
        new: dict[str, Decision] = {}
        deleted: list[str] = []
        for _, op, subject, removed, *decision in rows:
            if op == "add":
                if decision[0] is not None and removed is None and decision[4] > now:
                    new[subject] = _decision_from_row(decision)
            else:
                new.pop(subject, None)
                deleted.append(subject)
        return DecisionChanges(int(high), list(new.values()), deleted)

    def set_allowed(self, kind: str, value: str, who: str, *, allowed: bool = True) -> bool:
        at = time.time()
        with self._tx() as conn:
            conn.execute(_DECISION_LOCK)
            if allowed:
                row = conn.execute(
                    "INSERT INTO usermon_allowlist (kind, value, who, created)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING kind",
                    (kind, scrub_text(value), scrub_text(who), at),
                ).fetchone()
            else:
                row = conn.execute(
                    "DELETE FROM usermon_allowlist WHERE kind = %s AND value = %s RETURNING kind",
                    (kind, value),
                ).fetchone()
            if row is None:
                return False
            op = "allow" if allowed else "unallow"
            self._log(conn, op, scrub_text(f"{kind}:{value}"), scrub_text(who), at, "")
        return True

    def allowlist(self) -> list[AllowEntry]:
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT kind, value, who, created FROM usermon_allowlist ORDER BY kind, value"
            ).fetchall()
        return [AllowEntry(*r) for r in rows]

    def audit(self, limit: int = 100) -> list[AuditEntry]:
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT seq, op, subject, who, at, detail FROM usermon_decision_log"
                " ORDER BY seq DESC LIMIT %s",
                (limit,),
            ).fetchall()
        return [AuditEntry(int(r[0]), *r[1:]) for r in rows]

    # -- profiles ----------------------------------------------------------------------------------

    def save_profiles(
        self, users: Sequence[Mapping[str, Any]], ips: Sequence[Mapping[str, Any]]
    ) -> None:
        if not users and not ips:
            return
        with self._tx() as conn:
            conn.execute(
                _UPSERT_PROFILES,
                [*_profile_columns(users, "user_hash"), *_profile_columns(ips, "ip")],
            )

    def users(self, *, since: float | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return self._recent("usermon_users", since, limit)

    def ips(self, *, since: float | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return self._recent("usermon_ips", since, limit)

    def _recent(self, table: str, since: float | None, limit: int) -> list[dict[str, Any]]:
        """Profiles of ``table`` (one of ours: never from input), newest ``last_seen`` first,
        read down its ``last_seen`` index."""
        where, params = (
            ("", [limit]) if since is None else ("WHERE last_seen >= %s", [since, limit])
        )
        query = f"SELECT profile FROM {table} {where} ORDER BY last_seen DESC LIMIT %s"  # noqa: S608
        with self._tx() as conn:
            rows = conn.execute(query.encode(), params).fetchall()
        return [dict(row[0]) for row in rows]

    def user(self, user_hash: str) -> dict[str, Any] | None:
        with self._tx() as conn:
            row = conn.execute(
                "SELECT profile FROM usermon_users WHERE user_hash = %s",
                (storable_text(user_hash),),  # the key it was saved under
            ).fetchone()
        return dict(row[0]) if row else None

    def user_by_label(self, label: str) -> dict[str, Any] | None:
        with self._tx() as conn:
            row = conn.execute(
                "SELECT profile FROM usermon_users WHERE profile ->> 'label' = %s"
                " ORDER BY last_seen DESC LIMIT 1",
                (label,),
            ).fetchone()
        return dict(row[0]) if row else None

    def ip(self, address: str) -> dict[str, Any] | None:
        with self._tx() as conn:
            row = conn.execute(
                "SELECT profile FROM usermon_ips WHERE ip = %s", (storable_text(address),)
            ).fetchone()
        return dict(row[0]) if row else None

    # -- lifecycle ---------------------------------------------------------------------------------

    def health(self) -> Health:
        components: dict[str, str] = {}
        try:
            with self._pool.connection(timeout=2.0) as conn:
                conn.execute("SELECT 1")
            components["postgresql"] = "ok"
        except Exception as exc:
            components["postgresql"] = f"down: {_one_line(exc)}"
        if self._redis is not None:
            try:
                self._redis.ping()
                self._redis_ok = True
                components["redis"] = "ok"
            except Exception as exc:
                self._redis_ok = False
                components["redis"] = f"down: {_one_line(exc)}"
        return Health(all(v == "ok" for v in components.values()), components)

    def close(self) -> None:
        self._closing.set()
        self._heartbeat.join(timeout=5.0)
        self._pool.close()
        if self._redis is not None:
            self._redis.client.close()

    def __repr__(self) -> str:
        return f"PostgreSQLStore({self.url!r}, replica={self.replica!r})"


def _profile_columns(
    profiles: Sequence[Mapping[str, Any]], key: str
) -> tuple[list[str], list[float], list[str]]:
    """The keys, ``last_seen`` and JSON text of ``profiles``, sorted by key (two replicas lock
    rows in the same order) and made storable as findings are: a profile PostgreSQL refuses
    would fail every batch. Each is serialized once, here (what PostgreSQL refuses is looked
    for in the text). Two keys that become one when repaired keep the newer profile (one
    statement cannot upsert a row twice)."""
    rows: dict[str, tuple[float, str]] = {}
    for p in profiles:
        name, seen = storable_text(p[key]), float(p["last_seen"])
        if name not in rows or seen >= rows[name][0]:
            rows[name] = (seen, storable_json(p))
    names = sorted(rows)
    return names, [rows[n][0] for n in names], [rows[n][1] for n in names]


def _legacy_snapshot(snapshot: bytes) -> tuple[bytes, bytes] | None:
    """``(engine snapshot, whole state)`` when ``snapshot`` is what a replica without Redis
    checkpointed before the state had tables of its own (schema version 2); None when it is an
    engine snapshot alone (the replica ran with Redis, or checkpointed since). Our own
    checkpoint, never outside input."""
    import pickle

    try:
        loaded = pickle.loads(snapshot)  # noqa: S301 - our own checkpoint
    except Exception:  # an engine snapshot is opaque bytes to the store, a pickle or not
        return None
    if (
        isinstance(loaded, tuple)
        and len(loaded) == 2
        and isinstance(loaded[0], bytes)
        and isinstance(loaded[1], bytes)
    ):
        return loaded[0], loaded[1]
    return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
