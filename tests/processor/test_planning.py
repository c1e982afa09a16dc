"""The planned engine: each event's State steps declared up front and run together, a segment of
events per round trip, with the findings of one event at a time."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from tests.scale.traffic import login_stream
from tests.support.state import CountingState

from usermon.processor.aggregation import (
    WINDOWS,
    aggregate,
    aggregation_steps,
    profile_read,
    user_profile,
    user_profile_of,
)
from usermon.processor.detectors import default_detectors
from usermon.processor.detectors.base import Planned, Selective, outcome_of
from usermon.processor.detectors.shared import SharedCounts
from usermon.processor.engine import Engine
from usermon.processor.findings import merge_finding
from usermon.processor.model import Event, Finding, NetworkInfo, Signal
from usermon.processor.planning import PlanView
from usermon.processor.rules import Rules
from usermon.processor.storage.errors import StoreError
from usermon.processor.storage.state.base import State
from usermon.processor.storage.state.memory import MemoryState
from usermon.processor.storage.state.steps import Step

START = 1_767_571_200.0
HOSTING = NetworkInfo(country="DE", asn=24940, category="hosting", network_name="Hetzner")


def login(t: float, user: str, ip: str, success: bool) -> Event:
    return Event(
        kind="login",
        time=t,
        success=success,
        user_hash=user,
        user_id=f"{user}@example.com",
        client_ip=ip,
        user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        trace_id=f"{int(t * 1000):032x}",
        span_id=f"{int(t * 1000):016x}",
    )


def _findings(planned: bool, events: list[Event], batch: int) -> dict[str, Any]:
    engine = Engine(MemoryState(), default_detectors(), planned=planned)
    found: dict[str, Finding] = {}
    for i in range(0, len(events), batch):
        for delta in engine.process(events[i : i + batch]).findings:
            found[delta.id] = merge_finding(found.get(delta.id), delta)
    return {k: json.dumps(f.to_json(), sort_keys=True) for k, f in found.items()}


@pytest.mark.parametrize("batch", [1, 64, 500])
def test_the_planned_engine_finds_what_one_event_at_a_time_finds(batch: int) -> None:
    events = login_stream()
    direct = _findings(False, events, batch)
    assert direct  # the stream has attacks in it
    assert _findings(True, events, batch) == direct


def test_ordinary_logins_cost_one_round_trip_per_batch_and_one_for_what_they_learn() -> None:
    """Failed and successful logins of different users from their own addresses: every step in
    the events' plans, the risk profiles' learning in one more step, nothing else."""
    engine = Engine(MemoryState(), default_detectors(), planned=True)
    batch = [login(START + i, f"user{i}", f"10.0.{i}.1", success=bool(i % 3)) for i in range(30)]
    out = engine.process(batch)
    assert out.accepted == 30
    assert engine.plan_stats == {"segments": 1, "round_trips": 2, "events": 30}


def test_a_login_reading_a_profile_learned_earlier_in_the_batch_waits_for_the_next_trip() -> None:
    engine = Engine(MemoryState(), default_detectors(), planned=True)
    engine.process(
        [
            login(START, "alice", "10.0.0.1", True),
            login(START + 1, "bob", "10.0.0.2", True),
            login(START + 2, "alice", "10.0.0.1", True),  # reads what the first one learned
        ]
    )
    assert engine.plan_stats["segments"] == 2


def test_a_report_twice_in_one_batch_counts_once() -> None:
    engine = Engine(MemoryState(), default_detectors(), planned=True)
    event = login(START, "alice", "10.0.0.1", False)
    out = engine.process([event, login(START + 1, "bob", "10.0.0.2", False), event])
    assert (out.accepted, out.duplicates) == (2, 1)
    again = engine.process([event])
    assert (again.accepted, again.duplicates) == (0, 1)


def test_an_event_too_late_is_rejected_as_one_at_a_time_rejects_it() -> None:
    engine = Engine(MemoryState(), default_detectors(), lateness=600, planned=True)
    newest = login(START + 1000, "a", "10.0.0.1", False)
    late = login(START, "b", "10.0.0.2", False)  # older than the lateness behind the first
    out = engine.process([newest, late, login(START + 900, "c", "10.0.0.3", False)])
    assert (out.accepted, out.rejected) == (2, 1)


def test_an_event_late_only_behind_a_duplicate_is_taken() -> None:
    """Whether an event is too late depends on the events before it being accepted: one that
    is late only behind a duplicate waits for the duplicate to be known, then is taken."""
    engine = Engine(MemoryState(), default_detectors(), lateness=600, planned=True)
    newest = login(START + 1000, "a", "10.0.0.1", False)
    engine.process([login(START, "z", "10.0.0.9", False)])
    other = Engine(engine.state, default_detectors(), lateness=600, planned=True)
    other.process([newest])  # another replica took it first
    out = engine.process([newest, login(START + 100, "b", "10.0.0.2", False)])
    assert (out.accepted, out.duplicates, out.rejected) == (1, 1, 0)


def test_an_event_from_the_future_is_rejected() -> None:
    engine = Engine(MemoryState(), default_detectors(), planned=True)
    out = engine.process([login(START + 1000, "a", "10.0.0.1", False)], now=START)
    assert (out.accepted, out.rejected) == (0, 1)


class GoesDown(MemoryState):
    """A state that stops answering once ``down`` is set."""

    down = False

    def apply(self, steps: Sequence[Step]) -> list[Any]:
        if self.down:
            raise StoreError("the state went away")
        return super().apply(steps)

    def get(self, key: str) -> dict[str, Any] | None:
        if self.down:
            raise StoreError("the state went away")
        return super().get(key)

    def incr_fields(self, key: str, fields: Mapping[str, int], t: float, ttl: float) -> list[int]:
        if self.down:
            raise StoreError("the state went away")
        return super().incr_fields(key, fields, t, ttl)


class TakesTheStateDown:
    name = "takes_the_state_down"

    def __init__(self, state: GoesDown, at: float) -> None:
        self.state, self.at = state, at

    def plan(self, event: Event) -> Sequence[Step]:
        return ()

    def observe(self, event: Event, state: State) -> Sequence[Signal]:
        if event.time == self.at:
            self.state.down = True
            raise StoreError("the state went away")
        return ()


def test_a_detector_that_declares_no_plan_is_judged_one_event_per_round_trip() -> None:
    """It may read what the plans of the events after it write: each event is then planned,
    run and judged before the next one is planned."""

    class Unplanned:
        name = "unplanned"

        def observe(self, event: Event, state: State) -> Sequence[Signal]:
            return ()

    engine = Engine(MemoryState(), [*default_detectors(), Unplanned()], planned=True)
    engine.process([login(START + i, f"user{i}", f"10.0.{i}.1", False) for i in range(5)])
    assert engine.plan_stats["segments"] == 5


def test_the_planned_engine_reads_each_touched_subject_back_as_of_the_batch_end() -> None:
    """What the profiles need comes back from each subject's last fold of the batch: every
    touched user and address, as read after the batch (a duplicate's subject, whose last fold
    did not run, is left for the profiles to read)."""
    state = MemoryState()
    engine = Engine(state, default_detectors(), planned=True)
    events = [login(START + i, f"user{i % 3}", f"10.0.0.{i % 4}", i % 5 == 0) for i in range(12)]
    out = engine.process([*events, events[11]])  # the last event's subjects' last fold: none
    touched = {"u:" + u for u in out.users} | {"ip:" + a for a in out.ips}
    assert set(out.subjects) == touched - {"u:user2", "ip:10.0.0.3"}
    for key, view in out.subjects.items():
        assert view == state.read_subject(key, None, WINDOWS, profile_read(key))
    for user in ("user0", "user1"):
        assert user_profile_of(out.subjects["u:" + user], user) == user_profile(state, user, None)
    assert engine.process([events[3]]).subjects == {}  # a duplicate folds nothing


def test_a_replica_dying_mid_batch_leaves_each_event_counted_once() -> None:
    """The events whose plans ran are claimed and counted (their aggregates hold them once);
    the retry on another replica takes the others and counts nothing twice."""
    state = GoesDown()
    first = [login(START + i, f"user{i}", "10.0.0.1", False) for i in range(10)]
    second = [login(START + 10 + i, f"user{i}", "10.0.0.1", False) for i in range(10)]
    dying = Engine(state, [TakesTheStateDown(state, at=START + 4)], planned=True)
    with pytest.raises(StoreError):
        dying.process(first)
    state.down = False
    retry = Engine(state, planned=True)
    out = retry.process(first + second)
    assert (out.accepted, out.duplicates) == (10, 10)
    view = state.read_subject("ip:10.0.0.1", START + 20, (3600.0,))
    assert view is not None
    assert view.counts[1] == (20,)  # every failure counted once


@pytest.mark.parametrize(
    "event",
    [
        login(START, "alice", "10.0.0.1", True),
        login(START, "alice", "10.0.0.1", False),
        dataclasses.replace(login(START, "alice", "10.0.0.1", False), blocked=True),
        dataclasses.replace(login(START, "alice", "10.0.0.1", True), client_ip=None),
        dataclasses.replace(login(START, "alice", "10.0.0.1", True), network=HOSTING),
        dataclasses.replace(login(START, "alice", "10.0.0.1", True), kind="signup"),
    ],
    ids=["success", "failure", "blocked", "no address", "named network", "signup"],
)
def test_aggregation_declares_exactly_the_folds_it_makes(event: Event) -> None:
    state = MemoryState()
    view = PlanView(state)
    steps = aggregation_steps(event)
    view.answers = dict(zip(steps, state.apply(steps), strict=True))
    aggregate(event, view)
    assert view.direct == 0


def _spray_and_stuff() -> list[Event]:
    """Failures from a hosting provider's addresses on many accounts, and successes among them."""
    events = []
    for i in range(40):
        event = login(START + 10 * i, f"user{i % 13}", f"192.0.2.{i % 7}", success=i % 9 == 8)
        events.append(dataclasses.replace(event, network=HOSTING, service="shop"))
    return events


