"""What the shared stores (redis://, postgresql:// + Redis) add to the Store contract: replicas
growing one finding together, and intake that survives the replica that took it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from usermon.processor.model import Finding, Subject
from usermon.processor.storage.base import Store

T0 = 1_700_000_000.0
Factory = Callable[..., Store]


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("pg", marks=[pytest.mark.postgresql, pytest.mark.redis]),
    ]
)
def replicas(request: pytest.FixtureRequest) -> Factory:
    """Open one more replica of one deployment."""
    factory: Factory = request.getfixturevalue(f"{request.param}_store_factory")
    return factory


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


def test_replicas_growing_one_finding_add_up(replicas: Factory) -> None:
    stores = [replicas() for _ in range(3)]

    def work(k: int, store: Store) -> Callable[[], None]:
        def run() -> None:
            for i in range(40):
                store.record_findings([_delta(T0 + i, f"{k}-{i}")])

        return run

    threads = [threading.Thread(target=work(k, s)) for k, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found = stores[0].findings()
    assert [(f.id, f.event_count, f.first_seen, f.last_seen) for f in found] == [
        ("shared", 120, T0, T0 + 39)
    ]


def test_a_dead_replicas_batches_are_adopted_by_the_next_replica(replicas: Factory) -> None:
    dying = replicas(lease=0.5)
    position = dying.intake(b"acknowledged-but-unprocessed\x00\xff", 7).position
    dying.close()  # its heartbeat stops, as when the process is killed
    time.sleep(0.8)
    successor = replicas(lease=0.5)
    assert list(successor.pending()) == [(position, b"acknowledged-but-unprocessed\x00\xff")]


def test_a_running_replica_adopts_exactly_the_orphaned_batches(replicas: Factory) -> None:
    running = replicas(lease=0.5)
    own = running.intake(b"own, being processed", 1).position
    dying = replicas(lease=0.5)
    orphan = dying.intake(b"orphan", 1).position
    dying.close()
    time.sleep(0.8)
    assert running.adopt_orphans() == [(orphan, b"orphan")]  # type: ignore[attr-defined]
    assert [p for p, _ in running.pending()] == sorted([own, orphan])


def test_a_live_replicas_batches_are_left_to_it(replicas: Factory) -> None:
    alive = replicas(lease=0.6)
    position = alive.intake(b"mine", 1).position
    time.sleep(0.9)  # longer than the lease: only the heartbeat keeps it alive
    other = replicas(lease=0.6)
    assert list(other.pending()) == []
    assert list(alive.pending()) == [(position, b"mine")]


def test_a_restarted_replica_with_a_fixed_name_replays_its_own_batches(
    replicas: Factory,
) -> None:
    first = replicas(replica="processor-0")
    position = first.intake(b"batch", 2).position
    first.close()
    again = replicas(replica="processor-0")
    assert list(again.pending()) == [(position, b"batch")]


def test_positions_grow_across_replicas(replicas: Factory) -> None:
    a, b = replicas(), replicas()
    first = a.intake(b"1", 1).position
    assert b.intake(b"2", 1).position > first
