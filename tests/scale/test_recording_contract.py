"""The State steps and the Store call that make findings survive a replica's death, over every
backend: an episode opened in one atomic step (replicas agree on its id), kept maps (what a
batch's events found, until the batch is recorded), and recording each event of a batch once.
"""

from __future__ import annotations

import threading

import pytest

from usermon.processor.model import Finding, Subject
from usermon.processor.storage.base import Store
from usermon.processor.storage.state.base import State

T0 = 1_700_000_000.0
HOUR = 3600.0


# -- episodes --------------------------------------------------------------------------------------


def test_open_episode_opens_one_when_there_is_none(state: State) -> None:
    record, opened = state.open_episode("f:k", {"id": "a"}, T0, HOUR, HOUR)
    assert (record, opened) == ({"id": "a", "last": T0}, True)


def test_open_episode_grows_an_open_one_and_keeps_what_it_names(state: State) -> None:
    state.open_episode("f:k", {"id": "a", "since": T0}, T0, HOUR, HOUR)
    record, opened = state.open_episode("f:k", {"id": "b", "since": T0 + 10}, T0 + 10, HOUR, HOUR)
    assert (record, opened) == ({"id": "a", "since": T0, "last": T0 + 10}, False)
    assert state.get("f:k") == record


def test_open_episode_a_late_signal_grows_it_without_moving_last_back(state: State) -> None:
    state.open_episode("f:k", {"id": "a"}, T0 + 10, HOUR, HOUR)
    record, opened = state.open_episode("f:k", {"id": "b"}, T0, HOUR, HOUR)
    assert (record, opened) == ({"id": "a", "last": T0 + 10}, False)


def test_open_episode_opens_a_new_one_after_the_gap(state: State) -> None:
    state.open_episode("f:k", {"id": "a"}, T0, HOUR, 10 * HOUR)
    record, opened = state.open_episode("f:k", {"id": "b"}, T0 + HOUR + 1, HOUR, 10 * HOUR)
    assert (record, opened) == ({"id": "b", "last": T0 + HOUR + 1}, True)


def test_open_episode_reads_a_record_put_by_an_earlier_version(state: State) -> None:
    state.put("f:k", {"id": "a", "last": T0}, T0, HOUR)  # what the engine wrote before the step
    assert state.open_episode("f:k", {"id": "b"}, T0 + 5, HOUR, HOUR) == (
        {"id": "a", "last": T0 + 5},
        False,
    )


