"""Two real processors (HTTP, OTLP/protobuf) on one PostgreSQL schema and one Redis prefix, with
the batches spread between them as a load balancer would: the findings either one serves are
those of a single processor that received all the traffic."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from tests.support.servers import ServedInThread

from usermon.processor.service import Processor
from usermon.processor.settings import resolve
from usermon.processor.simulate.otlp import to_request
from usermon.processor.storage.state.redis import RedisState

from .conftest import unique_name
from .traffic import login_stream

pytestmark = [pytest.mark.postgresql, pytest.mark.redis, pytest.mark.slow]

BATCH = 40
PROTOBUF = {"Content-Type": "application/x-protobuf"}


@pytest.fixture
def start_processor() -> Iterator[Callable[[str, str | None], str]]:
    running: list[ServedInThread] = []

    def start(store: str, state_url: str | None = None) -> str:
        processor = Processor(resolve({"store": store, "state_url": state_url}, env={}))
        running.append(ServedInThread(processor, log_level="critical"))
        return running[-1].url

    yield start
    for served in running:
        served.stop()
        served.processor.close()


def _findings(url: str) -> list[tuple[Any, ...]]:
    body = httpx.get(f"{url}/api/findings", params={"limit": 1000}, timeout=10).json()
    return sorted(
        (f["id"], f["kind"], f["subject"]["id"], f["severity"], f["event_count"])
        for f in body["findings"]
    )


def test_two_replicas_behind_a_balancer_serve_the_findings_of_one_processor(
    start_processor: Callable[[str, str | None], str],
    postgresql_url: str,
    redis_url: str,
    pg_schema: str,
) -> None:
    events = login_stream(users=120)
    bodies = [
        to_request(events[i : i + BATCH]).SerializeToString() for i in range(0, len(events), BATCH)
    ]
    single = start_processor("memory://", None)
    prefix = unique_name("usermon_test") + ":"
    shared = f"{postgresql_url}?schema={pg_schema}&state_prefix={prefix}"
    replicas = [start_processor(shared, redis_url), start_processor(shared, redis_url)]
    try:
        for i, body in enumerate(bodies):
            for url in (single, replicas[i % 2]):
                response = httpx.post(f"{url}/v1/traces", content=body, headers=PROTOBUF)
                assert response.status_code == 200, response.text
        expected = _findings(single)
        assert {kind for _, kind, *_ in expected} >= {"brute_force", "credential_stuffing"}
        assert _findings(replicas[0]) == expected
        assert _findings(replicas[1]) == expected
    finally:
        RedisState.from_url(redis_url, prefix=prefix).clear()
