"""What the postgresql:// store adds to the Store contract: migrations, replicas acting as one,
intake that survives the replica that took it."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from usermon.processor.profiles import Profiles
from usermon.processor.storage.base import open_store
from usermon.processor.storage.errors import StoreError
from usermon.processor.storage.postgresql import PostgreSQLStore, migrations
from usermon.processor.storage.state.redis import RedisState

pytestmark = [pytest.mark.postgresql, pytest.mark.redis]

T0 = 1_700_000_000.0
Factory = Callable[..., PostgreSQLStore]


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


def test_an_older_profile_never_replaces_a_newer_one(pg_store_factory: Factory) -> None:
    store = pg_store_factory()
    store.state.put("u:h1", {"first_seen": T0, "last_seen": T0 + 100, "label": "new"}, T0, 3600)
    Profiles(store).record(["h1"], [])
    store.state.put("u:h1", {"first_seen": T0, "last_seen": T0 + 50, "label": "old"}, T0, 3600)
    Profiles(store).record(["h1"], [])
    profile = Profiles(store).user("h1")
    assert profile is not None
    assert profile["label"] == "new"


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
