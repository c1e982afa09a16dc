"""What RedisState adds to the State contract: replicas sharing it, bounded memory, expiry."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis

from usermon.processor.aggregation import aggregate, user_profile
from usermon.processor.model import Event
from usermon.processor.storage.state.base import FAIL, OK, SIGNUP, State
from usermon.processor.storage.state.memory import MemoryState
from usermon.processor.storage.state.redis import EXACT_MEMBERS, RedisState
from usermon.processor.storage.state.steps import (
    CLAIMED,
    OWN,
    TAKEN,
    AddDistinct,
    AddWindows,
    Claim,
    Fold,
    IncrFields,
)

pytestmark = pytest.mark.redis

T0 = 1_700_000_000.0
HOUR = 3600.0

Factory = Callable[[], RedisState]


def _in_threads(jobs: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_replicas_adding_to_one_counter_lose_no_update(redis_state_factory: Factory) -> None:
    replicas = [redis_state_factory() for _ in range(4)]

    def work(state: RedisState) -> Callable[[], None]:
        return lambda: [state.add_windows("ip:1", T0 + i * 0.01, (60.0, HOUR)) for i in range(250)]

    _in_threads([work(s) for s in replicas])
    assert replicas[0].count("ip:1", T0 + 3, HOUR) == 1000


def test_replicas_adding_members_agree_on_the_distinct_count(
    redis_state_factory: Factory,
) -> None:
    replicas = [redis_state_factory() for _ in range(4)]

    def work(k: int, state: RedisState) -> Callable[[], None]:
        return lambda: [
            state.add_distinct("ip:1:users", f"u{i % 40}", T0 + k, HOUR) for i in range(100)
        ]

    _in_threads([work(k, s) for k, s in enumerate(replicas)])
    assert replicas[1].distinct_count("ip:1:users", T0 + 5, HOUR) == 40


def test_replicas_claiming_the_same_fields_at_once_each_get_all_or_none(
    redis_state_factory: Factory,
) -> None:
    # The engine claims a batch's events with one incr_fields: replicas taking the same batch at
    # once (a retry racing the original) must not split its events between them.
    replicas = [redis_state_factory() for _ in range(4)]
    fields = {f"event-{i}": 1 for i in range(300)}
    won: list[list[int]] = []

    def work(state: RedisState) -> Callable[[], None]:
        return lambda: won.append(state.incr_fields("d:1", fields, T0, 600.0))

    _in_threads([work(s) for s in replicas])
    firsts = [values.count(1) for values in won]
    assert sorted(firsts) == [0, 0, 0, 300]
    assert set(replicas[0].fields("d:1").values()) == {4}


def test_a_rotating_attack_keeps_one_distinct_set_bounded(redis_state_factory: Factory) -> None:
    state = redis_state_factory()
    for i in range(5000):
        state.add_distinct("user:victim:ips", f"198.51.{i // 256}.{i % 256}", T0 + i * 0.1, HOUR)
    assert state.client.zcard(f"{state.prefix}{{user:victim:ips}}:z") == EXACT_MEMBERS
    # One sorted set, one mark and at most one HyperLogLog per bucket of the window.
    assert len(list(state.client.scan_iter(match=f"{state.prefix}*"))) <= 2 + 13


def test_every_key_expires_after_its_window(redis_state_factory: Factory) -> None:
    state = redis_state_factory()
    state.add_windows("c", T0, (60.0, HOUR))
    state.add_distinct("d", "m", T0, 60.0)
    state.incr_field("m", "f", T0, 600.0)
    state.incr_fields("n", {"f": 1, "g": 1}, T0, 600.0)
    state.put("r", {"a": 1}, T0, 600.0)
    ttls = {
        name: state.client.ttl(name) for name in state.client.scan_iter(match=f"{state.prefix}*")
    }
    assert ttls
    assert all(0 < ttl <= HOUR + 2 * HOUR / 12 for ttl in ttls.values()), ttls


def test_scripts_are_reloaded_after_the_server_forgot_them(redis_state_factory: Factory) -> None:
    state = redis_state_factory()
    state.add("c", T0, 60.0)
    state.client.script_flush()  # what a Redis restart does to the script cache
    assert state.add("c", T0 + 1, 60.0) == 2


def test_planned_steps_are_sent_again_once_the_server_forgot_the_script(
    redis_state_factory: Factory,
) -> None:
    """apply_many calls EVALSHA without asking SCRIPT EXISTS first: a server that forgot the
    script refuses each call unrun, and they run once it is loaded again, records and all."""
    from usermon.processor.storage.state.steps import AddWindows, Get

    state = redis_state_factory()
    plans = [[AddWindows("c", T0 + i, (60.0,))] for i in range(3)]
    assert state.apply_many(plans) == [[(1,)], [(2,)], [(3,)]]
    state.client.script_flush()
    again = [[AddWindows("c", T0 + 3, (60.0,)), Get("r")], [AddWindows("c", T0 + 4, (60.0,))]]
    records = [("r", {"a": 1}, T0, 600.0)]
    assert state.apply_many(again, records) == [[(4,), {"a": 1}], [(5,)]]
    assert state.count("c", T0 + 4, 60.0) == 5  # each step ran once


def test_a_plan_that_is_not_unicode_text_fails_before_any_plan_runs(
    redis_state_factory: Factory,
) -> None:
    """A plan carrying a lone surrogate cannot be sent as text: apply_many raises before it
    sends anything, so no plan of the call ran (the event before it was not claimed)."""
    state = redis_state_factory()
    plans = [[Claim("d:1", "e1", T0, HOUR)], [AddDistinct("u", "\ud800", T0, 60.0)]]
    with pytest.raises(UnicodeEncodeError):
        state.apply_many(plans)
    assert state.apply([Claim("d:1", "e1", T0, HOUR)]) == [CLAIMED]


def test_two_deployments_with_different_prefixes_do_not_share_state(redis_url: str) -> None:
    a = RedisState.from_url(redis_url, prefix="usermon_test_prefix_a:")
    b = RedisState.from_url(redis_url, prefix="usermon_test_prefix_b:")
    try:
        a.add("c", T0, 60.0, n=5)
        assert b.count("c", T0, 60.0) == 0
    finally:
        a.clear()
        b.clear()


def _profile_reader(user: str) -> Callable[[State], dict[str, Any] | None]:
    def read(state: State) -> dict[str, Any] | None:
        return user_profile(state, user, None)  # as of the user's own newest event

    return read


def test_read_batch_answers_what_the_direct_reads_answer(redis_state_factory: Factory) -> None:
    state = redis_state_factory()
    for i in range(30):
        aggregate(
            Event(
                kind="login",
                time=T0 + i,
                success=i % 3 == 0,
                user_hash=f"u{i % 4}",
                user_id=f"u{i % 4}@example.com",
                client_ip=f"192.0.2.{i % 7}",
                user_agent="Mozilla/5.0",
            ),
            state,
        )
    readers = [_profile_reader(f"u{k}") for k in range(5)]  # u4 was never seen
    assert state.read_batch(readers) == [reader(state) for reader in readers]


def test_readers_in_read_batch_cannot_write(redis_state_factory: Factory) -> None:
    state = redis_state_factory()

    def writer(s: State) -> None:
        s.put("k", {}, T0, 60.0)

    with pytest.raises(TypeError, match="must not write"):
        state.read_batch([writer])


# -- subject aggregates ----------------------------------------------------------------------------

WINDOWS = (60.0, 600.0, HOUR, 24 * HOUR)
TTL = 30 * 24 * HOUR


def _random_folds(seed: int) -> list[tuple[Any, ...]]:
    """Folds over three subjects: mostly in order, some late, busy enough to turn counters
    dense, sets below the member cap, with and without success, services and labels."""
    rng = random.Random(seed)
    t = T0
    folds = []
    for i in range(600):
        t += rng.expovariate(1 / 240)
        at = t - rng.uniform(0, 2 * HOUR) if rng.random() < 0.15 else t
        outcome = rng.choice([OK, OK, FAIL, SIGNUP])
        members = (
            rng.choice([None, f"10.0.0.{rng.randrange(40)}"]),
            rng.choice([None, None, f"AS{rng.randrange(5)}"]),
            rng.choice([None, "Firefox", "Safari"]),
        )
        facts = {
            "label": rng.choice([None, f"label-{i}"]),
            "primary_key": rng.choice([None, "email"]),
            "service": rng.choice([None, "", "shop", "api"]),
            "success": (members[0], members[2]) if outcome == OK else None,
        }
        folds.append((f"s{rng.randrange(3)}", at, outcome, members, facts))
    return folds


@pytest.mark.parametrize("seed", [1, 2])
def test_redis_subjects_answer_what_memory_subjects_answer(
    redis_state_factory: Factory, seed: int
) -> None:
    redis_state, memory = redis_state_factory(), MemoryState()
    folds = _random_folds(seed)
    for key, at, outcome, members, facts in folds:
        for state in (redis_state, memory):
            state.fold_subject(key, at, WINDOWS, TTL, outcome, members, **facts)
    newest = max(at for _, at, *_ in folds)
    for key in ("s0", "s1", "s2"):
        for t in (None, newest, newest + 30, newest + 2 * HOUR):
            expected = memory.read_subject(key, t, WINDOWS, (64, 64, 5))
            assert expected is not None
            assert redis_state.read_subject(key, t, WINDOWS, (64, 64, 5)) == expected
    assert any(v.__class__.__name__ == "_Counter" for v in _counters(memory)), "none went dense"


def test_members_seen_at_one_time_are_listed_as_the_memory_state_lists_them(
    redis_state_factory: Factory,
) -> None:
    """Ties go by the members' text (by bytes in Redis, whatever the server's locale), most
    recent first, then a later sighting moves a member ahead."""
    redis_state, memory = redis_state_factory(), MemoryState()
    members = ["b", "a", "é", "B", "ab", "10.0.0.2", "10.0.0.10"]
    for state in (redis_state, memory):
        for m in members:
            state.fold_subject("ip:1", T0, WINDOWS, TTL, FAIL, (m,))
        state.fold_subject("ip:1", T0 + 1, WINDOWS, TTL, FAIL, ("a",))
    for t in (None, T0):
        view = memory.read_subject("ip:1", t, WINDOWS, (64,))
        assert view is not None
        assert redis_state.read_subject("ip:1", t, WINDOWS, (64,)) == view
    assert view.members[0][:3] == ("é", "b", "ab")


def _counters(state: MemoryState) -> list[object]:
    return [c for e in state._entries.values() for c in (e.ok, e.fail, e.signup)]  # type: ignore[union-attr]


def test_a_subject_is_one_packed_value_with_a_ttl(redis_state_factory: Factory) -> None:
    """Its counters, sets, record and last success's user agent live in one string, written
    once per fold: only an overflowing set's HyperLogLogs are keys of their own."""
    state = redis_state_factory()
    agent = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
    success = ("192.0.2.1", agent)
    state.fold_subject("u:h", T0, WINDOWS, TTL, OK, ("192.0.2.1", None, agent), success=success)
    name = f"{state.prefix}{{u:h}}:p"
    assert list(state.client.scan_iter(match=f"{state.prefix}*")) == [name]
    assert state.client.type(name) == "string"
    assert 0 < state.client.ttl(name) <= TTL
    view = state.read_subject("u:h", None, WINDOWS, (8, 8, 8))
    assert view is not None
    assert (view.last_success, view.members) == ((T0, *success), (("192.0.2.1",), (), (agent,)))


