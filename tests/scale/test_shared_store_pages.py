"""Recently seen addresses are listed whichever state the processor runs on: from its memory
(memory, SQLite, PostgreSQL without Redis), from PostgreSQL's address table, or from the Redis
store's index of addresses by ``last_seen``; ``GET /api/ips?sort=recent`` pages them by cursor and
the Sources page shows them."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from tests.support.servers import ServedInThread

from usermon.processor.service import Processor
from usermon.processor.settings import resolve
from usermon.processor.simulate.otlp import to_request
from usermon.processor.storage.state.redis import RedisState

from .conftest import unique_name
from .traffic import login_stream

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def _serve(store: str, state_url: str | None) -> tuple[Processor, ServedInThread]:
    processor = Processor(resolve({"store": store, "state_url": state_url}, env={}))
    running = ServedInThread(processor, log_level="critical")
    body = to_request(login_stream(users=60)).SerializeToString()
    answer = httpx.post(f"{running.url}/v1/traces", content=body, headers=PROTOBUF)
    assert answer.status_code == 200, answer.text
    return processor, running


@pytest.fixture(
    params=[
        pytest.param("postgresql", marks=[pytest.mark.postgresql, pytest.mark.redis]),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def served(request: pytest.FixtureRequest) -> Iterator[str]:
    """A processor whose state is in Redis, fed a login stream with attacks; yields its URL."""
    redis_url: str = request.getfixturevalue("redis_url")
    prefix = unique_name("usermon_test") + ":"
    if request.param == "postgresql":
        schema = request.getfixturevalue("pg_schema")
        pg_url = request.getfixturevalue("postgresql_url")
        store, state_url = f"{pg_url}?schema={schema}&state_prefix={prefix}", redis_url
    else:
        store, state_url = f"{redis_url}?prefix={prefix}", None
    processor, running = _serve(store, state_url)
    try:
        yield running.url
    finally:
        running.stop()
        processor.close()
        RedisState.from_url(redis_url, prefix=prefix).clear()


def _every_recent_address(url: str, limit: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    cursor = None
    while True:
        params = {"sort": "recent", "limit": str(limit)} | ({"cursor": cursor} if cursor else {})
        answer = httpx.get(f"{url}/api/ips", params=params, timeout=10)
        assert answer.status_code == 200, answer.text
        rows += answer.json()["ips"]
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            return rows


def test_recent_addresses_are_paged_newest_first_with_the_state_in_redis(served: str) -> None:
    rows = _every_recent_address(served, limit=37)
    addresses = [row["ip"] for row in rows]
    assert len(addresses) == len(set(addresses))  # no page repeats another's rows
    # Every address of the stream: the homes of 60 users and the three attacks' sources.
    expected = {e.client_ip for e in login_stream(users=60)}
    assert set(addresses) == expected
    times = [float(row["last_seen"]) for row in rows]  # type: ignore[arg-type]
    assert times == sorted(times, reverse=True)
    stuffer = next(row for row in rows if row["ip"] == "198.51.100.9")
    assert stuffer["failures"]["24h"] == 80  # type: ignore[index]
    attacking = httpx.get(f"{served}/api/ips", timeout=10)
    assert attacking.status_code == 200
    assert "198.51.100.9" in {row["id"] for row in attacking.json()["ips"]}


def test_the_sources_page_lists_recent_addresses_with_the_state_in_redis(served: str) -> None:
    page = httpx.get(f"{served}/sources", timeout=10)
    assert page.status_code == 200
    assert "198.51.100.9" in page.text  # the attacking sources are there
    assert 'class="sources recent"' in page.text
    newest = httpx.get(f"{served}/api/ips", params={"sort": "recent", "limit": 1}, timeout=10)
    assert newest.json()["ips"][0]["ip"] in page.text


@pytest.mark.postgresql
def test_postgresql_without_redis_lists_recent_addresses_and_indexes_labels(
    postgresql_url: str, pg_schema: str
) -> None:
    processor, running = _serve(f"{postgresql_url}?schema={pg_schema}", None)
    try:
        recent = httpx.get(f"{running.url}/api/ips", params={"sort": "recent"}, timeout=10)
        page = httpx.get(f"{running.url}/sources", timeout=10)
    finally:
        running.stop()
        processor.close()
    assert recent.status_code == 200
    assert recent.json()["ips"]
    assert 'class="sources recent"' in page.text
    assert processor.profiles.labels_indexed  # a lookup by label reads the index, no scan


@pytest.mark.postgresql
@pytest.mark.redis
def test_postgresql_finds_a_label_by_its_index_with_the_state_in_redis(
    postgresql_url: str, pg_schema: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Users are found by label from PostgreSQL's index, however long ago they were seen: a
    scan of the most recent users would not reach them."""
    from usermon.processor import queries

    prefix = unique_name("usermon_test") + ":"
    store = f"{postgresql_url}?schema={pg_schema}&state_prefix={prefix}"
    processor, running = _serve(store, redis_url)
    monkeypatch.setattr(queries, "LABEL_SCAN_LIMIT", 1)
    try:
        assert processor.profiles.labels_indexed
        seen = processor.store.users(limit=1000)  # type: ignore[attr-defined]
        oldest = min(seen, key=lambda p: p["last_seen"])
        found = queries.find_user(processor.profiles, oldest["label"])
        answer = httpx.get(f"{running.url}/api/users/{oldest['label']}", timeout=10)
        missing = httpx.get(f"{running.url}/api/users/nobody@example.com", timeout=10)
    finally:
        running.stop()
        processor.close()
        RedisState.from_url(redis_url, prefix=prefix).clear()
    assert len(seen) > 1
    assert found is not None
    assert found["user_hash"] == oldest["user_hash"]
    assert answer.status_code == 200
    assert answer.json()["user_hash"] == oldest["user_hash"]
    assert missing.status_code == 404
