"""Incremental checkpoints: a MemoryState reports what changed, the SQLite store writes only that
on top of its last whole snapshot, and a restart rebuilds exactly the state that was saved."""

from __future__ import annotations

import marshal
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from tests.support.state import random_step, state_contents

from usermon.processor.storage.sqlite import SQLiteStore
from usermon.processor.storage.state.base import FAIL, OK
from usermon.processor.storage.state.memory import MemoryState

WINDOWS = (60.0, 600.0, 3600.0, 86400.0)
TTL = 30 * 86400.0


def test_changes_are_the_keys_touched_since_they_were_saved_least_recent_first() -> None:
    state = MemoryState()
    state.put("old", {"v": 0}, 1000.0, 600.0)
    state.track_changes()
    for key in ("a", "b", "c", "a"):
        state.add(key, 1001.0, 60.0)
    assert [key for key, _ in state.changes()] == ["b", "c", "a"]
    state.changes_saved()
    assert state.changes() == []
    state.add("b", 1002.0, 60.0)
    assert [key for key, _ in state.changes()] == ["b"]


def test_a_key_dropped_since_is_a_tombstone_unless_it_came_back() -> None:
    state = MemoryState(max_keys=2)
    state.track_changes()
    state.add("a", 1000.0, 60.0)
    state.add("b", 1000.0, 60.0)
    state.changes_saved()
    state.add("c", 1001.0, 60.0)  # evicts a, the least recently touched
    state.add("b", 1002.0, 60.0)
    assert [(key, row is None) for key, row in state.changes()] == [
        ("a", True),
        ("c", False),
        ("b", False),
    ]
    state.add("a", 1003.0, 60.0)  # back: evicts c
    assert [(key, row is None) for key, row in state.changes()] == [
        ("c", True),
        ("b", False),
        ("a", False),
    ]


def test_changes_ask_for_tracking_first() -> None:
    with pytest.raises(RuntimeError, match="track_changes"):
        MemoryState().changes()


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_rows_on_an_older_snapshot_rebuild_the_state_exactly(seed: int) -> None:
    rng = random.Random(seed)
    state = MemoryState(max_keys=150)  # small: evictions happen
    t = 1000.0
    for _ in range(300):
        t += rng.expovariate(1 / 5)
        random_step(state, rng, t)
    base = state.dump()
    state.track_changes()
    written: list[tuple[str, bytes | None]] = []
    for _ in range(5):  # checkpoints, each writing what changed since the one before
        for _ in range(rng.randrange(50, 400)):
            t += rng.expovariate(1 / 5)
            random_step(state, rng, t)
        if rng.random() < 0.3:
            state.sweep()
        written += state.changes()
        state.changes_saved()
        restored = MemoryState.load(base)
        restored.apply_rows(state.header(), written)
        assert state_contents(restored) == state_contents(state)


def test_applying_rows_drops_the_expired_and_what_exceeds_the_cap() -> None:
    state = MemoryState()
    base = state.dump()
    state.track_changes()
    for i, key in enumerate("abc"):
        state.add(key, 1000.0 + i, 60.0)
    rows = state.changes()
    restored = MemoryState.load(base, max_keys=2)
    assert restored.apply_rows(state.header(), rows) == ["a"]
    assert list(restored._entries) == ["b", "c"]
    later = MemoryState()
    later.add("z", 5000.0, 60.0)  # a header whose watermark is past a, b and c's windows
    restored = MemoryState.load(base)
    assert sorted(restored.apply_rows(later.header(), rows)) == ["a", "b", "c"]
    assert len(restored) == 0


# -- the SQLite store ------------------------------------------------------------------------------


def _store(path: Path) -> SQLiteStore:
    return SQLiteStore(f"sqlite:///{path}")


def _fold_users(store: SQLiteStore, users: range, t: float) -> None:
    for u in users:
        store.state.fold_subject(
            f"u:{u}", t, WINDOWS, TTL, OK, (f"10.0.{u // 256}.{u % 256}",), label=f"user{u}"
        )


def _count(db: Path, sql: str) -> Any:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchone()[0]


def _deltas(db: Path) -> list[list[str]]:
    """The keys of each delta on top of the base, in order."""
    with sqlite3.connect(db) as conn:
        found = conn.execute("SELECT data FROM state_deltas ORDER BY seq").fetchall()
    return [[key for key, _ in marshal.loads(data)] for (data,) in found]  # noqa: S302 - ours


