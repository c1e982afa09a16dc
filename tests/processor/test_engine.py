"""The engine: dedupe, event time and lateness, aggregation, and folding signals into findings."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from tests.support.example_rule import ExampleRule
from tests.support.state import CountingState

from usermon import attributes as A
from usermon.processor.aggregation import ip_profile, user_profile
from usermon.processor.engine import Engine, finding_id
from usermon.processor.findings import merge_finding
from usermon.processor.model import Event, Finding, NetworkInfo, Signal, Subject
from usermon.processor.otlp import decode_logs, decode_traces
from usermon.processor.storage.errors import StoreError
from usermon.processor.storage.state.base import State
from usermon.processor.storage.state.memory import MemoryState

from .payloads import log_record, login_attributes, logs_request, span, traces_request

T0 = 1_750_000_000.0


def login(
    t: float,
    *,
    success: bool = False,
    user: str = "h-alice",
    ip: str = "203.0.113.7",
    trace: int = 0,
) -> Event:
    return Event(
        kind="login",
        time=t,
        success=success,
        user_hash=user,
        user_id="alice@example.com" if user == "h-alice" else None,
        client_ip=ip,
        user_agent="Firefox",
        service="shop",
        trace_id=f"{trace or int(t * 1000):032x}",
        span_id=f"{trace or int(t * 1000):016x}",
    )


def test_the_same_event_from_a_span_and_a_log_record_counts_once() -> None:
    engine = Engine(MemoryState())
    event = login(T0)
    outcome = engine.process([event, event])
    assert (outcome.accepted, outcome.duplicates) == (1, 1)
    assert engine.process([event]).duplicates == 1
    profile = user_profile(engine.state, "h-alice", T0)
    assert profile is not None
    assert profile["failures"]["1m"] == 1


def _three_logins_in_one_span(**differing: list[object]) -> bytes:
    """One span with three login events 0, 1 and 2 ns apart, differing only in ``differing``."""
    request = trace_service_pb2.ExportTraceServiceRequest()
    request.ParseFromString(traces_request([span(7, login_attributes())]))
    events = request.resource_spans[0].scope_spans[0].spans[0].events
    for i in (1, 2):
        events.add().CopyFrom(events[0])
        events[i].time_unix_nano += i
    for key, values in differing.items():
        for ev, value in zip(events, values, strict=True):
            for kv in ev.attributes:
                if kv.key == key:
                    kv.value.string_value = str(value)
    return request.SerializeToString()


def test_attempts_nanoseconds_apart_in_one_span_each_count() -> None:
    """Issue 12: three users' logins in one span at +0/1/2 ns counted once, silently."""
    body = _three_logins_in_one_span(**{A.USER_HASH: ["h-a", "h-b", "h-c"]})
    engine = Engine(MemoryState())
    outcome = engine.process(decode_traces(body).events)
    assert (outcome.accepted, outcome.duplicates) == (3, 0)
    assert outcome.users == {"h-a", "h-b", "h-c"}
    same_user = Engine(MemoryState()).process(decode_traces(_three_logins_in_one_span()).events)
    assert (same_user.accepted, same_user.duplicates) == (3, 0)


def test_what_differs_in_the_attempt_makes_another_attempt() -> None:
    base = login(T0)
    others = [
        dataclasses.replace(base, success=True),
        dataclasses.replace(base, user_hash="h-bob"),
        dataclasses.replace(base, user_id="bob@example.com"),
        dataclasses.replace(base, identifiers=(("email", "bob@example.com"),)),
        dataclasses.replace(base, kind="signup", success=None),
        dataclasses.replace(base, time_ns=round(T0 * 1e9) + 1),
    ]
    outcome = Engine(MemoryState()).process([base, *others])
    assert (outcome.accepted, outcome.duplicates) == (1 + len(others), 0)


def test_a_retried_request_and_the_log_copy_of_a_span_event_are_duplicates() -> None:
    """What is dropped is a duplicate: the same body again, and the SDK's ``both`` mode (the
    same attempt as a span event and as a log record, without the span's address)."""
    attrs = login_attributes()
    body = _three_logins_in_one_span(**{A.USER_HASH: ["h-a", "h-b", "h-c"]})
    engine = Engine(MemoryState())
    assert engine.process(decode_traces(body).events).accepted == 3
    assert engine.process(decode_traces(body).events).duplicates == 3
    from_span = decode_traces(traces_request([span(9, attrs)])).events
    from_log = decode_logs(logs_request([log_record(9, attrs)])).events
    outcome = engine.process([*from_span, *from_log])
    assert (outcome.accepted, outcome.duplicates) == (1, 1)


