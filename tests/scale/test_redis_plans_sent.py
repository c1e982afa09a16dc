"""How RedisState sends a segment's plans: one write of packed commands on a pooled connection
(packed by hiredis, or by redis-py without it), every reply read (errors included) before the
connection goes back, a failed connection closed, and the finding steps (an episode opened, what
an event found kept) written as the direct calls write them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import redis

from usermon.processor.storage.errors import StoreError
from usermon.processor.storage.state import redis as redis_state
from usermon.processor.storage.state.redis import RedisState
from usermon.processor.storage.state.steps import (
    AddWindows,
    Claim,
    Episode,
    Fields,
    IncrFields,
    Keep,
    Step,
    record_json,
)

from .servers import RedisServer

pytestmark = pytest.mark.redis

T0 = 1_700_000_000.0
HOUR = 3600.0

Factory = Callable[[], RedisState]


@pytest.fixture(autouse=True, params=["hiredis", "redis-py"])
def packer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test with hiredis packing the commands, and with redis-py's own packer (a client
    installed without the ``redis`` extra's hiredis)."""
    if request.param == "redis-py":
        monkeypatch.setattr(redis_state, "_pack", None)
    else:
        assert redis_state._pack is not None


def test_an_error_reply_in_a_segment_is_raised_and_the_rest_is_read(
    redis_state_factory: Factory,
) -> None:
    """A plan Redis refuses (here a counting map's key holding a string) is raised as
    ``Pipeline.execute`` raised it, after every reply was read: the plans sent in calls of
    their own after it ran (an event's plan, led by its claim), those sent in its call (plans
    without a claim go together) stopped with it, and the connection answers the next segment
    with that segment's replies."""
    state = redis_state_factory()
    state.client.set(f"{state.prefix}{{x}}:m", "not a hash")
    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        state.apply_many(
            [
                [Fields("x")],
                [AddWindows("c", T0, (60.0,))],
                [Claim("d", "e1", T0, HOUR), AddWindows("c2", T0, (60.0,))],
            ]
        )
    assert state.apply_many([[AddWindows("c", T0 + 1, (60.0,))]]) == [[(1,)]]
    assert state.apply_many([[AddWindows("c2", T0 + 1, (60.0,))]]) == [[(2,)]]


def test_plans_without_a_claim_go_as_one_call_and_answer_as_apart(
    redis_state_factory: Factory,
) -> None:
    """A segment's plans without a claim (its learnings, episodes, appends) go to Redis as one
    script call, at most ``_MERGED_PLANS`` at a time, in order; each plan's results are what it
    answers sent alone, and a plan with a claim still goes alone."""
    together = redis_state_factory()
    apart = RedisState(together.client, prefix=together.prefix[:-1] + "-apart:")
    try:
        plans: list[list[Step]] = []
        for i in range(40):
            plans.append([IncrFields("m", (("a", 1), (f"b{i % 3}", 2)), T0 + i, HOUR)])
            plans.append([AddWindows("c", T0 + i, (60.0, HOUR)), Fields("m")])
            if i % 7 == 0:
                plans.append([Claim("d", f"e{i}", T0 + i, HOUR), AddWindows("c", T0 + i, (60.0,))])
        assert redis_state._merged(plans)[:4] == [(0, 2), (2, 3), (3, 17), (17, 18)]
        assert all(b - a <= redis_state._MERGED_PLANS for a, b in redis_state._merged(plans))
        calls = together.client.info("commandstats").get("cmdstat_evalsha", {"calls": 0})["calls"]
        answers = together.apply_many(plans)
        after = together.client.info("commandstats")["cmdstat_evalsha"]["calls"]
        assert after - calls == len(redis_state._merged(plans)) < len(plans)
        assert answers == [apart.apply_many([plan])[0] for plan in plans]
    finally:
        apart.clear()


def test_merged_slices_keep_the_order_and_leave_claims_alone() -> None:
    claim = [Claim("d", "e", T0, HOUR)]
    free = [Fields("m")]
    assert redis_state._merged([]) == []
    assert redis_state._merged([free]) == [(0, 1)]
    assert redis_state._merged([claim, claim]) == [(0, 1), (1, 2)]
    assert redis_state._merged([free, free, claim, free]) == [(0, 2), (2, 3), (3, 4)]
    n = redis_state._MERGED_PLANS
    assert redis_state._merged([free] * (2 * n + 1)) == [(0, n), (n, 2 * n), (2 * n, 2 * n + 1)]


def test_episode_and_keep_steps_write_what_the_direct_calls_write(
    redis_state_factory: Factory,
) -> None:
    planned = redis_state_factory()
    direct = RedisState(planned.client, prefix=planned.prefix[:-1] + "-direct:")
    try:
        kept = {"f": [{"id": "a", "n": 0.1 + 0.2}], "u": "Zoë 😀", "i": None}
        for t, opening in ((T0, "a"), (T0 + 10, "b"), (T0 + 2 * HOUR, "c")):
            [[answer]] = planned.apply_many([[Episode("f:k", (("id", opening),), t, HOUR, HOUR)]])
            assert answer == direct.open_episode("f:k", {"id": opening}, t, HOUR, HOUR)
        assert answer == ({"id": "c", "last": T0 + 2 * HOUR}, True)
        keep = Keep("k:1", "e1", record_json(kept), T0, HOUR)
        assert planned.apply_many([[keep]]) == [[None]]
        direct.keep("k:1", "e1", kept, T0, HOUR)
        assert planned.kept("k:1") == direct.kept("k:1") == {"e1": kept}
        for state in (planned, direct):
            for kind in ("r", "k"):
                name = f"{state.prefix}{{{'f:k' if kind == 'r' else 'k:1'}}}:{kind}"
                assert 0 < state.client.ttl(name) <= HOUR
    finally:
        direct.clear()


@pytest.fixture
def paused_state(own_redis: RedisServer) -> Iterator[tuple[RedisState, redis.Redis]]:
    state = RedisState.from_url(own_redis.url, socket_timeout=0.3)
    admin = redis.Redis.from_url(own_redis.url)
    yield state, admin
    state.client.close()
    admin.close()


def test_a_segment_that_timed_out_leaves_no_reply_for_the_next(
    paused_state: tuple[RedisState, redis.Redis],
) -> None:
    """Redis pauses while a segment waits for its replies: the state raises its StoreError,
    and the connection, half read, is closed rather than reused, so the next segment reads its
    own replies, not the late ones of the segment that timed out (which Redis ran)."""
    state, admin = paused_state
    assert state.apply_many([[AddWindows("c", T0, (60.0,))]]) == [[(1,)]]
    admin.execute_command("CLIENT", "PAUSE", 600, "ALL")
    with pytest.raises(StoreError):
        state.apply_many([[AddWindows("c", T0 + 1, (60.0,))]])
    time.sleep(0.8)  # the pause over
    # (A reply left unread would be the late one of the segment that timed out: (2,).)
    assert state.apply_many([[AddWindows("other", T0 + 2, (60.0,))]]) == [[(1,)]]
