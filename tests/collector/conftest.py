"""Fixtures of the Collector tests: recording backends, and the environment the configs read."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from .harness import OtlpGrpcTraceSink, OtlpHttpSink


@dataclass
class Backends:
    """The test doubles of the backends a gateway feeds: traces over OTLP gRPC (as Jaeger and
    Tempo take them), metrics and logs over OTLP/HTTP (as Prometheus and Loki take them)."""

    tracing: OtlpGrpcTraceSink
    metrics: OtlpHttpSink
    logs: OtlpHttpSink

    def env(self) -> dict[str, str]:
        """The configs' backend variables, pointed at these sinks."""
        return {
            "TRACING_BACKEND_ENDPOINT": self.tracing.endpoint,
            "TRACING_BACKEND_INSECURE": "true",
            "METRICS_BACKEND_ENDPOINT": self.metrics.url,
            "LOGS_BACKEND_ENDPOINT": self.logs.url,
        }


@pytest.fixture
def backends() -> Iterator[Backends]:
    with OtlpGrpcTraceSink() as tracing, OtlpHttpSink() as metrics, OtlpHttpSink() as logs:
        yield Backends(tracing, metrics, logs)
