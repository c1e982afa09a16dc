"""scale-out.yaml end to end, with one replica: the processor leg over OTLP gRPC with
client-side round-robin and the replicas' bearer token reaches the real processor's gRPC
receiver. (Spreading over several replicas is gRPC's round_robin policy over the addresses a DNS
name resolves to; one loopback name cannot resolve to several test replicas, so that part is
left to gRPC's own tests.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import Backends
from .harness import free_port, login, run_app, run_collector, run_processor, wait_until

pytestmark = [pytest.mark.collector, pytest.mark.slow]

TOKEN = "scale-out-test-token"
GINA = "gina@example.com"


def _seen(users: dict[str, dict[str, object]]) -> bool:
    gina = users.get(GINA)
    return gina is not None and gina["failures"] == {"1m": 2, "10m": 2, "1h": 2, "24h": 2}


def test_processor_leg_goes_over_grpc_with_the_bearer_token(
    otelcol_binary: str, backends: Backends, tmp_path: Path
) -> None:
    grpc_port = free_port()
    with run_processor(
        tmp_path, "--grpc-listen", f"127.0.0.1:{grpc_port}", token=TOKEN
    ) as processor:
        env = {
            **backends.env(),
            "USERMON_PROCESSOR_ENDPOINT": f"dns:///localhost:{grpc_port}",
            "USERMON_PROCESSOR_INSECURE": "true",
            "USERMON_TOKEN": TOKEN,
        }
        with run_collector(otelcol_binary, "scale-out.yaml", env, tmp_path) as collector:
            run_app(collector, [login(GINA, False), login(GINA, False), login(GINA, True)])
            wait_until(
                lambda: _seen(processor.users()),
                timeout=30,
                what="gina's two failures in the processor, sent over gRPC",
            )
        assert processor.users()[GINA]["successes"]["24h"] == 1


def test_a_wrong_token_is_refused_and_nothing_is_taken(
    otelcol_binary: str, backends: Backends, tmp_path: Path
) -> None:
    grpc_port = free_port()
    with run_processor(
        tmp_path, "--grpc-listen", f"127.0.0.1:{grpc_port}", token=TOKEN
    ) as processor:
        env = {
            **backends.env(),
            "USERMON_PROCESSOR_ENDPOINT": f"dns:///localhost:{grpc_port}",
            "USERMON_PROCESSOR_INSECURE": "true",
            "USERMON_TOKEN": "not-the-token",
        }
        with run_collector(otelcol_binary, "scale-out.yaml", env, tmp_path) as collector:
            run_app(collector, [login(GINA, False)])
            wait_until(
                lambda: len(backends.tracing.received.spans()) == 1,
                timeout=30,
                what="the span in the tracing backend",
            )
            log = collector.log
            wait_until(
                lambda: "Unauthenticated" in log.read_text(errors="replace"),
                timeout=30,
                what="the Collector to report the processor's refusal",
            )
        assert GINA not in processor.users()
