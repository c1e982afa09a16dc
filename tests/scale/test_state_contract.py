"""The State contract (usermon.processor.storage.state.base), one behaviour per test, over every
backend.

The same table runs on the in-memory state and on Redis (a real server), so the engine's
detectors see the same numbers whichever store a deployment uses. Times are event times.
"""

from __future__ import annotations

import pytest

from usermon.processor.storage.state.base import (
    ENTRIES_CAP,
    FAIL,
    OK,
    SIGNUP,
    SUBJECT_MAX_SERVICES,
    SUBJECT_MAX_SETS,
    State,
    SubjectView,
    entry_json,
)
from usermon.processor.storage.state.steps import (
    CLAIMED,
    OWN,
    TAKEN,
    AddDistinct,
    AddWindows,
    Append,
    Claim,
    Count,
    DistinctCount,
    Fields,
    Fold,
    Get,
    IncrFields,
    Step,
)

T0 = 1_700_000_000.0
MINUTE = 60.0
HOUR = 3600.0


# -- counters --------------------------------------------------------------------------------------


def test_add_returns_the_running_total_within_the_window(state: State) -> None:
    assert [state.add("c", T0 + i, MINUTE) for i in range(5)] == [1, 2, 3, 4, 5]


def test_add_counts_n_at_once(state: State) -> None:
    state.add("c", T0, MINUTE, n=3)
    assert state.add("c", T0 + 1, MINUTE, n=4) == 7


def test_add_forgets_events_that_left_the_window(state: State) -> None:
    state.add("c", T0, MINUTE, n=10)
    assert state.add("c", T0 + 3 * MINUTE, MINUTE) == 1


def test_counters_with_different_keys_are_independent(state: State) -> None:
    state.add("a", T0, MINUTE, n=5)
    assert state.add("b", T0, MINUTE) == 1


def test_add_windows_returns_one_total_per_window_in_order(state: State) -> None:
    windows = (MINUTE, 10 * MINUTE, HOUR)
    state.add_windows("c", T0, windows)
    state.add_windows("c", T0 + 5 * MINUTE, windows)
    assert state.add_windows("c", T0 + 30 * MINUTE, windows) == (1, 1, 3)


def test_count_of_an_unknown_key_is_zero(state: State) -> None:
    assert state.count("nothing", T0, MINUTE) == 0


def test_count_reads_the_total_without_adding(state: State) -> None:
    state.add("c", T0, MINUTE, n=2)
    assert state.count("c", T0 + 1, MINUTE) == 2
    assert state.count("c", T0 + 1, MINUTE) == 2
    assert state.add("c", T0 + 2, MINUTE) == 3


def test_count_is_zero_once_the_window_has_passed(state: State) -> None:
    state.add("c", T0, MINUTE, n=2)
    assert state.count("c", T0 + 3 * MINUTE, MINUTE) == 0


def test_count_reads_each_window_that_add_windows_keeps(state: State) -> None:
    state.add_windows("c", T0, (MINUTE, HOUR))
    state.add_windows("c", T0 + 10 * MINUTE, (MINUTE, HOUR))
    assert state.count("c", T0 + 10 * MINUTE, MINUTE) == 1
    assert state.count("c", T0 + 10 * MINUTE, HOUR) == 2


def test_count_over_a_shorter_window_than_kept_uses_the_longer_series(state: State) -> None:
    state.add("c", T0, HOUR)
    state.add("c", T0 + 40 * MINUTE, HOUR)
    assert state.count("c", T0 + 40 * MINUTE, 10 * MINUTE) == 1


def test_an_out_of_order_event_inside_the_window_is_counted(state: State) -> None:
    state.add("c", T0 + 30, MINUTE)
    state.add("c", T0 + 10, MINUTE)
    assert state.count("c", T0 + 30, MINUTE) == 2


def test_an_event_older_than_the_window_is_dropped(state: State) -> None:
    state.add("c", T0 + 10 * MINUTE, MINUTE)
    assert state.add("c", T0, MINUTE) == 1
    assert state.count("c", T0 + 10 * MINUTE, MINUTE) == 1


