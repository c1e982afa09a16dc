"""MemoryState: the State protocol's windows, lateness, expiry and bounds."""

from __future__ import annotations

import marshal
import random
import tracemalloc

import pytest

from usermon.processor.storage.state.base import FAIL, OK, SUBJECT_IDLE_WINDOWS, State, SubjectView
from usermon.processor.storage.state.memory import (
    FIELDS_PER_KEY,
    MAX_MEMBERS,
    SMALL_SET,
    MemoryState,
)
from usermon.processor.storage.state.memory_entries import _Distinct

WINDOWS = (60.0, 600.0, 3600.0, 86400.0)


def test_memory_state_implements_the_state_protocol() -> None:
    state: State = MemoryState()
    assert state.count("nothing", 0.0, 60.0) == 0


def test_a_counter_counts_events_inside_its_window() -> None:
    state = MemoryState()
    totals = [state.add("k", 1000.0 + i, 60.0) for i in range(10)]
    assert totals == list(range(1, 11))
    assert state.count("k", 1009.0, 60.0) == 10


def test_a_counter_forgets_events_older_than_its_window() -> None:
    state = MemoryState()
    state.add("k", 1000.0, 60.0)
    assert state.add("k", 1000.0 + 200.0, 60.0) == 1
    assert state.count("k", 1400.0, 60.0) == 0


def test_add_windows_reads_one_counter_over_every_window() -> None:
    state = MemoryState()
    for minute in range(30):
        totals = state.add_windows("k", 10_000.0 + minute * 60, WINDOWS)
    # An event exactly one window old may still count: windows end on a bucket boundary.
    assert totals[0] in (1, 2)
    assert totals[1] in (10, 11)
    assert totals[2:] == (30, 30)


def test_a_window_never_counts_an_event_older_than_one_bucket_past_it() -> None:
    state = MemoryState()
    state.add("k", 1000.0, 60.0)
    assert state.add("k", 1000.0 + 60 + 60 / 12 + 0.01, 60.0) == 1


def test_a_late_event_counts_in_its_own_bucket() -> None:
    state = MemoryState()
    state.add_windows("k", 1000.0, WINDOWS)
    assert state.add_windows("k", 990.0, WINDOWS) == (2, 2, 2, 2)


def test_an_event_later_than_a_window_counts_only_in_longer_windows() -> None:
    state = MemoryState()
    state.add_windows("k", 10_000.0, WINDOWS)
    assert state.add_windows("k", 10_000.0 - 300, WINDOWS) == (1, 2, 2, 2)


def test_count_reads_a_shorter_window_from_a_longer_ring() -> None:
    state = MemoryState()
    for i in range(10):
        state.add("k", 1000.0 + i * 60, 3600.0)
    assert state.count("k", 1540.0, 3600.0) == 10
    assert state.count("k", 1540.0, 600.0) <= 11
    assert state.count("k", 1540.0, 600.0) >= 10 - 1


def test_distinct_counts_members_once_within_the_window() -> None:
    state = MemoryState()
    for member in ["a", "b", "a", "c", "b"]:
        n = state.add_distinct("d", member, 1000.0, 600.0)
    assert n == 3
    assert sorted(state.distinct_members("d", 1000.0, 600.0)) == ["a", "b", "c"]


def test_distinct_members_are_most_recent_first() -> None:
    state = MemoryState()
    for i, member in enumerate(["a", "b", "c"]):
        state.add_distinct("d", member, 1000.0 + i, 600.0)
    assert state.distinct_members("d", 1002.0, 600.0, limit=2) == ["c", "b"]


def test_distinct_forgets_members_outside_the_window() -> None:
    state = MemoryState()
    state.add_distinct("d", "old", 1000.0, 60.0)
    assert state.add_distinct("d", "new", 2000.0, 60.0) == 1


