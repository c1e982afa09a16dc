"""Replicas remembering successes at the same moment lose none of them: a credential-stuffing
campaign's early victims (remembered per service until it fires) and the successes from an address
not yet known to attack (remembered per address until it is marked) are appended in one atomic
State step each, never read and written back whole (docs/detection.md, *Campaigns*).

Two RedisStates on one server are the two replicas. Their calls on the remembered keys go in
lockstep (:class:`InLockstep`), so a read followed by a write, on both, has both read before
either writes: the interleaving under which a read-modify-write loses an entry, every time."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Any, cast

import pytest
from tests.support.state import state_contents

from usermon.processor.detectors.account_takeover import AccountTakeoverDetector
from usermon.processor.detectors.campaign import (
    CANDIDATES,
    LOGIN_KIND,
    CampaignDetector,
    agent_key,
    campaign_key,
    candidates_key,
    legacy_candidates_key,
    remember_candidate,
    source_key,
)
from usermon.processor.detectors.shared import PREFIX, SharedCounts
from usermon.processor.detectors.suspicious_login import agent_digest
from usermon.processor.model import Event, NetworkInfo, Signal
from usermon.processor.planning import PlanView, run_plans
from usermon.processor.rules import Rules
from usermon.processor.storage.state.base import State
from usermon.processor.storage.state.memory import MemoryState
from usermon.processor.storage.state.steps import Count, Get

T = 1_767_571_200.0
PROXIES = NetworkInfo(country="VN", asn=64644, as_org="VN Fibre")
AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/118.0 Safari/537.36"


class InLockstep:
    """One replica's state whose calls on keys starting with one of ``prefixes`` go in lockstep
    with the other replica's: each such call waits for the other replica's before it runs, and
    again after, so both replicas make their first call before either makes its second."""

    def __init__(self, state: State, barrier: threading.Barrier, prefixes: tuple[str, ...]):
        self._state = state
        self._barrier = barrier
        self._prefixes = prefixes

    def _meet(self) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            self._barrier.wait(5)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._state, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            key = args[0] if args else None
            if not isinstance(key, str) or not key.startswith(self._prefixes):
                return method(*args, **kwargs)
            self._meet()
            try:
                return method(*args, **kwargs)
            finally:
                self._meet()

        return call


def both_at_once(replicas: Sequence[State], work: Sequence[Callable[[State], None]]) -> None:
    """Run ``work[i]`` on replica ``i``, each in its own thread, their remembered keys in
    lockstep."""
    barrier = threading.Barrier(len(replicas))
    prefixes = (f"{campaign_key('shop', LOGIN_KIND)}:cand", f"{PREFIX}ato:")
    errors: list[BaseException] = []

    def run(state: State, job: Callable[[State], None]) -> None:
        try:
            job(cast("State", InLockstep(state, barrier, prefixes)))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(s, w)) for s, w in zip(replicas, work, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors


def success(user: str, ip: str, t: float) -> Event:
    return Event(
        kind="login",
        time=t,
        success=True,
        user_hash=f"h-{user}",
        user_id=user,
        client_ip=ip,
        user_agent=AGENT,
        service="shop",
        trace_id=f"{int(t * 1000):032x}",
        network=PROXIES,
    )


def victims(signals: Sequence[Signal]) -> list[str]:
    return sorted(s.subject.id for s in signals if s.kind == "account_takeover")


@pytest.mark.redis
def test_two_replicas_remembering_a_campaigns_victims_at_once_lose_neither(
    redis_state_factory: Callable[[], State],
) -> None:
    """Alice and Bob get in from the pool's network before the campaign fires, one through each
    replica at the same moment: when it fires, both are its takeovers."""
    rules = Rules()
    window = rules.campaigns.window
    replicas = [redis_state_factory(), redis_state_factory()]
    logins = [success("alice", "10.9.9.1", T), success("bob", "10.9.9.2", T + 1)]
    both_at_once(
        replicas,
        [lambda state, e=event: remember_candidate(state, e, window) for event in logins],
    )
    # The campaign fires: its failures came from the victims' network and browser.
    state = replicas[0]
    now = T + 60
    for _ in range(rules.campaigns.source_failures):
        state.add(source_key("shop", PROXIES.asn or 0), now, window)
        state.add(agent_key("shop", agent_digest(AGENT)), now, window)
    detector = CampaignDetector(rules.campaigns, SharedCounts(rules))
    record = {"since": now, "id": "campaign-1"}
    found = detector._earlier_takeovers(state, "shop", record, now)
    assert victims(found) == ["h-alice", "h-bob"]
    assert detector._earlier_takeovers(state, "shop", record, now + 1) == []  # reported once


@pytest.mark.redis
def test_two_replicas_remembering_successes_from_one_address_at_once_lose_neither(
    redis_state_factory: Callable[[], State],
) -> None:
    """An address fails on one account, then Alice and Bob get in from it, one through each
    replica at the same moment; when the address is marked as stuffing, both are takeovers."""
    rules = Rules()
    replicas = [redis_state_factory(), redis_state_factory()]
    ip = "10.9.9.9"
    first = AccountTakeoverDetector(rules.account_takeover, SharedCounts(rules))

    def failure(n: int, t: float) -> Event:
        return Event(
            kind="login",
            time=t,
            success=False,
            user_hash=f"h-combo{n}",
            user_id=f"combo{n}",
            client_ip=ip,
            user_agent=AGENT,
            service="shop",
            network=PROXIES,
        )

    assert list(first.observe(failure(0, T), replicas[0])) == []

    def remember(state: State, event: Event) -> None:
        detector = AccountTakeoverDetector(rules.account_takeover, SharedCounts(rules))
        assert list(detector.observe(event, state)) == []

    logins = [success("alice", ip, T + 10), success("bob", ip, T + 11)]
    both_at_once(
        replicas,
        [lambda state, e=event: remember(state, e) for event in logins],
    )
    found: list[Signal] = []
    for n in range(1, 60):
        found += first.observe(failure(n, T + 20 + n), replicas[0])
    assert victims(found) == ["h-alice", "h-bob"]


def test_the_victims_the_previous_version_remembered_are_still_attributed(state: State) -> None:
    """A replica of the previous version (or a snapshot it wrote) kept them as one record, read
    and written whole: the campaign still reads it, reports its victims once, keeps the rest."""
    rules = Rules()
    window = rules.campaigns.window
    elsewhere = ["h-carol", "carol", T + 2, None, "10.7.7.7", 7922, agent_digest(AGENT)]
    old = [
        ["h-alice", "alice", T, "a" * 32, "10.9.9.1", PROXIES.asn, agent_digest(AGENT)],
        elsewhere,
    ]
    state.put(legacy_candidates_key("shop"), {"successes": old}, T + 2, window)
    remember_candidate(state, success("bob", "10.9.9.2", T + 3), window)
    now = T + 60
    for _ in range(rules.campaigns.source_failures):
        state.add(source_key("shop", PROXIES.asn or 0), now, window)
        state.add(agent_key("shop", agent_digest(AGENT)), now, window)
    detector = CampaignDetector(rules.campaigns, SharedCounts(rules))
    record = {"since": now, "id": "campaign-1"}
    assert victims(detector._earlier_takeovers(state, "shop", record, now)) == ["h-alice", "h-bob"]
    assert detector._earlier_takeovers(state, "shop", record, now + 1) == []
    assert state.get(legacy_candidates_key("shop")) == {"successes": [elsewhere]}


def test_a_service_remembers_its_newest_successes_within_the_window(state: State) -> None:
    """At most CANDIDATES, the newest, and none older than the campaign window."""
    window = Rules().campaigns.window
    for i in range(CANDIDATES + 6):
        remember_candidate(state, success(f"u{i}", f"10.0.0.{i}", T + i), window)
    users = [entry[0] for _, entry in state.entries(candidates_key("shop"))]
    assert users == [f"h-u{i}" for i in range(6, CANDIDATES + 6)]
    remember_candidate(state, success("late", "10.1.1.1", T + 6.5 + window), window)
    users = [entry[0] for _, entry in state.entries(candidates_key("shop"))]
    assert users == [*(f"h-u{i}" for i in range(7, CANDIDATES + 6)), "h-late"]


def test_successes_the_previous_version_remembered_for_an_address_are_still_reported(
    state: State,
) -> None:
    rules = Rules()
    ip = "10.9.9.9"
    detector = AccountTakeoverDetector(rules.account_takeover, SharedCounts(rules))
    old = [["h-alice", "alice", T, "a" * 32]]
    state.put(f"{PREFIX}ato:pending:{ip}", {"successes": old}, T, rules.account_takeover.memory)
    found: list[Signal] = []
    for n in range(60):
        found += detector.observe(
            Event(
                kind="login",
                time=T + 20 + n,
                success=False,
                user_hash=f"h-combo{n}",
                client_ip=ip,
                service="shop",
                network=PROXIES,
            ),
            state,
        )
    assert victims(found) == ["h-alice"]


def test_a_planned_engine_sends_its_appends_with_the_next_plans_and_reads_them_back(
    state: State,
) -> None:
    """Judging planned, the appends are held and sent as one plan in the next round trip (with
    the records and the next segment's plans), and before any read of a list, which then sees
    them."""
    view = PlanView(state)
    for i in range(3):
        view.append_entry("l", ["u", i], T + i, 60.0, 8)
    assert state.entries("l") == []
    assert view.direct == 0
    assert view.entries("l") == [(T + i, ["u", i]) for i in range(3)]
    assert view.direct == 2  # the appends, then the read
    view.append_entry("l", ["u", 3], T + 3, 60.0, 8)
    view.put("r", {"n": 1}, T + 3, 60.0)
    plans = [[Get("r")], [Count("c", T + 3, 60.0)]]
    results = run_plans(state, plans, view.take_records(), view.take_appends())
    assert results == [[{"n": 1}], [0]]  # the plans' own results, the appends' left out
    assert view.direct == 2
    assert [entry for _, entry in state.entries("l")] == [["u", i] for i in range(4)]
    assert view.take_appends() == []


def test_entries_removed_reach_the_next_checkpoint() -> None:
    """The memory state's incremental checkpoint (SQLite) carries a removal like any write."""
    live = MemoryState()
    for i in range(3):
        live.append_entry("l", ["u", i], T + i, 60.0, 8)
    live.put("other", {"v": 1}, T + 3, 60.0)
    restored = MemoryState.load(live.dump())
    live.track_changes()
    live.remove_entries("l", live.entries("l")[:2])
    assert [key for key, _ in live.changes()] == ["l"]
    restored.apply_rows(live.header(), live.changes())
    assert restored.entries("l") == [(T + 2, ["u", 2])]
    assert state_contents(restored) == state_contents(live)
