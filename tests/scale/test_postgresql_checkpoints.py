"""The postgresql:// store without Redis: its in-memory state is checkpointed incrementally (a
whole snapshot now and then, only the changed rows in between, per replica), a restart rebuilds
exactly the state that was saved, and a database of the layout before rows loads and moves over."""

from __future__ import annotations

import pickle
import random
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import sql
from tests.support.state import random_step, state_contents

from usermon.processor.engine import Engine
from usermon.processor.service import Processor
from usermon.processor.settings import resolve
from usermon.processor.storage.postgresql import PostgreSQLStore, migrations
from usermon.processor.storage.state.base import FAIL, OK
from usermon.processor.storage.state.memory import MemoryState

from .traffic import login_stream

pytestmark = pytest.mark.postgresql

Factory = Callable[..., PostgreSQLStore]
WINDOWS = (60.0, 600.0, 3600.0, 86400.0)
TTL = 30 * 86400.0


def _memory(store: PostgreSQLStore) -> MemoryState:
    assert isinstance(store.state, MemoryState)
    return store.state


def _fold_users(store: PostgreSQLStore, users: range, t: float) -> None:
    for u in users:
        _memory(store).fold_subject(
            f"u:{u}", t, WINDOWS, TTL, OK, (f"10.0.{u // 256}.{u % 256}",), label=f"user{u}"
        )


def _one(url: str, schema: str, query: str, *params: object) -> Any:
    with psycopg.connect(url) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        row = conn.execute(query.encode(), params).fetchone()
    return row[0] if row else None


def _rows(url: str, schema: str, replica: str) -> list[tuple[str, bool]]:
    """A replica's state rows in order, as (key, is a tombstone)."""
    with psycopg.connect(url) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        found = conn.execute(
            "SELECT key, row IS NULL FROM usermon_state_rows WHERE replica = %s ORDER BY seq",
            (replica,),
        ).fetchall()
    return [(key, tomb) for key, tomb in found]


def test_a_checkpoint_writes_only_the_keys_changed_since_the_last(
    pg_memory_store_factory: Factory, postgresql_url: str, pg_schema: str
) -> None:
    store = pg_memory_store_factory(replica="r0")
    _fold_users(store, range(1000), 1000.0)
    store.checkpoint(1, b"engine")  # the first is a whole snapshot
    base_sql = "SELECT length(data) FROM usermon_state_base WHERE replica = 'r0'"
    base = _one(postgresql_url, pg_schema, base_sql)
    assert base > 0
    assert _rows(postgresql_url, pg_schema, "r0") == []
    _fold_users(store, range(3), 1010.0)
    store.checkpoint(2, b"engine")
    assert _rows(postgresql_url, pg_schema, "r0") == [
        ("u:0", False),
        ("u:1", False),
        ("u:2", False),
    ]
    assert _one(postgresql_url, pg_schema, base_sql) == base
    snapshot_sql = "SELECT snapshot FROM usermon_replicas WHERE replica = 'r0'"
    assert _one(postgresql_url, pg_schema, snapshot_sql) == b"engine"  # the engine's alone


