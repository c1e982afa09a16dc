"""Stored text that cannot be encoded, on the shared stores: PostgreSQL takes profiles and
findings that carry a lone surrogate (scrubbed, where it refused them and failed every batch),
its in-memory state is repaired when it loads, and what another writer left in Redis that is
not UTF-8 reads as U+FFFD instead of failing the API."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis
from tests.processor.stored_text import FIXED, IP, LONE, T0, USER, poison_state, poisoned_finding
from tests.support.servers import ServedInThread

from usermon.processor.profiles import Profiles
from usermon.processor.service import Processor
from usermon.processor.settings import resolve
from usermon.processor.storage.postgresql import PostgreSQLStore
from usermon.processor.storage.redis import RedisStore
from usermon.processor.storage.state.memory import MemoryState


@pytest.mark.postgresql
def test_postgresql_takes_poisoned_profiles_and_repairs_its_state_on_load(
    pg_memory_store_factory: Callable[..., PostgreSQLStore],
) -> None:
    store = pg_memory_store_factory(replica="r1")
    poison_state(store.state)
    profiles = Profiles(store)
    profiles.record([USER, "h-" + LONE], [IP])
    store.record_findings([poisoned_finding()])
    store.checkpoint(0, b"")
    profile = profiles.user(USER)
    assert profile is not None
    assert profile["label"] == "alice" + FIXED
    assert store.finding("f-poisoned").subject.label == "alice" + FIXED  # type: ignore[union-attr]
    store.close()

    reopened = pg_memory_store_factory(replica="r1")
    assert isinstance(reopened.state, MemoryState)
    view = reopened.state.read_subject("u:" + USER, None)
    assert view is not None
    assert view.label == "alice" + FIXED
    assert reopened.state.read_subject("u:h-" + FIXED, None) is not None


@pytest.mark.redis
def test_text_in_redis_that_is_not_utf8_is_served_as_replacement_characters(
    redis_url: str, redis_store_factory: Callable[..., RedisStore]
) -> None:
    store = redis_store_factory()
    poison_state(store.state)  # a lone surrogate is written as "?"
    Profiles(store).record([USER], [IP])
    # What another writer left: a label that is not UTF-8, and a finding whose JSON escapes a
    # lone surrogate (valid JSON, and json.loads gives it back).
    raw = redis.Redis.from_url(redis_url)
    try:
        raw.hset(f"{store.prefix}{{u:{USER}}}:s", "lb", b"alice\xed\xa0\x80")
        finding = poisoned_finding().to_json()
        raw.set(f"{store.prefix}finding:f-poisoned", json.dumps(finding))
        raw.zadd(f"{store.prefix}findings", {"f-poisoned": T0})
    finally:
        raw.close()
    settings = resolve({"store": "memory://"}, env={})
    processor = Processor(settings, store=store)
    running = ServedInThread(processor)
    url = running.url
    try:
        answers: dict[str, Any] = {
            path: httpx.get(url + path, timeout=10)
            for path in ("/api/users", f"/api/users/{USER}", f"/api/ips/{IP}", "/api/findings")
        }
        assert {p: r.status_code for p, r in answers.items()} == dict.fromkeys(answers, 200)
        assert answers[f"/api/users/{USER}"].json()["label"] == "alice" + FIXED * 3
        (served,) = answers["/api/findings"].json()["findings"]
        assert served["subject"]["label"] == "alice" + FIXED
    finally:
        running.stop()
        processor.close()