def test_a_checkpoint_writes_only_the_keys_changed_since_the_last(tmp_path: Path) -> None:
    db = tmp_path / "u.db"
    store = _store(db)
    _fold_users(store, range(1000), 1000.0)
    store.checkpoint(1, b"engine")  # the first is a whole snapshot
    base = _count(db, "SELECT length(data) FROM state_base")
    assert _deltas(db) == []
    _fold_users(store, range(3), 1010.0)
    store.checkpoint(2, b"engine")
    assert _deltas(db) == [["u:0", "u:1", "u:2"]]
    assert _count(db, "SELECT length(data) FROM state_base") == base
    expected = state_contents(store.state)
    order = list(store.state._entries)
    store.close()
    again = _store(db)
    assert state_contents(again.state) == expected
    assert list(again.state._entries) == order
    assert again.load_checkpoint() == (2, b"engine")
    again.close()


def test_once_the_deltas_hold_as_many_rows_as_the_state_has_keys_a_whole_snapshot_replaces_them(
    tmp_path: Path,
) -> None:
    db = tmp_path / "u.db"
    store = _store(db)
    _fold_users(store, range(100), 1000.0)
    store.checkpoint(1, b"e")
    for i in range(10):  # the same 10 keys at each checkpoint: each time 10 rows more
        _fold_users(store, range(10), 1010.0 + i)
        store.checkpoint(2 + i, b"e")
        assert len(_deltas(db)) == i + 1
    before = state_contents(store.state)
    store.close()
    again = _store(db)  # 100 rows on top of the base, counted again from the deltas
    assert state_contents(again.state) == before
    _fold_users(again, range(1), 1030.0)  # 100 + 1 rows > 100 keys: whole again
    again.checkpoint(12, b"e")
    assert _deltas(db) == []
    expected = state_contents(again.state)
    again.close()
    last = _store(db)
    assert state_contents(last.state) == expected
    last.close()


def test_a_smaller_cap_at_load_keeps_the_most_recently_touched_keys(tmp_path: Path) -> None:
    db = tmp_path / "u.db"
    store = _store(db)
    _fold_users(store, range(100), 1000.0)
    store.checkpoint(1, b"e")
    store.state.add("short", 1001.0, 60.0)
    store.checkpoint(2, b"e")
    store.close()
    smaller = SQLiteStore(f"sqlite:///{db}?max_keys=50")
    assert len(smaller.state) == 50
    assert smaller.state.count("short", 1001.0, 60.0) == 1  # the most recently touched stay
    smaller.checkpoint(3, b"e")
    expected = state_contents(smaller.state)
    smaller.close()
    again = SQLiteStore(f"sqlite:///{db}?max_keys=50")
    assert state_contents(again.state) == expected
    again.close()


_BEFORE_ROWS = """
CREATE TABLE journal (pos INTEGER PRIMARY KEY AUTOINCREMENT, count INTEGER NOT NULL,
                      blob BLOB NOT NULL);
CREATE TABLE checkpoint (id INTEGER PRIMARY KEY CHECK (id = 1), pos INTEGER NOT NULL,
                         engine BLOB, state BLOB NOT NULL, taken REAL NOT NULL);
CREATE TABLE findings (id TEXT PRIMARY KEY, last_seen REAL NOT NULL, data TEXT NOT NULL);
"""


def test_a_store_written_before_rows_loads_and_then_checkpoints_in_rows(tmp_path: Path) -> None:
    db = tmp_path / "u.db"
    old = MemoryState()
    for u in range(20):
        old.fold_subject(f"u:{u}", 1000.0, WINDOWS, TTL, FAIL, (f"10.0.0.{u}",))
    with sqlite3.connect(db) as conn:
        conn.executescript(_BEFORE_ROWS)
        conn.execute(
            "INSERT INTO checkpoint VALUES (1, 7, ?, ?, ?)", (b"engine", old.dump(), time.time())
        )
    store = _store(db)
    assert store.load_checkpoint() == (7, b"engine")
    assert state_contents(store.state) == state_contents(old)
    store.state.add("new", 1001.0, 60.0)
    store.checkpoint(8, b"engine")  # the snapshot moves to its own table, whole
    assert _count(db, "SELECT count(*) FROM state_base") == 1
    store.state.add("newer", 1002.0, 60.0)
    store.checkpoint(9, b"engine")
    assert _deltas(db) == [["newer"]]
    expected = state_contents(store.state)
    store.close()
    again = _store(db)
    assert state_contents(again.state) == expected
    again.close()
