"""The service answers findings with decisions (usermon.processor.service + responses + a store):
once per subject, never on the allowlist, longer for a repeat offender; and the decision book's
bounds (usermon.processor.storage.decisions)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

from usermon import attributes as A
from usermon.processor import decisions_api
from usermon.processor.model import Decision
from usermon.processor.service import Processor
from usermon.processor.settings import resolve
from usermon.processor.storage import decisions as book_module
from usermon.processor.storage.base import DecisionStore
from usermon.processor.storage.decisions import DecisionBook
from usermon.processor.storage.memory import MemoryStore

from .payloads import T0, login_attributes, span, traces_request
from .test_export import Receiver

ALICE = "h-alice@example.com"


def failures(n: int, *, start: int = 0, ip: str = "192.0.2.7") -> bytes:
    return traces_request(
        [span(7000 + start + i, login_attributes(ip=ip), T0 + start + i) for i in range(n)]
    )


@pytest.fixture
def processor() -> Iterator[Processor]:
    made = Processor(resolve({"store": "memory://"}, env={}))
    yield made
    made.close()


def book(processor: Processor) -> DecisionStore:
    assert isinstance(processor.store, DecisionStore)
    return processor.store


def test_a_brute_force_is_answered_once_however_much_it_grows(processor: Processor) -> None:
    processor.ingest("traces", failures(10), json_format=False)
    processor.ingest("traces", failures(10, start=10), json_format=False)
    (decision,) = book(processor).decisions(now=time.time())
    assert (decision.action, decision.scope) == ("block", "user_ip")
    assert decision.value == f"{ALICE}|192.0.2.7"
    (finding,) = processor.store.findings(kind="brute_force")
    assert decision.finding == finding.id


def test_an_allowlisted_address_gets_no_automatic_decision(processor: Processor) -> None:
    book(processor).set_allowed("network", "192.0.2.0/24", "test")
    processor.ingest("traces", failures(12), json_format=False)
    assert processor.store.findings(kind="brute_force")  # still found, only not acted on
    assert book(processor).decisions(now=time.time()) == []


def test_a_repeat_offender_is_blocked_twice_as_long(processor: Processor) -> None:
    processor.ingest("traces", failures(10), json_format=False)
    (first,) = book(processor).decisions(now=time.time())
    book(processor).remove_decisions([first.id], "admin")  # unblocked; it comes back
    processor.ingest("traces", failures(2, start=10), json_format=False)
    (second,) = book(processor).decisions(now=time.time())
    assert second.id != first.id
    assert round(second.until - second.created) == 2 * round(first.until - first.created)
    assert "repeat offender" in second.reason


def _decision(i: int, until: float) -> Decision:
    return Decision(f"d{i}", "block", "ip", f"10.0.{i // 256}.{i % 256}", until, "r", "o", 0.0)


def test_the_book_forgets_inactive_decisions_beyond_its_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(book_module, "MAX_DECISIONS_KEPT", 10)
    held = DecisionBook()
    held.add_decisions([_decision(i, 1e12) for i in range(8)], "t")
    held.remove_decisions([f"d{i}" for i in range(8)], "t")
    held.add_decisions([_decision(i, 1e12) for i in range(8, 16)], "t")
    assert len(held.items) == 10
    assert {d.id for d in held.decisions(now=0.0)} == {f"d{i}" for i in range(8, 16)}
    assert held.count_decisions("ip", "10.0.0.0", 0.0) == 0  # forgotten, index too


def test_a_cursor_older_than_the_log_gets_the_full_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(book_module, "MAX_LOG", 5)
    held = DecisionBook()
    held.add_decisions([_decision(i, 1e12) for i in range(10)], "t")
    assert held.decision_changes(1, 0.0) is None
    recent = held.decision_changes(held.seq - 2, 0.0)
    assert recent is not None
    assert [d.id for d in recent.new] == ["d8", "d9"]


def test_decisions_made_and_removed_go_out_as_otlp_log_records() -> None:
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{receiver.server_address[1]}"
        p = Processor(resolve({"store": "memory://", "otlp_endpoint": endpoint}, env={}))
        p.ingest("traces", failures(10), json_format=False)  # a brute force: an automatic block
        (automatic,) = book(p).decisions(now=time.time())
        p.remove_decisions([automatic.id], "alice")
        p.close()  # flushes the exporter
    finally:
        receiver.shutdown()
        receiver.server_close()
    records = [
        record
        for body in receiver.bodies["/v1/logs"]
        for rl in logs_service_pb2.ExportLogsServiceRequest.FromString(body).resource_logs
        for sl in rl.scope_logs
        for record in sl.log_records
        if record.event_name == A.DECISION_EVENT
    ]
    changes = [
        {kv.key: kv.value.string_value for kv in r.attributes if kv.value.string_value}
        for r in records
    ]
    assert [c["usermon.decision.change"] for c in changes] == ["created", "removed"]
    assert {c["usermon.decision.id"] for c in changes} == {automatic.id}
    assert changes[0]["usermon.decision.scope"] == "user_ip"
    assert changes[0]["usermon.decision.origin"] == "response:brute_force"


def test_a_decision_removed_by_hand_does_not_come_back_from_a_replay(tmp_path: Path) -> None:
    """A processor that died before its checkpoint replays its journal at startup: the
    findings come back, the decisions they were answered with stay as people left them."""
    flags = {"store": f"sqlite:///{tmp_path}/usermon.db", "checkpoint_interval": "3600"}
    crashed = Processor(resolve(flags, env={}))
    crashed.ingest("traces", failures(10), json_format=False)
    (decision,) = book(crashed).decisions(now=time.time())
    crashed.remove_decisions([decision.id], "alice")
    # No close: no checkpoint, the journal holds the batch.
    restarted = Processor(resolve(flags, env={}))
    try:
        assert restarted.replayed == 10
        assert restarted.store.findings(kind="brute_force")
        assert book(restarted).decisions(now=time.time()) == []
    finally:
        restarted.close()
        crashed.store.close()


def test_a_decision_is_logged_without_the_address_or_the_user(
    processor: Processor, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="usermon.processor"):
        processor.ingest("traces", failures(10), json_format=False)
    (decision,) = book(processor).decisions(now=time.time())
    assert f"decision {decision.id}: block user_ip until" in caplog.text
    assert "192.0.2.7" not in caplog.text
    assert ALICE not in caplog.text


def test_a_stream_answer_stays_within_the_sdks_byte_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStore()
    now = time.time()
    store.add_decisions([_decision(i, now + 600 + i) for i in range(10)], "t")
    one = len(json.dumps(decisions_api._wire(_decision(0, now + 600)))) + 2
    monkeypatch.setattr(decisions_api, "MAX_STREAM_BYTES", 3 * one + 1)
    full = decisions_api.stream(store, None, now)
    assert full["full"] is True
    assert [d["id"] for d in full["new"]] == ["d9", "d8", "d7"]  # the longest-lived first
    behind = decisions_api.stream(store, f"{store.decision_epoch()}.0", now)
    assert behind["full"] is True  # ten new ones do not fit: the (truncated) full set instead
    assert len(behind["new"]) == 3
