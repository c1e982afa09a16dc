"""Restart replays the journal after the last checkpoint, deciding exactly as live ingest did."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from tests.support.example_rule import ExampleRule

from usermon.processor import service
from usermon.processor.service import Processor
from usermon.processor.settings import resolve

from .payloads import login_attributes, logins, span, traces_request


def open_processor(path: Path) -> Processor:
    settings = resolve({"store": f"sqlite:///{path}", "checkpoint_interval": 3600}, env={})
    return Processor(settings, detectors=[ExampleRule(threshold=3)])


def test_a_restart_without_checkpoint_replays_state_and_findings(tmp_path: Path) -> None:
    db = tmp_path / "u.db"
    first = open_processor(db)
    first.ingest("traces", logins(4), json_format=False)  # journaled, never checkpointed
    second = open_processor(db)  # as after a crash: the first never closed
    assert second.replayed == 4
    profile = second.profiles.user("h-alice@example.com")
    assert profile is not None
    assert profile["failures"]["24h"] == 4
    (finding,) = second.store.findings()
    assert finding.event_count == 2
    second.close()
    first.store.close()  # without a checkpoint: it "crashed"


def test_a_replay_rejects_what_live_ingest_rejected(tmp_path: Path) -> None:
    db = tmp_path / "u.db"
    first = open_processor(db)
    future = time.time() + 7200
    body = traces_request([span(1, login_attributes(user="late@example.com"), future)])
    result = first.ingest("traces", body, json_format=False)
    assert result.rejected_items == 1
    second = open_processor(db)
    assert second.profiles.user("h-late@example.com") is None
    second.close()
    first.store.close()


def test_after_a_clean_close_nothing_is_replayed(tmp_path: Path) -> None:
    db = tmp_path / "u.db"
    first = open_processor(db)
    first.ingest("traces", logins(2), json_format=False)
    first.close()
    second = open_processor(db)
    assert second.replayed == 0
    profile = second.profiles.user("h-alice@example.com")
    assert profile is not None
    assert profile["failures"]["24h"] == 2
    assert len(second.store.findings()) == 0
    second.close()


def test_a_long_replay_logs_its_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "u.db"
    first = open_processor(db)
    for _ in range(3):
        first.ingest("traces", logins(2), json_format=False)  # journaled, never checkpointed
    first.store.close()
    monkeypatch.setattr(service, "PROGRESS_INTERVAL", 0.0)  # every batch is "long enough"
    with caplog.at_level(logging.INFO, logger="usermon.processor"):
        second = open_processor(db)
    progress = [r.getMessage() for r in caplog.records if "replaying the journal" in r.getMessage()]
    assert progress[-1].endswith("3 batches, 6 events so far")
    assert any("replayed 6 journaled events (3 batches)" in r.getMessage() for r in caplog.records)
    second.close()
    with caplog.at_level(logging.INFO, logger="usermon.processor"):
        caplog.clear()
        third = open_processor(db)
    assert any("loaded the state of the last checkpoint" in r.getMessage() for r in caplog.records)
    third.close()
