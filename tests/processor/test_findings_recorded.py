"""Findings reach the store once each, also when the store refused the previous batch's.

The engine folds a batch's signals into one delta per finding; the service hands the store those
deltas, by batch and event (Store.record_batch). When the store fails to take them, they are
handed to it again, still under their own batch, before the next batch's (nothing counted twice,
nothing lost), and the store merges what it is given.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from tests.support.example_rule import ExampleRule

from usermon.processor.model import Event, Finding
from usermon.processor.service import Processor
from usermon.processor.settings import resolve
from usermon.processor.simulate.otlp import to_request
from usermon.processor.storage.errors import StoreError
from usermon.processor.storage.memory import MemoryStore

T0 = 1_750_000_000.0


def _attempt(i: int) -> Event:
    return Event(
        kind="login",
        time=T0 + i,
        success=False,
        user_hash="alice",
        client_ip="203.0.113.5",
        trace_id=f"{i + 1:032x}",
        span_id=f"{i + 1:016x}",
    )


class RefusesFindingsOnce(MemoryStore):
    """A memory store whose first ``record_findings`` fails, as a database outage would."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = False
        self.calls: list[list[str]] = []

    def record_findings(self, deltas: Sequence[Finding]) -> None:
        if not self.refused:
            self.refused = True
            raise StoreError("the database went away")
        self.calls.append([d.id for d in deltas])
        super().record_findings(deltas)


def _bodies() -> list[bytes]:
    return [
        to_request([_attempt(i) for i in range(0, 5)]).SerializeToString(),
        to_request([_attempt(i) for i in range(5, 9)]).SerializeToString(),
    ]


def test_a_refused_batchs_findings_grow_with_the_next_and_are_recorded_once() -> None:
    settings = resolve({"store": "memory://"}, env={})
    steady = Processor(settings, detectors=[ExampleRule(threshold=3)])
    for body in _bodies():
        steady.ingest("traces", body, json_format=False)
    expected = [(f.id, f.event_count, f.first_seen, f.last_seen) for f in steady.store.findings()]
    assert [count for _, count, _, _ in expected] == [7]  # failures 3 to 9 of one account
    steady.close()

    store = RefusesFindingsOnce()
    processor = Processor(settings, store=store, detectors=[ExampleRule(threshold=3)])
    first, second = _bodies()
    with pytest.raises(StoreError):  # processed, but the findings could not be written: 503
        processor.ingest("traces", first, json_format=False)
    processor.ingest("traces", second, json_format=False)
    found = [(f.id, f.event_count, f.first_seen, f.last_seen) for f in store.findings()]
    assert found == expected
    # One delta for the finding per batch: each batch's events recorded once, batch by batch.
    assert store.calls == [[expected[0][0]], [expected[0][0]]]
    processor.close()