def test_replicas_folding_one_subject_lose_no_update(redis_state_factory: Factory) -> None:
    replicas = [redis_state_factory() for _ in range(4)]

    def work(k: int, state: RedisState) -> Callable[[], None]:
        return lambda: [
            state.fold_subject(
                "ip:1", T0 + i * 0.01, WINDOWS, TTL, FAIL, (f"u{(k * 50 + i) % 40}",)
            )
            for i in range(50)
        ]

    _in_threads([work(k, s) for k, s in enumerate(replicas)])
    view = replicas[0].read_subject("ip:1", T0 + 3, WINDOWS, (64,))
    assert view is not None
    assert view.counts[FAIL][-1] == 200
    assert view.distinct[0][-1] == 40


def test_a_rotating_attack_keeps_a_subject_set_bounded(redis_state_factory: Factory) -> None:
    state = redis_state_factory()
    for i in range(3000):
        ip = f"198.51.{i // 256}.{i % 256}"
        state.fold_subject("u:victim", T0 + i * 0.1, WINDOWS, TTL, FAIL, (ip,))
    view = state.read_subject("u:victim", None, WINDOWS, (1000,))
    assert view is not None
    assert len(view.members[0]) == EXACT_MEMBERS
    assert view.distinct[0][-1] > EXACT_MEMBERS  # the HyperLogLogs count past the cap
    # The packed subject and at most one HyperLogLog per bucket of the window.
    assert len(list(state.client.scan_iter(match=f"{state.prefix}*"))) <= 1 + 13
    assert state.client.strlen(f"{state.prefix}{{u:victim}}:p") < EXACT_MEMBERS * 40