def test_distinct_estimates_beyond_its_member_cap_without_growing() -> None:
    state = MemoryState()
    n = 0
    for i in range(MAX_MEMBERS * 4):
        n = state.add_distinct("d", f"10.0.{i // 256}.{i % 256}", 1000.0 + i * 0.01, 3600.0)
    assert n == MAX_MEMBERS * 4
    assert len(state.distinct_members("d", 2000.0, 3600.0, limit=10_000)) == MAX_MEMBERS


def test_records_and_fields_expire_with_their_ttl() -> None:
    state = MemoryState()
    state.put("r", {"a": 1}, 1000.0, 60.0)
    state.incr_field("f", "x", 1000.0, 60.0)
    assert state.get("r") == {"a": 1}
    assert state.fields("f") == {"x": 1}
    state.add("clock", 2000.0, 60.0)  # event time moves on past both ttls
    assert state.get("r") is None
    assert state.fields("f") == {}


def test_incr_fields_keeps_the_map_ttl_after_its_event_time() -> None:
    state = MemoryState()
    state.incr_fields("f", {"x": 1, "y": 2}, 1000.0, 60.0)
    state.add("clock", 1050.0, 60.0)
    assert state.fields("f") == {"x": 1, "y": 2}
    state.add("clock", 1061.0, 60.0)
    assert state.fields("f") == {}


def test_incr_field_returns_the_new_value() -> None:
    state = MemoryState()
    assert state.incr_field("f", "FR", 0.0, 100.0) == 1
    assert state.incr_field("f", "FR", 1.0, 100.0, n=2) == 3


def test_the_key_cap_evicts_the_least_recently_touched_key_first() -> None:
    state = MemoryState(max_keys=3)
    state.add("a", 1.0, 3600.0)
    state.add("b", 2.0, 3600.0)
    state.add("c", 3.0, 3600.0)
    state.add("a", 4.0, 3600.0)  # touch a: b is now the least recent
    state.add("d", 5.0, 3600.0)
    assert len(state) == 3
    assert state.count("b", 5.0, 3600.0) == 0
    assert state.count("a", 5.0, 3600.0) == 2
    assert state.evicted == 1


def test_a_million_key_flood_stays_within_the_cap() -> None:
    state = MemoryState(max_keys=1000)
    for i in range(20_000):
        state.add(f"ip:{i}:fail", 1000.0 + i * 0.001, 600.0)
    assert len(state) == 1000


def test_idle_keys_are_swept_once_their_window_has_passed() -> None:
    state = MemoryState()
    for i in range(100):
        state.add(f"k{i}", 1000.0, 60.0)
    state.add("late", 5000.0, 60.0)
    state.sweep()
    assert len(state) == 1


def test_a_snapshot_restores_every_key() -> None:
    state = MemoryState()
    state.add_windows("c", 1000.0, WINDOWS)
    state.add_distinct("d", "m", 1000.0, 60.0)
    state.put("r", {"v": [1, 2]}, 1000.0, 60.0)
    restored = MemoryState.load(state.dump())
    assert restored.add_windows("c", 1001.0, WINDOWS) == (2, 2, 2, 2)
    assert restored.distinct_members("d", 1000.0, 60.0) == ["m"]
    assert restored.get("r") == {"v": [1, 2]}


# -- subject aggregates ----------------------------------------------------------------------------

DAY = 86400.0
TTL = 30 * DAY


def _stream(seed: int, n: int = 800) -> list[tuple[float, int, str]]:
    """Event times (mostly in order, some late), outcomes and members for one subject."""
    rng = random.Random(seed)
    t, out = 10_000.0, []
    for _ in range(n):
        t += rng.expovariate(1 / 120)
        at = t - rng.uniform(0, 7200) if rng.random() < 0.2 else t
        out.append((at, rng.randrange(3), f"m{rng.randrange(MAX_MEMBERS + 60)}"))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_subject_answers_what_separate_counters_and_sets_answer(seed: int) -> None:
    state = MemoryState()
    stream = _stream(seed)
    for at, outcome, member in stream:
        state.fold_subject("s", at, WINDOWS, TTL, outcome, (member,))
        state.add_windows(f"c{outcome}", at, WINDOWS)
        state.add_distinct("d", member, at, WINDOWS[-1])
    for now in sorted({at for at, _, _ in stream[::50]} | {stream[-1][0] + 60}):
        view = state.read_subject("s", now, WINDOWS, (MAX_MEMBERS,))
        assert view is not None
        for outcome in range(3):
            assert view.counts[outcome] == tuple(
                state.count(f"c{outcome}", now, w) for w in WINDOWS
            )
        assert view.distinct[0] == tuple(state.distinct_count("d", now, w) for w in WINDOWS)
        assert view.members[0] == tuple(state.distinct_members("d", now, WINDOWS[-1], MAX_MEMBERS))