# -- distinct sets ---------------------------------------------------------------------------------


def test_add_distinct_counts_each_member_once(state: State) -> None:
    state.add_distinct("d", "alice", T0, HOUR)
    state.add_distinct("d", "bob", T0 + 1, HOUR)
    assert state.add_distinct("d", "alice", T0 + 2, HOUR) == 2


def test_distinct_sets_forget_members_that_left_the_window(state: State) -> None:
    state.add_distinct("d", "alice", T0, MINUTE)
    assert state.add_distinct("d", "bob", T0 + 3 * MINUTE, MINUTE) == 1


def test_a_member_seen_again_stays_in_the_window(state: State) -> None:
    state.add_distinct("d", "alice", T0, MINUTE)
    state.add_distinct("d", "bob", T0 + 30, MINUTE)
    state.add_distinct("d", "alice", T0 + 50, MINUTE)
    assert state.distinct_count("d", T0 + 80, MINUTE) == 2


def test_distinct_counts_are_exact_up_to_64_members(state: State) -> None:
    counts = [state.add_distinct("d", f"10.0.0.{i}", T0 + i, HOUR) for i in range(64)]
    assert counts == list(range(1, 65))


def test_large_distinct_sets_are_estimated_within_two_percent(state: State) -> None:
    n = 2000
    for i in range(n):
        state.add_distinct("d", f"user-{i}", T0 + i * 0.5, HOUR)
    assert abs(state.distinct_count("d", T0 + n * 0.5, HOUR) - n) <= n * 0.02


def test_distinct_count_of_an_unknown_key_is_zero(state: State) -> None:
    assert state.distinct_count("nothing", T0, HOUR) == 0


def test_distinct_members_lists_the_most_recent_first_up_to_the_limit(state: State) -> None:
    for i, member in enumerate(["a", "b", "c", "d"]):
        state.add_distinct("d", member, T0 + i, HOUR)
    assert state.distinct_members("d", T0 + 10, HOUR, limit=3) == ["d", "c", "b"]


def test_distinct_members_leaves_out_members_outside_the_window(state: State) -> None:
    state.add_distinct("d", "old", T0, HOUR)
    state.add_distinct("d", "new", T0 + 50 * MINUTE, HOUR)
    assert state.distinct_members("d", T0 + 90 * MINUTE, HOUR) == ["new"]


def test_distinct_members_of_an_unknown_key_is_empty(state: State) -> None:
    assert state.distinct_members("nothing", T0, HOUR) == []


# -- counting maps ---------------------------------------------------------------------------------


def test_incr_field_returns_the_new_value(state: State) -> None:
    state.incr_field("m", "FR", T0, HOUR)
    assert state.incr_field("m", "FR", T0 + 1, HOUR, n=2) == 3


def test_fields_returns_every_field(state: State) -> None:
    state.incr_field("m", "FR", T0, HOUR)
    state.incr_field("m", "DE", T0, HOUR, n=4)
    assert state.fields("m") == {"FR": 1, "DE": 4}


def test_fields_of_an_unknown_key_is_empty(state: State) -> None:
    assert state.fields("nothing") == {}


# -- batched counting maps -------------------------------------------------------------------------


def test_incr_fields_returns_each_new_value_in_order(state: State) -> None:
    state.incr_field("m", "DE", T0, HOUR, n=4)
    assert state.incr_fields("m", {"FR": 1, "DE": 2, "IT": 3}, T0 + 1, HOUR) == [1, 6, 3]


def test_incr_fields_is_what_one_incr_field_per_field_does(state: State) -> None:
    steps = [{"a": 1, "b": 1}, {"b": 2, "c": 1}, {"a": 1}]
    for i, step in enumerate(steps):
        state.incr_fields("batched", step, T0 + i, HOUR)
        for name, n in step.items():
            state.incr_field("one_by_one", name, T0 + i, HOUR, n)
    assert state.fields("batched") == state.fields("one_by_one") == {"a": 2, "b": 3, "c": 1}


