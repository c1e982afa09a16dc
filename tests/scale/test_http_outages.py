"""The processor's HTTP side over a shared store during a Redis outage, end to end: ingest answers
503 with Retry-After (so the Collector retries), /healthz names Redis, and both recover by
themselves when Redis is back."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from tests.support.servers import ServedInThread

from usermon.processor.service import Processor
from usermon.processor.settings import resolve
from usermon.processor.simulate.otlp import to_request

from .servers import RedisServer
from .traffic import login_stream

pytestmark = [pytest.mark.postgresql, pytest.mark.redis, pytest.mark.slow]

PROTOBUF = {"Content-Type": "application/x-protobuf"}


@pytest.fixture
def client(own_redis: RedisServer, postgresql_url: str, pg_schema: str) -> Iterator[httpx.Client]:
    """A real processor (uvicorn on a free loopback port) on PostgreSQL + this test's Redis."""
    settings = resolve(
        {"store": f"{postgresql_url}?schema={pg_schema}", "state_url": own_redis.url}, env={}
    )
    processor = Processor(settings)
    with (
        ServedInThread(processor, log_level="critical") as served,
        httpx.Client(base_url=served.url, timeout=10) as http,
    ):
        yield http
    processor.close()


def _post(client: httpx.Client, start: int) -> int:
    body = to_request(login_stream(users=20)[start : start + 5]).SerializeToString()
    return client.post("/v1/traces", content=body, headers=PROTOBUF).status_code


def _until(check: object, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def test_ingest_answers_503_with_retry_after_while_redis_is_down(
    own_redis: RedisServer, client: httpx.Client
) -> None:
    assert _post(client, 0) == 200
    own_redis.stop()
    responses = []

    def refused() -> bool:
        body = to_request(login_stream(users=20)[5:10]).SerializeToString()
        responses.append(client.post("/v1/traces", content=body, headers=PROTOBUF))
        return responses[-1].status_code == 503

    assert _until(refused, timeout=5)
    assert responses[-1].headers["Retry-After"].isdigit()


def test_healthz_names_redis_while_it_is_down(own_redis: RedisServer, client: httpx.Client) -> None:
    own_redis.stop()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["down"] == ["redis"]


def test_ingest_and_healthz_recover_when_redis_is_back(
    own_redis: RedisServer, client: httpx.Client
) -> None:
    own_redis.stop()
    assert _until(lambda: _post(client, 10) == 503, timeout=5)
    own_redis.start()
    assert _until(lambda: _post(client, 15) == 200)
    assert client.get("/healthz").status_code == 200