def test_a_subject_set_turns_into_a_dict_past_its_small_size_and_keeps_its_order() -> None:
    state = MemoryState()
    for i in range(SMALL_SET + 3):
        state.fold_subject("s", 1000.0 + i, WINDOWS, TTL, FAIL, (f"m{i}",))
    state.fold_subject("s", 2000.0, WINDOWS, TTL, FAIL, ("m0",))
    view = state.read_subject("s", 2000.0, WINDOWS, (3,))
    assert view is not None
    assert view.members == (("m0", f"m{SMALL_SET + 2}", f"m{SMALL_SET + 1}"),)
    assert view.distinct[0][-1] == SMALL_SET + 3


def test_a_snapshot_restores_every_kind_of_subject() -> None:
    state = MemoryState()
    for i in range(40):  # dense counter, big set with overflow
        state.fold_subject("busy", 1000.0 + i, WINDOWS, TTL, FAIL, (f"10.0.{i}.{i}",))
    for i in range(MAX_MEMBERS + 5):
        state.fold_subject("busy", 1100.0 + i * 0.1, WINDOWS, TTL, FAIL, (f"10.1.{i}.{i}",))
    state.fold_subject(
        "quiet",
        1200.0,
        WINDOWS,
        TTL,
        OK,
        ("192.0.2.1", None, "Firefox"),
        label="alice",
        primary_key="email",
        service="shop",
        success=("192.0.2.1", "Firefox"),
    )
    state.fold_subject("quiet", 1201.0, WINDOWS, TTL, OK, ("192.0.2.2",), service="api")
    restored = MemoryState.load(state.dump())
    for key in ("busy", "quiet"):
        for t in (None, 1250.0):
            view = state.read_subject(key, t, WINDOWS, (64, 64, 64))
            assert view is not None
            assert restored.read_subject(key, t, WINDOWS, (64, 64, 64)) == view
    restored.fold_subject("busy", 1300.0, WINDOWS, TTL, FAIL, ("10.9.9.9",))
    state.fold_subject("busy", 1300.0, WINDOWS, TTL, FAIL, ("10.9.9.9",))
    assert restored.read_subject("busy", None, WINDOWS, (64,)) == state.read_subject(
        "busy", None, WINDOWS, (64,)
    )


def _version_2(state: MemoryState) -> bytes:
    """``state``'s snapshot as the previous version wrote it (its rows are unchanged)."""
    _, max_keys, watermark, evicted, rows = marshal.loads(state.dump())  # noqa: S302 - ours
    return marshal.dumps((2, max_keys, watermark, evicted, rows))