def test_incr_fields_by_zero_reads_and_by_a_negative_n_gives_back(state: State) -> None:
    state.incr_fields("m", {"claimed": 1, "other": 1}, T0, HOUR)
    assert state.incr_fields("m", {"claimed": -1, "other": 0, "new": 0}, T0, HOUR) == [0, 1, 0]
    assert state.fields("m") == {"claimed": 0, "other": 1, "new": 0}


def test_incr_fields_with_no_fields_changes_nothing(state: State) -> None:
    assert state.incr_fields("m", {}, T0, HOUR) == []
    assert state.fields("m") == {}


# -- records ---------------------------------------------------------------------------------------


def test_put_then_get_returns_the_record(state: State) -> None:
    state.put("r", {"country": "FR", "lat": 48.85, "seen": [1, 2]}, T0, HOUR)
    assert state.get("r") == {"country": "FR", "lat": 48.85, "seen": [1, 2]}


def test_put_replaces_the_record(state: State) -> None:
    state.put("r", {"v": 1}, T0, HOUR)
    state.put("r", {"v": 2}, T0 + 1, HOUR)
    assert state.get("r") == {"v": 2}


def test_get_of_an_unknown_key_is_none(state: State) -> None:
    assert state.get("nothing") is None


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_a_window_must_be_positive(state: State, bad: float) -> None:
    with pytest.raises(ValueError, match="window"):
        state.add("c", T0, bad)


# -- windowed lists --------------------------------------------------------------------------------


def test_entries_come_back_first_appended_first_with_their_time(state: State) -> None:
    state.append_entry("l", ["a", 1, None], T0, HOUR, 8)
    state.append_entry("l", ["b", 2.5, "é"], T0 + 1, HOUR, 8)
    assert state.entries("l") == [(T0, ["a", 1, None]), (T0 + 1, ["b", 2.5, "é"])]


def test_entries_of_an_unknown_list_are_empty(state: State) -> None:
    assert state.entries("nothing") == []


def test_an_append_keeps_the_last_cap_appended(state: State) -> None:
    for i in range(10):
        state.append_entry("l", [i], T0 + i, HOUR, 4)
    assert [entry for _, entry in state.entries("l")] == [[6], [7], [8], [9]]


def test_an_append_drops_the_entries_older_than_the_window_before_its_time(state: State) -> None:
    state.append_entry("l", ["old"], T0, MINUTE, 8)
    state.append_entry("l", ["edge"], T0 + 30, MINUTE, 8)
    state.append_entry("l", ["new"], T0 + 90, MINUTE, 8)  # "edge" is exactly a window before
    assert [entry for _, entry in state.entries("l")] == [["edge"], ["new"]]


def test_an_append_drops_an_old_entry_appended_late_wherever_it_sits(state: State) -> None:
    """Events come out of order: an entry appended late with an old time is dropped by the
    window like the others, and what was appended after it keeps its place."""
    state.append_entry("l", ["a"], T0 + 100, MINUTE, 8)
    state.append_entry("l", ["late"], T0, MINUTE, 8)
    state.append_entry("l", ["b"], T0 + 110, MINUTE, 8)
    state.append_entry("l", ["c"], T0 + 120, MINUTE, 8)
    assert [entry for _, entry in state.entries("l")] == [["a"], ["b"], ["c"]]


def test_the_window_applies_before_the_cap(state: State) -> None:
    for i in range(3):
        state.append_entry("l", [i], T0 + i, MINUTE, 3)
    state.append_entry("l", ["next"], T0 + HOUR, MINUTE, 3)
    assert [entry for _, entry in state.entries("l")] == [["next"]]