def test_the_detectors_that_read_the_tally_declare_one_plan_per_event() -> None:
    """Account takeover's and credential stuffing's own reads are in the tally's plan, so the
    engine takes that one tuple once, whichever detectors declare it."""
    planners = [d for d in default_detectors() if isinstance(d, Planned)]
    for event in _spray_and_stuff():
        plans = [plan for d in planners if (plan := d.plan(event))]
        assert plans
        shared = [plan for plan in plans if len(plan) > 1]
        assert all(plan is shared[0] for plan in shared)


def test_a_tally_read_off_its_plans_results_is_the_tally_counted() -> None:
    """Planned, an event's shared tally is filled from its plan's results: the numbers that
    counting it through the state gives, with no call made."""
    rules = Rules()
    counted, planned = MemoryState(), MemoryState()
    direct, declared = SharedCounts(rules), SharedCounts(rules)
    for event in _spray_and_stuff():
        expected = direct.tally(event, counted)
        steps = declared.plan(event)
        view = PlanView(planned)
        view.answers = dict(zip(steps, planned.apply(steps), strict=True))
        tally = declared.tally(event, view)
        assert view.direct == 0
        numbers = ["ip", "network", "provider", "pair_failures", "account_failures"]
        numbers += ["account_sources", "ip_failures", "ip_accounts", "network_failures"]
        numbers += ["network_accounts", "network_sources", "provider_failures"]
        numbers += ["provider_accounts", "provider_sources"]
        assert [getattr(tally, n) for n in numbers] == [getattr(expected, n) for n in numbers]
        assert tally.state is view