def test_a_snapshot_of_the_previous_version_loads_with_its_profiles_folded_into_subjects() -> None:
    old = MemoryState()
    # What aggregation kept per user and per address before subject aggregates.
    for k, (t, ip, counter) in enumerate(
        [(1000.0, "192.0.2.1", "fail"), (1010.0, "192.0.2.2", "ok"), (1020.0, "192.0.2.2", "ok")]
    ):
        old.add_windows(f"u:h:{counter}", t, WINDOWS)
        old.add_distinct("u:h:ips", ip, t, DAY)
        old.add_distinct("u:h:uas", "Firefox", t, DAY)
        old.add_windows(f"ip:{ip}:{counter}", t, WINDOWS)
        old.add_distinct(f"ip:{ip}:users", "h", t, DAY)
        old.put(f"ip:{ip}", {"first_seen": t - k, "last_seen": t}, t, TTL)
    old.put(
        "u:h",
        {
            "first_seen": 1000.0,
            "last_seen": 1020.0,
            "label": "alice",
            "primary_key": "email",
            "services": ["shop"],
            "ok_time": 1020.0,
            "ok_ip": "192.0.2.2",
            "ok_ua": "Firefox",
        },
        1020.0,
        TTL,
    )
    old.put("det:other", {"kept": True}, 1020.0, TTL)  # not aggregation's: loaded as it is
    state = MemoryState.load(_version_2(old))
    assert sorted(state.keys()) == ["det:other", "ip:192.0.2.1", "ip:192.0.2.2", "u:h"]
    user = state.read_subject("u:h", 1030.0, WINDOWS, (64, 64, 64))
    assert user is not None
    assert (user.first_seen, user.last_seen, user.label, user.services) == (
        1000.0,
        1020.0,
        "alice",
        ("shop",),
    )
    assert user.last_success == (1020.0, "192.0.2.2", "Firefox")
    assert user.counts == ((2, 2, 2, 2), (1, 1, 1, 1), (0, 0, 0, 0))
    assert user.members == (("192.0.2.2", "192.0.2.1"), (), ("Firefox",))
    address = state.read_subject("ip:192.0.2.2", 1030.0, WINDOWS, (64,))
    assert address is not None
    assert (address.first_seen, address.counts[OK][-1], address.members) == (1018.0, 2, (("h",),))
    assert state.get("det:other") == {"kept": True}
    state.fold_subject("u:h", 1040.0, WINDOWS, TTL, FAIL, ("192.0.2.3",))  # and it goes on
    user = state.read_subject("u:h", 1040.0, WINDOWS, (64,))
    assert user is not None
    assert (user.counts[FAIL][-1], user.distinct[0][-1]) == (2, 3)


def test_the_key_cap_evicts_whole_subjects_least_recently_touched_first() -> None:
    state = MemoryState(max_keys=2)
    state.fold_subject("a", 1.0, WINDOWS, TTL, FAIL, ("x",))
    state.fold_subject("b", 2.0, WINDOWS, TTL, FAIL, ("x",))
    state.fold_subject("a", 3.0, WINDOWS, TTL, FAIL, ("y",))
    state.fold_subject("c", 4.0, WINDOWS, TTL, FAIL, ("x",))
    assert state.read_subject("b", None) is None
    assert state.read_subject("a", None) is not None
    assert state.evicted == 1


def test_a_subject_outlives_its_windows_until_its_ttl() -> None:
    state = MemoryState()
    state.fold_subject("s", 1000.0, WINDOWS, 2 * DAY, FAIL, ("x",))
    state.add("clock", 1000.0 + 1.5 * DAY, 60.0)
    view = state.read_subject("s", None, WINDOWS, (64,))
    assert view is not None
    assert view.counts[FAIL] == (1, 1, 1, 1)  # as of its own newest event
    state.add("clock", 1000.0 + 3 * DAY, 60.0)
    assert state.read_subject("s", None) is None


# -- counting-map fields ---------------------------------------------------------------------------


def _fill(state: MemoryState, key: str, n: int, t: float) -> None:
    state.incr_fields(key, {f"{key}:{i}": 1 for i in range(n)}, t, 3600.0)


def test_counting_map_fields_stay_under_their_cap_least_recently_touched_maps_first() -> None:
    state = MemoryState(max_keys=100)
    assert state.max_fields == FIELDS_PER_KEY * 100 == 200
    _fill(state, "d:1", 100, 1000.0)
    _fill(state, "d:2", 60, 1001.0)
    state.incr_field("d:1", "again", 1002.0, 3600.0)  # d:1 is now touched after d:2
    _fill(state, "d:3", 50, 1003.0)  # 211 fields: d:2 goes, then d:1 is within 8/10 of the cap
    assert state.fields("d:2") == {}
    assert len(state.fields("d:1")) == 101
    assert len(state.fields("d:3")) == 50
    assert state.maps_evicted == 1


