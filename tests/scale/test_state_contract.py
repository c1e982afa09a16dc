"""The State contract (usermon.processor.state), one behaviour per test, over every backend.

The same table runs on the in-memory state and on Redis (a real server), so the engine's
detectors see the same numbers whichever store a deployment uses. Times are event times.
"""

from __future__ import annotations

import pytest

from usermon.processor.state import State

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