def test_remove_entries_takes_out_those_read_and_leaves_those_appended_since(
    state: State,
) -> None:
    for i in range(3):
        state.append_entry("l", ["u", i], T0 + i, HOUR, 8)
    read = state.entries("l")
    state.append_entry("l", ["u", 3], T0 + 3, HOUR, 8)
    state.remove_entries("l", [read[0], read[2]])
    assert state.entries("l") == [(T0 + 1, ["u", 1]), (T0 + 3, ["u", 3])]
    state.remove_entries("l", [(T0 + 9, ["not there"])])
    state.remove_entries("unknown", read)
    assert state.entries("l") == [(T0 + 1, ["u", 1]), (T0 + 3, ["u", 3])]


def test_a_list_keeps_at_most_entries_cap(state: State) -> None:
    with pytest.raises(ValueError, match="1 to 1024"):
        state.append_entry("l", ["x"], T0, HOUR, ENTRIES_CAP + 1)
    with pytest.raises(ValueError, match="1 to 1024"):
        state.append_entry("l", ["x"], T0, HOUR, 0)
    assert state.entries("l") == []


# -- subject aggregates ----------------------------------------------------------------------------

WINDOWS = (MINUTE, 10 * MINUTE, HOUR, 24 * HOUR)
DAY = 24 * HOUR
TTL = 30 * DAY


def _fold(
    state: State, t: float, outcome: int = FAIL, members: tuple[str | None, ...] = ()
) -> None:
    state.fold_subject("s", t, WINDOWS, TTL, outcome, members)


def _read(state: State, t: float | None, limits: tuple[int, ...] = ()) -> SubjectView:
    view = state.read_subject("s", t, WINDOWS, limits)
    assert view is not None
    return view


def test_read_subject_of_an_unknown_key_is_none(state: State) -> None:
    assert state.read_subject("nothing", T0, WINDOWS, (64,)) is None


def test_a_subject_keeps_its_record(state: State) -> None:
    state.fold_subject(
        "s", T0, WINDOWS, TTL, OK, label="alice@example.com", primary_key="email", service="shop"
    )
    view = _read(state, T0)
    assert (view.first_seen, view.last_seen) == (T0, T0)
    assert (view.label, view.primary_key, view.services) == (
        "alice@example.com",
        "email",
        ("shop",),
    )
    assert view.last_success is None  # only what the caller folds in as a success


def test_a_subject_first_folded_without_a_record_keeps_everything_when_it_gets_one(
    state: State,
) -> None:
    _fold(state, T0, FAIL, ("a",))
    state.fold_subject("s", T0 + 1, WINDOWS, TTL, OK, ("b", "c"), label="x", success=("b", None))
    view = _read(state, T0 + 1, (64, 64))
    assert (view.first_seen, view.label, view.last_success) == (T0, "x", (T0 + 1, "b", None))
    assert (view.counts[FAIL][-1], view.counts[OK][-1]) == (1, 1)
    assert view.members == (("b", "a"), ("c",))


def test_a_subject_keeps_first_and_last_seen_whatever_the_order(state: State) -> None:
    for dt in (50, 10, 70, 0, 30):
        _fold(state, T0 + dt)
    view = _read(state, None)
    assert (view.first_seen, view.last_seen) == (T0, T0 + 70)


def test_a_subject_label_and_primary_key_are_replaced_only_when_given(state: State) -> None:
    state.fold_subject("s", T0, WINDOWS, TTL, FAIL, label="old", primary_key="email")
    state.fold_subject("s", T0 + 1, WINDOWS, TTL, FAIL, label="new")
    state.fold_subject("s", T0 + 2, WINDOWS, TTL, FAIL)
    view = _read(state, None)
    assert (view.label, view.primary_key) == ("new", "email")


def test_a_subject_keeps_its_first_services_in_order(state: State) -> None:
    for i in range(SUBJECT_MAX_SERVICES + 3):
        state.fold_subject(
            "s", T0 + i, WINDOWS, TTL, OK, service=f"svc-{i % (SUBJECT_MAX_SERVICES + 2)}"
        )
    services = _read(state, None).services
    assert services == tuple(f"svc-{i}" for i in range(SUBJECT_MAX_SERVICES))