def test_the_map_being_written_is_never_dropped_even_alone_over_the_cap() -> None:
    state = MemoryState(max_keys=10)
    _fill(state, "d:1", 5, 1000.0)
    _fill(state, "d:2", 50, 1001.0)
    assert state.fields("d:1") == {}
    assert len(state.fields("d:2")) == 50


def test_a_flood_of_deduplicated_events_keeps_the_fields_bounded() -> None:
    from usermon.processor.engine import Engine
    from usermon.processor.model import Event

    state = MemoryState(max_keys=1000)
    engine = Engine(state)
    events = [
        Event(
            kind="login",
            time=1000.0 + i * 0.05,
            success=False,
            client_ip=f"10.0.{i // 250}.{i % 250}",
            trace_id=f"{i:032x}",
            span_id=f"{i:016x}",
        )
        for i in range(20_000)
    ]
    for start in range(0, len(events), 500):
        engine.process(events[start : start + 500])
        fields = sum(len(state.fields(k)) for k in state.keys("d:"))
        assert fields <= state.max_fields + 500
    assert state.maps_evicted > 0
    again = engine.process(events[-500:])  # the newest minutes are still remembered
    assert again.duplicates == 500
    assert again.accepted == 0


# -- idle subjects ---------------------------------------------------------------------------------

IDLE = SUBJECT_IDLE_WINDOWS * DAY
"""How long aggregation's subjects (24 h the longest window) go without events before idle."""


def _attacked(state: MemoryState, key: str, t0: float, failures: int = 3000) -> None:
    """An account under a rotating attack (dense counter, sets past their member cap, with
    overflow), then its owner logging in: every kind of windowed part a subject can hold."""
    for i in range(failures):
        state.fold_subject(
            key,
            t0 + i * 0.5,
            WINDOWS,
            TTL,
            FAIL,
            (f"198.51.{i // 256}.{i % 256}", f"AS{i % 50}", f"agent {i % 40}"),
            label="victim@example.com",
            primary_key="email",
            service="shop",
        )
    t = t0 + failures * 0.5
    state.fold_subject(
        key, t, WINDOWS, TTL, OK, ("192.0.2.1", None, "Firefox"), success=("192.0.2.1", "Firefox")
    )


def _reads(state: MemoryState, keys: list[str], now: float) -> list[SubjectView | None]:
    return [state.read_subject(k, at, WINDOWS, (64, 64, 64)) for k in keys for at in (now, now + 1)]


def test_pruning_idle_subjects_changes_no_read_as_of_the_newest_event_time() -> None:
    state = MemoryState()
    _attacked(state, "u:victim", 1000.0)
    for k in range(3):  # light ones: one event, and a few
        state.fold_subject("ip:192.0.2.7", 1000.0 + k * 3600, WINDOWS, TTL, k % 3, ("h",))
    state.fold_subject("ip:192.0.2.8", 5000.0, WINDOWS, TTL, OK, ("h",))
    state.fold_subject("u:recent", 1000.0 + IDLE, WINDOWS, TTL, OK, ("192.0.2.9",))
    keys = ["u:victim", "ip:192.0.2.7", "ip:192.0.2.8", "u:recent"]
    # First the three old subjects are idle, then the recent one as well.
    for now, pruned in ((1000.0 + IDLE + 20_000, 3), (1000.0 + 2 * IDLE + 1, 4)):
        state.add("clock", now, 60.0)
        before = _reads(state, keys, now)
        state.sweep()
        assert state.pruned == pruned
        assert _reads(state, keys, now) == before


