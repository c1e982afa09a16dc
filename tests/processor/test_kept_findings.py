"""On a state replicas share, the engine keeps what each event found with its claim, in its
batch's kept map, as soon as the event is processed: a replica adopting the batch after this
one died finds the event claimed and records its findings from there (docs/processor.md,
*Findings*). The service turns it on for a shared state only; here it runs on the memory state.
"""

from __future__ import annotations

from tests.support.example_rule import ExampleRule

from usermon.processor.engine import Engine, Outcome
from usermon.processor.findings import kept_key
from usermon.processor.model import Event, Finding
from usermon.processor.storage.state.memory import MemoryState

T0 = 1_750_000_000.0


def _failure(i: int, user: str = "alice") -> Event:
    return Event(
        kind="login",
        time=T0 + i,
        success=False,
        user_hash=user,
        client_ip="203.0.113.5",
        trace_id=f"{i + 1:032x}",
        span_id=f"{i + 1:016x}",
    )


def test_each_event_that_found_something_is_kept_under_its_dedupe_key() -> None:
    state = MemoryState()
    engine = Engine(state, [ExampleRule(threshold=3)], keep_findings=True)
    batch = [_failure(i) for i in range(5)]
    out = engine.process(batch, outcome=Outcome(batch=7))
    kept = state.kept(kept_key(7))
    # The first two failures are under the threshold: nothing found, nothing kept.
    assert sorted(kept) == sorted(e.dedupe_key for e in batch[2:])
    record = kept[batch[4].dedupe_key]
    assert (record["u"], record["i"]) == ("alice", "203.0.113.5")
    (delta,) = [Finding.from_json(raw) for raw in record["f"]]
    assert (delta.event_count, delta.first_seen) == (1, T0 + 4)
    # What the store records is what each event found, as kept.
    assert sorted(out.found) == sorted(kept)
    assert out.found[batch[4].dedupe_key] == [delta]
    (finding,) = out.findings
    assert (finding.id, finding.event_count) == (delta.id, 3)


def test_nothing_is_kept_without_a_batch_or_when_not_asked() -> None:
    for engine, outcome in (
        (Engine(MemoryState(), [ExampleRule(threshold=1)], keep_findings=True), Outcome()),
        (Engine(MemoryState(), [ExampleRule(threshold=1)]), Outcome(batch=7)),
    ):
        engine.process([_failure(0)], outcome=outcome)
        assert engine.state.kept(kept_key(7)) == {}
        assert engine.state.kept(kept_key(0)) == {}


def test_a_duplicate_is_not_kept_again() -> None:
    state = MemoryState()
    engine = Engine(state, [ExampleRule(threshold=1)], keep_findings=True)
    engine.process([_failure(0)], outcome=Outcome(batch=1))
    engine.process([_failure(0)], outcome=Outcome(batch=2))  # the same attempt, reported again
    assert len(state.kept(kept_key(1))) == 1
    assert state.kept(kept_key(2)) == {}