def test_a_batch_claims_its_events_in_one_state_step_per_minute_it_spans() -> None:
    state = CountingState()
    engine = Engine(state)
    minute = T0 - T0 % 60
    engine.process([login(minute + i * 0.1) for i in range(500)])
    assert (state.calls["incr_fields"], state.calls["incr_field"]) == (1, 0)
    engine.process([login(minute + 100 + i * 0.1) for i in range(300)])  # 100 s to 130 s: two
    assert (state.calls["incr_fields"], state.calls["incr_field"]) == (3, 0)


def test_events_rejected_as_too_late_or_from_the_future_are_not_claimed() -> None:
    state = MemoryState()
    engine = Engine(state, lateness=600)
    engine.process([login(T0 + 3600)])
    late, ahead = login(T0), login(T0 + 7200)
    assert engine.process([late, ahead], now=T0 + 3600).rejected == 2
    # Another replica on the same state, whose watermark and clock let both through, takes them.
    other = Engine(state, lateness=600)
    assert other.process([late]).accepted == 1
    assert other.process([ahead], now=T0 + 7200).accepted == 1


def test_an_event_that_might_come_too_late_is_claimed_when_its_turn_comes() -> None:
    state = MemoryState()
    Engine(state, lateness=600).process([login(T0 + 3600)])
    # The first event is a duplicate, so the watermark does not move and the second one, an hour
    # older, is within the lateness after all: it must be counted, and once.
    engine = Engine(state, lateness=600)
    outcome = engine.process([login(T0 + 3600), login(T0)])
    assert (outcome.accepted, outcome.duplicates, outcome.rejected) == (1, 1, 0)
    assert engine.process([login(T0)]).duplicates == 1


class FailsOnce:
    """A detector during which the state fails (StoreError), at one event."""

    name = "fails_once"

    def __init__(self, at: float) -> None:
        self.at = at

    def observe(self, event: Event, state: State) -> Sequence[Signal]:
        if event.time == self.at:
            self.at = -1.0
            raise StoreError("the state went away")
        return ()


def test_after_a_state_failure_the_retry_takes_the_event_in_flight_and_those_after_it() -> None:
    state = MemoryState()
    batch = [login(T0 + i) for i in range(10)]
    failing = Engine(state, [FailsOnce(at=T0 + 4)])
    with pytest.raises(StoreError):
        failing.process(batch)
    assert failing.claims_held == 0  # the state answered: every claim went back at once
    retry = Engine(state).process(batch)  # another replica
    assert (retry.accepted, retry.duplicates) == (6, 4)


class GoesDown(MemoryState):
    """A state that stops answering (StoreError) once ``down`` is set, as a shared Redis does
    while a replica fails with it, until that replica is gone."""

    down = False

    def incr_fields(self, key: str, fields: Mapping[str, int], t: float, ttl: float) -> list[int]:
        if self.down:
            raise StoreError("the state went away")
        return super().incr_fields(key, fields, t, ttl)


class TakesTheStateDown:
    """A detector during which the state fails at one event and stays down."""

    name = "takes_the_state_down"

    def __init__(self, state: GoesDown, at: float) -> None:
        self.state, self.at = state, at

    def observe(self, event: Event, state: State) -> Sequence[Signal]:
        if event.time == self.at:
            self.state.down = True
            raise StoreError("the state went away")
        return ()


@pytest.mark.parametrize(("claim_ahead", "lost"), [(False, 1), (True, 6)])
def test_a_replica_dying_mid_batch_leaves_only_the_event_in_flight_claimed(
    claim_ahead: bool, lost: int
) -> None:
    """With a state replicas share, events are claimed one at a time (the processor's setting
    for such stores): when a replica dies mid-batch, unable to give its claims back, the retry
    on another replica loses the event in flight only. Claimed up front (the setting for a state
    only one process uses), it would lose the rest of the batch too."""
    state = GoesDown()
    batch = [login(T0 + i) for i in range(10)]
    dying = Engine(state, [TakesTheStateDown(state, at=T0 + 4)], claim_ahead=claim_ahead)
    with pytest.raises(StoreError):
        dying.process(batch)
    # The replica dies here, with whatever claims it holds; the state comes back.
    state.down = False
    retry = Engine(state).process(batch)  # another replica takes the retry
    assert retry.accepted == 10 - 4 - lost
    assert retry.duplicates == 4 + lost


