"""What RedisState adds to the State contract: replicas sharing it, bounded memory, expiry."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from usermon.processor.aggregation import aggregate, user_profile
from usermon.processor.model import Event
from usermon.processor.state import State
from usermon.processor.state_redis import EXACT_MEMBERS, RedisState

pytestmark = pytest.mark.redis

T0 = 1_700_000_000.0
HOUR = 3600.0

Factory = Callable[[], RedisState]


def _in_threads(jobs: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_replicas_adding_to_one_counter_lose_no_update(redis_state_factory: Factory) -> None:
    replicas = [redis_state_factory() for _ in range(4)]

    def work(state: RedisState) -> Callable[[], None]:
        return lambda: [state.add_windows("ip:1", T0 + i * 0.01, (60.0, HOUR)) for i in range(250)]

    _in_threads([work(s) for s in replicas])
    assert replicas[0].count("ip:1", T0 + 3, HOUR) == 1000


def test_replicas_adding_members_agree_on_the_distinct_count(
    redis_state_factory: Factory,
) -> None:
    replicas = [redis_state_factory() for _ in range(4)]

    def work(k: int, state: RedisState) -> Callable[[], None]:
        return lambda: [
            state.add_distinct("ip:1:users", f"u{i % 40}", T0 + k, HOUR) for i in range(100)
        ]

    _in_threads([work(k, s) for k, s in enumerate(replicas)])
    assert replicas[1].distinct_count("ip:1:users", T0 + 5, HOUR) == 40


def test_a_rotating_attack_keeps_one_distinct_set_bounded(redis_state_factory: Factory) -> None:
    state = redis_state_factory()
    for i in range(5000):
        state.add_distinct("user:victim:ips", f"198.51.{i // 256}.{i % 256}", T0 + i * 0.1, HOUR)
    assert state.client.zcard(f"{state.prefix}{{user:victim:ips}}:z") == EXACT_MEMBERS
    # One sorted set, one mark and at most one HyperLogLog per bucket of the window.
    assert len(list(state.client.scan_iter(match=f"{state.prefix}*"))) <= 2 + 13


def test_every_key_expires_after_its_window(redis_state_factory: Factory) -> None:
    state = redis_state_factory()
    state.add_windows("c", T0, (60.0, HOUR))
    state.add_distinct("d", "m", T0, 60.0)
    state.incr_field("m", "f", T0, 600.0)
    state.put("r", {"a": 1}, T0, 600.0)
    ttls = {
        name: state.client.ttl(name) for name in state.client.scan_iter(match=f"{state.prefix}*")
    }
    assert ttls
    assert all(0 < ttl <= HOUR + 2 * HOUR / 12 for ttl in ttls.values()), ttls


def test_scripts_are_reloaded_after_the_server_forgot_them(redis_state_factory: Factory) -> None:
    state = redis_state_factory()
    state.add("c", T0, 60.0)
    state.client.script_flush()  # what a Redis restart does to the script cache
    assert state.add("c", T0 + 1, 60.0) == 2


def test_two_deployments_with_different_prefixes_do_not_share_state(redis_url: str) -> None:
    a = RedisState.from_url(redis_url, prefix="usermon_test_prefix_a:")
    b = RedisState.from_url(redis_url, prefix="usermon_test_prefix_b:")
    try:
        a.add("c", T0, 60.0, n=5)
        assert b.count("c", T0, 60.0) == 0
    finally:
        a.clear()
        b.clear()


def _profile_reader(user: str) -> Callable[[State], dict[str, Any] | None]:
    def read(state: State) -> dict[str, Any] | None:
        record = state.get("u:" + user)
        if record is None:
            return None
        return user_profile(state, user, float(record["last_seen"]))

    return read


def test_read_batch_answers_what_the_direct_reads_answer(redis_state_factory: Factory) -> None:
    state = redis_state_factory()
    for i in range(30):
        aggregate(
            Event(
                kind="login",
                time=T0 + i,
                success=i % 3 == 0,
                user_hash=f"u{i % 4}",
                user_id=f"u{i % 4}@example.com",
                client_ip=f"192.0.2.{i % 7}",
                user_agent="Mozilla/5.0",
            ),
            state,
        )
    readers = [_profile_reader(f"u{k}") for k in range(5)]  # u4 was never seen
    assert state.read_batch(readers) == [reader(state) for reader in readers]


def test_readers_in_read_batch_cannot_write(redis_state_factory: Factory) -> None:
    state = redis_state_factory()

    def writer(s: State) -> None:
        s.put("k", {}, T0, 60.0)

    with pytest.raises(TypeError, match="must not write"):
        state.read_batch([writer])
