"""gateway.yaml end to end: an instrumented app -> the real Collector -> the usermon processor and
the backends.

The app is a separate process using the usermon SDK and the OpenTelemetry SDK's OTLP exporter;
the processor is the real ``usermon serve``; the tracing, metrics and logs backends are recording
OTLP sinks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from usermon import attributes as A

from .conftest import Backends
from .harness import (
    Collector,
    OtlpHttpSink,
    Processor,
    free_port,
    login,
    login_events,
    plain_request,
    run_app,
    run_collector,
    run_processor,
    signup,
    wait_until,
)

pytestmark = [pytest.mark.collector, pytest.mark.slow]

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
TRAFFIC = [
    login(ALICE, False, ip="203.0.113.5"),
    plain_request("GET /products"),
    login(ALICE, False, ip="203.0.113.5"),
    login(ALICE, False, ip="203.0.113.5"),
    login(ALICE, True, ip="198.51.100.20"),
    signup(CAROL, ip="198.51.100.30"),
    login(BOB, True, ip="198.51.100.21"),
    plain_request("GET /cart"),
]


@pytest.fixture
def processor(tmp_path: Path) -> Iterator[Processor]:
    with run_processor(tmp_path) as running:
        yield running


@pytest.fixture
def gateway(
    otelcol_binary: str, backends: Backends, processor: Processor, tmp_path: Path
) -> Iterator[Collector]:
    env = {**backends.env(), "USERMON_PROCESSOR_ENDPOINT": processor.url}
    with run_collector(otelcol_binary, "gateway.yaml", env, tmp_path) as collector:
        yield collector


def _user_seen(processor: Processor, label: str, **counts: int) -> bool:
    profile = processor.users().get(label)
    if profile is None:
        return False
    return all(profile[kind]["24h"] == n for kind, n in counts.items())


def test_processor_aggregates_the_apps_logins_per_user(
    gateway: Collector, processor: Processor
) -> None:
    run_app(gateway, TRAFFIC)

    wait_until(
        lambda: (
            _user_seen(processor, ALICE, failures=3, successes=1)
            and _user_seen(processor, BOB, failures=0, successes=1)
            and _user_seen(processor, CAROL, signups=1)
        ),
        timeout=30,
        what="alice (3 failures, 1 success), bob (1 success) and carol (1 signup) in the processor",
    )
    alice = processor.users()[ALICE]
    assert alice["primary_key"] == "email"
    assert sorted(alice["ips"]) == ["198.51.100.20", "203.0.113.5"]
    assert alice["last_success"]["ip"] == "198.51.100.20"
    assert alice["services"] == ["shop"]


def test_tracing_backend_receives_every_span_and_the_login_events_of_the_contract(
    gateway: Collector, backends: Backends
) -> None:
    run_app(gateway, TRAFFIC)

    wait_until(
        lambda: len(backends.tracing.received.spans()) >= len(TRAFFIC),
        timeout=30,
        what="every span in the tracing backend",
    )
    spans = backends.tracing.received.spans()
    assert sorted(span.name for span in spans) == sorted(
        ["POST /login"] * 5 + ["POST /signup"] + ["GET /products", "GET /cart"]
    )
    events = login_events(spans)
    assert len(events) == 5
    alice_success = next(e for e in events if e[A.USER_ID] == ALICE and e[A.LOGIN_SUCCESS])
    assert alice_success[A.PRIMARY_KEY] == "email"
    assert alice_success[A.IDENTIFIER_PREFIX + "email"] == ALICE
    assert alice_success[A.CLIENT_ADDRESS] == "198.51.100.20"
    assert alice_success[A.USER_AGENT].startswith("Mozilla/5.0")
    assert alice_success[A.SOURCE] == A.SOURCE_SDK
    assert len(alice_success[A.USER_HASH]) == 64
    # The span that carries an event is marked for the Collector, and a success attributes it.
    login_span = next(s for s in spans if any(attrs is alice_success for _, attrs in s.events))
    assert login_span.attributes[A.TRACKED] is True
    assert login_span.attributes[A.USER_HASH] == alice_success[A.USER_HASH]
    assert login_span.resource[A.SERVICE_NAME] == "shop"


def test_login_outcomes_are_counted_by_service_and_never_by_user(
    gateway: Collector, backends: Backends
) -> None:
    run_app(gateway, TRAFFIC)

    def latest() -> dict[tuple[str, Any], int]:
        # Cumulative points: the newest one per series is the total.
        totals: dict[tuple[str, Any], int] = {}
        for point in backends.metrics.received.points():
            if point.metric == "usermon.collector.logins":
                key = (point.attributes[A.SERVICE_NAME], point.attributes[A.LOGIN_SUCCESS])
                totals[key] = point.value
            elif point.metric == "usermon.collector.signups":
                totals[(point.attributes[A.SERVICE_NAME], "signup")] = point.value
        return totals

    expected = {("shop", False): 3, ("shop", True): 2, ("shop", "signup"): 1}
    wait_until(lambda: latest() == expected, timeout=30, what=f"the counts {expected}")
    for point in backends.metrics.received.points():
        if point.metric.startswith("usermon.collector."):
            assert set(point.attributes) <= {A.SERVICE_NAME, A.LOGIN_SUCCESS}
            assert not {A.USER_ID, A.USER_HASH, A.CLIENT_ADDRESS} & set(point.resource)


@pytest.fixture
def processor_ingress() -> Iterator[OtlpHttpSink]:
    """What arrives on the processor's OTLP/HTTP endpoint, recorded: this test is about what the
    Collector lets through, so it watches the wire rather than the processor's summaries."""
    with OtlpHttpSink() as sink:
        yield sink


