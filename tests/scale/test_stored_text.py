"""Stored text that cannot be encoded, on the shared stores: PostgreSQL takes profiles and
findings that carry a lone surrogate or NUL (replaced by U+FFFD, where it refused them and failed
every batch), its in-memory state is repaired when it loads, and what another writer left in
Redis that is not UTF-8 reads as U+FFFD instead of failing the API."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis
from tests.processor.stored_text import FIXED, IP, LONE, T0, USER, poison_state, poisoned_finding
from tests.support.servers import ServedInThread

from usermon.processor.aggregation import aggregate
from usermon.processor.model import Event, Finding, Subject
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


@pytest.mark.postgresql
def test_postgresql_keeps_the_newer_of_two_profiles_that_are_one_once_repaired(
    pg_memory_store_factory: Callable[..., PostgreSQLStore],
) -> None:
    """A batch's profiles go in one statement, which cannot write a row twice: two users whose
    hashes differ only by a lone surrogate and its replacement are one row, the newer one."""
    store = pg_memory_store_factory()
    for user_hash, when, agent in (("h-" + LONE, T0 + 5, "new"), ("h-" + FIXED, T0, "old")):
        aggregate(
            Event(
                kind="login",
                time=when,
                success=True,
                user_hash=user_hash,
                user_id="alice",
                primary_key="email",
                client_ip=IP,
                user_agent=agent,
            ),
            store.state,
        )
    profiles = Profiles(store)
    profiles.record(["h-" + LONE, "h-" + FIXED], [IP])
    profile = profiles.user("h-" + FIXED)
    assert profile is not None
    assert (profile["last_seen"], profile["user_agents"]) == (T0 + 5, ["new"])
    assert profiles.user("h-" + LONE) == profile  # read by the key it is stored under


@pytest.mark.postgresql
@pytest.mark.redis
def test_a_replica_on_redis_takes_profiles_and_findings_holding_nul(
    pg_store_factory: Callable[..., PostgreSQLStore],
) -> None:
    """Redis keeps NUL as it keeps any byte, PostgreSQL refuses it in text and in jsonb: the
    profiles and the finding are stored with U+FFFD, and clean non-ASCII text as it is."""
    store = pg_store_factory()
    aggregate(
        Event(
            kind="login",
            time=T0,
            success=True,
            user_hash=USER,
            user_id="al\x00ice é 😀",
            primary_key="email",
            client_ip=IP,
            user_agent="Mozilla\x00",
            service="shop",
        ),
        store.state,
    )
    profiles = Profiles(store)
    profiles.record([USER, "h-\x00"], [IP])
    store.record_findings(
        [
            Finding(
                id="f-nul",
                kind="brute_force",
                severity="medium",
                subject=Subject("user", "h-\x00", "al\x00ice"),
                first_seen=T0,
                last_seen=T0,
                event_count=3,
                summary="3 failed logins for al\x00ice",
                evidence={"trace_ids": [], "ips": [IP], "users": ["h-\x00"]},
            )
        ]
    )
    profile = profiles.user(USER)
    assert profile is not None
    assert profile["label"] == "al" + FIXED + "ice é 😀"
    assert profile["user_agents"] == ["Mozilla" + FIXED]
    address = profiles.ip(IP)
    assert address is not None
    assert address["users"] == [USER]
    finding = store.finding("f-nul")
    assert finding is not None
    assert finding.subject == Subject("user", "h-" + FIXED, "al" + FIXED + "ice")
    assert finding.summary == "3 failed logins for al" + FIXED + "ice"
    assert finding.evidence["users"] == ["h-" + FIXED]


@pytest.mark.redis
def test_text_in_redis_that_is_not_utf8_is_served_as_replacement_characters(
    redis_url: str, redis_store_factory: Callable[..., RedisStore]
) -> None:
    store = redis_store_factory()
    poison_state(store.state)  # a lone surrogate is written as "?"
    Profiles(store).record([USER], [IP])
    # What another writer left: a label that is not UTF-8, and a finding whose JSON escapes a
    # lone surrogate in upper case (valid JSON, and json.loads gives it back).
    raw = redis.Redis.from_url(redis_url)
    try:
        # The label inside the user's packed subject (docs/deploy.md, *Redis*).
        raw.eval(
            "local S = cmsgpack.unpack(redis.call('GET', KEYS[1])) S.lb = ARGV[1] "
            "redis.call('SET', KEYS[1], cmsgpack.pack(S), 'KEEPTTL')",
            1,
            f"{store.prefix}{{u:{USER}}}:p",
            b"alice\xed\xa0\x80",
        )
        finding = poisoned_finding().to_json()
        escaped = json.dumps(finding).replace("\\ud800", "\\uD800")
        assert "\\uD800" in escaped
        raw.set(f"{store.prefix}finding:f-poisoned", escaped)
        raw.zadd(f"{store.prefix}findings", {"f-poisoned": T0})
    finally:
        raw.close()
    assert store.finding("f-poisoned").subject.label == "alice" + FIXED  # type: ignore[union-attr]
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
