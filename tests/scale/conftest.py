"""Fixtures for the scale-out tests: a state or store per backend, isolated per test.

Each Redis-backed fixture gets its own key prefix and deletes its keys afterwards; each
PostgreSQL-backed one gets its own schema, dropped afterwards. So tests can share the servers
that scripts/services starts, in any order.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from usermon.processor.state import State
from usermon.processor.state_memory import MemoryState

STATE_BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_state_factory(request: pytest.FixtureRequest) -> Iterator[object]:
    """Make RedisStates sharing one fresh prefix (several "replicas" of one deployment)."""
    from usermon.processor.state_redis import RedisState

    url = request.getfixturevalue("redis_url")
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


@pytest.fixture(params=STATE_BACKENDS)
def state(request: pytest.FixtureRequest) -> State:
    if request.param == "memory":
        return MemoryState()
    factory = request.getfixturevalue("redis_state_factory")
    made: State = factory()
    return made
