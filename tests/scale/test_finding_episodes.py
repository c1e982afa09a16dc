"""One finding episode has one id, whichever replica opens it and on whichever side of an hour
boundary: the engine opens an episode in one atomic State step, so of two replicas opening it at
the same moment one opens it and the other grows it (docs/processor.md, *Findings*)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast

import pytest
from tests.support.example_rule import ExampleRule

from usermon.processor.model import Event
from usermon.processor.service import Processor
from usermon.processor.settings import resolve
from usermon.processor.simulate.otlp import to_request
from usermon.processor.storage.base import Store
from usermon.processor.storage.state.base import PipelinedState, State
from usermon.processor.storage.state.steps import Episode, Step

HOUR = 3600.0
BOUNDARY = 1_767_574_800.0  # 2026-01-05 01:00 UTC: an hour boundary
Factory = Callable[..., Store]


def _failure(t: float, n: int) -> Event:
    return Event(
        kind="login",
        time=t,
        success=False,
        user_hash="alice",
        client_ip="203.0.113.5",
        trace_id=f"{n:032x}",
        span_id=f"{n:016x}",
    )


def _body(event: Event) -> bytes:
    return to_request([event]).SerializeToString()


@pytest.fixture
def processors() -> Iterator[Callable[[Store], Processor]]:
    made: list[Processor] = []

    def make(store: Store) -> Processor:
        settings = resolve({"store": "memory://"}, env={})
        # Every failed login signals: the first one opens the finding.
        processor = Processor(settings, store=store, detectors=[ExampleRule(threshold=1)])
        made.append(processor)
        return processor

    yield make
    for processor in made:
        processor.close()


class MeetAtEpisodes:
    """A replica's state that holds each step on a finding's episode record until the other
    replica reaches its own: both replicas then open the episode at the same moment (a read
    followed by a write, as the engine did before the step was one, would both read nothing)."""

    def __init__(self, state: State, barrier: threading.Barrier) -> None:
        self._state = state
        self._barrier = barrier

    def _meet(self, key: str) -> None:
        if key.startswith("f:"):
            with contextlib.suppress(threading.BrokenBarrierError):
                self._barrier.wait(2)

    def get(self, key: str) -> dict[str, Any] | None:
        self._meet(key)
        return self._state.get(key)

    def open_episode(self, key: str, *args: Any) -> tuple[dict[str, Any], bool]:
        self._meet(key)
        return self._state.open_episode(key, *args)

    def apply_many(
        self,
        plans: Sequence[Sequence[Step]],
        records: Sequence[tuple[str, Mapping[str, Any], float, float]] = (),
    ) -> list[list[Any]]:
        # Planned (on Redis), a segment's episodes are opened together, after its events are
        # judged: the round trip that opens them is where the replicas meet.
        episodes = [s.key for plan in plans for s in plan if s.__class__ is Episode]
        if episodes:
            self._meet(episodes[0])
        return cast("PipelinedState", self._state).apply_many(plans, records)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._state, name)


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param(
            "pg", id="postgresql+redis", marks=[pytest.mark.postgresql, pytest.mark.redis]
        ),
    ]
)
def shared_store_factory(request: pytest.FixtureRequest) -> Factory:
    factory: Factory = request.getfixturevalue(f"{request.param}_store_factory")
    return factory


def test_two_replicas_opening_one_episode_across_an_hour_boundary_give_it_one_id(
    shared_store_factory: Factory, processors: Callable[[Store], Processor]
) -> None:
    replicas = [processors(shared_store_factory()), processors(shared_store_factory())]
    barrier = threading.Barrier(2)
    for replica in replicas:
        replica.engine.state = cast("State", MeetAtEpisodes(replica.engine.state, barrier))
    # One failure a second before the hour, the other a second after, at the same moment.
    bodies = [_body(_failure(BOUNDARY - 1, 1)), _body(_failure(BOUNDARY + 1, 2))]
    errors: list[BaseException] = []

    def send(i: int) -> None:
        try:
            replicas[i].ingest("traces", bodies[i], json_format=False)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert not barrier.broken  # both reached their episode's step, and together
    found = replicas[0].store.findings(limit=10)
    assert [(f.kind, f.event_count, f.first_seen, f.last_seen) for f in found] == [
        ("brute_force", 2, BOUNDARY - 1, BOUNDARY + 1)
    ]
    # The replica whose step ran second grew the episode: only one counted an opening.
    opened = [r.engine.findings_by_kind.get("brute_force", 0) for r in replicas]
    assert sorted(opened) == [0, 1]


def test_an_episode_across_an_hour_boundary_has_one_id_on_every_store(
    store: Store, processors: Callable[[Store], Processor]
) -> None:
    processor = processors(store)
    processor.ingest("traces", _body(_failure(BOUNDARY - 1, 1)), json_format=False)
    processor.ingest("traces", _body(_failure(BOUNDARY + 1, 2)), json_format=False)
    found = store.findings(limit=10)
    assert [(f.kind, f.event_count) for f in found] == [("brute_force", 2)]


def test_an_episode_closed_by_the_gap_and_opened_again_gets_a_new_id(
    store: Store, processors: Callable[[Store], Processor]
) -> None:
    processor = processors(store)
    processor.ingest("traces", _body(_failure(BOUNDARY - 1, 1)), json_format=False)
    processor.ingest("traces", _body(_failure(BOUNDARY + HOUR + 1, 2)), json_format=False)
    found = store.findings(limit=10)
    assert sorted(f.event_count for f in found) == [1, 1]
    assert len({f.id for f in found}) == 2
