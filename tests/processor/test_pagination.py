"""Pages of users, addresses and findings: by cursor, newest first, each row once, without a scan
of the state per page (the recency index), and users found by label without a scan."""

from __future__ import annotations

import random
from collections.abc import Iterator

import httpx
import pytest
from tests.support.dashboard import feed, loaded_processor
from tests.support.servers import ServedInThread

from usermon.processor import queries
from usermon.processor.model import Event
from usermon.processor.recency import RecencyIndex
from usermon.processor.service import Processor
from usermon.processor.settings import resolve


def test_the_index_lists_keys_newest_first_once_each() -> None:
    index = RecencyIndex()
    for key, when in [("a", 1.0), ("b", 2.0), ("a", 3.0), ("c", 2.5), ("b", 1.5)]:
        index.touch(key, when)
    assert list(index.newest()) == [(3.0, "a"), (2.5, "c"), (2.0, "b")]
    assert list(index.newest(since=2.4)) == [(3.0, "a"), (2.5, "c")]
    assert list(index.newest(after=(2.5, "c"))) == [(2.0, "b")]


def test_the_index_stays_bounded_by_its_keys() -> None:
    index = RecencyIndex(max_keys=100)
    for i in range(10_000):
        index.touch(f"k{i % 150}", float(i), label=f"label{i % 150}")
    assert len(index) <= 100 + 10 + 16  # trimmed back to 100 once a tenth over
    assert index.entries <= 2 * 100 + 1024
    assert [k for _, k in index.newest()][:2] == ["k99", "k98"]  # i = 9999, 9998
    assert index.by_label("label99") == "k99"
    assert index.by_label("label100") is None  # the least recently seen were dropped


def _reference_pages(latest: dict[str, float], size: int) -> list[list[tuple[float, str]]]:
    rows = sorted(((t, k) for k, t in latest.items()), reverse=True)
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def _pages(index: RecencyIndex, size: int) -> list[list[tuple[float, str]]]:
    pages = []
    after = None
    while len(pages) <= len(index):  # a broken order could page forever
        rows = []
        for row in index.newest(after=after):
            rows.append(row)
            if len(rows) == size:
                break
        if not rows:
            return pages
        pages.append(rows)
        after = rows[-1]
    return pages


def test_batches_with_late_events_and_equal_times_page_as_a_sorted_listing() -> None:
    """Batches taken whole (touch_all), with late events, repeated keys and times shared by
    several keys, page exactly as the keys sorted by (newest time, key), newest first."""
    rng = random.Random(18)
    index = RecencyIndex()
    latest: dict[str, float] = {}
    labels: dict[str, str] = {}
    clock = 0
    for _ in range(300):
        keys: list[str | None] = []
        times: list[float] = []
        names: list[str | None] = []
        for _ in range(rng.randrange(1, 40)):
            clock += rng.choice((0, 0, 1, 2))  # many events share a time
            when = float(clock - (rng.randrange(50) if rng.random() < 0.1 else 0))  # late
            key = f"k{rng.randrange(120)}" if rng.random() < 0.95 else None
            name = f"label-of-{key}" if key is not None and rng.random() < 0.5 else None
            keys.append(key)
            times.append(when)
            names.append(name)
            if key is not None:
                latest[key] = max(latest.get(key, when), when)
                if name is not None:
                    labels[name] = key
        index.touch_all(keys, times, names)
        for size in (1, 7):
            assert _pages(index, size) == _reference_pages(latest, size)
    assert len(index) == len(latest)
    assert all(index.by_label(name) == key for name, key in labels.items())
    assert index.entries <= 2 * len(latest) + 1024 + 40  # compacted (checked once per batch)


def _login(i: int, when: float) -> Event:
    return Event(
        kind="login",
        time=when,
        success=i % 3 != 0,
        user_hash=f"{i:032x}",
        user_id=f"user{i}@example.com",
        primary_key="email",
        identifiers=(("email", f"user{i}@example.com"),),
        client_ip=f"198.51.100.{i % 200}",
        service="shop",
    )


@pytest.fixture
def processor() -> Iterator[Processor]:
    processor = Processor(resolve({"store": "memory://"}, env={}))
    feed(processor, [_login(i, 1_767_571_200.0 + i) for i in range(250)])
    yield processor
    processor.close()


def test_pages_of_users_cover_every_user_once_newest_first(processor: Processor) -> None:
    seen: list[str] = []
    after = None
    while True:
        rows, after = processor.profiles.users_page(limit=40, after=after)
        seen += [r["user_hash"] for r in rows]
        if after is None:
            break
    assert seen == [f"{i:032x}" for i in reversed(range(250))]


def test_a_user_seen_again_moves_to_the_first_page(processor: Processor) -> None:
    processor.profiles.users(limit=1)  # the index is built
    feed(processor, [_login(7, 1_767_571_200.0 + 500)])
    assert processor.profiles.users(limit=1)[0]["user_hash"] == f"{7:032x}"
    assert len(processor.profiles.users(limit=1000)) == 250


def test_a_label_is_found_however_long_ago_it_was_seen(
    processor: Processor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "LABEL_SCAN_LIMIT", 10)  # a scan would not reach user0
    found = queries.find_user(processor.profiles, "user0@example.com")
    assert found is not None
    assert found["user_hash"] == f"{0:032x}"


def test_the_api_pages_users_ips_and_findings_by_cursor() -> None:
    processor, _ = loaded_processor()
    try:
        with ServedInThread(processor) as served, httpx.Client(base_url=served.url) as client:
            users: list[str] = []
            cursor = None
            while True:
                params = {"limit": 100} | ({"cursor": cursor} if cursor else {})
                body = client.get("/api/users", params=params).json()
                users += [u["user_hash"] for u in body["users"]]
                cursor = body["next_cursor"]
                if cursor is None:
                    break
            assert len(users) == len(set(users)) > 300

            recent = client.get("/api/ips", params={"sort": "recent", "limit": 5}).json()
            assert len(recent["ips"]) == 5
            assert recent["next_cursor"] is not None
            times = [r["last_seen"] for r in recent["ips"]]
            assert times == sorted(times, reverse=True)

            attacking = client.get("/api/ips").json()["ips"]
            stuffing = processor.store.findings(kind="credential_stuffing")[0]
            assert stuffing.subject.id in [row["id"] for row in attacking]
            events = [row["events"] for row in attacking]
            assert events == sorted(events, reverse=True)

            found = processor.store.findings(limit=10_000)
            everything = [f.id for f in sorted(found, key=lambda f: (f.last_seen, f.id))][::-1]
            paged: list[str] = []
            cursor = None
            while True:
                params = {"limit": 4} | ({"cursor": cursor} if cursor else {})
                body = client.get("/api/findings", params=params).json()
                paged += [f["id"] for f in body["findings"]]
                cursor = body["next_cursor"]
                if cursor is None:
                    break
            assert paged == everything

            assert client.get("/api/users", params={"cursor": "nonsense"}).status_code == 400
            assert client.get("/api/ips", params={"sort": "loudest"}).status_code == 400
    finally:
        processor.close()
