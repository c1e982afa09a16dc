"""What the postgresql:// store adds to the Store contract: migrations, replicas acting as one,
intake that survives the replica that took it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from usermon.processor.model import Finding, Subject
from usermon.processor.state_redis import RedisState
from usermon.processor.storage.base import StoreError, open_store
from usermon.processor.storage.postgresql import PostgreSQLStore, migrations

pytestmark = [pytest.mark.postgresql, pytest.mark.redis]

T0 = 1_700_000_000.0
Factory = Callable[..., PostgreSQLStore]


def _delta(t: float, trace: str) -> Finding:
    return Finding(
        id="shared",
        kind="credential_stuffing",
        severity="high",
        subject=Subject("ip", "192.0.2.1", None),
        first_seen=t,
        last_seen=t,
        event_count=1,
        summary="stuffing",
        evidence={"trace_ids": [trace], "ips": ["192.0.2.1"], "users": []},
    )


def test_migrations_are_applied_once_and_recorded(pg_store_factory: Factory) -> None:
    first = pg_store_factory()
    second = pg_store_factory()  # a second replica starting against the migrated schema
    latest = migrations()[-1][0]
    assert first.schema_version() == second.schema_version() == latest


def test_the_shipped_migrations_are_numbered_without_gaps() -> None:
    assert [version for version, _, _ in migrations()] == list(range(1, len(migrations()) + 1))


def test_open_store_picks_postgresql_with_a_redis_state(
    postgresql_url: str, redis_url: str, pg_schema: str
) -> None:
    store = open_store(f"{postgresql_url}?schema={pg_schema}", state_url=redis_url)
    try:
        assert isinstance(store, PostgreSQLStore)
        assert isinstance(store.state, RedisState)
    finally:
        store.close()


def test_a_password_never_appears_in_the_store_url(pg_store_factory: Factory) -> None:
    store = pg_store_factory()
    assert "@" not in store.url or ":***@" in store.url or "//usermon@" in store.url


def test_an_unreachable_database_is_a_clear_startup_error(pg_schema: str) -> None:
    with pytest.raises(StoreError, match="cannot open the store"):
        PostgreSQLStore("postgresql://usermon@127.0.0.1:1/usermon_test", schema=pg_schema)


def test_replicas_growing_one_finding_add_up(pg_store_factory: Factory) -> None:
    replicas = [pg_store_factory() for _ in range(3)]

    def work(k: int, store: PostgreSQLStore) -> Callable[[], None]:
        def run() -> None:
            for i in range(40):
                store.record_findings([_delta(T0 + i, f"{k}-{i}")])

        return run

    threads = [threading.Thread(target=work(k, s)) for k, s in enumerate(replicas)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found = replicas[0].findings()
    assert [(f.id, f.event_count) for f in found] == [("shared", 120)]


def test_an_older_profile_never_replaces_a_newer_one(pg_store_factory: Factory) -> None:
    store = pg_store_factory()
    store.state.put("u:h1", {"first_seen": T0, "last_seen": T0 + 100, "label": "new"}, T0, 3600)
    store.record_profiles(["h1"], [])
    store.state.put("u:h1", {"first_seen": T0, "last_seen": T0 + 50, "label": "old"}, T0, 3600)
    store.record_profiles(["h1"], [])
    profile = store.user("h1")
    assert profile is not None
    assert profile["label"] == "new"


def test_a_dead_replicas_batches_are_adopted_by_the_next_replica(pg_store_factory: Factory) -> None:
    dying = pg_store_factory(lease=0.5)
    position = dying.intake(b"acknowledged-but-unprocessed", 7).position
    dying.close()  # its heartbeat stops, as when the process is killed
    time.sleep(0.8)
    successor = pg_store_factory(lease=0.5)
    assert list(successor.pending()) == [(position, b"acknowledged-but-unprocessed")]


def test_a_live_replicas_batches_are_left_to_it(pg_store_factory: Factory) -> None:
    alive = pg_store_factory(lease=0.6)
    position = alive.intake(b"mine", 1).position
    time.sleep(0.9)  # longer than the lease: only the heartbeat keeps it alive
    other = pg_store_factory(lease=0.6)
    assert list(other.pending()) == []
    assert list(alive.pending()) == [(position, b"mine")]


def test_a_restarted_replica_with_a_fixed_name_replays_its_own_batches(
    pg_store_factory: Factory,
) -> None:
    first = pg_store_factory(replica="processor-0")
    position = first.intake(b"batch", 2).position
    first.close()
    again = pg_store_factory(replica="processor-0")
    assert list(again.pending()) == [(position, b"batch")]


def test_the_schema_is_created_in_the_configured_schema_only(
    pg_store_factory: Factory, postgresql_url: str, pg_schema: str
) -> None:
    pg_store_factory()
    with psycopg.connect(postgresql_url) as conn:
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (pg_schema,),
            )
        }
    assert {"usermon_findings", "usermon_intake", "usermon_schema_migrations"} <= tables
