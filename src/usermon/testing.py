"""Helpers for your own test suite: capture the usermon events your code records.

This module owns test-time capture. :func:`capture_events` attaches (once per tracer provider) a
span processor that copies every finished span's ``usermon.login`` / ``usermon.signup`` events to
the captures open at that moment, so tests see exactly what would be exported, after
normalization and pseudonymization. :func:`configured` applies SDK options for the duration of a
block and restores the previous ones. It needs ``opentelemetry-sdk`` (the ``usermon[sdk]``
extra); ``import usermon`` alone never loads this module.

Usage with pytest::

    import pytest
    import usermon
    from usermon.testing import capture_events

    @pytest.fixture
    def usermon_events():
        with capture_events() as events:
            yield events

    def test_login_is_tracked(usermon_events, client):
        client.post("/login", data={"email": "ada@example.com", "password": "x"})
        [event] = usermon_events.logins
        assert event.attributes["user.id"] == "ada@example.com"

When no SDK tracer provider is set globally, :func:`capture_events` installs a plain
``TracerProvider`` (the global provider can be set only once per process). Events emitted only as
log records (``USERMON_EVENT_SIGNAL=logs``) are not captured.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan

from usermon import attributes as attrs
from usermon import settings as _settings

__all__ = ["CapturedEvent", "CapturedEvents", "capture_events", "configured"]

_EVENT_NAMES = frozenset({attrs.LOGIN_EVENT, attrs.SIGNUP_EVENT})


@dataclass(frozen=True)
class CapturedEvent:
    """One recorded usermon event, as it would be exported."""

    name: str
    """``usermon.login`` or ``usermon.signup``."""
    attributes: Mapping[str, Any]
    """The event's attributes (see docs/schema.md)."""
    timestamp: int
    """Event time, nanoseconds since the epoch."""
    span_name: str
    """Name of the span that carried the event."""
    span_attributes: Mapping[str, Any]
    """That span's attributes (``usermon.tracked``, ``user.hash``, ...)."""
    trace_id: int
    span_id: int

    @property
    def success(self) -> bool | None:
        """The login outcome, ``None`` for a signup."""
        value = self.attributes.get(attrs.LOGIN_SUCCESS)
        return value if isinstance(value, bool) else None


@dataclass
class CapturedEvents:
    """The events captured so far, in the order their spans ended."""

    events: list[CapturedEvent] = field(default_factory=list)
    spans: list[ReadableSpan] = field(default_factory=list)
    """Every span that carried a usermon event, as the SDK would hand it to an exporter."""

    @property
    def logins(self) -> list[CapturedEvent]:
        """The ``usermon.login`` events."""
        return [event for event in self.events if event.name == attrs.LOGIN_EVENT]

    @property
    def signups(self) -> list[CapturedEvent]:
        """The ``usermon.signup`` events."""
        return [event for event in self.events if event.name == attrs.SIGNUP_EVENT]

    def clear(self) -> None:
        """Forget what was captured so far."""
        self.events.clear()
        self.spans.clear()

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[CapturedEvent]:
        return iter(self.events)


class _CaptureProcessor(SpanProcessor):
    """Copies usermon events of ending spans to every open capture."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._captures: list[CapturedEvents] = []

    def open(self, capture: CapturedEvents) -> None:
        with self._lock:
            self._captures.append(capture)

    def close(self, capture: CapturedEvents) -> None:
        with self._lock:
            self._captures = [c for c in self._captures if c is not capture]

    def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        captures = self._captures
        if not captures:
            return
        found = [
            CapturedEvent(
                name=event.name,
                attributes=dict(event.attributes or {}),
                timestamp=event.timestamp,
                span_name=span.name,
                span_attributes=dict(span.attributes or {}),
                trace_id=span.context.trace_id if span.context else 0,
                span_id=span.context.span_id if span.context else 0,
            )
            for event in span.events
            if event.name in _EVENT_NAMES
        ]
        if not found:
            return
        with self._lock:
            for capture in captures:
                capture.events.extend(found)
                capture.spans.append(span)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


_install_lock = threading.Lock()
_processors: dict[int, _CaptureProcessor] = {}


def _processor_for(provider: TracerProvider) -> _CaptureProcessor:
    with _install_lock:
        processor = _processors.get(id(provider))
        if processor is None:
            processor = _CaptureProcessor()
            provider.add_span_processor(processor)
            _processors[id(provider)] = processor
        return processor


def _global_sdk_provider() -> TracerProvider:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        return provider
    if type(provider).__name__ == "ProxyTracerProvider":
        trace.set_tracer_provider(TracerProvider())
        provider = trace.get_tracer_provider()
        if isinstance(provider, TracerProvider):
            return provider
    raise RuntimeError(
        "usermon.testing.capture_events needs an OpenTelemetry SDK TracerProvider; the global "
        f"tracer provider is a {type(provider).__name__}. Pass tracer_provider=..."
    )


@contextlib.contextmanager
def capture_events(*, tracer_provider: TracerProvider | None = None) -> Iterator[CapturedEvents]:
    """Capture the usermon events of spans that end inside the ``with`` block.

    ``tracer_provider`` defaults to the global one (installed if none is set yet).
    """
    processor = _processor_for(tracer_provider or _global_sdk_provider())
    capture = CapturedEvents()
    processor.open(capture)
    try:
        yield capture
    finally:
        processor.close(capture)


@contextlib.contextmanager
def configured(**options: object) -> Iterator[_settings.Settings]:
    """Apply :func:`usermon.configure` options inside the block, then restore the previous ones.

    Options passed as ``None`` are removed for the block (the environment applies).
    """
    previous = _settings.snapshot_overrides()
    try:
        yield _settings.configure(**options)
    finally:
        _settings.restore_overrides(previous)
