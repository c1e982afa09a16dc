"""The shared counting step: every event is counted once, whichever detectors read it."""

from __future__ import annotations

import dataclasses

from tests.detection.conftest import NEW_YORK, PARIS, T0
from tests.support.state import CountingState

from usermon.processor.detectors import default_detectors, run_detectors
from usermon.processor.detectors.shared import SharedCounts, Tally
from usermon.processor.model import Event, NetworkInfo
from usermon.processor.rules import Rules
from usermon.processor.storage.state.memory import MemoryState


def login(t: float, user: str, ip: str, success: bool) -> Event:
    return Event(
        kind="login",
        time=t,
        success=success,
        user_hash=user,
        client_ip=ip,
        user_agent="curl/8.5.0",
        trace_id=f"{int(t):032x}",
        network=PARIS,
    )


def test_a_failed_login_costs_eight_state_operations_across_all_detectors() -> None:
    state = CountingState()
    detectors = default_detectors(Rules())
    run_detectors(detectors, login(T0, "u1", "192.0.2.1", False), state)
    # pair, account, account sources, IP, IP accounts, network, network accounts and sources
    assert sum(state.calls.values()) == 8


def test_a_familiar_successful_login_costs_ten_state_operations() -> None:
    state = CountingState()
    detectors = default_detectors(Rules())
    for i in range(5):
        run_detectors(detectors, login(T0 + i * 3600, "u1", "192.0.2.1", True), state)
    state.calls.clear()
    run_detectors(detectors, login(T0 + 5 * 3600, "u1", "192.0.2.1", True), state)
    # shared: 2 success counters; takeover: the address's mark (the user's usual address: the
    # account's and network's marks cannot make this a takeover) and its recent failed
    # accounts; risk: 1 profile read, 1 step on the profile, 1 on the population's counts (the
    # user count and the agent's popularity, read), 1 on the address's user count (read);
    # travel: 1 read and 1 write
    assert sum(state.calls.values()) == 10
    assert (state.calls["incr_fields"], state.calls["incr_field"], state.calls["get"]) == (2, 1, 2)


def test_a_first_login_costs_twelve_in_the_same_steps() -> None:
    state = CountingState()
    detectors = default_detectors(Rules())
    run_detectors(detectors, login(T0, "u1", "192.0.2.1", True), state)
    # the familiar login's 10, plus the account's and the network's marks (a new address); the
    # population's step adds one more user and the popularity of the 6 new values above the
    # address, the address's step adds one more user of it
    assert sum(state.calls.values()) == 12


def test_the_usual_address_is_a_familiar_one_found_with_one_lookup() -> None:
    state = MemoryState()
    run_detectors(default_detectors(Rules()), login(T0, "u1", "192.0.2.1", True), state)
    counts = SharedCounts(Rules())

    def tally(ip: str, network: NetworkInfo = PARIS) -> Tally:
        event = dataclasses.replace(login(T0 + 60, "u1", ip, True), network=network)
        made = Tally(event, state, counts)
        made.ip = ip
        return made

    home, roaming, new = tally("192.0.2.1"), tally("192.0.2.1", NEW_YORK), tally("192.0.2.9")
    assert (home.usual_address(), home.familiar()[0]) == (True, True)
    # the same address seen from another network: only the walk of the profile knows it
    assert (roaming.usual_address(), roaming.familiar()[0]) == (False, True)
    assert (new.usual_address(), new.familiar()[0]) == (False, False)


def test_the_tally_is_computed_once_per_event_even_when_every_detector_reads_it() -> None:
    state = CountingState()
    detectors = default_detectors(Rules())
    event = login(T0, "u1", "192.0.2.1", False)
    run_detectors(detectors, event, state)
    first = sum(state.calls.values())
    run_detectors(detectors[:1], login(T0 + 1, "u1", "192.0.2.1", False), state)
    assert sum(state.calls.values()) - first == first  # one detector alone pays the same


def test_the_same_event_object_is_not_counted_twice_by_two_detectors() -> None:
    state = MemoryState()
    detectors = default_detectors(Rules())
    for i in range(9):
        run_detectors(detectors, login(T0 + i, "u1", "192.0.2.1", False), state)
    signals = run_detectors(detectors, login(T0 + 9, "u1", "192.0.2.1", False), state)
    (brute_force,) = [s for s in signals if s.kind == "brute_force"]
    assert brute_force.evidence["failures"] == 10


def test_events_without_an_address_or_user_are_taken_without_error() -> None:
    state = MemoryState()
    detectors = default_detectors(Rules())
    bare = Event(kind="login", time=T0, success=False)
    assert run_detectors(detectors, bare, state) == []
    signup = Event(kind="signup", time=T0, network=NEW_YORK)
    assert run_detectors(detectors, signup, state) == []