def test_the_last_success_is_the_newest_even_when_an_older_one_arrives_late(state: State) -> None:
    state.fold_subject("s", T0 + 10, WINDOWS, TTL, OK, success=("192.0.2.1", "Firefox"))
    state.fold_subject("s", T0, WINDOWS, TTL, OK, success=("192.0.2.2", None))
    assert _read(state, None).last_success == (T0 + 10, "192.0.2.1", "Firefox")
    state.fold_subject("s", T0 + 20, WINDOWS, TTL, OK, success=(None, None))
    assert _read(state, None).last_success == (T0 + 20, None, None)


def test_a_subject_counts_each_outcome_over_each_window(state: State) -> None:
    _fold(state, T0, OK)
    _fold(state, T0 + 5 * MINUTE, FAIL)
    _fold(state, T0 + 30 * MINUTE, FAIL)
    _fold(state, T0 + 30 * MINUTE, SIGNUP)
    view = _read(state, T0 + 30 * MINUTE)
    assert view.counts[OK] == (0, 0, 1, 1)
    assert view.counts[FAIL] == (1, 1, 2, 2)
    assert view.counts[SIGNUP] == (1, 1, 1, 1)


def test_a_sparse_subject_counter_is_exact_at_the_window_edge(state: State) -> None:
    _fold(state, T0)
    _fold(state, T0 + 1)
    assert _read(state, T0 + HOUR).counts[FAIL] == (0, 0, 1, 2)  # T0 is one hour old: out


def test_a_busy_subject_counter_still_counts_every_window(state: State) -> None:
    for minute in range(30):  # more events than a counter keeps exactly: it turns dense
        _fold(state, T0 + minute * MINUTE)
    counts = _read(state, T0 + 29 * MINUTE).counts[FAIL]
    # A dense window may count events up to one bucket older than it (as add_windows does).
    assert counts[0] in (1, 2)
    assert counts[1] in (10, 11)
    assert counts[2:] == (30, 30)


def test_a_late_event_counts_in_the_windows_it_is_inside(state: State) -> None:
    _fold(state, T0 + 10 * MINUTE)
    _fold(state, T0 + 5 * MINUTE)
    assert _read(state, T0 + 10 * MINUTE).counts[FAIL] == (1, 2, 2, 2)


def test_a_subject_forgets_events_that_left_its_windows(state: State) -> None:
    _fold(state, T0, FAIL, ("a",))
    _fold(state, T0 + 2 * DAY, OK, ("b",))
    view = _read(state, T0 + 2 * DAY, (64,))
    assert view.counts[FAIL] == (0, 0, 0, 0)
    assert view.members == (("b",),)
    assert (view.first_seen, view.last_seen) == (T0, T0 + 2 * DAY)  # the record outlives them


def test_a_subject_set_counts_each_member_once(state: State) -> None:
    for i, member in enumerate(["alice", "bob", "alice", "carol", "bob"]):
        _fold(state, T0 + i, FAIL, (member,))
    view = _read(state, T0 + 4, (64,))
    assert view.distinct == ((3, 3, 3, 3),)
    assert view.members == (("bob", "carol", "alice"),)  # most recent first


def test_subject_sets_are_independent_and_none_adds_nothing(state: State) -> None:
    _fold(state, T0, FAIL, ("192.0.2.1", None, "Firefox"))
    _fold(state, T0 + 1, FAIL, ("192.0.2.2", "AS64500", None))
    view = _read(state, T0 + 1, (64, 64, 64))
    assert view.members == (("192.0.2.2", "192.0.2.1"), ("AS64500",), ("Firefox",))
    assert [d[-1] for d in view.distinct] == [2, 1, 1]


def test_a_subject_set_counts_members_per_window(state: State) -> None:
    _fold(state, T0, FAIL, ("old",))
    _fold(state, T0 + 30 * MINUTE, FAIL, ("new",))
    _fold(state, T0 + 30 * MINUTE, FAIL, ("newer",))
    view = _read(state, T0 + 30 * MINUTE, (64,))
    assert view.distinct == ((2, 2, 3, 3),)


