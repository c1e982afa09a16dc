"""The DecisionStore contract (usermon.processor.storage.base), over every backend on real
servers: decisions, the allowlist and the audit log, durable where the store is, shared by
replicas where it is shared, read as a stream of changes after a sequence number."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from usermon.processor.model import Decision
from usermon.processor.storage.base import DecisionStore, Store, open_store
from usermon.processor.storage.decisions import DECISION_RETENTION

NOW = time.time()


def _decision(
    did: str = "d1",
    *,
    value: str = "192.0.2.7",
    scope: str = "ip",
    until: float = NOW + 600,
    created: float = NOW,
    finding: str | None = None,
) -> Decision:
    return Decision(
        id=did,
        action="block",
        scope=scope,  # type: ignore[arg-type]
        value=value,
        until=until,
        reason="brute_force",
        origin="response:brute_force",
        created=created,
        finding=finding,
    )


def _book(store: Store) -> DecisionStore:
    assert isinstance(store, DecisionStore)
    return store


def test_every_store_keeps_decisions(store: Store) -> None:
    book = _book(store)
    assert book.add_decisions([_decision()], "test") == [_decision()]
    assert book.decisions(now=NOW) == [_decision()]
    assert book.decisions(now=NOW, value="198.51.100.1") == []


def test_a_decision_id_taken_already_is_not_added_twice(store: Store) -> None:
    book = _book(store)
    book.add_decisions([_decision()], "a")
    assert book.add_decisions([_decision(value="other")], "b") == []
    assert [d.value for d in book.decisions(now=NOW)] == ["192.0.2.7"]


def test_an_expired_decision_leaves_the_active_set(store: Store) -> None:
    book = _book(store)
    book.add_decisions([_decision(until=NOW + 10)], "test")
    assert book.decisions(now=NOW + 11) == []
    assert len(book.decisions(now=NOW + 11, include_inactive=True)) == 1


def test_a_removed_decision_leaves_the_active_set(store: Store) -> None:
    book = _book(store)
    book.add_decisions([_decision()], "test")
    assert book.remove_decisions(["d1", "unknown"], "admin") == ["d1"]
    assert book.remove_decisions(["d1"], "admin") == []
    assert book.decisions(now=NOW) == []


def test_changes_after_a_sequence_number(store: Store) -> None:
    book = _book(store)
    start = book.decision_sequence()
    book.add_decisions([_decision("d1"), _decision("d2", value="192.0.2.8")], "test")
    middle = book.decision_sequence()
    book.remove_decisions(["d1"], "admin")
    book.add_decisions([_decision("d3", value="192.0.2.9")], "test")
    changes = book.decision_changes(start, NOW)
    assert changes is not None
    assert sorted(d.id for d in changes.new) == ["d2", "d3"]
    assert changes.deleted == ["d1"]
    after = book.decision_changes(middle, NOW)
    assert after is not None
    assert [d.id for d in after.new] == ["d3"]
    assert after.deleted == ["d1"]
    assert after.sequence == book.decision_sequence()
    none = book.decision_changes(after.sequence, NOW)
    assert none is not None
    assert none.new == []
    assert none.deleted == []


def test_a_sequence_number_from_the_future_is_unknown(store: Store) -> None:
    book = _book(store)
    book.add_decisions([_decision()], "test")
    assert book.decision_changes(book.decision_sequence() + 5, NOW) is None


def test_escalation_counts_earlier_decisions_on_a_subject(store: Store) -> None:
    book = _book(store)
    book.add_decisions(
        [_decision("d1", created=NOW - 7200), _decision("d2", created=NOW - 60)], "test"
    )
    book.remove_decisions(["d2"], "admin")
    assert book.count_decisions("ip", "192.0.2.7", NOW - 3600) == 1
    assert book.count_decisions("ip", "192.0.2.7", NOW - 86400) == 2
    assert book.count_decisions("ip", "192.0.2.99", NOW - 86400) == 0


def test_the_allowlist_and_the_audit_log(store: Store) -> None:
    book = _book(store)
    assert book.set_allowed("network", "10.0.0.0/8", "admin")
    assert not book.set_allowed("network", "10.0.0.0/8", "admin")
    assert book.set_allowed("user", "u1", "admin")
    assert [(e.kind, e.value) for e in book.allowlist()] == [
        ("network", "10.0.0.0/8"),
        ("user", "u1"),
    ]
    assert book.set_allowed("user", "u1", "root", allowed=False)
    book.add_decisions([_decision()], "usermon")
    book.remove_decisions(["d1"], "alice")
    ops = [(e.op, e.subject, e.who) for e in book.audit()]
    assert ops == [
        ("remove", "d1", "alice"),
        ("add", "d1", "usermon"),
        ("unallow", "user:u1", "root"),
        ("allow", "user:u1", "admin"),
        ("allow", "network:10.0.0.0/8", "admin"),
    ]


def test_decisions_survive_reopening_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/usermon.db"
    first = _book(open_store(url))
    first.add_decisions([_decision("d1"), _decision("d2", value="192.0.2.8")], "test")
    first.remove_decisions(["d2"], "admin")
    first.set_allowed("user", "u1", "admin")
    epoch, seq = first.decision_epoch(), first.decision_sequence()
    first.close()  # type: ignore[attr-defined]
    again = _book(open_store(url))
    try:
        assert again.decision_epoch() == epoch
        assert again.decision_sequence() == seq
        assert [d.id for d in again.decisions(now=NOW)] == ["d1"]
        assert [e.value for e in again.allowlist()] == ["u1"]
        assert len(again.audit()) == 4
    finally:
        again.close()  # type: ignore[attr-defined]


@pytest.mark.postgresql
def test_postgresql_replicas_share_decisions_and_their_sequence(pg_store_factory) -> None:  # type: ignore[no-untyped-def]
    one, two = _book(pg_store_factory()), _book(pg_store_factory())
    start = two.decision_sequence()
    one.add_decisions([_decision("d1")], "replica-1")
    two.add_decisions([_decision("d2", value="192.0.2.8")], "replica-2")
    assert one.decision_epoch() == two.decision_epoch()
    assert {d.id for d in two.decisions(now=NOW)} == {"d1", "d2"}
    changes = one.decision_changes(start, NOW)
    assert changes is not None
    assert sorted(d.id for d in changes.new) == ["d1", "d2"]
    two.remove_decisions(["d1"], "admin")
    assert [d.id for d in one.decisions(now=NOW)] == ["d2"]


@pytest.mark.postgresql
def test_postgresql_decisions_survive_reopening(pg_memory_store_factory) -> None:  # type: ignore[no-untyped-def]
    first = pg_memory_store_factory(replica="r1")
    _book(first).add_decisions([_decision("d1")], "test")
    epoch = _book(first).decision_epoch()
    first.close()
    again = _book(pg_memory_store_factory(replica="r1"))
    assert again.decision_epoch() == epoch
    assert [d.id for d in again.decisions(now=NOW)] == ["d1"]


@pytest.mark.redis
def test_redis_replicas_share_decisions(redis_store_factory) -> None:  # type: ignore[no-untyped-def]
    one, two = _book(redis_store_factory()), _book(redis_store_factory())
    one.add_decisions([_decision("d1")], "replica-1")
    assert [d.id for d in two.decisions(now=NOW)] == ["d1"]
    assert one.decision_epoch() == two.decision_epoch()


def test_changes_leave_out_decisions_expired_since(store: Store) -> None:
    """Expiry is no change: the stream's reader expires decisions by their ``until``; a decision
    that expired before it was read is not sent at all."""
    book = _book(store)
    start = book.decision_sequence()
    book.add_decisions([_decision("short", until=NOW + 5), _decision("long", value="x")], "t")
    changes = book.decision_changes(start, NOW + 10)
    assert changes is not None
    assert [d.id for d in changes.new] == ["long"]
    assert changes.deleted == []


def test_a_sqlite_database_of_an_earlier_version_gains_the_decision_tables(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/usermon.db"
    open_store(url).close()
    with sqlite3.connect(tmp_path / "usermon.db") as db:  # as an earlier version left it
        for table in ("decisions", "decision_log", "allowlist", "decision_epoch"):
            db.execute(f"DROP TABLE {table}")
    store = open_store(url)
    try:
        assert _book(store).set_allowed("network", "10.0.0.0/8", "test")
        assert _book(store).decision_sequence() == 1
    finally:
        store.close()


def test_decisions_of_a_finding(store: Store) -> None:
    book = _book(store)
    book.add_decisions(
        [
            _decision("d1", finding="f1"),
            _decision("d2", value="192.0.2.8", finding="f1"),
            _decision("d3", value="192.0.2.9", finding="f2"),
            _decision("d4", value="192.0.2.10"),
        ],
        "test",
    )
    book.remove_decisions(["d2"], "admin")
    assert [d.id for d in book.decisions(now=NOW, finding="f1")] == ["d1"]
    found = book.decisions(now=NOW, finding="f1", include_inactive=True)
    assert sorted(d.id for d in found) == ["d1", "d2"]
    assert book.decisions(now=NOW, finding="f9") == []


# -- retention ---------------------------------------------------------------------------------

LONG_AGO = NOW - DECISION_RETENTION - 3600


def _purge(store: Store, now: float) -> list[str]:
    purge = store.purge_decisions  # type: ignore[attr-defined]
    return purge(now)  # type: ignore[no-any-return]


def test_a_store_deletes_decisions_that_ended_past_the_retention_when_it_adds(
    store: Store,
) -> None:
    book = _book(store)
    old = _decision("old", until=LONG_AGO, created=LONG_AGO - 600)
    recent = _decision("recent", value="192.0.2.8", until=NOW - 60, created=NOW - 660)
    active = _decision("active", value="192.0.2.9")

    assert book.add_decisions([old, recent, active], "usermon") == [old, recent, active]

    kept = book.decisions(now=NOW, include_inactive=True)
    assert sorted(d.id for d in kept) == ["active", "recent"]
    assert [e.subject for e in book.audit()] == ["active", "recent", "old"]  # the audit stays


def test_purging_deletes_expired_and_removed_decisions_and_keeps_the_stream_whole(
    store: Store,
) -> None:
    book = _book(store)
    start = book.decision_sequence()
    book.add_decisions(
        [
            _decision("expires", until=NOW + 600),
            _decision("removed", value="192.0.2.8", until=NOW + 10 * DECISION_RETENTION),
            _decision("lasts", value="192.0.2.9", until=NOW + 10 * DECISION_RETENTION),
        ],
        "usermon",
    )
    book.remove_decisions(["removed"], "admin")
    later = NOW + DECISION_RETENTION + 3600

    assert sorted(_purge(store, later)) == ["expires", "removed"]

    assert [d.id for d in book.decisions(now=NOW, include_inactive=True)] == ["lasts"]
    assert book.count_decisions("ip", "192.0.2.7", NOW - 86400) == 0
    changes = book.decision_changes(start, later)
    assert changes is not None
    assert [d.id for d in changes.new] == ["lasts"]
    assert changes.deleted == ["removed"]
    assert len(book.audit()) == 4
    assert _purge(store, later) == []


def test_a_purge_is_on_disk_for_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/usermon.db"
    first = open_store(url)
    _book(first).add_decisions([_decision("d1", until=NOW + 600)], "usermon")
    _purge(first, NOW + DECISION_RETENTION + 3600)
    first.close()
    db = sqlite3.connect(tmp_path / "usermon.db")
    try:
        assert db.execute("SELECT count(*) FROM decisions").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM decision_log").fetchone() == (1,)
    finally:
        db.close()


def test_a_reopened_sqlite_store_deletes_decisions_past_the_retention_when_it_adds(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/usermon.db"
    first = open_store(url)
    _book(first).add_decisions([_decision("d1", until=NOW + 600)], "usermon")
    first.close()
    db = sqlite3.connect(tmp_path / "usermon.db")
    with db:  # the decision ended long ago, as a store reopened after weeks would find it
        db.execute("UPDATE decisions SET data = json_set(data, '$.until', ?)", (LONG_AGO,))
    db.close()

    again = open_store(url)
    try:
        _book(again).add_decisions([_decision("d2", value="192.0.2.8")], "usermon")
        assert [d.id for d in _book(again).decisions(now=NOW, include_inactive=True)] == ["d2"]
        assert [e.subject for e in _book(again).audit()] == ["d2", "d1"]
    finally:
        again.close()
    db = sqlite3.connect(tmp_path / "usermon.db")
    try:
        assert db.execute("SELECT id FROM decisions").fetchall() == [("d2",)]
    finally:
        db.close()
