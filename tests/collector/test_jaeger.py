"""A real tracing backend end to end: an instrumented app -> the usermon Collector -> Jaeger v2
(in-memory storage) and the usermon processor, read back through Jaeger's HTTP query API (the API
its Search page uses), as a user looking for a login would.

The processor sends its findings and counters back through the same Collector, whose logs and
metrics legs end in recording OTLP sinks. Each scenario runs once per module; its tests read
what it left in Jaeger, the sinks and the processor.
"""

from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from usermon import attributes as A

from .harness import (
    REPO,
    Jaeger,
    LogRecord,
    OtlpHttpSink,
    Processor,
    free_port,
    http_ok,
    login,
    plain_request,
    run_app,
    run_collector,
    run_jaeger,
    run_processor,
    signup,
    wait_until,
)

pytestmark = [pytest.mark.collector, pytest.mark.jaeger, pytest.mark.slow]

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
HOSTING = "203.0.113.9"  # in the processor's hosting ranges: Alice's success there is a finding
TRAFFIC = [
    login(ALICE, False, ip="203.0.113.5"),
    plain_request("GET /products"),
    login(ALICE, False, ip="203.0.113.5"),
    login(ALICE, False, ip="203.0.113.5"),
    login(ALICE, True, ip=HOSTING),
    signup(CAROL, ip="198.51.100.30"),
    login(BOB, True, ip="198.51.100.21"),
    plain_request("GET /cart"),
]
TRACKED_TRACES = 6  # five logins and a signup


# -- Jaeger's JSON, flattened ---------------------------------------------------------------------