@pytest.mark.redis
def test_replicas_opening_one_episode_at_once_agree_on_it(
    redis_state_factory: object,
) -> None:
    """Twenty pairs of replicas, each pair opening one episode at the same moment from either
    side of an hour boundary: every pair ends up with one record, opened by one of them."""
    make = redis_state_factory  # type: ignore[assignment]
    states: list[State] = [make(), make()]  # type: ignore[operator]
    boundary = (T0 // HOUR + 1) * HOUR
    for k in range(20):
        barrier = threading.Barrier(2)
        results: list[tuple[dict[str, object], bool]] = []

        def open_at(
            i: int,
            k: int = k,
            barrier: threading.Barrier = barrier,
            results: list[tuple[dict[str, object], bool]] = results,
        ) -> None:
            t = boundary - 1 if i == 0 else boundary + 1
            barrier.wait(5)
            results.append(states[i].open_episode(f"f:{k}", {"id": f"{k}-{i}"}, t, HOUR, HOUR))

        threads = [threading.Thread(target=open_at, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(opened for _, opened in results) == [False, True]
        assert len({record["id"] for record, _ in results}) == 1


# -- kept maps -------------------------------------------------------------------------------------


def test_kept_returns_every_field_kept(state: State) -> None:
    state.keep("k:7", "e1", {"f": [1], "u": "alice"}, T0, HOUR)
    state.keep("k:7", "e2", {"f": [2], "u": None}, T0 + 1, HOUR)
    assert state.kept("k:7") == {"e1": {"f": [1], "u": "alice"}, "e2": {"f": [2], "u": None}}


def test_kept_is_empty_for_an_unknown_map(state: State) -> None:
    assert state.kept("k:8") == {}


def test_drop_deletes_a_kept_map(state: State) -> None:
    state.keep("k:7", "e1", {"f": [1]}, T0, HOUR)
    state.drop("k:7")
    state.drop("k:9")  # none: nothing happens
    assert state.kept("k:7") == {}


# -- recording a batch once ------------------------------------------------------------------------


def _delta(count: int = 1, t: float = T0) -> Finding:
    return Finding(
        id="f1",
        kind="brute_force",
        severity="medium",
        subject=Subject("user", "u1", "alice"),
        first_seen=t,
        last_seen=t,
        event_count=count,
        summary="s",
        evidence={"trace_ids": [], "ips": [], "users": []},
    )


def _count(store: Store) -> int:
    found = store.finding("f1")
    assert found is not None
    return found.event_count


def _position(store: Store) -> int:
    return store.intake(b"TP" + bytes(8), 1).position


def test_a_batchs_events_are_recorded_once(store: Store) -> None:
    position = _position(store)
    recorded = store.record_batch(position, {"e1": [_delta(3)]})
    assert [(d.id, d.event_count) for d in recorded] == [("f1", 3)]
    assert store.record_batch(position, {"e1": [_delta(3)]}) == []  # a replay, an adopter
    store.record_findings([_delta(2, T0 + 1)])  # no batch: merged every time
    assert _count(store) == 5


def test_a_batch_recorded_in_parts_counts_every_event_once(store: Store) -> None:
    """A batch that failed half way records what its first events found; its replay finds
    the rest (and what the first ones found again, kept): only the rest counts."""
    position = _position(store)
    store.record_batch(position, {"e1": [_delta()], "e2": [_delta()]})
    recorded = store.record_batch(
        position, {"e1": [_delta()], "e2": [_delta()], "e3": [_delta(1, T0 + 3)]}
    )
    assert [(d.event_count, d.first_seen) for d in recorded] == [(1, T0 + 3)]
    assert _count(store) == 3


def test_two_batches_findings_both_count(store: Store) -> None:
    first, second = _position(store), _position(store)
    store.record_batch(first, {"e1": [_delta()]})
    store.record_batch(second, {"e1": [_delta(1, T0 + 1)]})
    assert _count(store) == 2


def test_two_events_growing_one_finding_in_one_batch_both_count(store: Store) -> None:
    position = _position(store)
    recorded = store.record_batch(position, {"e1": [_delta(2)], "e2": [_delta(3, T0 + 1)]})
    assert [(d.event_count, d.last_seen) for d in recorded] == [(5, T0 + 1)]
    found = store.finding("f1")
    assert found is not None
    assert (found.event_count, found.last_seen) == (5, T0 + 1)


def test_replicas_recording_one_batch_at_once_count_each_event_once(
    shared_stores: list[Store],
) -> None:
    """A replica taken for dead while alive (an outage longer than the lease) and the one that
    adopted its batch may record it at the same moment, each with what it saw."""
    position = _position(shared_stores[0])
    parts = [
        {"e1": [_delta()], "e2": [_delta()]},
        {"e2": [_delta()], "e3": [_delta()], "e4": [_delta()]},
    ]
    barrier = threading.Barrier(len(shared_stores))

    def record(store: Store, found: dict[str, list[Finding]]) -> None:
        barrier.wait(5)
        store.record_batch(position, found)

    threads = [
        threading.Thread(target=record, args=(s, part))
        for s, part in zip(shared_stores, parts, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _count(shared_stores[0]) == 4


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param(
            "pg", id="postgresql+redis", marks=[pytest.mark.postgresql, pytest.mark.redis]
        ),
    ]
)
def shared_stores(request: pytest.FixtureRequest) -> list[Store]:
    factory = request.getfixturevalue(f"{request.param}_store_factory")
    return [factory(), factory()]


@pytest.mark.postgresql
def test_the_checkpoint_that_covers_a_batch_deletes_its_mark(
    pg_store_factory: object, postgresql_url: str, pg_schema: str
) -> None:
    import psycopg
    from psycopg import sql

    store = pg_store_factory()  # type: ignore[operator]
    position = store.intake(b"TP" + bytes(8), 1).position
    later = store.intake(b"TP" + bytes(8), 1).position
    store.record_batch(position, {"e1": [_delta()]})
    store.record_batch(later, {"e1": [_delta()]})
    store.checkpoint(position, b"")
    with psycopg.connect(postgresql_url) as conn:
        rows = conn.execute(
            sql.SQL("SELECT position FROM {}.usermon_recorded_batches").format(
                sql.Identifier(pg_schema)
            )
        ).fetchall()
    assert rows == [(later,)]


@pytest.mark.redis
def test_the_checkpoint_that_covers_a_batch_deletes_its_mark_on_redis(
    redis_store_factory: object,
) -> None:
    store = redis_store_factory()  # type: ignore[operator]
    position = store.intake(b"TP" + bytes(8), 1).position
    later = store.intake(b"TP" + bytes(8), 1).position
    store.record_batch(position, {"e1": [_delta()]})
    store.record_batch(later, {"e1": [_delta()]})
    store.checkpoint(position, b"")
    marks = [store.state.client.exists(store._k(f"recorded:{p}")) for p in (position, later)]
    assert marks == [0, 1]


def test_open_episode_keeps_the_other_fields_exactly(state: State) -> None:
    opening = {"id": "a", "since": T0 + 0.123456789, "takeovers": 2}
    state.open_episode("f:k", opening, T0 + 0.123456789, HOUR, HOUR)
    record, _ = state.open_episode("f:k", {"id": "b"}, T0 + 7.000001, HOUR, HOUR)
    assert record == {**opening, "last": T0 + 7.000001}