def test_a_subject_set_lists_up_to_its_limit(state: State) -> None:
    for i in range(20):
        _fold(state, T0 + i, FAIL, (f"10.0.0.{i}",))
    view = _read(state, T0 + 20, (3,))
    assert view.members == (("10.0.0.19", "10.0.0.18", "10.0.0.17"),)
    assert view.distinct[0][-1] == 20


def test_a_subject_set_is_exact_up_to_64_members(state: State) -> None:
    for i in range(64):
        _fold(state, T0 + i, FAIL, (f"10.0.0.{i}",))
    assert _read(state, T0 + 64, (0,)).distinct == ((59, 64, 64, 64),)


def test_a_large_subject_set_is_estimated_within_two_percent(state: State) -> None:
    n = 2000
    for i in range(n):
        _fold(state, T0 + i * 0.5, FAIL, (f"user-{i}",))
    estimate = _read(state, T0 + n * 0.5, (0,)).distinct[0][2]
    assert abs(estimate - n) <= n * 0.02


def test_read_subject_as_of_none_reads_as_of_the_newest_event(state: State) -> None:
    _fold(state, T0, FAIL, ("a",))
    _fold(state, T0 + 5 * MINUTE, FAIL, ("b",))
    assert _read(state, None, (64,)) == _read(state, T0 + 5 * MINUTE, (64,))


def test_read_subject_without_windows_reads_the_record_only(state: State) -> None:
    _fold(state, T0, OK, ("a",))
    view = state.read_subject("s", None)
    assert view is not None
    assert (view.first_seen, view.counts, view.members) == (T0, ((), (), ()), ())


def test_a_subject_keeps_at_most_four_sets(state: State) -> None:
    with pytest.raises(ValueError, match="sets"):
        _fold(state, T0, FAIL, ("a",) * (SUBJECT_MAX_SETS + 1))


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_a_subject_window_must_be_positive(state: State, bad: float) -> None:
    with pytest.raises(ValueError, match="window"):
        state.fold_subject("s", T0, (MINUTE, bad), TTL, FAIL)


# -- several steps at once (State.apply) ----------------------------------------------------------


def _plan(t: float, key: str) -> list[Step]:
    return [
        Claim("d:1", key, t, HOUR),
        AddWindows("c", t, (MINUTE, HOUR)),
        AddDistinct("s", key, t, HOUR),
        Count("c", t, 10 * MINUTE),
        DistinctCount("s", t, MINUTE),
        IncrFields.of("m", {"a": 1, "b": 0}, t, HOUR),
        Fields("m"),
        Get("r"),
        Fold("u:1", t, (MINUTE, HOUR), HOUR, FAIL, (key,), label="one"),
    ]


def test_apply_returns_what_each_step_returns_alone(state: State) -> None:
    state.put("r", {"v": 1}, T0, HOUR)
    assert state.apply(_plan(T0, "e1")) == [
        True,
        (1, 1),
        1,
        1,
        1,
        [1, 0],
        {"a": 1, "b": 0},
        {"v": 1},
        None,
    ]
    assert state.apply(_plan(T0 + 1, "e2"))[1:7] == [(2, 2), 2, 2, 2, [2, 0], {"a": 2, "b": 0}]
    view = state.read_subject("u:1", T0 + 1, (HOUR,), (8,))
    assert view is not None
    assert view.counts[FAIL] == (2,)
    assert set(view.members[0]) == {"e1", "e2"}


def test_a_fold_asked_to_read_back_returns_the_subject_as_read_after_it(state: State) -> None:
    """The engine's planned runs read each touched subject back in its last fold's step: the
    result is what ``read_subject`` as of the subject's newest event reads, and the step still
    answers the fold it is (``read`` is no part of its identity)."""
    windows = (MINUTE, HOUR)
    state.apply(_plan(T0, "e1"))
    fold = Fold("u:1", T0 + 5, windows, HOUR, OK, ("e2",), label="two", read=(8,))
    assert fold == Fold("u:1", T0 + 5, windows, HOUR, OK, ("e2",), label="two")
    [view] = state.apply([fold])
    assert view == state.read_subject("u:1", None, windows, (8,))
    assert view is not None
    assert (view.counts[OK], view.counts[FAIL]) == ((1, 1), (1, 1))
    assert set(view.members[0]) == {"e1", "e2"}


