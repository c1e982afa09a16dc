"""The memory state's key cap: flood-class keys go first, kept keys within their share stay, the
least recently touched kept keys go when they do not fit, and the cap holds whatever the mix."""

from __future__ import annotations

import pytest

from usermon.processor.storage.state.base import FAIL, OK
from usermon.processor.storage.state.memory import MemoryState
from usermon.processor.storage.state.memory_evict import kept

WINDOWS = (60.0, 3600.0)
DAY = 86400.0


def flood(state: MemoryState, n: int, t: float = 1000.0, start: int = 0) -> None:
    """``n`` one-shot addresses: a counter each, as a flood leaves them."""
    for i in range(start, start + n):
        state.add(f"det:ip:10.0.{i >> 8 & 255}.{i & 255}:f", t + i * 0.001, 600.0)


def test_kept_keys_outlive_a_flood_many_times_the_cap() -> None:
    state = MemoryState(max_keys=100)
    state.incr_field("det:risk:u:alice", "net|FR", 999.0, 90 * DAY)
    state.incr_field("det:risk:global", "users", 999.0, 90 * DAY)
    state.put("f:brute_force:user:alice", {"last": 999.0}, 999.0, DAY)
    state.put("det:svc:shop:camp:credential_stuffing", {"n": 1}, 999.0, DAY)
    flood(state, 10_000)
    assert len(state) == 100
    assert state.evicted == 10_000 + 4 - 100
    assert state.fields("det:risk:u:alice") == {"net|FR": 1}
    assert state.fields("det:risk:global") == {"users": 1}
    assert state.get("f:brute_force:user:alice") == {"last": 999.0}
    assert state.get("det:svc:shop:camp:credential_stuffing") == {"n": 1}
    assert state.usage()["kept_overflows"] == 0


def test_a_user_is_kept_once_it_logged_in_not_a_name_tried_in_a_combo_list() -> None:
    state = MemoryState(max_keys=50)
    state.fold_subject("u:alice", 999.0, WINDOWS, DAY, OK, ("198.51.100.1",), success=("a", "b"))
    state.fold_subject("u:combo1", 999.0, WINDOWS, DAY, FAIL, ("10.0.0.1",), label="combo1")
    state.fold_subject("ip:198.51.100.1", 999.0, WINDOWS, DAY, OK, ("alice",))
    flood(state, 1000)
    assert state.read_subject("u:alice", None) is not None
    assert state.read_subject("u:combo1", None) is None
    assert state.read_subject("ip:198.51.100.1", None) is None  # an address is flood class


def test_kept_keys_beyond_their_share_go_least_recently_touched_first() -> None:
    state = MemoryState(max_keys=100)  # kept share: 50 keys
    for i in range(80):
        state.incr_field(f"det:risk:u:user{i}", "n", 1000.0 + i, 90 * DAY)
    for i in range(0, 80, 2):  # the even users log in again
        state.incr_field(f"det:risk:u:user{i}", "n", 1100.0 + i, 90 * DAY)
    for k in range(20):  # a long flood, in bursts between which the kept keys are not touched
        flood(state, 500, t=1200.0 + k, start=500 * k)
    assert len(state) == 100
    held = {i for i in range(80) if state.fields(f"det:risk:u:user{i}")}
    assert len(held) <= 50
    assert len(held) >= 40
    assert set(range(0, 80, 2)) <= held  # the 40 touched last stay
    assert state.usage()["kept_overflows"] >= 1


def test_the_cap_holds_when_every_key_is_kept() -> None:
    state = MemoryState(max_keys=100)
    for i in range(1000):
        state.put(f"f:brute_force:ip:10.0.{i >> 8}.{i & 255}", {"last": i}, 1000.0 + i, DAY)
        assert len(state) <= 100
    assert state.get("f:brute_force:ip:10.0.3.231") == {"last": 999}  # the newest stay


def test_a_kept_share_of_zero_is_one_least_recently_used_pool() -> None:
    state = MemoryState(max_keys=10, kept_share=0)
    state.incr_field("det:risk:global", "users", 999.0, 90 * DAY)
    flood(state, 10)
    assert state.fields("det:risk:global") == {}


@pytest.mark.parametrize("share", [-0.1, 1.0])
def test_the_kept_share_is_a_fraction_below_one(share: float) -> None:
    with pytest.raises(ValueError, match="kept_share"):
        MemoryState(max_keys=10, kept_share=share)


def test_the_field_cap_drops_deduplication_maps_before_risk_profiles() -> None:
    state = MemoryState(max_keys=100)  # 200 fields in all
    state.incr_fields("det:risk:u:alice", {f"net|{i}": 1 for i in range(30)}, 999.0, 90 * DAY)
    for i in range(300):  # deduplication's one field per event, bucket by bucket
        state.incr_field(f"d:{i // 50}", f"e{i}", 1000.0 + i, 3600.0)
    assert len(state.fields("det:risk:u:alice")) == 30
    assert state.maps_evicted > 0


def test_a_restart_with_a_lower_cap_keeps_the_kept_keys() -> None:
    state = MemoryState(max_keys=1000)
    state.incr_field("det:risk:global", "users", 999.0, 90 * DAY)
    flood(state, 900)
    smaller = MemoryState.load(state.dump(), max_keys=100)
    assert len(smaller) == 100
    assert smaller.fields("det:risk:global") == {"users": 1}


def test_the_kept_families() -> None:
    kept_keys = [
        "det:risk:u:h",
        "det:risk:global",
        "det:risk:ip:198.51.100.1",
        "det:svc:shop:since",
        "det:travel:h",
        "det:ato:u:h",
        "det:ato:net:10.0.0.0/24",
        "f:account_takeover:user:h",
        "j:7",
        "k:7",
    ]
    flood_keys = [
        "det:ip:10.0.0.1:f",
        "det:net:10.0.0.0/24:f",
        "det:u:combo:f",
        "det:p:combo|10.0.0.1:f",
        "det:ato:ip:10.0.0.1",
        "det:ato:pending:10.0.0.1",
        "d:123",
        "ip:10.0.0.1",
    ]
    state = MemoryState()
    for key in kept_keys + flood_keys:
        state.put(key, {}, 0.0, 1.0)
    entries = state._entries  # the classes are the state's own
    assert [k for k in kept_keys if not kept(k, entries[k])] == []
    assert [k for k in flood_keys if kept(k, entries[k])] == []