def test_a_profile_of_the_previous_version_is_read_and_then_carried_over(
    redis_state_factory: Factory,
) -> None:
    state = redis_state_factory()
    # What aggregation kept per user before subject aggregates: a record at the user's key.
    legacy = {
        "first_seen": T0,
        "last_seen": T0 + 10,
        "label": "alice@example.com",
        "primary_key": "email",
        "services": ["shop"],
        "ok_time": T0 + 10,
        "ok_ip": "192.0.2.1",
        "ok_ua": None,
    }
    state.put("u:alice", legacy, T0 + 10, TTL)
    before = state.read_subject("u:alice", None, WINDOWS, (64,))
    assert before is not None
    assert (before.first_seen, before.label, before.counts[FAIL], before.members) == (
        T0,
        "alice@example.com",
        (0, 0, 0, 0),
        ((),),
    )
    state.fold_subject("u:alice", T0 + 20, WINDOWS, TTL, FAIL, ("192.0.2.9",))
    after = state.read_subject("u:alice", None, WINDOWS, (64,))
    assert after is not None
    assert (after.first_seen, after.last_seen, after.services) == (T0, T0 + 20, ("shop",))
    assert (after.label, after.primary_key) == ("alice@example.com", "email")
    assert after.last_success == (T0 + 10, "192.0.2.1", None)
    assert (after.counts[FAIL][-1], after.members) == (1, (("192.0.2.9",),))
    assert state.get("u:alice") is None  # the old record is gone once carried over


