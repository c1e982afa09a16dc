"""privacy.yaml end to end: an app in identification mode, and not one raw identifier in any byte
the tracing or logs backend receives, while the processor still gets them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from usermon import attributes as A

from .conftest import Backends
from .harness import (
    LogRecord,
    free_port,
    login,
    login_events,
    run_app,
    run_collector,
    run_processor,
    signup,
    wait_until,
)

pytestmark = [pytest.mark.collector, pytest.mark.slow]

ERIN, FRANK = "erin@example.com", "frank.smith@example.org"
# Erin's success comes from a hosting range: the processor reports a finding about her.
TRAFFIC = [
    login(ERIN, False),
    login(ERIN, True, ip="203.0.113.9"),
    signup(FRANK),
    login(FRANK, True),
]


@pytest.fixture
def privacy_run(otelcol_binary: str, backends: Backends, tmp_path: Path) -> dict[str, Any]:
    """The app's traffic through privacy.yaml, the processor sending its findings back through
    the same Collector; returns the processor's user profiles by label once all has arrived."""
    ranges = tmp_path / "ranges.csv"
    ranges.write_text("203.0.113.0/24,hosting,Example Cloud\n")
    processor_port = free_port()
    env = {**backends.env(), "USERMON_PROCESSOR_ENDPOINT": f"http://127.0.0.1:{processor_port}"}
    with (
        run_collector(otelcol_binary, "privacy.yaml", env, tmp_path) as collector,
        run_processor(
            tmp_path,
            "--ip-ranges",
            str(ranges),
            "--otlp-endpoint",
            collector.http_url,
            port=processor_port,
        ) as processor,
    ):
        run_app(collector, TRAFFIC, signal_="both")
        wait_until(
            lambda: (
                len(backends.tracing.received.spans()) == 4
                and len(_app_records(backends)) == 4
                and len(_findings(backends)) >= 1
            ),
            timeout=30,
            what="4 spans, 4 log events and a finding in the backends",
        )
        wait_until(
            lambda: {ERIN, FRANK} <= set(processor.users()),
            timeout=30,
            what="erin and frank, by e-mail, in the processor",
        )
        return processor.users()


def test_no_raw_identifier_reaches_the_backends_but_the_processor_keeps_them(
    privacy_run: dict[str, Any], backends: Backends
) -> None:
    assert privacy_run[ERIN]["primary_key"] == "email"  # the processor leg is untouched
    for raw in (backends.tracing.received.raw_bytes(), backends.logs.received.raw_bytes()):
        assert ERIN.encode() not in raw
        assert FRANK.encode() not in raw


def test_events_on_the_backend_leg_keep_user_hash_and_lose_identifiers(
    privacy_run: dict[str, Any], backends: Backends
) -> None:
    spans = backends.tracing.received.spans()
    events = login_events(spans)
    assert len(events) == 3
    for event in events:
        assert A.USER_ID not in event
        assert not [key for key in event if key.startswith(A.IDENTIFIER_PREFIX)]
        # What stays: the pseudonymous key that leads to the user's page in usermon, and the rest.
        assert event[A.USER_HASH] in {p["user_hash"] for p in privacy_run.values()}
        assert event[A.PRIMARY_KEY] == "email"
        assert A.LOGIN_SUCCESS in event
    for span in spans:
        assert A.USER_ID not in span.attributes
    for record in _app_records(backends):
        assert A.USER_ID not in record.attributes
        assert not [key for key in record.attributes if key.startswith(A.IDENTIFIER_PREFIX)]
        assert len(record.attributes[A.USER_HASH]) == 64


def test_findings_about_a_user_reach_the_logs_backend_without_the_users_label(
    privacy_run: dict[str, Any], backends: Backends
) -> None:
    findings = _findings(backends)
    about_users = [f for f in findings if f.attributes["usermon.finding.subject.type"] == "user"]
    assert about_users, findings
    for finding in about_users:
        user_hash = finding.attributes["usermon.finding.subject.id"]
        kind = finding.attributes["usermon.finding.kind"]
        assert "usermon.finding.subject.label" not in finding.attributes
        assert finding.body == f"usermon finding {kind} about user {user_hash}"
    erin = privacy_run[ERIN]["user_hash"]
    assert ("vpn_or_hosting_login", erin) in {
        (f.attributes["usermon.finding.kind"], f.attributes["usermon.finding.subject.id"])
        for f in about_users
    }


def _app_records(backends: Backends) -> list[LogRecord]:
    names = (A.LOGIN_EVENT, A.SIGNUP_EVENT)
    return [r for r in backends.logs.received.log_records() if r.event_name in names]


def _findings(backends: Backends) -> list[LogRecord]:
    return [r for r in backends.logs.received.log_records() if r.event_name == A.FINDING_EVENT]