def test_after_a_bug_the_retry_skips_the_event_that_hit_it_and_takes_those_after_it() -> None:
    class Broken:
        def lookup(self, ip: str) -> NetworkInfo | None:
            if ip == "192.0.2.4":
                raise RuntimeError("a bug in enrichment")
            return None

    state = MemoryState()
    batch = [login(T0 + i, ip="192.0.2.4" if i == 4 else "203.0.113.7") for i in range(10)]
    with pytest.raises(RuntimeError):
        Engine(state, enricher=Broken()).process(batch)
    # The same bug would fail every retry at that event: it stays claimed, the rest went back.
    retry = Engine(state).process(batch)
    assert (retry.accepted, retry.duplicates) == (5, 5)


def test_out_of_order_events_within_the_lateness_are_all_counted() -> None:
    engine = Engine(MemoryState())
    times = [T0 + 50, T0 + 10, T0 + 40, T0, T0 + 30]
    outcome = engine.process([login(t) for t in times])
    assert outcome.accepted == 5
    profile = user_profile(engine.state, "h-alice", T0 + 50)
    assert profile is not None
    assert profile["failures"]["1m"] == 5
    assert profile["first_seen"] == T0
    assert profile["last_seen"] == T0 + 50


def test_an_event_later_than_the_lateness_is_rejected_with_a_reason() -> None:
    engine = Engine(MemoryState(), lateness=600)
    engine.process([login(T0 + 3600)])
    outcome = engine.process([login(T0)])
    assert (outcome.accepted, outcome.rejected) == (0, 1)
    assert "lateness" in outcome.reasons[0]


def test_an_event_from_the_future_is_rejected_when_the_host_has_a_clock() -> None:
    engine = Engine(MemoryState())
    outcome = engine.process([login(T0 + 86400)], now=T0)
    assert outcome.rejected == 1
    assert engine.watermark == float("-inf")


def test_user_aggregates_keep_last_success_services_and_distinct_ips() -> None:
    engine = Engine(MemoryState())
    engine.process(
        [
            login(T0, ip="198.51.100.1"),
            login(T0 + 1, ip="198.51.100.2"),
            login(T0 + 2, success=True, ip="198.51.100.3"),
        ]
    )
    profile = user_profile(engine.state, "h-alice", T0 + 2)
    assert profile is not None
    assert profile["label"] == "alice@example.com"
    assert profile["services"] == ["shop"]
    last = {"time": T0 + 2, "ip": "198.51.100.3", "user_agent": "Firefox"}
    assert profile["last_success"] == last
    assert profile["successes"] == {"1m": 1, "10m": 1, "1h": 1, "24h": 1}
    assert profile["failures"]["24h"] == 2
    assert profile["distinct_ips"] == 3
    assert profile["networks"] == ["198.51.100.0/24"]


def test_ip_aggregates_count_the_distinct_users_it_tried() -> None:
    engine = Engine(MemoryState())
    engine.process([login(T0 + i, user=f"h-{i % 4}", ip="192.0.2.9") for i in range(12)])
    profile = ip_profile(engine.state, "192.0.2.9", T0 + 11)
    assert profile is not None
    assert profile["failures"]["1m"] == 12
    assert profile["distinct_users"]["1m"] == 4
    assert sorted(profile["users"]) == ["h-0", "h-1", "h-2", "h-3"]


def test_windows_slide_on_event_time() -> None:
    engine = Engine(MemoryState())
    engine.process([login(T0 + i) for i in range(5)])
    engine.process([login(T0 + 7200)])
    profile = user_profile(engine.state, "h-alice", T0 + 7200)
    assert profile is not None
    assert profile["failures"] == {"1m": 1, "10m": 1, "1h": 1, "24h": 6}