def test_a_dropped_key_is_written_as_a_tombstone(
    pg_memory_store_factory: Factory, postgresql_url: str, pg_schema: str
) -> None:
    store = pg_memory_store_factory(replica="r0")
    _fold_users(store, range(10), 1000.0)
    _memory(store).add("short", 1000.0, 60.0)
    store.checkpoint(1, b"e")
    _fold_users(store, range(1), 5000.0)  # the watermark moves past short's window
    assert _memory(store).sweep() == 1
    store.checkpoint(2, b"e")
    assert _rows(postgresql_url, pg_schema, "r0") == [("short", True), ("u:0", False)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_restart_rebuilds_the_state_from_the_base_and_its_rows(
    pg_memory_store_factory: Factory, seed: int
) -> None:
    rng = random.Random(seed)
    store = pg_memory_store_factory(replica="r0", max_keys=150)  # small: evictions happen
    state = _memory(store)
    t = 1000.0
    for position in range(1, 7):  # checkpoints, each writing what changed since the one before
        for _ in range(rng.randrange(30, 120)):
            t += rng.expovariate(1 / 5)
            random_step(state, rng, t)
        if rng.random() < 0.3:
            state.sweep()
        store.checkpoint(position, b"engine %d" % position)
    expected = state_contents(state)  # the live keys in their LRU order
    store.close()
    again = pg_memory_store_factory(replica="r0", max_keys=150)
    assert state_contents(again.state) == expected
    assert again.load_checkpoint() == (6, b"engine 6")


def test_once_the_rows_outnumber_half_the_keys_a_whole_snapshot_replaces_them(
    pg_memory_store_factory: Factory, postgresql_url: str, pg_schema: str
) -> None:
    store = pg_memory_store_factory(replica="r0")
    _fold_users(store, range(100), 1000.0)
    store.checkpoint(1, b"e")
    _fold_users(store, range(40), 1010.0)
    store.checkpoint(2, b"e")
    assert len(_rows(postgresql_url, pg_schema, "r0")) == 40
    base = _one(postgresql_url, pg_schema, "SELECT data FROM usermon_state_base")
    store.close()
    store = pg_memory_store_factory(replica="r0")  # a restart counts the rows written
    _fold_users(store, range(40, 70), 1020.0)  # 40 + 30 rows > 100 / 2
    store.checkpoint(3, b"e")
    assert _rows(postgresql_url, pg_schema, "r0") == []
    assert _one(postgresql_url, pg_schema, "SELECT data FROM usermon_state_base") != base
    expected = state_contents(store.state)
    store.close()
    again = pg_memory_store_factory(replica="r0")
    assert state_contents(again.state) == expected


def test_a_restarted_processor_works_on_the_state_it_restored(
    postgresql_url: str, pg_schema: str
) -> None:
    """The engine is built on the store's state before the checkpoint is restored: the store
    loads the state when it opens, so that the engine's state and the one the store saves are
    one object, and a processor restarted half way ends where one that never stopped does."""
    url = f"{postgresql_url}?schema={pg_schema}&replica=p0"
    events = login_stream()
    half = len(events) // 2
    reference = Processor(resolve({"store": url.replace("p0", "reference")}, env={}))
    reference.engine.process(events[:half])
    reference.engine.process(events[half:])
    first = Processor(resolve({"store": url}, env={}))
    first.engine.process(events[:half])
    first.close()
    again = Processor(resolve({"store": url}, env={}))
    try:
        assert again.engine.state is again.store.state
        again.engine.process(events[half:])
        assert state_contents(again.store.state) == state_contents(reference.store.state)
    finally:
        again.close()
        reference.close()
    last = Processor(resolve({"store": url}, env={}))
    try:
        assert state_contents(last.store.state) == state_contents(reference.store.state)
    finally:
        last.close()


def test_replicas_sharing_a_database_keep_their_states_apart(
    pg_memory_store_factory: Factory,
) -> None:
    a = pg_memory_store_factory(replica="a")
    b = pg_memory_store_factory(replica="b")
    _fold_users(a, range(0, 50), 1000.0)
    _fold_users(b, range(50, 80), 1000.0)
    for position in (1, 2):
        a.checkpoint(position, b"a")
        b.checkpoint(position, b"b")
        _fold_users(a, range(position), 1000.0 + position)
        _fold_users(b, range(50, 50 + position), 1000.0 + position)
    a.checkpoint(3, b"a")
    b.checkpoint(3, b"b")
    expected = state_contents(a.state), state_contents(b.state)
    a.close()
    b.close()
    again = pg_memory_store_factory(replica="a"), pg_memory_store_factory(replica="b")
    assert (state_contents(again[0].state), state_contents(again[1].state)) == expected


def _kill(url: str, schema: str, replica: str) -> None:
    """Make a replica's heartbeat older than any lease, as if it died an hour ago."""
    with psycopg.connect(url) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        conn.execute(
            "UPDATE usermon_replicas SET heartbeat = now() - interval '1 hour' WHERE replica = %s",
            (replica,),
        )


def test_adopting_a_dead_replicas_batches_deletes_its_state(
    pg_memory_store_factory: Factory, postgresql_url: str, pg_schema: str
) -> None:
    dead = pg_memory_store_factory(replica="dead")
    _fold_users(dead, range(20), 1000.0)
    dead.checkpoint(0, b"e")
    _fold_users(dead, range(2), 1001.0)
    dead.checkpoint(0, b"e")
    dead.intake(b"batch", 1)
    dead.close()
    _kill(postgresql_url, pg_schema, "dead")
    survivor = pg_memory_store_factory(replica="survivor")
    _fold_users(survivor, range(5), 1000.0)
    survivor.checkpoint(0, b"e")
    assert [blob for _, blob in survivor.adopt_orphans()] == [b"batch"]
    count = "SELECT count(*) FROM {} WHERE replica = %s"
    for table in ("usermon_state_base", "usermon_state_rows", "usermon_replicas"):
        assert _one(postgresql_url, pg_schema, count.format(table), "dead") == 0
    assert _one(postgresql_url, pg_schema, count.format("usermon_state_base"), "survivor") == 1


def test_a_replica_taken_for_dead_writes_a_whole_snapshot_again(
    pg_memory_store_factory: Factory, postgresql_url: str, pg_schema: str
) -> None:
    """After an outage longer than the lease another replica may have deleted this one's state
    with its row; rows alone on no base would rebuild a fraction of the state."""
    store = pg_memory_store_factory(replica="r0")
    _fold_users(store, range(100), 1000.0)
    store.checkpoint(1, b"e")
    _kill(postgresql_url, pg_schema, "r0")
    pg_memory_store_factory(replica="other").adopt_orphans()
    _fold_users(store, range(3), 1010.0)  # few changes: rows would be due
    store.checkpoint(2, b"e")
    assert _rows(postgresql_url, pg_schema, "r0") == []
    expected = state_contents(store.state)
    store.close()
    again = pg_memory_store_factory(replica="r0")
    assert state_contents(again.state) == expected
    assert len(_memory(again)) == 100


def _before_rows(url: str, schema: str) -> None:
    """A schema as the previous version left it: migration 1 only."""
    version, name, script = migrations()[0]
    with psycopg.connect(url) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        conn.execute(
            "CREATE TABLE usermon_schema_migrations (version integer PRIMARY KEY,"
            " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(script.encode())
        conn.execute(
            "INSERT INTO usermon_schema_migrations (version, name) VALUES (%s, %s)", (version, name)
        )


def test_a_database_of_the_previous_layout_loads_and_then_moves_over(
    pg_memory_store_factory: Factory, postgresql_url: str, pg_schema: str
) -> None:
    _before_rows(postgresql_url, pg_schema)
    old = MemoryState()
    for u in range(20):
        old.fold_subject(f"u:{u}", 1000.0, WINDOWS, TTL, FAIL, (f"10.0.0.{u}",))
    with psycopg.connect(postgresql_url) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(pg_schema)))
        conn.execute(  # what a checkpoint wrote before rows: the whole state, pickled
            "INSERT INTO usermon_replicas (replica, position, snapshot) VALUES ('r0', 7, %s)",
            (pickle.dumps((b"engine", old.dump())),),
        )
    store = pg_memory_store_factory(replica="r0")
    assert store.schema_version() == migrations()[-1][0]
    assert store.load_checkpoint() == (7, b"engine")
    assert state_contents(store.state) == state_contents(old)
    _memory(store).add("new", 1001.0, 60.0)
    store.checkpoint(8, b"engine")  # the state moves to its own table, whole
    snapshot_sql = "SELECT snapshot FROM usermon_replicas WHERE replica = 'r0'"
    assert _one(postgresql_url, pg_schema, snapshot_sql) == b"engine"
    assert _one(postgresql_url, pg_schema, "SELECT count(*) FROM usermon_state_base") == 1
    _memory(store).add("newer", 1002.0, 60.0)
    store.checkpoint(9, b"engine")
    assert _rows(postgresql_url, pg_schema, "r0") == [("newer", False)]
    expected = state_contents(store.state)
    store.close()
    again = pg_memory_store_factory(replica="r0")
    assert state_contents(again.state) == expected
    assert again.load_checkpoint() == (9, b"engine")


def test_a_replica_that_ran_with_redis_starts_with_an_empty_state(
    pg_memory_store_factory: Factory, postgresql_url: str, pg_schema: str
) -> None:
    """Its checkpoint holds the engine's snapshot alone: no state to load, nothing to misread."""
    pg_memory_store_factory(replica="r0").close()  # creates the schema
    with psycopg.connect(postgresql_url) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(pg_schema)))
        conn.execute(
            "UPDATE usermon_replicas SET position = 3, snapshot = %s WHERE replica = 'r0'",
            (Engine(MemoryState()).snapshot(),),
        )
    store = pg_memory_store_factory(replica="r0")
    assert len(_memory(store)) == 0
    assert store.load_checkpoint() == (3, Engine(MemoryState()).snapshot())
