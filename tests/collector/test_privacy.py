"""privacy.yaml end to end: an app in identification mode, and not one raw identifier in any byte
the tracing or logs backend receives, while the processor still gets them."""

from __future__ import annotations

from pathlib import Path

import pytest

from usermon import attributes as A

from .conftest import Backends
from .harness import login, login_events, run_app, run_collector, run_processor, signup, wait_until

pytestmark = [pytest.mark.collector, pytest.mark.slow]

ERIN, FRANK = "erin@example.com", "frank.smith@example.org"
TRAFFIC = [login(ERIN, False), login(ERIN, True), signup(FRANK), login(FRANK, True)]


def test_no_raw_identifier_reaches_the_backends_but_the_processor_keeps_them(
    otelcol_binary: str, backends: Backends, tmp_path: Path
) -> None:
    with run_processor(tmp_path) as processor:
        env = {**backends.env(), "USERMON_PROCESSOR_ENDPOINT": processor.url}
        with run_collector(otelcol_binary, "privacy.yaml", env, tmp_path) as collector:
            run_app(collector, TRAFFIC, signal_="both")
            wait_until(
                lambda: (
                    len(backends.tracing.received.spans()) == 4
                    and len(backends.logs.received.log_records()) == 4
                ),
                timeout=30,
                what="4 spans in the tracing backend and 4 log records in the logs backend",
            )
            wait_until(
                lambda: {ERIN, FRANK} <= set(processor.users()),
                timeout=30,
                what="erin and frank, by e-mail, in the processor",
            )

    for raw in (backends.tracing.received.raw_bytes(), backends.logs.received.raw_bytes()):
        assert ERIN.encode() not in raw
        assert FRANK.encode() not in raw

    spans = backends.tracing.received.spans()
    events = login_events(spans)
    assert len(events) == 3
    for event in events:
        assert A.USER_ID not in event
        assert not [key for key in event if key.startswith(A.IDENTIFIER_PREFIX)]
        # What stays: the pseudonymous key that leads to the user's page in usermon, and the rest.
        assert len(event[A.USER_HASH]) == 64
        assert event[A.PRIMARY_KEY] == "email"
        assert A.LOGIN_SUCCESS in event
    for span in spans:
        assert A.USER_ID not in span.attributes
    for record in backends.logs.received.log_records():
        assert A.USER_ID not in record.attributes
        assert len(record.attributes[A.USER_HASH]) == 64