def test_a_subject_back_after_two_idle_windows_restarts_its_counters_and_sets(
    redis_state_factory: Factory,
) -> None:
    redis_state, memory = redis_state_factory(), MemoryState()
    back = T0 + 3000 + 2 * 24 * HOUR + 1  # more than two windows after its last event
    for state in (redis_state, memory):
        for i in range(40):  # a dense failure counter, forty addresses
            state.fold_subject(
                "u:h", T0 + i * 60, WINDOWS, TTL, FAIL, (f"10.0.0.{i}", None, "curl"), label="a"
            )
        success = ("192.0.2.1", "Firefox")
        state.fold_subject("u:h", T0 + 3000, WINDOWS, TTL, OK, (*success, None), success=success)
        state.fold_subject("u:h", back, WINDOWS, TTL, FAIL, ("192.0.2.9", None, None))
    # The memory state kept its stale parts (nothing pruned it): dropping them changed no answer.
    assert memory.pruned == 0
    for t in (None, back + 30):
        view = memory.read_subject("u:h", t, WINDOWS, (64, 64, 64))
        assert view is not None
        assert redis_state.read_subject("u:h", t, WINDOWS, (64, 64, 64)) == view
    assert view.label == "a"
    assert view.last_success == (T0 + 3000, *success)
    name = f"{redis_state.prefix}{{u:h}}"
    assert list(redis_state.client.scan_iter(match=f"{name}:*")) == [f"{name}:p"]
    # Dropped, not merely out of the windows: one exact time and one member left.
    assert redis_state.client.strlen(f"{name}:p") < 200


