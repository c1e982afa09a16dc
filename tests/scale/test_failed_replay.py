"""A batch that the shared state failed half way loses no finding and counts nothing twice.

Redis goes away while a segment of the batch is judged: its events were claimed (for the batch)
and counted by their plans, those from the failing one on were never judged. The sender's retry
is a new batch, which finds them claimed by another report; so the replica replays the failed
batch itself from its journal (before it takes another batch, or within a second of Redis
answering again), which judges them again from what their plans counted. Whichever comes first,
that replay or the retry (on this replica or another), each event is counted once and every
finding one processor makes is recorded (docs/processor.md, *Ingest*). Those judged again read
counts that hold the rest of their segment, so a finding may have an event or two more (as after
a crash mid-segment, tests/scale/test_crash_recording.py).

The failure is real: at one event a detector pauses the test's own Redis server (``CLIENT
PAUSE``, so no other test waits) and reads it, and the replica's client times out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx
import pytest
import redis
from tests.support.servers import ServedInThread

from usermon.processor.detectors import default_detectors
from usermon.processor.model import Event, Signal
from usermon.processor.service import Processor
from usermon.processor.settings import resolve
from usermon.processor.storage.base import Store
from usermon.processor.storage.errors import StoreError
from usermon.processor.storage.postgresql import PostgreSQLStore
from usermon.processor.storage.redis import RedisStore
from usermon.processor.storage.state.base import State
from usermon.processor.storage.state.steps import Step

from .conftest import unique_name
from .servers import RedisServer
from .traffic import batches, login_stream, second_growth, summary

pytestmark = [pytest.mark.redis, pytest.mark.slow]

BATCH = 40
TIMEOUT = 0.5  # the replicas' Redis socket timeout
PAUSE_MS = 3000  # long enough for the failed batch and one more attempt to time out in it


def _settings() -> Any:
    return resolve({"store": "memory://"}, env={})


def _logins(processor: Processor) -> int:
    stats = processor.engine.stats
    return stats["logins_success"] + stats["logins_failure"] + stats["signups"]


def _charted(processor: Processor) -> int:
    """Events in the processor's activity chart (the dashboard's)."""
    _, series = processor.activity.series(minutes=10_000)
    return sum(sum(point) for points in series.values() for point in points)


class Traffic:
    """The batches, the one that fails (the second batch that grows a finding: an earlier one is
    recorded before it), and what one processor makes of the batches up to it."""

    def __init__(self) -> None:
        events = login_stream(users=60)
        self.bodies = batches(events, BATCH)
        single = Processor(_settings(), detectors=default_detectors())
        self.fails_in, self.expected = second_growth(self.bodies, single)
        self.logins = _logins(single)
        self.charted = _charted(single)
        assert self.logins == self.charted == BATCH * (self.fails_in + 1)
        single.close()


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    return Traffic()


class PausesRedis:
    """A detector, first of all, that at event ``at`` of the armed batch pauses the Redis
    everyone shares and reads it: the read times out, as it would if Redis went away then. It
    declares a plan (none), so that planned steps run as with the default detectors alone:
    many events to a segment, all claimed and counted before the first is judged."""

    name = "pauses_redis"

    def __init__(self, admin: redis.Redis, at: int) -> None:
        self.admin, self.at = admin, at
        self.armed = False
        self.seen = 0

    def plan(self, event: Event) -> Sequence[Step]:
        return ()

    def observe(self, event: Event, state: State) -> Sequence[Signal]:
        if self.armed:
            if self.seen == self.at:
                self.armed = False
                self.admin.execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")
                state.get("pauses-redis")
            self.seen += 1
        return ()


@pytest.fixture
def admin(own_redis: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(own_redis.url)
    yield client
    client.close()


@pytest.fixture(
    params=[
        "redis",
        pytest.param("postgresql+redis", marks=pytest.mark.postgresql),
    ]
)
def replicas(
    request: pytest.FixtureRequest, own_redis: RedisServer
) -> Iterator[Callable[[list[Any]], Processor]]:
    """Make replicas of one deployment on the test's Redis (and PostgreSQL), each with the
    detectors given, default ones after them."""
    url = f"{own_redis.url}?socket_timeout={TIMEOUT}"
    prefix = unique_name("usermon_test") + ":"
    made: list[Processor] = []
    pg = request.param != "redis"
    pg_url = request.getfixturevalue("postgresql_url") if pg else ""
    schema = request.getfixturevalue("pg_schema") if pg else ""

    def make(first: list[Any]) -> Processor:
        store: Store
        if pg:
            store = PostgreSQLStore(pg_url, schema=schema, state_url=url, state_prefix=prefix)
        else:
            store = RedisStore(url, prefix=prefix)
        processor = Processor(_settings(), store=store, detectors=[*first, *default_detectors()])
        made.append(processor)
        return processor

    yield make
    for processor in made:
        processor.close()


def _quiet(processor: Processor) -> None:
    """Stop the replica's background thread (adoption, giving back, replaying what failed), so
    that the test alone decides when the replica replays its failed batch."""
    processor._stop.set()
    assert processor._adopter is not None
    processor._adopter.join()


def _fail(failing: Processor, pauser: PausesRedis, traffic: Traffic) -> None:
    """The batches before the failing one go through; the failing one fails half way (503)."""
    for body in traffic.bodies[: traffic.fails_in]:
        failing.ingest("traces", body, json_format=False)
    pauser.armed = True
    with pytest.raises(StoreError):
        failing.ingest("traces", traffic.bodies[traffic.fails_in], json_format=False)
    assert not pauser.armed
    assert failing.engine.planned


def _retry(processor: Processor, body: bytes) -> int:
    """Send ``body`` as a sender does after a 503, until it is taken; returns events accepted."""
    deadline = time.monotonic() + 15
    while True:
        try:
            return processor.ingest("traces", body, json_format=False).accepted
        except StoreError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _check(traffic: Traffic, replicas: Sequence[Processor]) -> None:
    """Every finding one processor made is there, each with at least its events and at most
    one more per event judged again; and each event was counted once, in the stats and in the
    activity charts."""
    found = {fid: rest for fid, *rest in summary(replicas[0].store)}
    wanted = {fid: rest for fid, *rest in traffic.expected}
    assert found.keys() == wanted.keys()
    rejudged = sum(r.engine.rejudged for r in replicas)
    extra = {fid: found[fid][2] - wanted[fid][2] for fid in wanted}
    assert min(extra.values()) >= 0, extra
    assert sum(extra.values()) <= rejudged, extra
    assert rejudged > 0
    assert sum(_logins(r) for r in replicas) == traffic.logins
    assert sum(_charted(r) for r in replicas) == traffic.charted


@pytest.mark.parametrize("at", [5, 20])
def test_a_batch_failed_half_way_and_retried_on_its_replica_loses_no_finding(
    replicas: Callable[[list[Any]], Processor],
    admin: redis.Redis,
    traffic: Traffic,
    at: int,
) -> None:
    """The retry reaches the failing replica, which replays the failed batch first: the retry
    then finds every event claimed (by the batch it failed as, or by its replay)."""
    pauser = PausesRedis(admin, at)
    failing = replicas([pauser])
    _fail(failing, pauser, traffic)
    assert _retry(failing, traffic.bodies[traffic.fails_in]) == 0
    _check(traffic, [failing])


@pytest.mark.parametrize("at", [5, 20])
def test_a_batch_failed_half_way_and_retried_on_another_replica_first_loses_no_finding(
    replicas: Callable[[list[Any]], Processor],
    admin: redis.Redis,
    traffic: Traffic,
    at: int,
) -> None:
    """The retry reaches another replica before the failing one replays the batch: the retry
    takes the events whose plans never ran, the replay judges those claimed and never judged,
    and finds the retry's duplicates."""
    pauser = PausesRedis(admin, at)
    failing, other = replicas([pauser]), replicas([])
    _quiet(failing)
    _fail(failing, pauser, traffic)
    _retry(other, traffic.bodies[traffic.fails_in])
    with ServedInThread(failing, log_level="critical") as served:
        waiting = httpx.get(f"{served.url}/healthz", timeout=10).json()
        assert failing.adopt_orphans() == 1  # its next round: the failed batch, replayed
        done = httpx.get(f"{served.url}/healthz", timeout=10).json()
    assert (waiting["batches_to_replay"], done["batches_to_replay"]) == (1, 0)
    _check(traffic, [failing, other])


def test_a_batch_failed_half_way_stays_queued_while_the_state_fails_and_is_replayed_unasked(
    replicas: Callable[[list[Any]], Processor],
    admin: redis.Redis,
    traffic: Traffic,
) -> None:
    """No retry at all: while Redis is still paused the replica's next batch is answered 503
    and not taken (the failed batch goes first), then the replica replays the failed batch by
    itself, within a second or so of Redis answering again."""
    pauser = PausesRedis(admin, 5)
    failing = replicas([pauser])
    _fail(failing, pauser, traffic)
    position = failing._position
    with pytest.raises(StoreError):  # Redis is still paused
        failing.ingest("traces", traffic.bodies[traffic.fails_in + 1], json_format=False)
    assert failing._position == position  # that batch was not taken
    deadline = time.monotonic() + 15
    while failing._failed and time.monotonic() < deadline:
        time.sleep(0.1)
    with failing.lock:  # its replay holds the lock until recorded
        assert not failing._failed
    _check(traffic, [failing])
