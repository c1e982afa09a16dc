"""Outages: with Redis or PostgreSQL down, intake refuses (the receiver answers 503 and the
Collector retries), health says what is down, and the store recovers by itself once the service
is back. Each test runs its own server, so stopping it breaks no other test."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from usermon.processor.storage.base import Store
from usermon.processor.storage.errors import StoreError
from usermon.processor.storage.postgresql import PostgreSQLStore
from usermon.processor.storage.redis import RedisStore
from usermon.processor.storage.state.redis import RedisState

from .conftest import unique_name
from .servers import PostgreSQLServer, RedisServer

pytestmark = [pytest.mark.postgresql, pytest.mark.redis, pytest.mark.slow]

T0 = 1_700_000_000.0


def _eventually(check: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def _intake_fails(store: PostgreSQLStore, match: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            store.intake(b"batch", 1)
        except StoreError as exc:
            return match in str(exc)
        return False

    return check


def _intake_works(store: Store) -> Callable[[], bool]:
    def check() -> bool:
        try:
            store.intake(b"batch", 1)
        except StoreError:
            return False
        return True

    return check


@pytest.fixture(scope="module")
def _postgresql_server() -> Iterator[PostgreSQLServer]:
    server = PostgreSQLServer()  # initdb once for the module: it takes seconds
    yield server
    server.close()


@pytest.fixture
def own_postgresql(_postgresql_server: PostgreSQLServer) -> PostgreSQLServer:
    if not _postgresql_server.running:
        _postgresql_server.start()
    return _postgresql_server


@pytest.fixture
def store_on_own_redis(
    own_redis: RedisServer, postgresql_url: str, pg_schema: str
) -> Iterator[PostgreSQLStore]:
    store = PostgreSQLStore(postgresql_url, schema=pg_schema, state_url=own_redis.url)
    yield store
    store.close()


@pytest.fixture
def store_on_own_postgresql(
    own_postgresql: PostgreSQLServer, redis_url: str
) -> Iterator[PostgreSQLStore]:
    prefix = unique_name("usermon_test") + ":"
    store = PostgreSQLStore(own_postgresql.url, state_url=redis_url, state_prefix=prefix)
    yield store
    store.close()
    RedisState.from_url(redis_url, prefix=prefix).clear()


def test_with_redis_down_intake_refuses_and_says_why(
    own_redis: RedisServer, store_on_own_redis: PostgreSQLStore
) -> None:
    store_on_own_redis.intake(b"before", 1)
    own_redis.stop()
    assert _eventually(_intake_fails(store_on_own_redis, "redis unavailable"), timeout=5)


def test_with_redis_down_state_steps_raise_a_store_error(
    own_redis: RedisServer, store_on_own_redis: PostgreSQLStore
) -> None:
    own_redis.stop()
    with pytest.raises(StoreError, match="redis unavailable"):
        store_on_own_redis.state.add("c", T0, 60.0)


def test_with_redis_down_health_names_redis(
    own_redis: RedisServer, store_on_own_redis: PostgreSQLStore
) -> None:
    own_redis.stop()
    health = store_on_own_redis.health()
    assert not health.ok
    assert health.components["redis"].startswith("down")
    assert health.components["postgresql"] == "ok"


def test_after_a_redis_outage_the_store_recovers_by_itself(
    own_redis: RedisServer, store_on_own_redis: PostgreSQLStore
) -> None:
    store_on_own_redis.state.add("c", T0, 60.0)
    own_redis.stop()
    assert _eventually(_intake_fails(store_on_own_redis, "redis unavailable"), timeout=5)
    own_redis.start()  # an empty Redis: its scripts must be loaded again
    assert _eventually(_intake_works(store_on_own_redis))
    assert store_on_own_redis.state.add("c", T0 + 1, 60.0) == 1
    assert store_on_own_redis.health().ok


@pytest.fixture
def redis_store_on_own_redis(own_redis: RedisServer) -> Iterator[RedisStore]:
    store = RedisStore(own_redis.url)
    yield store
    store.close()


def test_the_redis_store_refuses_intake_while_redis_is_down_and_recovers(
    own_redis: RedisServer, redis_store_on_own_redis: RedisStore
) -> None:
    redis_store_on_own_redis.intake(b"before", 1)
    own_redis.stop()
    with pytest.raises(StoreError, match="redis unavailable"):
        redis_store_on_own_redis.intake(b"during", 1)
    assert redis_store_on_own_redis.health().components["redis"].startswith("down")
    own_redis.start()  # no persistence in this test server: the journal starts empty again
    assert _eventually(_intake_works(redis_store_on_own_redis))
    assert redis_store_on_own_redis.health().ok


def test_with_postgresql_down_intake_refuses_and_says_why(
    own_postgresql: PostgreSQLServer, store_on_own_postgresql: PostgreSQLStore
) -> None:
    store_on_own_postgresql.intake(b"before", 1)
    own_postgresql.stop()
    assert _eventually(_intake_fails(store_on_own_postgresql, "postgresql unavailable"), timeout=20)


def test_with_postgresql_down_health_names_postgresql(
    own_postgresql: PostgreSQLServer, store_on_own_postgresql: PostgreSQLStore
) -> None:
    own_postgresql.stop()
    health = store_on_own_postgresql.health()
    assert not health.ok
    assert health.components["postgresql"].startswith("down")
    assert health.components["redis"] == "ok"


def test_after_a_postgresql_outage_the_store_recovers_by_itself(
    own_postgresql: PostgreSQLServer, store_on_own_postgresql: PostgreSQLStore
) -> None:
    before = store_on_own_postgresql.intake(b"before", 1).position
    own_postgresql.stop()
    assert _eventually(_intake_fails(store_on_own_postgresql, "postgresql unavailable"), timeout=20)
    own_postgresql.start()
    assert _eventually(_intake_works(store_on_own_postgresql), timeout=30)
    assert store_on_own_postgresql.health().ok
    # What was acknowledged before the outage is still there.
    assert before in [position for position, _ in store_on_own_postgresql.pending()]
