"""The ``sqlite:///path`` store, the default: one file, a journal and periodic checkpoints.

Durability works like a database's own log: every accepted batch is appended to the ``journal``
table in its own transaction *before* the receiver answers 200; processing then happens in
memory (a :class:`~usermon.processor.storage.state.memory.MemoryState`, findings in a bounded
map). A *checkpoint* writes, in one transaction, the state, the engine's snapshot, the findings
changed since the last one, and the journal position they cover, and trims the journal up to it.
A restart loads the checkpoint and replays the journal after it, so a crash (even ``kill -9``)
loses nothing that was acknowledged and the state resumes where it was. Decisions, the allowlist
and their audit log are written through, each change in its own transaction before it applies in
memory (tables ``decisions``, ``decision_log``, ``allowlist``; created in a database of an earlier
version when it is opened); a decision is deleted once it ended more than
:data:`~usermon.processor.storage.decisions.DECISION_RETENTION` ago.

The state is written incrementally: a whole snapshot now and then (``state_base``), and in
between only the rows of the keys that changed since the checkpoint before, one *delta* per
checkpoint (``state_deltas``: the rows in the order their keys were last touched, a tombstone for
a key dropped), so that a checkpoint's pause follows the traffic since the last one rather than
the size of the state. Once the deltas would hold as many rows as the state has keys, the next
checkpoint writes a whole snapshot again and clears them.

The file runs in WAL mode. ``synchronous=NORMAL`` (the default) survives a crash of the process;
``?synchronous=full`` also survives a power loss, at the cost of an fsync per batch.
URL options: ``max_keys`` (state key cap), ``synchronous`` (``normal`` or ``full``).
``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db`` (SQLAlchemy's convention).
"""

from __future__ import annotations

import json
import logging
import marshal
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from usermon.processor.model import Decision, Finding
from usermon.processor.storage.base import AllowEntry, AuditEntry, Health, IntakeReceipt
from usermon.processor.storage.checkpoints import DELTA_BLOBS, SnapshotSchedule
from usermon.processor.storage.decisions import MAX_LOG, DecisionBook
from usermon.processor.storage.errors import StoreError
from usermon.processor.storage.memory import MAX_FINDINGS, InProcessStore
from usermon.processor.storage.repair import scrub, scrub_marshal, scrub_text
from usermon.processor.storage.state.memory import DEFAULT_MAX_KEYS, MemoryState

__all__ = ["SQLiteStore", "sqlite_path"]