def test_a_subject_is_idle_only_once_more_than_two_windows_behind_the_watermark() -> None:
    state = MemoryState()
    state.fold_subject("ip:192.0.2.1", 1000.0, WINDOWS, TTL, FAIL, ("h",))
    state.add("clock", 1000.0 + IDLE, 60.0)
    state.sweep()
    assert state.pruned == 0
    view = state.read_subject("ip:192.0.2.1", None, WINDOWS, (64,))
    assert view is not None
    assert view.counts[FAIL] == (1, 1, 1, 1)
    state.add("clock", 1000.0 + IDLE + 1, 60.0)
    state.sweep()
    assert state.pruned == 1
    # Its record stays; read as of its own last event, its windows are empty now.
    view = state.read_subject("ip:192.0.2.1", None, WINDOWS, (64,))
    assert view is not None
    assert (view.first_seen, view.last_seen, view.counts[FAIL], view.members) == (
        1000.0,
        1000.0,
        (0, 0, 0, 0),
        ((),),
    )


def test_an_idle_attacked_account_costs_only_its_record_once_pruned() -> None:
    # Once on a throwaway state first: what the first fold and sweep allocate for good (caches,
    # free lists) is not the idle account's.
    warm = MemoryState()
    _attacked(warm, "u:warm", 1000.0)
    warm.add("clock", 1000.0 + IDLE + 2000, 60.0)
    warm.sweep()
    tracemalloc.start()
    try:
        state = MemoryState()
        state.add("clock", 0.0, 60.0)
        start = tracemalloc.get_traced_memory()[0]
        _attacked(state, "u:victim", 1000.0)
        attacked = tracemalloc.get_traced_memory()[0] - start
        snapshot = len(state.dump())
        state.add("clock", 1000.0 + IDLE + 2000, 60.0)
        state.sweep()
        idle = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert state.pruned == 1
    assert attacked > 20_000  # the counters' rings and three sets at their member cap
    assert idle < attacked / 10
    assert len(state.dump()) < snapshot / 10
    view = state.read_subject("u:victim", None)
    assert view is not None
    assert (view.label, view.services, view.last_success) == (
        "victim@example.com",
        ("shop",),
        (2500.0, "192.0.2.1", "Firefox"),
    )


def test_idle_subjects_are_pruned_as_new_keys_arrive_without_a_sweep() -> None:
    state = MemoryState()
    _attacked(state, "u:victim", 1000.0, failures=100)
    for i in range(63):  # the 64th new key: the amortized expiry turns the pruning wheel
        state.add(f"a{i}", 1100.0 + i, 60.0)
    later = 1000.0 + IDLE + 2000
    for i in range(63):
        state.add(f"b{i}", later + i, 60.0)
    assert state.pruned == 0
    state.add("b63", later + 63, 60.0)  # the 64th new key since the last turn
    assert state.pruned == 1
    view = state.read_subject("u:victim", None, WINDOWS, (64,))
    assert view is not None
    assert view.counts[FAIL] == (0, 0, 0, 0)


def _number(key: str) -> int:
    *_, third, fourth = key.split(".")
    return int(third) * 256 + int(fourth)


def test_a_flood_of_new_addresses_keeps_the_pruning_wheel_bounded() -> None:
    state = MemoryState(max_keys=1000)
    _attacked(state, "u:victim", 1000.0, failures=100)
    for i in range(20_000):  # each address folded once, most of them evicted
        state.fold_subject(f"ip:10.0.{i // 256}.{i % 256}", 2000.0 + i, WINDOWS, TTL, FAIL, ("h",))
    queued = len(state._spoke) + sum(len(keys) for _, keys in state._wheel)
    assert state._closed == sum(len(keys) for _, keys in state._wheel)
    assert queued <= 1000 + 500 + 4096 + 64
    # And the subjects still in the map are still pruned once idle (all but those folded since
    # the last turn of the wheel, which closed their spoke two days later).
    for i in range(2 * 64):
        state.add(f"k{i}", 22_000.0 + IDLE + i, 60.0)
    kept = [k for k in state.keys("ip:") if _number(k) < 19_900]
    assert len(kept) > 700
    for key in kept:
        view = state.read_subject(key, None, WINDOWS, (64,))
        assert view is not None
        assert view.counts[FAIL] == (0, 0, 0, 0)


