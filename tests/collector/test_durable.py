"""durable.yaml end to end: a processor restart in the middle of a stream loses no login event,
and the queue on disk outlives a restart of the Collector itself (which gateway.yaml's queue in
memory does not: the last test shows what durable.yaml is for)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from .conftest import Backends
from .harness import Processor, login, run_app, run_collector, run_processor, wait_until

pytestmark = [pytest.mark.collector, pytest.mark.slow]

VICTIM = "dana@example.com"


def _failures(processor: Processor) -> int:
    profile = processor.users().get(VICTIM)
    return 0 if profile is None else int(profile["failures"]["24h"])


def _env(backends: Backends, processor: Processor, queue: Path) -> dict[str, str]:
    return {
        **backends.env(),
        "USERMON_PROCESSOR_ENDPOINT": processor.url,
        "USERMON_COLLECTOR_QUEUE_DIR": str(queue),
    }


def test_processor_killed_mid_stream_loses_no_event(
    otelcol_binary: str, backends: Backends, tmp_path: Path
) -> None:
    total = 120  # one failed login every 25 ms: three seconds of stream
    with (
        run_processor(tmp_path) as processor,
        run_collector(
            otelcol_binary, "durable.yaml", _env(backends, processor, tmp_path / "queue"), tmp_path
        ) as collector,
    ):
        app = threading.Thread(
            target=run_app,
            args=(collector, [login(VICTIM, False) for _ in range(total)]),
            kwargs={"pace": 0.025},
        )
        app.start()
        wait_until(lambda: _failures(processor) > 0, timeout=20, what="the stream to start")
        # A crash, not a clean stop: whatever was acknowledged must already be durable.
        processor.stop(signal.SIGKILL)
        time.sleep(2)  # the app keeps sending; the Collector queues and retries
        processor.start()
        app.join(timeout=60)
        assert not app.is_alive()

        wait_until(
            lambda: _failures(processor) == total,
            timeout=60,
            what=f"all {total} failed logins in the processor",
        )


def test_queue_on_disk_survives_a_collector_restart_while_the_processor_is_down(
    otelcol_binary: str, backends: Backends, tmp_path: Path
) -> None:
    queue = tmp_path / "queue"
    with run_processor(tmp_path) as processor:
        env = _env(backends, processor, queue)
        processor.stop()
        with run_collector(otelcol_binary, "durable.yaml", env, tmp_path) as collector:
            run_app(collector, [login(VICTIM, False) for _ in range(20)])
            # The backend leg is unaffected; once it has everything, so has the queue.
            wait_until(
                lambda: len(backends.tracing.received.spans()) == 20,
                timeout=30,
                what="20 spans in the tracing backend",
            )
        # This Collector is gone; a new one finds the queue on disk and delivers it.
        processor.start()
        with run_collector(otelcol_binary, "durable.yaml", env, tmp_path):
            wait_until(
                lambda: _failures(processor) == 20,
                timeout=60,
                what="the 20 queued failed logins in the processor",
            )


def test_without_the_persistent_queue_a_collector_restart_loses_what_was_queued(
    otelcol_binary: str, backends: Backends, tmp_path: Path
) -> None:
    """The control for the test above: same story with gateway.yaml, and the events are gone."""
    with run_processor(tmp_path) as processor:
        env = _env(backends, processor, tmp_path / "queue")
        processor.stop()
        with run_collector(otelcol_binary, "gateway.yaml", env, tmp_path) as collector:
            run_app(collector, [login(VICTIM, False) for _ in range(20)])
            wait_until(
                lambda: len(backends.tracing.received.spans()) == 20,
                timeout=30,
                what="20 spans in the tracing backend",
            )
        processor.start()
        with run_collector(otelcol_binary, "gateway.yaml", env, tmp_path):
            # durable.yaml delivers within a second or two of this point; wait well past that.
            time.sleep(5)
            assert _failures(processor) == 0