def _previous_layout(
    client: redis.Redis, name: str, folds: list[tuple[float, int, tuple[str | None, ...]]]
) -> None:
    """Write the subject ``name`` (its keys' base) as the version before the packed subject kept
    it (a hash, the user agent, a sorted set and mark per set), after ``folds`` (time, outcome,
    members; in time order, a success's address and user agent being its sets 0 and 2)."""
    fields: dict[str, str] = {"f": repr(folds[0][0]), "l": repr(folds[-1][0]), "lb": "a"}
    fields["sv"] = '["shop"]'
    times: dict[int, list[float]] = {}
    for t, outcome, members in folds:
        times.setdefault(outcome, []).append(t)
        for i, member in enumerate(members):
            if member is not None:
                client.zadd(f"{name}z{i}", {member: t})
        if outcome == OK:
            fields["ot"], fields["oi"] = repr(t), str(members[0])
            client.set(f"{name}u", str(members[2]))
    for outcome, ts in times.items():
        if len(ts) <= 16:
            fields[f"c{outcome}"] = ",".join(repr(t) for t in ts)
            continue
        fields[f"c{outcome}"] = "d"
        for w in WINDOWS:
            buckets = [int(t // (w / 12)) for t in ts]
            head = max(buckets)
            kept = [b for b in buckets if b >= head - 12]
            fields[f"c{outcome}:{w!r}:n"] = str(head)
            fields[f"c{outcome}:{w!r}:t"] = str(len(kept))
            for b in set(kept):
                fields[f"c{outcome}:{w!r}:{b}"] = str(kept.count(b))
    client.hset(f"{name}s", mapping=fields)


def test_a_subject_of_the_previous_layout_is_read_and_then_packed(
    redis_state_factory: Factory,
) -> None:
    """After an upgrade, a subject the previous version kept (a hash and a key per part) answers
    as it did, and its first fold moves it into the packed value and deletes the old keys."""
    redis_state, memory = redis_state_factory(), MemoryState()
    folds: list[tuple[float, int, tuple[str | None, ...]]] = [
        (T0 + i * 60, FAIL, (f"10.0.0.{i % 7}", None, "curl")) for i in range(20)
    ]
    folds.append((T0 + 1300, OK, ("192.0.2.1", None, "Firefox")))
    for t, outcome, members in folds:
        success = (members[0], members[2]) if outcome == OK else None
        memory.fold_subject(
            "u:old", t, WINDOWS, TTL, outcome, members, label="a", service="shop", success=success
        )
    name = f"{redis_state.prefix}{{u:old}}:"
    _previous_layout(redis_state.client, name, folds)
    for t in (None, T0 + 1400, T0 + 2 * HOUR):
        assert redis_state.read_subject("u:old", t, WINDOWS, (64, 64, 64)) == (
            memory.read_subject("u:old", t, WINDOWS, (64, 64, 64))
        )
    for state in (redis_state, memory):
        state.fold_subject("u:old", T0 + 1500, WINDOWS, TTL, FAIL, ("10.0.0.9", None, None))
    assert list(redis_state.client.scan_iter(match=f"{name}*")) == [f"{name}p"]
    for t in (None, T0 + 1600, T0 + 2 * HOUR):
        assert redis_state.read_subject("u:old", t, WINDOWS, (64, 64, 64)) == (
            memory.read_subject("u:old", t, WINDOWS, (64, 64, 64))
        )


def test_an_attacked_subject_back_after_two_idle_windows_keeps_no_hyperloglog(
    redis_state_factory: Factory,
) -> None:
    state = redis_state_factory()
    for i in range(3000):  # past the member cap: the set's HyperLogLogs count
        state.fold_subject("u:v", T0 + i, WINDOWS, TTL, FAIL, (f"198.51.{i // 256}.{i % 256}",))
    name = f"{state.prefix}{{u:v}}"
    assert list(state.client.scan_iter(match=f"{name}:h0:*"))
    state.fold_subject("u:v", T0 + 3000 + 2 * 24 * HOUR, WINDOWS, TTL, FAIL, ("203.0.113.1",))
    assert sorted(state.client.scan_iter(match=f"{name}:*")) == [f"{name}:p"]
    view = state.read_subject("u:v", None, WINDOWS, (64,))
    assert view is not None
    assert (view.counts[FAIL], view.distinct[0]) == ((1, 1, 1, 1), (1, 1, 1, 1))


# -- dedupe maps: bounded ------------------------------------------------------------------------


def test_a_dedupe_map_at_its_cap_claims_new_events_without_recording_them(
    redis_state_factory: Factory,
) -> None:
    """A dedupe map (one minute of event time) holds at most ``dedupe_cap`` claims, whatever the
    rate: past it an event is still processed (claimed, not recorded) and counted, so the maps'
    memory is bounded at the price of a duplicate of such an event counting again."""
    state = redis_state_factory()
    state.dedupe_cap = 3
    claims = [state.apply([Claim("d:1", f"e{i}", T0, HOUR)]) for i in range(5)]
    assert claims == [[True]] * 5
    assert state.unrecorded_claims == 2
    assert state.client.hlen(f"{state.prefix}{{d:1}}:m") == 3
    assert state.apply([Claim("d:1", "e1", T0, HOUR)]) == [False]  # recorded: a duplicate
    assert state.apply([Claim("d:1", "e4", T0, HOUR)]) == [True]  # not recorded: again
    assert state.apply([Claim("d:2", "e9", T0, HOUR)]) == [True]  # another minute's map
    assert state.unrecorded_claims == 3


def test_at_the_cap_a_replayed_batch_finds_its_recorded_claims_only(
    redis_state_factory: Factory,
) -> None:
    """A claim past the cap remembers no batch: a replay of its batch claims it again."""
    state = redis_state_factory()
    state.dedupe_cap = 2
    first = [state.apply([Claim("d:1", f"e{i}", T0, HOUR, owner=5)]) for i in range(3)]
    assert first == [[CLAIMED]] * 3
    again = [state.apply([Claim("d:1", f"e{i}", T0, HOUR, owner=5)]) for i in range(3)]
    assert again == [[OWN], [OWN], [CLAIMED]]
    assert state.apply([Claim("d:1", "e1", T0, HOUR, owner=6)]) == [TAKEN]
    assert state.unrecorded_claims == 2


def test_the_steps_after_an_unrecorded_claim_run(redis_state_factory: Factory) -> None:
    state = redis_state_factory()
    state.dedupe_cap = 1
    state.apply([Claim("d:1", "e0", T0, HOUR)])
    assert state.apply([Claim("d:1", "e1", T0, HOUR), AddWindows("c", T0, (HOUR,))]) == [
        True,
        (1,),
    ]


def test_a_batch_of_plans_is_one_round_trip_and_each_plan_is_atomic(
    redis_state_factory: Factory,
) -> None:
    """apply_many sends every plan (and the records before them) in one pipeline; plans from two
    replicas at once never interleave inside a plan."""
    replicas = [redis_state_factory() for _ in range(4)]

    def work(k: int, state: RedisState) -> Callable[[], None]:
        def run() -> None:
            for b in range(25):
                plans = [
                    [
                        Claim("d:1", f"r{k}b{b}e{i}", T0, HOUR),
                        AddWindows("c", T0 + i, (HOUR,)),
                        AddWindows("c2", T0 + i, (HOUR,)),
                    ]
                    for i in range(10)
                ]
                for result in state.apply_many(plans, [(f"rec{k}", {"b": b}, T0, HOUR)]):
                    assert result[1] == result[2]  # nothing between a plan's two steps

        return run

    _in_threads([work(k, s) for k, s in enumerate(replicas)])
    assert replicas[0].count("c", T0 + 10, HOUR) == 1000
    assert replicas[0].get("rec3") == {"b": 24}


def test_a_plan_carries_any_text_as_it_is(redis_state_factory: Factory) -> None:
    """A plan travels as one JSON argument: labels, user agents and members outside ASCII (an
    emoji is a surrogate pair in JSON) are stored as the direct calls store them."""
    state = redis_state_factory()
    text = "Zoë 😀 中文"
    state.apply(
        [
            Fold("u:1", T0, (HOUR,), HOUR, OK, ("192.0.2.1", None, text), label=text),
            IncrFields.of("m", {text: 2}, T0, HOUR),
        ]
    )
    view = state.read_subject("u:1", T0, (HOUR,), (8, 8, 8))
    assert view is not None
    assert (view.label, view.members[2]) == (text, (text,))
    assert state.fields("m") == {text: 2}


def _layout(state: RedisState) -> dict[str, tuple[str, Any]]:
    """Every key under the state's prefix (prefix removed): its type and what it holds."""
    client = state.client
    out: dict[str, tuple[str, Any]] = {}
    for name in client.scan_iter(match=f"{state.prefix}*"):
        kind = client.type(name)
        if name.split("}:", 1)[1].startswith("h"):  # a HyperLogLog: its count (binary)
            out[name[len(state.prefix) :]] = (kind, client.pfcount(name))
            continue
        read: Any = {
            "hash": client.hgetall,
            "zset": lambda n: client.zrange(n, 0, -1, withscores=True),
            # A packed subject is binary.
            "string": lambda n: client.execute_command("GET", n, NEVER_DECODE=True),
        }[kind]
        out[name[len(state.prefix) :]] = (kind, read(name))
    return out


def test_a_plan_writes_the_keys_the_direct_calls_write(redis_state_factory: Factory) -> None:
    """The plans name a subject or a distinct set by its keys' base and apply.lua spells the
    keys: the same names (sets, marks, HyperLogLogs) and contents as the direct calls'."""
    planned = redis_state_factory()
    direct = RedisState(planned.client, prefix=planned.prefix[:-1] + "-direct:")
    try:
        _plans_and_calls(planned, direct)
        layout = _layout(planned)
        for name in ("{u:s}:p", "{ip:d}:o", "{ip:d}:z", "{ip:c}:c", "{ip:m}:m"):
            assert name in layout
        assert any(k.startswith("{u:s}:h1:") for k in layout)
        assert any(k.startswith("{ip:d}:h:") for k in layout)
        assert layout == _layout(direct)
    finally:
        direct.clear()


def _plans_and_calls(planned: RedisState, direct: RedisState) -> None:
    windows = (HOUR, 24 * HOUR)
    for i in range(EXACT_MEMBERS + 20):  # past the cap: marks and HyperLogLogs too
        t, ip = T0 + i, f"198.51.100.{i}"
        member = f"user{i}"
        planned.apply(
            [
                AddWindows("ip:c", t, windows),
                AddDistinct("ip:d", member, t, HOUR),
                IncrFields.of("ip:m", {"a": 1}, t, HOUR),
                Fold(
                    "u:s",
                    t,
                    WINDOWS,
                    TTL,
                    FAIL,
                    (ip, member, None),
                    label="a",
                    success=(ip, "ua") if i % 7 == 0 else None,
                    read=(4, 4, 4),
                ),
            ]
        )
        direct.add_windows("ip:c", t, windows)
        direct.add_distinct("ip:d", member, t, HOUR)
        direct.incr_fields("ip:m", {"a": 1}, t, HOUR)
        direct.fold_subject(
            "u:s",
            t,
            WINDOWS,
            TTL,
            FAIL,
            (ip, member, None),
            label="a",
            success=(ip, "ua") if i % 7 == 0 else None,
        )