logger = logging.getLogger("usermon.processor")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    pos INTEGER PRIMARY KEY AUTOINCREMENT,
    count INTEGER NOT NULL,
    blob BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pos INTEGER NOT NULL,
    engine BLOB,
    state BLOB NOT NULL,
    taken REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS state_base (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS state_deltas (
    seq INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS findings (
    id TEXT PRIMARY KEY,
    last_seen REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS findings_last_seen ON findings (last_seen);
CREATE TABLE IF NOT EXISTS decisions (
    id TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    removed REAL
);
CREATE TABLE IF NOT EXISTS decision_log (
    seq INTEGER PRIMARY KEY,
    op TEXT NOT NULL,
    subject TEXT NOT NULL,
    who TEXT NOT NULL,
    at REAL NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS allowlist (
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    who TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE TABLE IF NOT EXISTS decision_epoch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    epoch TEXT NOT NULL
);
"""


def sqlite_path(url: str) -> str:
    """The file a ``sqlite:///...`` URL names (``sqlite:///:memory:`` for a private database)."""
    if not url.startswith("sqlite:///"):
        raise StoreError(f"a SQLite store URL looks like sqlite:///path/to/usermon.db, not {url!r}")
    path = url[len("sqlite:///") :].split("?", 1)[0]
    if not path:
        raise StoreError("the SQLite store URL names no file: sqlite:///path/to/usermon.db")
    return path


def _finding_to_row(f: Finding) -> tuple[str, float, str]:
    return f.id, f.last_seen, json.dumps(f.to_json(), separators=(",", ":"))


class SQLiteStore(InProcessStore):
    """Journal + checkpoints in one SQLite file; state, findings and profiles in memory."""

    def __init__(self, url: str, *, max_keys: int | None = None) -> None:
        path = sqlite_path(url)
        options = {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}
        unknown = set(options) - {"max_keys", "synchronous"}
        if unknown:
            raise StoreError(f"unknown SQLite store option(s) {sorted(unknown)}")
        sync = options.get("synchronous", "normal").lower()
        if sync not in ("normal", "full"):
            raise StoreError("the SQLite store's synchronous option is 'normal' or 'full'")
        try:
            keys = max_keys or int(options.get("max_keys", DEFAULT_MAX_KEYS))
        except ValueError:
            raise StoreError("the SQLite store's max_keys option must be an integer") from None
        super().__init__(url, max_keys=keys)
        if path != ":memory:":
            parent = Path(path).expanduser().resolve().parent
            if not parent.is_dir():
                raise StoreError(f"the SQLite store's directory does not exist: {parent}")
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={sync.upper()}")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the SQLite store {path!r}: {exc}") from exc
        self._dirty: set[str] = set()
        self._checkpoint_pos = 0
        self._engine_snapshot: bytes | None = None
        self._schedule = SnapshotSchedule(DELTA_BLOBS)
        self._load()
        self._load_decisions()

    def _load(self) -> None:
        started = time.monotonic()
        self._repaired = 0  # blobs and findings whose lone surrogates were replaced
        if not any(c[1] == "header" for c in self._db.execute("PRAGMA table_info(checkpoint)")):
            self._db.execute("ALTER TABLE checkpoint ADD COLUMN header BLOB")  # before rows
        row = self._db.execute(
            "SELECT pos, engine, state, header FROM checkpoint WHERE id = 1"
        ).fetchone()
        dropped: list[str] = []
        if row is not None:
            self._checkpoint_pos, self._engine_snapshot, state, header = row
            base = self._db.execute("SELECT data FROM state_base WHERE id = 1").fetchone()
            if base is not None:  # else the snapshot is in the checkpoint row (before rows)
                (state,) = base
            self._state = MemoryState.load(self._repair(state), max_keys=self._state.max_keys)
            counts: list[int] = []
            if header is not None:
                deltas = self._db.execute("SELECT data FROM state_deltas ORDER BY seq")
                dropped = self._state.apply_rows(header, self._delta_rows(deltas, counts))
            if base is not None:
                self._schedule.loaded(sum(counts))
        if self._repaired:
            # Text that no encoder takes, written by a version that let it in: replaced by
            # U+FFFD, and saved whole at the next checkpoint so the file is clean again.
            logger.warning("replaced lone surrogates in %d stored state blobs", self._repaired)
            self._schedule.base_missing = True
        self._state.track_changes(dropped=dropped)
        if len(self._state):
            logger.info(
                "loaded the state of the last checkpoint: %d keys in %.1f s",
                len(self._state),
                time.monotonic() - started,
            )
        rows = self._db.execute(
            "SELECT data FROM findings ORDER BY last_seen DESC LIMIT ?", (MAX_FINDINGS,)
        )
        for (data,) in rows:
            loaded = json.loads(data)
            # Written ASCII-only: a surrogate, paired or not, is a "\ud..." escape.
            clean = scrub(loaded) if "\\ud" in data else loaded
            finding = Finding.from_json(clean)
            self._findings[finding.id] = finding
            if clean is not loaded:
                self._dirty.add(finding.id)  # rewritten clean at the next checkpoint
        if self._dirty:
            logger.warning("replaced lone surrogates in %d stored findings", len(self._dirty))

    def _load_decisions(self) -> None:
        db = self._db
        row = db.execute("SELECT epoch FROM decision_epoch WHERE id = 1").fetchone()
        if row is None:
            epoch = self._book.epoch
            db.execute("INSERT INTO decision_epoch (id, epoch) VALUES (1, ?)", (epoch,))
        else:
            (epoch,) = row
        book = DecisionBook(epoch, persist=self._persist_decision, discard=self._delete_decisions)
        (seq,) = db.execute("SELECT coalesce(max(seq), 0) FROM decision_log").fetchone()
        decisions = [
            (Decision.from_row(json.loads(data)), removed)
            for data, removed in db.execute("SELECT data, removed FROM decisions")
        ]
        allowed = [
            AllowEntry(*r) for r in db.execute("SELECT kind, value, who, created FROM allowlist")
        ]
        log = [
            AuditEntry(*r)
            for r in db.execute(
                "SELECT seq, op, subject, who, at, detail FROM decision_log"
                " WHERE seq > ? ORDER BY seq",
                (seq - MAX_LOG,),
            )
        ]
        book.load(int(seq), decisions, allowed, log)
        self._book = book

    @contextmanager
    def _decision_write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One transaction of the decisions' tables, committed before the book changes in
        memory; a failure rolls it back and becomes StoreError ("cannot <what>")."""
        try:
            with self._lock:
                db = self._db
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot {what}: {exc}") from exc

    def _delete_decisions(self, ids: Sequence[str]) -> None:
        """Decisions past their retention, deleted before the book forgets them (its discard)."""
        with self._decision_write("delete decisions past their retention") as db:
            db.executemany("DELETE FROM decisions WHERE id = ?", [(i,) for i in ids])

    def _persist_decision(self, entry: AuditEntry, payload: dict[str, Any]) -> None:
        """One change to the decisions, durable before it applies (DecisionBook's persist)."""
        with self._decision_write("save a decision change") as db:
            db.execute(
                "INSERT INTO decision_log (seq, op, subject, who, at, detail)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (entry.seq, entry.op, entry.subject, entry.who, entry.at, entry.detail),
            )
            if entry.op == "add":
                row = json.dumps(payload["decision"].to_row(), separators=(",", ":"))
                db.execute(
                    "INSERT OR IGNORE INTO decisions (id, data) VALUES (?, ?)",
                    (entry.subject, row),
                )
            elif entry.op == "remove":
                db.execute(
                    "UPDATE decisions SET removed = ? WHERE id = ?",
                    (payload["removed"], entry.subject),
                )
            else:
                allow: AllowEntry = payload["entry"]
                if entry.op == "allow":
                    db.execute(
                        "INSERT OR REPLACE INTO allowlist (kind, value, who, created)"
                        " VALUES (?, ?, ?, ?)",
                        (allow.kind, allow.value, allow.who, allow.created),
                    )
                else:
                    db.execute(
                        "DELETE FROM allowlist WHERE kind = ? AND value = ?",
                        (allow.kind, allow.value),
                    )
            db.execute("DELETE FROM decision_log WHERE seq <= ?", (entry.seq - MAX_LOG,))

    def _repair(self, blob: bytes) -> bytes:
        clean, changed = scrub_marshal(blob)
        self._repaired += changed
        return clean

    # -- intake ------------------------------------------------------------------------------------

    def intake(self, blob: bytes, count: int) -> IntakeReceipt:
        try:
            with self._lock:
                cursor = self._db.execute(
                    "INSERT INTO journal (count, blob) VALUES (?, ?)", (count, blob)
                )
        except sqlite3.Error as exc:
            raise StoreError(f"the journal refused the batch: {exc}") from exc
        position = cursor.lastrowid
        assert position is not None
        return IntakeReceipt(position, count)

    def pending(self) -> Iterator[tuple[int, bytes]]:
        after = self._checkpoint_pos
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT pos, blob FROM journal WHERE pos > ? ORDER BY pos LIMIT 256", (after,)
                ).fetchall()
            if not rows:
                return
            for pos, blob in rows:
                yield pos, blob
                after = pos

    def journal_size(self) -> int:
        """Batches in the journal not yet covered by a checkpoint."""
        with self._lock:
            (n,) = self._db.execute(
                "SELECT count(*) FROM journal WHERE pos > ?", (self._checkpoint_pos,)
            ).fetchone()
        return int(n)

    def _delta_rows(
        self, deltas: Iterable[tuple[bytes]], counts: list[int]
    ) -> Iterator[tuple[str, bytes | None]]:
        """The rows of every delta in order, repaired; how many each held goes into ``counts``."""
        for (data,) in deltas:
            rows = marshal.loads(data)  # noqa: S302 - the store's own file
            counts.append(len(rows))
            for key, row in rows:
                clean = scrub_text(key)
                self._repaired += clean is not key
                yield clean, None if row is None else self._repair(row)

    def record_findings(self, deltas: Sequence[Finding]) -> None:
        super().record_findings(deltas)
        self._dirty.update(d.id for d in deltas)

    def checkpoint(self, position: int, engine_snapshot: bytes) -> None:
        state = self._state
        # The rows of the keys changed since the last checkpoint, as one delta on top of the last
        # whole snapshot (one blob, not a row per key: a key's row costs SQLite more than its
        # share of a blob), or the whole state when they would be too many (checkpoints.py).
        whole = self._schedule.whole_due(state.pending_changes, len(state))
        rows: list[tuple[str, bytes | None]] = []
        if whole:
            snapshot, header = state.dump(), None
        else:
            snapshot, header = None, state.header()
            rows = state.changes()
        findings = [_finding_to_row(self._findings[i]) for i in self._dirty if i in self._findings]
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    # The snapshot has a table of its own: a row is rewritten whole on update,
                    # and the checkpoint row is updated every time.
                    self._db.execute(
                        "INSERT INTO checkpoint (id, pos, engine, state, header, taken)"
                        " VALUES (1, ?, ?, x'', ?, ?) ON CONFLICT (id) DO UPDATE SET"
                        " pos = excluded.pos, engine = excluded.engine, state = x'',"
                        " header = excluded.header, taken = excluded.taken",
                        (position, engine_snapshot, header, time.time()),
                    )
                    if whole:
                        self._db.execute(
                            "INSERT OR REPLACE INTO state_base (id, data) VALUES (1, ?)",
                            (snapshot,),
                        )
                        self._db.execute("DELETE FROM state_deltas")
                    elif rows:
                        self._db.execute(
                            "INSERT INTO state_deltas (data) VALUES (?)", (marshal.dumps(rows),)
                        )
                    self._db.executemany(
                        "INSERT INTO findings (id, last_seen, data) VALUES (?, ?, ?)"
                        " ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen,"
                        " data = excluded.data",
                        findings,
                    )
                    self._db.execute("DELETE FROM journal WHERE pos <= ?", (position,))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise StoreError(f"checkpoint failed: {exc}") from exc
        state.changes_saved()
        self._schedule.saved(whole=whole, rows=len(rows))
        self._dirty.clear()
        self._checkpoint_pos = position
        self._engine_snapshot = engine_snapshot

    def load_checkpoint(self) -> tuple[int, bytes | None]:
        return self._checkpoint_pos, self._engine_snapshot

    # -- lifecycle ---------------------------------------------------------------------------------

    def health(self) -> Health:
        try:
            with self._lock:
                self._db.execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            return Health(False, {"store": f"sqlite: {exc}"})
        return Health(True, {"store": "ok"})

    def close(self) -> None:
        with self._lock:
            self._db.close()