def test_apply_after_a_refused_claim_runs_nothing_more(state: State) -> None:
    state.apply(_plan(T0, "e1"))
    assert state.apply(_plan(T0 + 1, "e1")) == [False]  # the same report again
    assert state.count("c", T0 + 1, HOUR) == 1
    assert state.fields("m") == {"a": 1, "b": 0}


def test_a_claim_answers_claimed_taken_or_held_by_its_own_batch(state: State) -> None:
    """A dedupe claim remembers the batch that took it (its journal position): the same batch
    claiming again (a replay of it) is told so, another is refused, and neither runs the steps
    after the claim or changes the claim."""
    count = AddWindows("c", T0, (HOUR,))
    assert state.apply([Claim("d:1", "e", T0, HOUR, owner=7), count]) == [CLAIMED, (1,)]
    assert state.apply([Claim("d:1", "e", T0, HOUR, owner=7), count]) == [OWN]
    assert state.apply([Claim("d:1", "e", T0, HOUR, owner=8), count]) == [TAKEN]
    assert state.apply([Claim("d:1", "e", T0, HOUR), count]) == [TAKEN]  # no owner
    assert state.apply([Claim("d:1", "e", T0, HOUR, owner=7)]) == [OWN]  # still batch 7's
    assert state.count("c", T0, HOUR) == 1


def test_a_claim_without_an_owner_is_never_held_by_its_own_batch(state: State) -> None:
    assert state.apply([Claim("d:1", "e", T0, HOUR)]) == [CLAIMED]
    assert state.apply([Claim("d:1", "e", T0, HOUR)]) == [TAKEN]
    assert state.apply([Claim("d:1", "e", T0, HOUR, owner=1)]) == [TAKEN]
    assert state.apply([Claim("d:1", "f", T0, HOUR, owner=1)]) == [CLAIMED]
    assert state.apply([Claim("d:1", "f", T0, HOUR)]) == [TAKEN]


def test_a_claim_given_back_is_free_again(state: State) -> None:
    """Call by call, the engine gives back a claim by taking its value (owner + 1) off the
    field: the next claim, of any batch, takes it."""
    assert state.apply([Claim("d:1", "e", T0, HOUR, owner=7)]) == [CLAIMED]
    state.incr_fields("d:1", {"e": -8}, T0, HOUR)
    assert state.apply([Claim("d:1", "e", T0, HOUR, owner=9)]) == [CLAIMED]
    assert state.apply([Claim("d:1", "e", T0, HOUR, owner=7)]) == [TAKEN]
    assert state.apply([Claim("d:1", "e", T0, HOUR, owner=9)]) == [OWN]


def test_apply_of_no_steps_is_empty(state: State) -> None:
    assert state.apply([]) == []


def test_apply_counts_like_count_on_every_window_kept_or_not(state: State) -> None:
    for i in range(30):
        state.add_windows("c", T0 + 17 * i, (MINUTE, HOUR))
    t = T0 + 17 * 30
    for window in (1.0, MINUTE, 5 * MINUTE, HOUR, 2 * HOUR):
        assert state.apply([Count("c", t, window)]) == [state.count("c", t, window)]
    assert state.apply([Count("unknown", t, MINUTE)]) == [0]


def test_apply_appends_as_append_entry_does(state: State) -> None:
    """An Append step (how a planned engine sends a segment's appends together) is the same
    call as State.append_entry: the window, then the cap."""
    steps: list[Step] = [
        Append("l", entry_json(["u", i]), T0 + 30 * i, MINUTE, 3) for i in range(6)
    ]
    assert state.apply(steps) == [None] * 6
    assert state.entries("l") == [(T0 + 90, ["u", 3]), (T0 + 120, ["u", 4]), (T0 + 150, ["u", 5])]