def test_spans_without_usermon_tracked_never_reach_the_processor(
    otelcol_binary: str, backends: Backends, processor_ingress: OtlpHttpSink, tmp_path: Path
) -> None:
    traffic = [
        login(ALICE, False),
        plain_request("GET /products"),
        # Look-alikes that must not pass: the mark is a boolean on the span itself.
        {"kind": "raw", "name": "tracked-false", "attributes": {A.TRACKED: False}},
        {"kind": "raw", "name": "tracked-string", "attributes": {A.TRACKED: "true"}},
        {"kind": "raw", "name": "event-but-no-mark", "attributes": {}, "event": A.LOGIN_EVENT},
        login(BOB, True),
    ]
    env = {**backends.env(), "USERMON_PROCESSOR_ENDPOINT": processor_ingress.url}
    with run_collector(otelcol_binary, "gateway.yaml", env, tmp_path) as collector:
        run_app(collector, traffic)
        # The backend gets all six; once it has, the processor leg has had its chance too.
        wait_until(
            lambda: (
                len(backends.tracing.received.spans()) == 6
                and len(processor_ingress.received.spans()) >= 2
            ),
            timeout=30,
            what="six spans in the tracing backend and two at the processor",
        )
    reached = processor_ingress.received.spans()
    assert sorted(span.name for span in reached) == ["POST /login", "POST /login"]
    assert all(span.attributes[A.TRACKED] is True for span in reached)
    assert sorted(e[A.USER_ID] for e in login_events(reached)) == [ALICE, BOB]


def test_usermon_log_events_reach_the_processor_and_the_logs_backend(
    gateway: Collector, processor: Processor, backends: Backends
) -> None:
    """An app emitting its events as log records (USERMON_EVENT_SIGNAL=logs) is served too."""
    run_app(gateway, [login(CAROL, False), login(CAROL, True)], signal_="logs")

    wait_until(
        lambda: _user_seen(processor, CAROL, failures=1, successes=1),
        timeout=30,
        what="carol's two logins, sent as log records, in the processor",
    )
    wait_until(
        lambda: len(backends.logs.received.log_records()) >= 2,
        timeout=30,
        what="the two log records in the logs backend",
    )
    records = backends.logs.received.log_records()
    assert [r.event_name for r in records] == [A.LOGIN_EVENT, A.LOGIN_EVENT]
    assert all(r.attributes[A.USER_ID] == CAROL for r in records)


def test_processor_findings_come_back_through_the_collector_to_the_logs_backend(
    otelcol_binary: str, backends: Backends, tmp_path: Path
) -> None:
    ranges = tmp_path / "ranges.csv"
    ranges.write_text("203.0.113.0/24,hosting,Example Cloud\n")
    processor_port = free_port()
    env = {**backends.env(), "USERMON_PROCESSOR_ENDPOINT": f"http://127.0.0.1:{processor_port}"}
    with (
        run_collector(otelcol_binary, "gateway.yaml", env, tmp_path) as collector,
        run_processor(
            tmp_path,
            "--ip-ranges",
            str(ranges),
            "--otlp-endpoint",
            collector.http_url,
            port=processor_port,
        ),
    ):
        run_app(collector, [login(ALICE, True, ip="203.0.113.9")])

        def findings() -> list[dict[str, Any]]:
            return [
                r.attributes
                for r in backends.logs.received.log_records()
                if r.event_name == A.FINDING_EVENT
            ]

        wait_until(lambda: bool(findings()), timeout=30, what="a finding in the logs backend")
    [finding] = findings()
    assert finding["usermon.finding.kind"] == "vpn_or_hosting_login"
    assert finding["usermon.finding.subject.type"] == "user"
    assert finding["usermon.finding.ips"] == ["203.0.113.9"]
