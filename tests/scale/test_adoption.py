"""A running replica takes over the acknowledged batches of a replica that died, without waiting
for a restart: the processor service adopts orphans every lease interval and processes them."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

from usermon.processor.detectors import default_detectors
from usermon.processor.service import Processor
from usermon.processor.settings import resolve
from usermon.processor.simulate.otlp import to_request
from usermon.processor.storage.base import Store

from .traffic import login_stream

pytestmark = [pytest.mark.redis, pytest.mark.slow]

BATCH = 40
LEASE = 0.5
Factory = Callable[..., Store]


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("pg", id="postgresql+redis", marks=pytest.mark.postgresql),
    ]
)
def shared_store_factory(request: pytest.FixtureRequest) -> Factory:
    factory: Factory = request.getfixturevalue(f"{request.param}_store_factory")
    return factory


@pytest.fixture
def processors() -> Iterator[Callable[[Store | None], Processor]]:
    made: list[Processor] = []

    def make(store: Store | None) -> Processor:
        settings = resolve({"store": "memory://"}, env={})
        processor = Processor(settings, store=store, detectors=default_detectors())
        made.append(processor)
        return processor

    yield make
    for processor in made:
        processor.close()


def _journal_blob(body: bytes) -> bytes:
    # What the processor service journals for an OTLP/HTTP protobuf trace export.
    return b"TP" + struct.pack("<d", time.time()) + body


def _summary(store: Store) -> list[tuple[object, ...]]:
    return sorted((f.id, f.kind, f.subject.id, f.event_count) for f in store.findings(limit=1000))


def test_a_running_replica_processes_what_a_dead_one_acknowledged(
    shared_store_factory: Factory, processors: Callable[[Store | None], Processor]
) -> None:
    events = login_stream(users=60)
    bodies = [
        to_request(events[i : i + BATCH]).SerializeToString() for i in range(0, len(events), BATCH)
    ]
    single = processors(None)
    for body in bodies:
        single.ingest("traces", body, json_format=False)
    expected = _summary(single.store)
    assert {kind for _, kind, *_ in expected} >= {"brute_force", "credential_stuffing"}

    survivor = processors(shared_store_factory(lease=LEASE))
    dying = shared_store_factory(lease=LEASE)
    for body in bodies:  # acknowledged (durably taken), then the replica dies unprocessed
        dying.intake(_journal_blob(body), BATCH)
    dying.close()

    deadline = time.monotonic() + 15
    while _summary(survivor.store) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _summary(survivor.store) == expected
    stats = survivor.engine.stats
    assert stats["logins_failure"] + stats["logins_success"] == len(events)


@pytest.mark.postgresql
def test_a_replica_taken_for_dead_registers_again_and_is_adopted_when_it_dies(
    pg_store_factory: Factory, postgresql_url: str, pg_schema: str
) -> None:
    survivor, other = pg_store_factory(lease=LEASE), pg_store_factory(lease=LEASE)
    # After an outage longer than the lease, the first replica to adopt takes every other for
    # dead and removes its registration, although it is alive.
    with psycopg.connect(postgresql_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DELETE FROM {}.usermon_replicas WHERE replica = %s").format(
                sql.Identifier(pg_schema)
            ),
            (other.replica,),
        )
    time.sleep(LEASE)  # the live replica's heartbeats go on
    other.intake(b"acknowledged later", 1)
    other.close()  # now it really dies
    time.sleep(LEASE * 2)
    assert [blob for _, blob in survivor.adopt_orphans()] == [b"acknowledged later"]