def test_a_loaded_snapshot_prunes_its_idle_subjects_from_its_first_turns() -> None:
    state = MemoryState()
    _attacked(state, "u:victim", 1000.0, failures=100)
    restored = MemoryState.load(state.dump())
    restored.fold_subject("ip:192.0.2.1", 1000.0 + IDLE + 100, WINDOWS, TTL, OK, ("h",))
    for i in range(64):
        restored.add(f"k{i}", 1000.0 + IDLE + 100 + i, 60.0)
    assert restored.pruned == 1


def test_subjects_from_rows_applied_on_a_snapshot_are_pruned_too() -> None:
    state = MemoryState()
    state.track_changes()
    base = state.dump()
    _attacked(state, "u:victim", 1000.0, failures=100)
    restored = MemoryState.load(base)
    restored.apply_rows(state.header(), state.changes())
    restored.fold_subject("ip:192.0.2.1", 1000.0 + IDLE + 100, WINDOWS, TTL, OK, ("h",))
    for i in range(64):
        restored.add(f"k{i}", 1000.0 + IDLE + 100 + i, 60.0)
    assert restored.pruned == 1


def test_a_pruned_subject_that_comes_back_answers_what_an_unpruned_one_does() -> None:
    pruned, kept = MemoryState(), MemoryState()
    for state in (pruned, kept):
        _attacked(state, "u:victim", 1000.0, failures=300)
        state.add("clock", 1000.0 + IDLE + 5000, 60.0)
    pruned.sweep()
    assert (pruned.pruned, kept.pruned) == (1, 0)
    t = 1000.0 + IDLE + 6000
    for state in (pruned, kept):
        state.fold_subject("u:victim", t, WINDOWS, TTL, FAIL, ("203.0.113.1", None, "curl"))
        state.fold_subject("u:victim", t + 30, WINDOWS, TTL, OK, ("203.0.113.1", None, "curl"))
    # (Not an hour later: a counter restarted after pruning is exact, where the dense one it
    # replaced would count an event up to one bucket older than the window.)
    for at in (t + 30, t + 1800):
        assert pruned.read_subject("u:victim", at, WINDOWS, (64, 64, 64)) == kept.read_subject(
            "u:victim", at, WINDOWS, (64, 64, 64)
        )


def test_a_snapshot_keeps_a_pruned_subject_as_it_is() -> None:
    state = MemoryState()
    _attacked(state, "u:victim", 1000.0, failures=40)
    state.add("clock", 1000.0 + IDLE + 100, 60.0)
    state.sweep()
    restored = MemoryState.load(state.dump())
    for t in (None, 1000.0 + IDLE + 100):
        assert restored.read_subject("u:victim", t, WINDOWS, (64, 64, 64)) == state.read_subject(
            "u:victim", t, WINDOWS, (64, 64, 64)
        )


@pytest.mark.parametrize(("seed", "late"), [(s, late) for s in range(6) for late in (0.0, 0.05)])
def test_a_distinct_count_that_stops_at_the_window_edge_counts_what_reading_all_counts(
    seed: int, late: float
) -> None:
    """A set whose members came in time order is counted from the window's edge, not member by
    member: the counts are those of reading every member (a late event makes the set
    unordered: it is then read in full), over every window, read at any time."""
    rng = random.Random(seed)
    state = MemoryState()
    t = 1_767_571_200.0
    entry = _Distinct(0.0)
    for _ in range(600):
        t += rng.random() * 20
        at = t - rng.random() * 900 if rng.random() < late else t
        state.add_distinct("k", f"m{rng.randrange(300)}", at, 3600.0)
        entry = state._entries["k"]
        assert isinstance(entry, _Distinct)
        for window in (60.0, 600.0, 3600.0):
            for read in (at, t, t - 100, t + 50):
                counted = state.distinct_count("k", read, window)
                ordered, entry.ordered = entry.ordered, False
                assert counted == state.distinct_count("k", read, window)
                entry.ordered = ordered
    assert entry.ordered is (late == 0.0)