def _every_outcome() -> list[Event]:
    """A success, a failure and a signup, each from a plain, a hosting and a Tor address, with
    and without a service and a known account."""
    tor = NetworkInfo(country="NL", asn=1101, category="tor", latitude=52.0, longitude=4.0)
    paris = NetworkInfo(country="FR", asn=3215, latitude=48.9, longitude=2.3)
    events = []
    for k, network in enumerate((None, HOSTING, tor, paris)):
        for success in (True, False):
            event = login(START + k, f"user{k}", f"192.0.2.{k}", success)
            events.append(dataclasses.replace(event, network=network, service="shop"))
            events.append(dataclasses.replace(event, network=network, exists=False))
        signup = dataclasses.replace(login(START + k, f"new{k}", f"192.0.2.{k}", True))
        events.append(dataclasses.replace(signup, kind="signup", success=None, network=network))
    return events


def test_a_detector_that_sees_only_some_outcomes_does_nothing_for_the_others() -> None:
    """What lets the engine skip a Selective detector: for an event of an outcome it does not
    declare, its plan is empty, and observing it finds nothing and asks nothing of the state."""
    selective = [d for d in default_detectors() if isinstance(d, Selective)]
    assert len(selective) >= 8
    for detector in selective:
        for event in _every_outcome():
            if outcome_of(event) in detector.outcomes:
                continue
            state = CountingState()
            assert isinstance(detector, Planned)
            assert not detector.plan(event), (detector.name, event)
            assert not list(detector.observe(event, state)), (detector.name, event)
            assert not state.calls, (detector.name, event)


def test_the_engine_calls_a_selective_detector_only_for_its_outcomes() -> None:
    seen: list[str] = []

    class SuccessesOnly:
        name = "successes_only"
        outcomes = frozenset(("success",))

        def observe(self, event: Event, state: State) -> Sequence[Signal]:
            seen.append(outcome_of(event))
            return ()

    for planned in (False, True):
        seen.clear()
        engine = Engine(MemoryState(), [SuccessesOnly()], planned=planned)
        engine.process(_every_outcome())
        assert seen == ["success"] * 8
