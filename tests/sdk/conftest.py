"""Shared fixtures of the SDK tests: one process-wide tracer and logger provider, fresh settings.

The global OpenTelemetry providers can be set only once per process, so every SDK test shares
them: spans are captured per test with :func:`usermon.testing.capture_events` (which attaches a
processor to whatever SDK provider is global), log records with one in-memory exporter that each
test clears. Every test starts with no ``USERMON_*`` variable, no ``configure()`` override and no
remembered warning, so tests never leak configuration into each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry._logs import get_logger_provider, set_logger_provider
from opentelemetry.context import Context
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan

from usermon.testing import CapturedEvents, capture_events

HASH_KEY = "test-only-hash-key-0123456789abcdef"


class FaultySpanProcessor(SpanProcessor):
    """A span processor that raises when armed: an exporter pipeline failing synchronously."""

    def __init__(self) -> None:
        self.armed = False

    def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
        if self.armed:
            raise RuntimeError("exporter pipeline is down (on_start)")

    def on_end(self, span: ReadableSpan) -> None:
        if self.armed:
            raise RuntimeError("exporter pipeline is down (on_end)")


def _global_tracer_provider() -> TracerProvider:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        trace.set_tracer_provider(TracerProvider())
        provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "another suite set a non-SDK tracer provider"
    return provider


_faulty = FaultySpanProcessor()
_global_tracer_provider().add_span_processor(_faulty)

_log_exporter = InMemoryLogRecordExporter()


def _global_logger_provider() -> Any:
    provider = get_logger_provider()
    if not isinstance(provider, LoggerProvider):
        set_logger_provider(LoggerProvider())
        provider = get_logger_provider()
    assert isinstance(provider, LoggerProvider), "another suite set a non-SDK logger provider"
    return provider


_global_logger_provider().add_log_record_processor(SimpleLogRecordProcessor(_log_exporter))


@pytest.fixture(autouse=True)
def fresh_settings(fresh_sdk_settings: None) -> None:
    """Every test here starts and ends with fresh settings (tests/conftest.py)."""


@pytest.fixture
def events() -> Iterator[CapturedEvents]:
    """The usermon span events recorded during the test."""
    with capture_events() as captured:
        yield captured


@pytest.fixture
def log_records() -> Iterator[InMemoryLogRecordExporter]:
    """The in-memory exporter receiving every log record, cleared for the test."""
    _log_exporter.clear()
    yield _log_exporter
    _log_exporter.clear()


@pytest.fixture
def tracer() -> trace.Tracer:
    """A tracer of the global SDK provider, to open the spans a request would have."""
    return _global_tracer_provider().get_tracer("tests.sdk")


@pytest.fixture
def faulty_pipeline() -> Iterator[FaultySpanProcessor]:
    """Arms a span processor that raises on every span start and end during the test."""
    _faulty.armed = True
    yield _faulty
    _faulty.armed = False


@pytest.fixture
def hash_key() -> str:
    """A USERMON_HASH_KEY for tests."""
    return HASH_KEY
