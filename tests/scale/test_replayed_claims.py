"""A replica that dies after its batch's events were claimed and counted, before all of them were
judged, loses no finding and counts nothing twice: the replica replaying the batch (the same
journal position) finds the claims its batch holds, judges again those never judged, from their
plans' reads, and counts none of them again (docs/processor.md, *Findings*). On every state, with
planned steps and call by call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest

from usermon.processor.aggregation import WINDOWS, profile_read
from usermon.processor.detectors import default_detectors
from usermon.processor.engine import Engine, Outcome
from usermon.processor.findings import kept_key
from usermon.processor.model import Event, Finding, Signal
from usermon.processor.storage.memory import MemoryStore
from usermon.processor.storage.state.base import State
from usermon.processor.storage.state.memory import MemoryState

from .conftest import STATE_BACKENDS, unique_name
from .traffic import login_stream

BATCH = 40


@pytest.fixture(params=STATE_BACKENDS)
def state_factory(request: pytest.FixtureRequest) -> Iterator[Callable[[], State]]:
    """Make fresh states, each on its own (on Redis: its own key prefix, removed after)."""
    if request.param == "memory":
        yield MemoryState
        return
    from usermon.processor.storage.state.redis import RedisState

    url = request.getfixturevalue("redis62_url" if request.param == "redis-6.2" else "redis_url")
    made: list[RedisState] = []

    def make() -> State:
        made.append(RedisState.from_url(url, prefix=unique_name("usermon_test") + ":"))
        return made[-1]

    yield make
    for state in made:
        state.clear()
        state.client.close()


class Killed(BaseException):
    """What a SIGKILL amounts to inside the engine: nothing after it runs, nothing is given back."""


class DiesAt:
    """A detector, first of all, that kills its replica when it is about to judge one event. It
    declares a plan (none), so the planned engine's segments span many events."""

    name = "dies_at"

    def __init__(self, at: float) -> None:
        self.at = at

    def plan(self, event: Event) -> Sequence[object]:
        return ()

    def observe(self, event: Event, state: State) -> Sequence[Signal]:
        if event.time == self.at:
            raise Killed
        return ()


def _engine(state: State, planned: bool, *detectors: object) -> Engine:
    return Engine(
        state,
        [*detectors, *default_detectors()],  # type: ignore[list-item]
        planned=planned,
        claim_ahead=False,
        keep_findings=True,
    )


def _kept(state: State, batch: int) -> dict[str, list[Finding]]:
    return {
        key: [Finding.from_json(raw) for raw in record["f"]]
        for key, record in state.kept(kept_key(batch)).items()
    }


def _summary(store: MemoryStore) -> list[tuple[object, ...]]:
    return sorted(
        (f.id, f.kind, f.subject.id, f.event_count, f.first_seen, f.last_seen)
        for f in store.findings(limit=1000)
    )


def _subjects(state: State, events: Sequence[Event]) -> dict[str, object]:
    keys = {f"u:{e.user_hash}" for e in events} | {f"ip:{e.client_ip}" for e in events}
    t = max(e.time for e in events)
    return {k: state.read_subject(k, t, WINDOWS, profile_read(k)) for k in sorted(keys)}


def _batches() -> list[list[Event]]:
    events = login_stream(users=60)
    return [events[i : i + BATCH] for i in range(0, len(events), BATCH)]


Summary = list[tuple[object, ...]]


def _one_processor(
    make_state: Callable[[], State], planned: bool, batches: list[list[Event]]
) -> tuple[Summary, dict[str, object]]:
    state = make_state()
    engine = _engine(state, planned)
    store = MemoryStore()
    for n, batch in enumerate(batches, start=1):
        out = engine.process(batch, outcome=Outcome(batch=n))
        store.record_batch(n, out.found)
    return _summary(store), _subjects(state, [e for b in batches for e in b])


def _die_in(batches: list[list[Event]]) -> int:
    """A batch where the brute force on user7 goes on: its events find something."""
    return next(n for n, b in enumerate(batches) if sum(e.user_hash == "user7" for e in b) > 10)


@pytest.mark.parametrize("planned", [True, False], ids=["planned", "call-by-call"])
@pytest.mark.parametrize("at", [3, 20])
def test_a_batch_replayed_after_its_replica_died_while_judging_loses_nothing(
    state_factory: Callable[[], State], planned: bool, at: int
) -> None:
    batches = _batches()
    die_in = _die_in(batches)
    expected = _one_processor(state_factory, planned, batches)

    state = state_factory()
    store = MemoryStore()
    dying = _engine(state, planned, DiesAt(batches[die_in][at].time))
    for n, batch in enumerate(batches[:die_in], start=1):
        store.record_batch(n, dying.process(batch, outcome=Outcome(batch=n)).found)
    with pytest.raises(Killed):
        dying.process(batches[die_in], outcome=Outcome(batch=die_in + 1))

    # Another replica adopts the dead one's batches it did not record, and goes on.
    survivor = _engine(state, planned)
    for n, batch in enumerate(batches[die_in:], start=die_in + 1):
        out = survivor.process(batch, outcome=Outcome(batch=n, found=_kept(state, n)))
        store.record_batch(n, out.found)
    # Counted once: every user and address as one processor leaves them.
    assert _subjects(state, [e for b in batches for e in b]) == expected[1]
    # Judged at least once: every finding there, each with at least its events. Those judged
    # again read the state as it is now, which holds the rest of the dead replica's segment,
    # so one may cross a threshold a few events early (each of them counts once at most).
    assert survivor.rejudged > 0
    found = {fid: rest for fid, *rest in _summary(store)}
    wanted = {fid: rest for fid, *rest in expected[0]}
    assert found.keys() == wanted.keys()
    extra = {fid: found[fid][2] - wanted[fid][2] for fid in wanted}  # type: ignore[operator]
    assert min(extra.values()) == 0
    assert sum(extra.values()) <= survivor.rejudged, extra


@pytest.mark.parametrize("planned", [True, False], ids=["planned", "call-by-call"])
def test_a_batch_replayed_after_it_was_processed_counts_nothing_again(
    state_factory: Callable[[], State], planned: bool
) -> None:
    """Its replica died after processing it, before or after recording its findings: the
    replay judges none of its events again (the batch's judged mark) and counts none twice."""
    batches = _batches()
    die_in = _die_in(batches)
    expected = _one_processor(state_factory, planned, batches)

    state = state_factory()
    store = MemoryStore()
    dying = _engine(state, planned)
    for n, batch in enumerate(batches[: die_in + 1], start=1):
        out = dying.process(batch, outcome=Outcome(batch=n))
        if n <= die_in:
            store.record_batch(n, out.found)
    survivor = _engine(state, planned)
    for n, batch in enumerate(batches, start=1):  # every batch, as a restarted replica does
        out = survivor.process(batch, outcome=Outcome(batch=n, found=_kept(state, n)))
        store.record_batch(n, out.found)
        if n <= die_in + 1:
            assert (out.accepted, out.duplicates) == (0, len(batch))
    assert survivor.rejudged == 0
    assert (_summary(store), _subjects(state, [e for b in batches for e in b])) == expected


@pytest.mark.parametrize("planned", [True, False], ids=["planned", "call-by-call"])
def test_a_repeat_within_a_batch_is_a_duplicate_though_its_batch_holds_the_claim(
    state_factory: Callable[[], State], planned: bool
) -> None:
    events = _batches()[0][:10]
    engine = _engine(state_factory(), planned)
    out = engine.process([*events, events[3], events[0]], outcome=Outcome(batch=1))
    assert (out.accepted, out.duplicates, engine.rejudged) == (10, 2, 0)