def _fields(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    return {pair["key"]: pair["value"] for pair in pairs}


def _spans(traces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [span for trace in traces for span in trace["spans"]]


def _events(span: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A span's OpenTelemetry events: Jaeger shows each as a log whose ``event`` field is the
    event's name and whose other fields are its attributes."""
    events = []
    for log in span["logs"]:
        fields = _fields(log["fields"])
        events.append((fields.pop("event", ""), fields))
    return events


def _service(trace: dict[str, Any], span: dict[str, Any]) -> str:
    return str(trace["processes"][span["processID"]]["serviceName"])


# -- the scenario ---------------------------------------------------------------------------------


@dataclass
class Run:
    """What one pass of the traffic left behind."""

    jaeger: Jaeger
    processor: Processor
    users: dict[str, dict[str, Any]]
    logs: OtlpHttpSink
    metrics: OtlpHttpSink
    collector_metrics_url: str

    def findings(self) -> list[LogRecord]:
        return [r for r in self.logs.received.log_records() if r.event_name == A.FINDING_EVENT]

    def processor_counts(self, metric: str, label: str) -> dict[Any, int]:
        """The newest value per ``label`` of one of the processor's cumulative counters."""
        counts: dict[Any, int] = {}
        for point in self.metrics.received.points():
            if point.metric == metric and point.resource[A.SERVICE_NAME] == "usermon-processor":
                counts[point.attributes.get(label)] = point.value
        return counts


@contextlib.contextmanager
def _scenario(otelcol_binary: str, jaeger_binary: str, config: str, workdir: Path) -> Iterator[Run]:
    """Jaeger, the Collector on ``config``, the processor (sending back through the Collector)
    and the sinks; runs TRAFFIC and waits until every leg has it."""
    ranges = workdir / "ranges.csv"
    ranges.write_text(f"{HOSTING}/32,hosting,Example Cloud\n")
    processor_port = free_port()
    with (
        OtlpHttpSink() as logs,
        OtlpHttpSink() as metrics,
        run_jaeger(jaeger_binary, workdir) as jaeger,
    ):
        env = {
            "TRACING_BACKEND_ENDPOINT": jaeger.otlp_grpc_endpoint,
            "TRACING_BACKEND_INSECURE": "true",
            "METRICS_BACKEND_ENDPOINT": metrics.url,
            "LOGS_BACKEND_ENDPOINT": logs.url,
            "USERMON_PROCESSOR_ENDPOINT": f"http://127.0.0.1:{processor_port}",
        }
        with (
            run_collector(otelcol_binary, config, env, workdir) as collector,
            run_processor(
                workdir,
                "--ip-ranges",
                str(ranges),
                "--otlp-endpoint",
                collector.http_url,
                port=processor_port,
            ) as processor,
        ):
            run_app(collector, TRAFFIC)
            logins = sum(1 for action in TRAFFIC if action["kind"] == "login")
            run = Run(jaeger, processor, {}, logs, metrics, collector.metrics_url)
            wait_until(
                lambda: (
                    len(jaeger.find_traces("shop", {A.TRACKED: "true"})) == TRACKED_TRACES
                    and bool(run.findings())
                    # The processor exports its counters every 10 s.
                    and sum(run.processor_counts("usermon.logins", "outcome").values()) == logins
                ),
                timeout=60,
                what="the traces in Jaeger, a finding in the logs and the counters in the metrics",
            )
            run.users = processor.users()
            yield run


@pytest.fixture(scope="module")
def gateway_run(
    otelcol_binary: str, jaeger_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    workdir = tmp_path_factory.mktemp("jaeger-gateway")
    with _scenario(otelcol_binary, jaeger_binary, "gateway.yaml", workdir) as run:
        yield run


@pytest.fixture(scope="module")
def privacy_run(
    otelcol_binary: str, jaeger_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    workdir = tmp_path_factory.mktemp("jaeger-privacy")
    with _scenario(otelcol_binary, jaeger_binary, "privacy.yaml", workdir) as run:
        yield run


def _login_spans(traces: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(span, the usermon.login event's attributes) of every span carrying one."""
    return [
        (span, attributes)
        for span in _spans(traces)
        for name, attributes in _events(span)
        if name == A.LOGIN_EVENT
    ]


# -- gateway.yaml ---------------------------------------------------------------------------------


def test_the_login_span_is_found_by_tracked_and_user_hash_with_the_contracts_event(
    gateway_run: Run,
) -> None:
    alice_hash = gateway_run.users[ALICE]["user_hash"]

    traces = gateway_run.jaeger.find_traces("shop", {A.TRACKED: "true", A.USER_HASH: alice_hash})

    found = _login_spans(traces)
    # Alice's four attempts (every event carries user.hash), nobody else's.
    assert len(traces) == 4
    assert sorted(attrs[A.LOGIN_SUCCESS] for _, attrs in found) == [False, False, False, True]
    [(span, event)] = [(s, e) for s, e in found if e[A.LOGIN_SUCCESS]]
    assert span["operationName"] == "POST /login"
    span_tags = _fields(span["tags"])
    assert span_tags[A.TRACKED] is True
    assert span_tags[A.USER_HASH] == alice_hash  # a success attributes the span to the user
    # Exactly the contract's attributes of an identification-mode login, and nothing else.
    assert event == {
        A.SOURCE: A.SOURCE_SDK,
        A.LOGIN_SUCCESS: True,
        A.PRIMARY_KEY: "email",
        A.IDENTIFIER_PREFIX + "email": ALICE,
        A.USER_ID: ALICE,
        A.USER_HASH: alice_hash,
        A.CLIENT_ADDRESS: HOSTING,
        A.USER_AGENT: event[A.USER_AGENT],
    }
    assert event[A.USER_AGENT].startswith("Mozilla/5.0")
    [trace] = [t for t in traces if any(s is span for s in t["spans"])]
    assert _service(trace, span) == "shop"


def test_every_span_reaches_jaeger_not_only_the_tracked_ones(gateway_run: Run) -> None:
    assert "shop" in gateway_run.jaeger.services()
    plain = gateway_run.jaeger.find_traces("shop", {})
    names = sorted(span["operationName"] for span in _spans(plain))
    assert names == sorted(["POST /login"] * 5 + ["POST /signup"] + ["GET /products", "GET /cart"])


def test_a_findings_evidence_trace_ids_resolve_to_traces_in_jaeger(gateway_run: Run) -> None:
    alice_hash = gateway_run.users[ALICE]["user_hash"]
    [finding] = [
        f
        for f in gateway_run.findings()
        if f.attributes["usermon.finding.kind"] == "vpn_or_hosting_login"
    ]
    assert finding.attributes["usermon.finding.subject.id"] == alice_hash
    trace_ids = finding.attributes["usermon.finding.trace_ids"]
    assert trace_ids

    for trace_id in trace_ids:
        trace = gateway_run.jaeger.trace(trace_id)
        assert trace is not None, f"the finding's trace {trace_id} is not in Jaeger"
        assert trace["traceID"] == trace_id
        [(_, event)] = _login_spans([trace])
        assert event[A.USER_HASH] == alice_hash
        assert event[A.CLIENT_ADDRESS] == HOSTING
    # And an id Jaeger never received does not resolve: the lookup can fail.
    assert gateway_run.jaeger.trace("0" * 31 + "1") is None


def test_the_processors_findings_and_counters_reach_the_logs_and_metrics_legs(
    gateway_run: Run,
) -> None:
    [finding] = [
        f
        for f in gateway_run.findings()
        if f.attributes["usermon.finding.kind"] == "vpn_or_hosting_login"
    ]
    assert finding.resource[A.SERVICE_NAME] == "usermon-processor"
    assert finding.attributes["usermon.finding.ips"] == [HOSTING]
    assert gateway_run.processor_counts("usermon.logins", "outcome") == {
        "failure": 3,
        "success": 2,
    }
    wait_until(
        lambda: (
            gateway_run.processor_counts("usermon.findings", "kind").get("vpn_or_hosting_login", 0)
            >= 1
        ),
        timeout=30,
        what="usermon.findings{kind=vpn_or_hosting_login} in the metrics backend",
    )


# The Tags column of docs/backends.md's Jaeger table, and how many of TRAFFIC's traces each finds
# in Jaeger's in-memory storage (which does not match the event's name: see the page).
DOC_TAG_SEARCHES = {
    "usermon.tracked=true": TRACKED_TRACES,
    "usermon.login.success=false": 3,
    "usermon.login.success=true": 2,
    "usermon.login.success=false client.address=203.0.113.5": 3,
    "client.address=203.0.113.5": 3,
    "user.hash=3f5c...e1": 4,  # Alice's hash stands in for the page's placeholder
    "usermon.identifiers.email=alice@example.com": 4,
    "event=usermon.login": 0,
    "event=usermon.signup": 0,
}


def _doc_tag_searches() -> list[str]:
    doc = (REPO / "docs" / "backends.md").read_text()
    section = doc[doc.index("## Jaeger") : doc.index("## Prometheus")]
    table = [line for line in section.splitlines() if line.startswith("| ")]
    return [row.split("|")[2].strip().strip("`") for row in table[2:]]


def test_the_tag_searches_tested_are_the_ones_the_docs_list() -> None:
    assert _doc_tag_searches() == list(DOC_TAG_SEARCHES)


@pytest.mark.parametrize(("tags", "expected"), DOC_TAG_SEARCHES.items())
def test_tag_searches_from_the_docs_find_what_the_docs_say(
    gateway_run: Run, tags: str, expected: int
) -> None:
    alice_hash = gateway_run.users[ALICE]["user_hash"]
    query = dict(pair.split("=", 1) for pair in tags.replace("3f5c...e1", alice_hash).split())

    assert len(gateway_run.jaeger.find_traces("shop", query)) == expected


def test_jaeger_and_the_collector_each_serve_their_own_metrics_on_one_host(
    gateway_run: Run,
) -> None:
    """The shipped configs take the Collector's metrics address from the environment, so it no
    longer collides with Jaeger's (both default to localhost:8888)."""
    assert gateway_run.collector_metrics_url != gateway_run.jaeger.metrics_url
    for url in (gateway_run.collector_metrics_url, gateway_run.jaeger.metrics_url):
        assert http_ok(url), url
    with urllib.request.urlopen(gateway_run.collector_metrics_url, timeout=5) as response:  # noqa: S310 - loopback
        assert b"otelcol_receiver_accepted_spans" in response.read()


# -- privacy.yaml ---------------------------------------------------------------------------------


def test_with_privacy_nothing_jaeger_stored_contains_a_raw_identifier(privacy_run: Run) -> None:
    jaeger = privacy_run.jaeger
    traces = jaeger.find_traces("shop", {})
    assert len(traces) == len(TRAFFIC)
    # Everything Jaeger answers about these traces, searched as text: span and resource
    # attributes, event fields, names.
    stored = repr(traces) + "".join(repr(jaeger.trace(t["traceID"])) for t in traces)
    for email in (ALICE, BOB, CAROL):
        assert email not in stored
    # The processor, on its own leg, still has them.
    assert {ALICE, BOB, CAROL} <= set(privacy_run.users)


def test_with_privacy_a_login_is_still_found_by_user_hash_and_resolves_from_a_finding(
    privacy_run: Run,
) -> None:
    alice_hash = privacy_run.users[ALICE]["user_hash"]
    traces = privacy_run.jaeger.find_traces("shop", {A.TRACKED: "true", A.USER_HASH: alice_hash})
    found = _login_spans(traces)
    assert len(found) == 4
    for _, event in found:
        assert A.USER_ID not in event
        assert not [key for key in event if key.startswith(A.IDENTIFIER_PREFIX)]
        assert event[A.PRIMARY_KEY] == "email"
    [finding] = [
        f
        for f in privacy_run.findings()
        if f.attributes["usermon.finding.kind"] == "vpn_or_hosting_login"
    ]
    assert "usermon.finding.subject.label" not in finding.attributes
    for trace_id in finding.attributes["usermon.finding.trace_ids"]:
        assert privacy_run.jaeger.trace(trace_id) is not None
