"""The Store contract (usermon.processor.storage.base), one behaviour per test, over every backend:
memory, SQLite, and PostgreSQL with its windowed state in Redis (real servers)."""

from __future__ import annotations

from usermon.processor.aggregation import aggregate
from usermon.processor.model import Event, Finding, Subject
from usermon.processor.profiles import Profiles
from usermon.processor.storage.base import ActivityIndex, ProfileStore, SharedStore, Store
from usermon.processor.storage.state.base import InProcessState
from usermon.processor.storage.state.memory import MemoryState

T0 = 1_700_000_000.0


def _finding(
    fid: str = "f1",
    *,
    kind: str = "brute_force",
    severity: str = "medium",
    t: float = T0,
    count: int = 1,
    summary: str = "10 failures",
    subject: str = "u1",
    label: str | None = "alice@example.com",
    trace_ids: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
) -> Finding:
    return Finding(
        id=fid,
        kind=kind,
        severity=severity,  # type: ignore[arg-type]
        subject=Subject("user", subject, label),
        first_seen=t,
        last_seen=t,
        event_count=count,
        summary=summary,
        evidence={"trace_ids": list(trace_ids), "ips": list(ips), "users": [subject]},
    )


def _login(user: str, ip: str, t: float, success: bool) -> Event:
    return Event(
        kind="login",
        time=t,
        success=success,
        user_hash=user,
        user_id=f"{user}@example.com",
        primary_key="email",
        client_ip=ip,
        user_agent="Mozilla/5.0",
        trace_id="a" * 32,
        span_id="b" * 16,
    )


# -- findings --------------------------------------------------------------------------------------


def test_a_recorded_finding_can_be_read_back_by_id(store: Store) -> None:
    store.record_findings([_finding(trace_ids=("t1",), ips=("192.0.2.1",))])
    found = store.finding("f1")
    assert found is not None
    assert found.to_json() == _finding(trace_ids=("t1",), ips=("192.0.2.1",)).to_json()


def test_an_unknown_finding_is_none(store: Store) -> None:
    assert store.finding("nope") is None


def test_deltas_of_one_finding_add_their_event_counts(store: Store) -> None:
    store.record_findings([_finding(count=3)])
    store.record_findings([_finding(count=4, t=T0 + 10)])
    found = store.finding("f1")
    assert found is not None
    assert found.event_count == 7


def test_deltas_widen_the_time_range(store: Store) -> None:
    store.record_findings([_finding(t=T0 + 10)])
    store.record_findings([_finding(t=T0)])
    store.record_findings([_finding(t=T0 + 20)])
    found = store.finding("f1")
    assert found is not None
    assert (found.first_seen, found.last_seen) == (T0, T0 + 20)


def test_a_finding_keeps_its_highest_severity(store: Store) -> None:
    store.record_findings([_finding(severity="high")])
    store.record_findings([_finding(severity="low", t=T0 + 1)])
    found = store.finding("f1")
    assert found is not None
    assert found.severity == "high"


def test_a_finding_keeps_the_newest_summary(store: Store) -> None:
    store.record_findings([_finding(summary="newer", t=T0 + 5)])
    store.record_findings([_finding(summary="older", t=T0)])
    found = store.finding("f1")
    assert found is not None
    assert found.summary == "newer"


def test_evidence_lists_are_unioned_newest_first_without_repeats(store: Store) -> None:
    store.record_findings([_finding(trace_ids=("t1", "t2"), ips=("192.0.2.1",))])
    store.record_findings([_finding(t=T0 + 1, trace_ids=("t3", "t1"), ips=("192.0.2.2",))])
    found = store.finding("f1")
    assert found is not None
    assert found.evidence["trace_ids"] == ["t3", "t1", "t2"]
    assert found.evidence["ips"] == ["192.0.2.2", "192.0.2.1"]


def test_evidence_lists_stay_bounded(store: Store) -> None:
    for i in range(30):
        store.record_findings([_finding(t=T0 + i, trace_ids=(f"t{i}",))])
    found = store.finding("f1")
    assert found is not None
    assert found.evidence["trace_ids"] == [f"t{i}" for i in range(29, 9, -1)]


def test_findings_are_listed_newest_last_seen_first(store: Store) -> None:
    store.record_findings([_finding("a", t=T0), _finding("b", t=T0 + 2), _finding("c", t=T0 + 1)])
    assert [f.id for f in store.findings()] == ["b", "c", "a"]


def test_findings_filter_by_kind(store: Store) -> None:
    store.record_findings([_finding("a"), _finding("b", kind="tor_login")])
    assert [f.id for f in store.findings(kind="tor_login")] == ["b"]


def test_findings_filter_by_minimum_severity(store: Store) -> None:
    store.record_findings(
        [
            _finding("a", severity="low"),
            _finding("b", severity="high", t=T0 + 1),
            _finding("c", severity="critical", t=T0 + 2),
        ]
    )
    assert [f.id for f in store.findings(severity="high")] == ["c", "b"]


def test_findings_filter_by_last_seen_since(store: Store) -> None:
    store.record_findings([_finding("a", t=T0), _finding("b", t=T0 + 100)])
    assert [f.id for f in store.findings(since=T0 + 50)] == ["b"]


