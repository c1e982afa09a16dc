"""Stored text that cannot be encoded (a lone surrogate) never makes the API answer 500, and the
SQLite store repairs it when it loads: the state and the findings read back U+FFFD, and the next
checkpoint writes them clean."""

from __future__ import annotations

import json
import marshal
import sqlite3
import struct
from pathlib import Path
from typing import Any

import httpx
from tests.support.servers import ServedInThread

from usermon.processor.profiles import Profiles
from usermon.processor.service import Processor
from usermon.processor.settings import resolve
from usermon.processor.storage.repair import (
    scrub,
    scrub_marshal,
    scrub_text,
    storable_json,
    storable_text,
)
from usermon.processor.storage.sqlite import SQLiteStore

from .stored_text import FIXED, IP, LONE, USER, poison_state, poisoned_finding


def api_reads(url: str) -> dict[str, httpx.Response]:
    paths = [
        "/api/users",
        f"/api/users/{USER}",
        f"/api/ips/{IP}",
        "/api/findings",
        "/api/findings/f-poisoned",
        "/healthz",
    ]
    return {path: httpx.get(url + path, timeout=10) for path in paths}


def assert_served(url: str) -> None:
    answers = api_reads(url)
    assert {p: r.status_code for p, r in answers.items()} == dict.fromkeys(answers, 200)
    users = answers["/api/users"].json()["users"]
    assert {u["user_hash"] for u in users} == {USER, "h-" + FIXED}
    user = answers[f"/api/users/{USER}"].json()
    assert user["label"] == "alice" + FIXED
    assert user["user_agents"] == ["Mozilla" + FIXED]
    assert user["services"] == ["shop" + FIXED]
    assert answers[f"/api/ips/{IP}"].json()["users"].count("h-" + FIXED) == 1
    (finding,) = answers["/api/findings"].json()["findings"]
    assert finding["subject"]["label"] == "alice" + FIXED


def test_the_api_serves_stored_text_it_cannot_encode(make_processor: Any) -> None:
    processor = make_processor()
    poison_state(processor.store.state)
    processor.profiles.index(rebuild=True)  # written behind the engine: listed after a rescan
    processor.store.record_findings([poisoned_finding()])
    running = ServedInThread(processor)
    url = running.url
    try:
        assert_served(url)
    finally:
        running.stop()


def test_sqlite_repairs_a_poisoned_state_and_findings_when_it_loads(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/u.db"
    writer = Processor(resolve({"store": url}, env={}))
    writer.checkpoint()  # a clean base: the poison lands in a delta on top of it
    poison_state(writer.store.state)
    writer.store.record_findings([poisoned_finding()])
    writer.close()
    with sqlite3.connect(tmp_path / "u.db") as db:
        assert db.execute("SELECT count(*) FROM state_deltas").fetchone()[0] == 1

    loaded = SQLiteStore(url)
    profile = Profiles(loaded).user(USER)
    assert profile is not None
    assert profile["label"] == "alice" + FIXED
    assert loaded.finding("f-poisoned").subject.label == "alice" + FIXED  # type: ignore[union-attr]
    loaded.close()

    processor = Processor(resolve({"store": url}, env={}))
    running = ServedInThread(processor)
    served = running.url
    try:
        assert_served(served)
    finally:
        running.stop()
        processor.close()  # checkpoints: the repaired state and finding are written back
    with sqlite3.connect(tmp_path / "u.db") as db:
        (base,) = db.execute("SELECT data FROM state_base").fetchone()
        deltas = db.execute("SELECT count(*) FROM state_deltas").fetchone()[0]
        (finding,) = db.execute("SELECT data FROM findings").fetchone()
    assert b"\xed\xa0\x80" not in base
    assert deltas == 0
    assert "\\ud800" not in finding
    assert json.loads(finding)["subject"]["label"] == "alice" + FIXED


def test_scrub_keeps_clean_values_and_replaces_only_lone_surrogates() -> None:
    clean = {"a": ["b", 1, 2.5, None, True], "c": ("d",)}
    assert scrub(clean) is clean
    assert scrub_text("x" + LONE + "\ud83d\ude00") == "x" + FIXED + "\U0001f600"
    assert scrub({LONE: [float("nan")]}, finite=True) == {FIXED: [None]}


def test_a_state_blob_is_walked_only_when_one_of_its_strings_holds_a_lone_surrogate() -> None:
    """Bytes that look like a surrogate inside a float do not make a clean blob be rewritten;
    a surrogate inside a string, however far into it, does."""
    (chance,) = struct.unpack("<d", b"\x00\xed\xa0\x80\x00\x00\xf0\x3f")
    clean = marshal.dumps((chance, "u:alice", ["ü" * 300]))
    assert b"\xed\xa0\x80" in clean
    assert scrub_marshal(clean) == (clean, False)
    poisoned = marshal.dumps((chance, "u:alice", ["ü" * 300 + LONE]))
    repaired, changed = scrub_marshal(poisoned)
    assert changed
    assert marshal.loads(repaired) == (chance, "u:alice", ["ü" * 300 + FIXED])  # noqa: S302


def test_storable_json_is_the_json_of_a_clean_value_as_it_is() -> None:
    clean = {"label": "é 😀 \\u0000 ü", "ips": ["192.0.2.1"], "n": 3, "t": 1.5, "x": None}
    assert json.loads(storable_json(clean)) == clean


def test_storable_json_replaces_what_postgresql_refuses() -> None:
    """A lone surrogate and NUL become U+FFFD, NaN and the infinities null; a surrogate pair
    held as two code points becomes its character."""
    value = {LONE: ["a\x00b", "\ud83d\ude00", float("nan")], "inf": float("inf")}
    assert json.loads(storable_json(value)) == {
        FIXED: ["a" + FIXED + "b", "\U0001f600", None],
        "inf": None,
    }
    assert storable_text("a\x00" + LONE) == "a" + FIXED + FIXED
    clean = "é"
    assert storable_text(clean) is clean
