"""Replicas on one Redis agree on what was already counted, and a store failure fails the batch.

The same attempt reported twice (as a span event and as a log record) counts once even when the
two reports reach different replicas; a batch that failed half way on the store and is retried
(on the same replica or another) does not count again the events processed before the failure,
and counts the ones after it once the failing replica has given back their claims (a batch
claims its events up front); and a state failure inside a detector fails the batch (the receiver
answers 503) instead of being counted as a detector error and acknowledged.

The failures are real: a detector pauses the shared Redis (``CLIENT PAUSE``) while the engine's
client has a short socket timeout, so the engine's next Redis step times out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import httpx
import pytest
import redis
from tests.support.example_rule import ExampleRule
from tests.support.servers import ServedInThread

from usermon.processor.aggregation import user_profile
from usermon.processor.engine import Engine
from usermon.processor.model import Event, Signal
from usermon.processor.service import Processor
from usermon.processor.settings import resolve
from usermon.processor.simulate.otlp import to_request
from usermon.processor.storage.errors import StoreError
from usermon.processor.storage.postgresql import PostgreSQLStore
from usermon.processor.storage.redis import RedisStore
from usermon.processor.storage.state.base import State
from usermon.processor.storage.state.redis import RedisState
from usermon.processor.storage.state.steps import Step

from .conftest import unique_name
from .servers import PostgreSQLServer

pytestmark = pytest.mark.redis

T0 = 1_767_571_200.0
PAUSE_MS = 2000
TIMEOUT = 0.5  # the engine's Redis socket timeout: short, but long enough for a loaded machine


def _attempt(i: int, user: str = "alice") -> Event:
    return Event(
        kind="login",
        time=T0 + i,
        success=False,
        user_hash=user,
        client_ip="203.0.113.5",
        trace_id=f"{i + 1:032x}",
        span_id=f"{i + 1:016x}",
    )


class PausesRedis:
    """A detector that, at one event, pauses the Redis everyone shares and then reads the state:
    the read times out like it would if Redis went away at that moment."""

    name = "pauses_redis"

    def __init__(self, admin: redis.Redis, at: float, pause_ms: int = PAUSE_MS) -> None:
        self.admin = admin
        self.at = at
        self.pause_ms = pause_ms
        self.armed = True

    def plan(self, event: Event) -> Sequence[Step]:
        return ()  # its read is made call by call, as a detector's rare read is

    def observe(self, event: Event, state: State) -> Sequence[Signal]:
        if self.armed and event.time == self.at:
            self.armed = False
            self.admin.execute_command("CLIENT", "PAUSE", self.pause_ms, "ALL")
            state.count("u:" + (event.user_hash or "") + ":fail", event.time, 60)
        return ()


@pytest.fixture
def replicas(redis_url: str) -> Iterator[Callable[[], RedisState]]:
    """States of replicas sharing one fresh prefix; a short timeout so a paused Redis fails fast."""
    prefix = unique_name("usermon_test") + ":"
    made: list[RedisState] = []

    def make() -> RedisState:
        state = RedisState.from_url(redis_url, prefix=prefix, socket_timeout=TIMEOUT)
        made.append(state)
        return state

    yield make
    # A test may leave Redis paused: this client has no timeout, so it waits for the end.
    RedisState.from_url(redis_url, prefix=prefix).clear()
    for state in made:
        state.client.close()


@pytest.fixture
def admin(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def _failures(state: State, user: str = "alice") -> int:
    profile = user_profile(state, user, T0 + 60)  # every attempt is inside the last hour
    return 0 if profile is None else int(profile["failures"]["1h"])


def test_the_same_attempt_reaching_two_replicas_counts_once(
    replicas: Callable[[], RedisState],
) -> None:
    first, second = Engine(replicas()), Engine(replicas())
    as_span_event = [_attempt(i) for i in range(3)]
    as_log_record = [_attempt(i) for i in range(3)]  # the same attempts, the same dedupe keys
    assert first.process(as_span_event).accepted == 3
    out = second.process(as_log_record)
    assert (out.accepted, out.duplicates) == (0, 3)
    assert _failures(first.state) == 3


def test_a_state_failure_inside_a_detector_fails_the_batch(
    replicas: Callable[[], RedisState], admin: redis.Redis
) -> None:
    batch = [_attempt(i) for i in range(5)]
    engine = Engine(replicas(), [PausesRedis(admin, at=batch[-1].time)])
    with pytest.raises(StoreError):
        engine.process(batch)
    assert engine.detector_errors == 0


@pytest.mark.parametrize("retried_on", ["the same replica", "another replica"])
def test_a_batch_retried_after_a_mid_batch_failure_counts_each_event_once(
    replicas: Callable[[], RedisState], admin: redis.Redis, retried_on: str
) -> None:
    """Call by call (``planned=False``), the batch claimed up front."""
    batch = [_attempt(i) for i in range(10)]
    failing = Engine(replicas(), [PausesRedis(admin, at=batch[4].time)], planned=False)
    with pytest.raises(StoreError):
        failing.process(batch)  # answered 503: the sender retries the whole batch
    # Redis was still paused when the engine tried to give back the claims of the events after
    # the failure: it holds them (the event in flight, already aggregated, stays claimed).
    assert failing.claims_held == 5
    admin.ping()  # answered once the pause is over (CLIENT PAUSE ALL holds every client)
    if retried_on == "the same replica":
        retry = failing  # gives them back before claiming the retry's events
    else:
        # What the processor service does every second while claims are held (tested below).
        assert failing.give_back() == 0
        retry = Engine(replicas(), planned=False)
    out = retry.process(batch)
    assert (out.accepted, out.duplicates) == (5, 5)
    assert _failures(retry.state) == len(batch)


@pytest.mark.parametrize("retried_on", ["the same replica", "another replica"])
def test_a_planned_batch_retried_after_a_failure_while_judging_counts_each_event_once(
    replicas: Callable[[], RedisState], admin: redis.Redis, retried_on: str
) -> None:
    """Planned (the default on Redis): the batch's plans ran before Redis went away while its
    fifth event was judged, so every event is claimed and counted once; the retry takes none
    of them again (what the events after the fifth would have found is lost, as the event in
    flight's was call by call), and counts nothing twice."""
    batch = [_attempt(i) for i in range(10)]
    failing = Engine(replicas(), [PausesRedis(admin, at=batch[4].time)])
    assert failing.planned
    with pytest.raises(StoreError):
        failing.process(batch)
    assert failing.claims_held == 0  # nothing to give back: no claim without its counting
    admin.ping()
    retry = failing if retried_on == "the same replica" else Engine(replicas())
    out = retry.process(batch)
    assert (out.accepted, out.duplicates) == (0, 10)
    assert _failures(retry.state) == len(batch)


def test_a_failed_batch_gives_back_its_claims_at_once_when_redis_answers_again(
    replicas: Callable[[], RedisState], admin: redis.Redis
) -> None:
    batch = [_attempt(i) for i in range(10)]
    # Paused for less than two timeouts: the failing read times out, the give-back gets through.
    failing = Engine(
        replicas(),
        [PausesRedis(admin, at=batch[4].time, pause_ms=int(1500 * TIMEOUT))],
        planned=False,
    )
    with pytest.raises(StoreError):
        failing.process(batch)
    assert failing.claims_held == 0
    # The retry, on another replica.
    out = Engine(replicas(), planned=False).process(batch)
    assert (out.accepted, out.duplicates) == (6, 4)  # the event in flight is processed again


@pytest.mark.slow
def test_a_replica_s_failed_batch_leaves_the_rest_of_it_free_for_a_retry_elsewhere(
    redis_url: str, admin: redis.Redis
) -> None:
    """On a shared store a replica claims each event in the plan that counts it, so a batch
    failing while its fifth event is judged holds no claim it has not counted: a retry on
    another replica, however soon it comes, counts nothing twice (the batch's plans all ran,
    so it takes none of them again; had Redis gone before they ran, it would take them all)."""
    prefix = unique_name("usermon_test") + ":"
    url = f"{redis_url}?socket_timeout={TIMEOUT}"
    settings = resolve({"store": "memory://"}, env={})
    attempts = [_attempt(i) for i in range(10)]
    body = to_request(attempts).SerializeToString()
    failing = Processor(
        settings,
        store=RedisStore(url, prefix=prefix),
        detectors=[PausesRedis(admin, at=attempts[4].time)],
    )
    other = Processor(settings, store=RedisStore(url, prefix=prefix), detectors=[])
    try:
        assert not failing.engine.claim_ahead
        with pytest.raises(StoreError):
            failing.ingest("traces", body, json_format=False)
        assert failing.engine.claims_held == 0  # nothing claimed ahead of the failure
        deadline = time.monotonic() + 10
        while True:  # the retry, as soon as Redis answers again
            try:
                result = other.ingest("traces", body, json_format=False)
                break
            except StoreError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert failing.engine.planned
        assert result.accepted == 0  # every event counted by the failing replica's plans
        assert _failures(other.store.state) == len(attempts)
    finally:
        failing.close()
        other.close()
        RedisState.from_url(redis_url, prefix=prefix).clear()


class StopsPostgreSQL:
    """A detector that, at one event, stops the database the store writes findings to."""

    name = "stops_postgresql"

    def __init__(self, server: PostgreSQLServer, at: float) -> None:
        self.server = server
        self.at = at

    def observe(self, event: Event, state: State) -> Sequence[Signal]:
        if event.time == self.at and self.server.running:
            self.server.stop()
        return ()


@pytest.fixture
def own_postgresql() -> Iterator[PostgreSQLServer]:
    server = PostgreSQLServer()
    server.start()
    yield server
    server.close()


@pytest.mark.postgresql
@pytest.mark.slow
def test_findings_of_a_batch_that_failed_on_the_database_are_recorded_by_the_next(
    own_postgresql: PostgreSQLServer, redis_url: str
) -> None:
    attempts = [_attempt(i) for i in range(6)]
    body = to_request(attempts).SerializeToString()
    settings = resolve({"store": "memory://"}, env={})
    single = Processor(settings, detectors=[ExampleRule(threshold=3)])
    single.ingest("traces", body, json_format=False)
    expected = [(f.id, f.event_count) for f in single.store.findings()]
    assert [count for _, count in expected] == [4]  # failures 3 to 6 of one user
    single.close()

    prefix = unique_name("usermon_test") + ":"
    store = PostgreSQLStore(own_postgresql.url, state_url=redis_url, state_prefix=prefix)
    stops = StopsPostgreSQL(own_postgresql, at=attempts[-1].time)
    processor = Processor(settings, store=store, detectors=[ExampleRule(threshold=3), stops])
    try:
        with pytest.raises(StoreError):  # processed, but the findings could not be written: 503
            processor.ingest("traces", body, json_format=False)
        own_postgresql.start()
        deadline = time.monotonic() + 15
        while True:  # the sender retries until the database is back
            try:
                result = processor.ingest("traces", body, json_format=False)
                break
            except StoreError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert result.accepted == 0  # every event was already counted
        assert [(f.id, f.event_count) for f in store.findings()] == expected
    finally:
        processor.close()
        RedisState.from_url(redis_url, prefix=prefix).clear()


def test_healthz_counts_the_events_a_full_dedupe_map_did_not_record(redis_url: str) -> None:
    prefix = unique_name("usermon_test") + ":"
    settings = resolve({"store": "memory://"}, env={})
    processor = Processor(settings, store=RedisStore(redis_url, prefix=prefix), detectors=[])
    state = processor.store.state
    assert isinstance(state, RedisState)
    state.dedupe_cap = 2  # one minute's map: five events in it, two recorded
    body = to_request([_attempt(i) for i in range(5)]).SerializeToString()
    try:
        with (
            ServedInThread(processor, log_level="critical") as served,
            httpx.Client(base_url=served.url, timeout=10) as http,
        ):
            assert http.get("/healthz").json()["dedupe_unrecorded"] == 0
            response = http.post(
                "/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"}
            )
            assert response.status_code == 200
            assert http.get("/healthz").json()["dedupe_unrecorded"] == 3
    finally:
        processor.close()
        RedisState.from_url(redis_url, prefix=prefix).clear()