def test_signals_for_one_subject_grow_one_finding() -> None:
    engine = Engine(MemoryState(), [ExampleRule(threshold=3)])
    outcome = engine.process([login(T0 + i) for i in range(6)])
    assert len(outcome.findings) == 1
    delta = outcome.findings[0]
    assert delta.kind == "brute_force"
    assert delta.subject == Subject("user", "h-alice", "alice@example.com")
    assert delta.event_count == 4  # the 3rd, 4th, 5th and 6th failures
    assert (delta.first_seen, delta.last_seen) == (T0 + 2, T0 + 5)
    assert len(delta.evidence["trace_ids"]) == 4
    assert delta.evidence["ips"] == ["203.0.113.7"]
    again = engine.process([login(T0 + 6)])
    assert again.findings[0].id == delta.id


def test_finding_ids_are_deterministic_so_replicas_agree() -> None:
    a = Engine(MemoryState(), [ExampleRule(threshold=2)])
    b = Engine(MemoryState(), [ExampleRule(threshold=2)])
    events = [login(T0 + i) for i in range(3)]
    assert a.process(events).findings[0].id == b.process(events).findings[0].id
    assert finding_id("brute_force", "user", "x", T0) == finding_id("brute_force", "user", "x", T0)


def test_a_quiet_finding_closes_and_the_next_signal_opens_another() -> None:
    engine = Engine(MemoryState(), [ExampleRule(threshold=2)])
    first = engine.process([login(T0), login(T0 + 1)]).findings[0]
    later = engine.process([login(T0 + 3 * 3600), login(T0 + 3 * 3600 + 1)]).findings[0]
    assert later.id != first.id


def test_merging_deltas_adds_counts_and_bounds_evidence() -> None:
    subject = Subject("ip", "192.0.2.1")
    stored: Finding | None = None
    for i in range(30):
        delta = Finding(
            id="f",
            kind="credential_stuffing",
            severity="high" if i == 3 else "medium",
            subject=subject,
            first_seen=T0 + i,
            last_seen=T0 + i,
            event_count=2,
            summary=f"summary {i}",
            evidence={"trace_ids": [f"t{i}"], "ips": ["192.0.2.1"], "users": [f"u{i}"]},
        )
        stored = merge_finding(stored, delta)
    assert stored is not None
    assert stored.event_count == 60
    assert stored.severity == "high"
    assert (stored.first_seen, stored.last_seen) == (T0, T0 + 29)
    assert stored.summary == "summary 29"
    assert len(stored.evidence["users"]) == 20
    assert stored.evidence["users"][0] == "u29"


def test_a_failing_detector_is_counted_and_does_not_stop_the_batch() -> None:
    class Broken:
        name = "broken"

        def observe(self, event: Event, state: object) -> list[object]:
            raise RuntimeError("boom")

    engine = Engine(MemoryState(), [Broken()])  # type: ignore[list-item]
    outcome = engine.process([login(T0), login(T0 + 1)])
    assert outcome.accepted == 2
    assert engine.detector_errors == 2


def test_an_engine_snapshot_keeps_its_dedupe_memory() -> None:
    state = MemoryState()
    engine = Engine(state)
    engine.process([login(T0)])
    restored = Engine(state)
    restored.restore(engine.snapshot())
    assert restored.process([login(T0)]).duplicates == 1


def test_a_flood_of_addresses_keeps_the_state_within_its_cap() -> None:
    state = MemoryState(max_keys=2_000)
    engine = Engine(state)
    engine.process(
        [
            login(T0 + i * 0.001, user=f"h-{i}", ip=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
            for i in range(20_000)
        ]
    )
    assert len(state) <= 2_000


def test_with_network_is_dataclasses_replace() -> None:
    # with_network builds the event positionally: every other field must come through, in
    # order, whatever fields Event has (a field added after network would fail here).
    import dataclasses

    values: dict[str, object] = {}
    for number, f in enumerate(dataclasses.fields(Event)):
        values[f.name] = {"kind": "login", "time": 1.5, "identifiers": (("email", "a"),)}.get(
            f.name, f"value {number}"
        )
    event = Event(**values)  # type: ignore[arg-type]
    network = NetworkInfo(country="FR", asn=3215)
    assert event.with_network(network) == dataclasses.replace(event, network=network)
    assert event.with_network(network).network is network
    assert event.with_network(None) == dataclasses.replace(event, network=None)
