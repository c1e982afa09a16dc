"""A Redis that fails over: the state and the store reached through Sentinel
(``redis+sentinel://``) follow the primary the Sentinel names, on a real primary, replica and
Sentinel. Requests in flight during the failover fail as a Redis outage does (503, retried by the
sender), and the processor finds after it what one processor finds in the whole stream."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import httpx
import pytest
from tests.support.servers import ServedInThread, free_port

from usermon.processor.service import Processor
from usermon.processor.settings import resolve
from usermon.processor.simulate.otlp import to_request
from usermon.processor.storage.base import open_store
from usermon.processor.storage.errors import StateUnavailable, StoreError
from usermon.processor.storage.redis_common import redis_client
from usermon.processor.storage.state.redis import RedisState

from .conftest import unique_name
from .servers import SentinelSet
from .traffic import login_stream

PROTOBUF = {"Content-Type": "application/x-protobuf"}

_T = TypeVar("_T")


@pytest.fixture
def sentinels() -> Iterator[SentinelSet]:
    watched = SentinelSet()
    yield watched
    watched.close()


def _retried(step: Callable[[], _T], timeout: float = 20.0) -> _T:
    """``step`` again while Redis is unavailable (the failover), as the processor's sender does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return step()
        except StateUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.redis
@pytest.mark.slow
def test_the_state_follows_the_primary_through_a_failover(sentinels: SentinelSet) -> None:
    state = RedisState.from_url(sentinels.url(), prefix=unique_name("t") + ":")
    for i in range(5):
        assert state.add("logins", 1000.0 + i, 60.0) == i + 1  # a script: EVALSHA
    before = sentinels.primary_port()
    sentinels.fail_over()
    assert sentinels.primary_port() == sentinels.replica.port != before
    # The same client, no restart: the count goes on from what the old primary replicated, and
    # the script runs on the new primary (which loads it: it was never called there).
    assert _retried(lambda: state.add("logins", 1005.0, 60.0)) == 6
    assert state.count("logins", 1005.0, 60.0) == 6
    _host, port = state.client.connection_pool.get_master_address()  # type: ignore[attr-defined]
    assert port == sentinels.replica.port
    state.client.close()


def test_a_sentinel_url_that_names_no_service_is_refused() -> None:
    for url, message in [
        ("redis+sentinel://127.0.0.1:26379", "names its service"),
        ("redis+sentinel://127.0.0.1:26379/usermon/zero", "is a number"),
        ("redis+sentinel://127.0.0.1:port/usermon", r"not host\[:port\]"),
        ("redis+sentinel://127.0.0.1/usermon?socket_timeout=1", "unknown Sentinel URL options"),
    ]:
        with pytest.raises(ValueError, match=message):
            redis_client(url)
        with pytest.raises(StoreError, match=message):  # what `usermon serve` prints
            open_store(url)


def test_a_sentinel_url_whose_sentinels_do_not_answer_fails_clearly() -> None:
    url = f"redis+sentinel://127.0.0.1:{free_port()}/usermon"
    with pytest.raises(StoreError, match=r"cannot open the store .*: no Sentinel named a primary"):
        open_store(url)


def _post(client: httpx.Client, events: list[object]) -> None:
    """One batch, sent again on 503 until it is taken (the Collector's retry)."""
    body = to_request(events).SerializeToString()  # type: ignore[arg-type]
    deadline = time.monotonic() + 30
    while (answer := client.post("/v1/traces", content=body, headers=PROTOBUF)).status_code == 503:
        assert time.monotonic() < deadline, "still 503 30 s after the failover"
        time.sleep(0.2)
    assert answer.status_code == 200, answer.text


def _findings(processor: Processor) -> set[tuple[str, str]]:
    return {(f.kind, f.subject.id) for f in processor.store.findings(limit=1000)}


@pytest.mark.redis
@pytest.mark.slow
def test_a_processor_on_sentinel_finds_across_a_failover_what_one_processor_finds(
    sentinels: SentinelSet,
) -> None:
    stream = login_stream(users=40)
    batches = [stream[i : i + 25] for i in range(0, len(stream), 25)]
    prefix = unique_name("usermon_test") + ":"
    watched = Processor(resolve({"store": f"{sentinels.url()}?prefix={prefix}"}, env={}))
    with (
        ServedInThread(watched, log_level="critical") as served,
        httpx.Client(base_url=served.url, timeout=10) as client,
    ):
        for i, batch in enumerate(batches):
            if i == len(batches) // 2:
                sentinels.fail_over()
            _post(client, batch)  # type: ignore[arg-type]
        health = client.get("/healthz")
    found = _findings(watched)
    watched.close()
    alone = Processor(resolve({"store": "memory://"}, env={}))
    for batch in batches:
        alone.ingest("traces", to_request(batch).SerializeToString(), json_format=False)
    expected = _findings(alone)
    alone.close()
    assert health.status_code == 200
    assert sentinels.primary_port() == sentinels.replica.port
    assert {kind for kind, _ in expected} >= {"brute_force", "credential_stuffing"}
    assert found == expected