def test_findings_filter_by_subject_id_or_label(store: Store) -> None:
    store.record_findings(
        [
            _finding("a", subject="u1", label="alice@example.com"),
            _finding("b", subject="u2", label="bob@example.com", t=T0 + 1),
        ]
    )
    assert [f.id for f in store.findings(subject="u2")] == ["b"]
    assert [f.id for f in store.findings(subject="alice@example.com")] == ["a"]


def test_findings_honour_the_limit(store: Store) -> None:
    store.record_findings([_finding(f"f{i}", t=T0 + i) for i in range(5)])
    assert [f.id for f in store.findings(limit=2)] == ["f4", "f3"]


# -- optional capabilities ----------------------------------------------------------------------


_CAPABILITIES = {
    "MemoryStore": (False, False, False, True),
    "SQLiteStore": (False, False, False, True),
    "RedisStore": (True, False, True, False),
    "PostgreSQLStore": (True, True, False, False),
}


def test_each_store_declares_exactly_its_optional_capabilities(store: Store) -> None:
    """What the service and the profiles ask with isinstance: shared by replicas (adoption,
    claims one event at a time), keeps profiles itself, indexes activity, holds a local state
    (listed by a scan). A store that lost a method of one would silently stop doing it."""
    declared = (
        isinstance(store, SharedStore),
        isinstance(store, ProfileStore),
        isinstance(store, ActivityIndex),
        isinstance(store.state, InProcessState),
    )
    expected = _CAPABILITIES[type(store).__name__]
    # The PostgreSQL store without Redis keeps its state in memory.
    if type(store).__name__ == "PostgreSQLStore" and isinstance(store.state, MemoryState):
        expected = (*expected[:3], True)
    assert declared == expected


# -- profiles --------------------------------------------------------------------------------------


def _feed(store: Store, events: list[Event]) -> None:
    for event in events:
        aggregate(event, store.state)
    Profiles(store).record(
        {e.user_hash for e in events if e.user_hash}, {e.client_ip for e in events if e.client_ip}
    )


def test_a_user_profile_summarizes_the_users_logins(store: Store) -> None:
    _feed(store, [_login("u1", "192.0.2.1", T0, False), _login("u1", "192.0.2.1", T0 + 5, True)])
    profile = Profiles(store).user("u1")
    assert profile is not None
    assert (profile["user_hash"], profile["first_seen"], profile["last_seen"]) == ("u1", T0, T0 + 5)
    assert profile["label"] == "u1@example.com"


def test_an_unknown_user_is_none(store: Store) -> None:
    assert Profiles(store).user("nobody") is None


def test_users_are_listed_most_recently_seen_first(store: Store) -> None:
    _feed(store, [_login("u1", "192.0.2.1", T0, True), _login("u2", "192.0.2.1", T0 + 1, True)])
    _feed(store, [_login("u3", "192.0.2.9", T0 + 2, True)])
    assert [p["user_hash"] for p in Profiles(store).users()] == ["u3", "u2", "u1"]
    assert [p["user_hash"] for p in Profiles(store).users(since=T0 + 1)] == ["u3", "u2"]
    assert [p["user_hash"] for p in Profiles(store).users(limit=1)] == ["u3"]


def test_an_ip_profile_counts_its_outcomes_and_users(store: Store) -> None:
    _feed(store, [_login("u1", "192.0.2.7", T0, False), _login("u2", "192.0.2.7", T0 + 1, False)])
    profile = Profiles(store).ip("192.0.2.7")
    assert profile is not None
    assert profile["failures"]["1h"] == 2
    assert profile["distinct_users"]["1h"] == 2
    assert profile["users"] == ["u2", "u1"]


def test_an_unknown_ip_is_none(store: Store) -> None:
    assert Profiles(store).ip("203.0.113.250") is None


# -- intake and checkpoints (durable stores) -------------------------------------------------------


def test_intake_returns_a_receipt_for_the_batch(durable_store: Store) -> None:
    receipt = durable_store.intake(b"batch-1", 3)
    assert receipt.count == 3
    assert receipt.position > 0


def test_taken_batches_are_pending_in_order_until_checkpointed(durable_store: Store) -> None:
    a = durable_store.intake(b"batch-a", 1).position
    b = durable_store.intake(b"batch-b", 2).position
    assert list(durable_store.pending()) == [(a, b"batch-a"), (b, b"batch-b")]


def test_a_checkpoint_discards_the_batches_it_covers(durable_store: Store) -> None:
    a = durable_store.intake(b"batch-a", 1).position
    b = durable_store.intake(b"batch-b", 2).position
    durable_store.checkpoint(a, b"engine")
    assert list(durable_store.pending()) == [(b, b"batch-b")]


def test_load_checkpoint_returns_the_last_position_and_engine_snapshot(
    durable_store: Store,
) -> None:
    position = durable_store.intake(b"batch-a", 1).position
    durable_store.checkpoint(position, b"engine-snapshot")
    assert durable_store.load_checkpoint() == (position, b"engine-snapshot")


def test_health_is_ok_when_every_backend_answers(store: Store) -> None:
    health = store.health()
    assert health.ok, health.components
