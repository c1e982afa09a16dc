"""Protection end to end: an application reports failed logins with the SDK, the processor finds a
brute force and decides to block the account from that address, and the SDK's own sync client
(usermon.protection, with an application token) pulls the decision so that usermon.check
refuses the next attempt from there, and only from there."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from tests.support.servers import ServedInThread

import usermon
from usermon import attributes as A
from usermon import protection
from usermon.processor.service import Processor
from usermon.processor.settings import resolve

APP = "app-token-0123456789abc"
ADMIN = "admin-token-0123456789"
ALICE = {"email": "alice@example.com"}


@pytest.fixture
def served(fresh_sdk_settings: None) -> Iterator[str]:
    settings = resolve({"store": "memory://", "token": ADMIN, "app_tokens": APP}, env={})
    processor = Processor(settings)  # the default detectors and responses
    try:
        with ServedInThread(processor) as running:
            yield running.url
    finally:
        protection.stop()
        processor.close()


def report_failed_logins(url: str, n: int, ip: str) -> None:
    provider = TracerProvider(resource=Resource.create({A.SERVICE_NAME: "shop"}))
    exporter = OTLPSpanExporter(
        endpoint=url + "/v1/traces", headers={"Authorization": f"Bearer {APP}"}
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop")
    for _ in range(n):
        with tracer.start_as_current_span("POST /login") as span, trace.use_span(span):
            usermon.auth_track(False, ALICE, context=usermon.TrackContext(client_ip=ip))
    provider.shutdown()


def wait_for(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_the_sdk_pulls_a_decision_the_processor_made_from_a_brute_force(served: str) -> None:
    report_failed_logins(served, 10, "192.0.2.7")
    usermon.configure(
        protect=True, decisions_url=served, decisions_token=APP, decisions_interval=0.05
    )
    decision = wait_for(lambda: usermon.check(ip="192.0.2.7", identifiers=ALICE))
    assert decision.action == "block"
    assert decision.scope == "user_ip"
    assert decision.origin == "response:brute_force"
    assert 14 * 60 < decision.expires - time.time() <= 15 * 60  # Auth0's pair, Datadog's 15 min
    assert usermon.check(ip="198.51.100.1", identifiers=ALICE) is None  # the owner elsewhere
    assert usermon.check(ip="192.0.2.7", identifiers={"email": "bob@example.com"}) is None
    assert usermon.protection_status().consecutive_failures == 0
