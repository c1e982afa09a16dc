"""The startup check that usermon's events can leave the process at all.

usermon records on whatever OpenTelemetry providers the application set up. When there are none
(no SDK installed, or an SDK configuration that failed half way, as ``opentelemetry-instrument``
does when the exporter it was asked for is not installed), every event goes to the API's no-op
providers, which are silent by design: the application serves, the processor sees nobody.
:func:`warn_if_not_exported` looks once, when usermon's instrumentors start, and says so in one
WARNING on the ``usermon`` logger with the likely fix. Only the OpenTelemetry API and the stdlib
are imported; the SDK is looked at only when it is already loaded.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, Final

from opentelemetry import _logs, trace

from usermon.settings import EventSignal, Mode, Settings

__all__ = ["export_problem", "warn_if_not_exported"]

_logger = logging.getLogger("usermon")

_NO_OP_PROVIDERS: Final = frozenset(
    {"ProxyTracerProvider", "NoOpTracerProvider", "ProxyLoggerProvider", "NoOpLoggerProvider"}
)
"""The API's own providers: what ``get_*_provider()`` returns while no SDK has been set."""

_HINT: Final = (
    "Under opentelemetry-instrument, an earlier error of the launcher says why (e.g. "
    "\"Requested component 'otlp_proto_grpc' not found\": the OTLP exporter of that protocol is "
    "not installed). Install the exporter with pip install 'usermon[sdk]' (opentelemetry-sdk and "
    "opentelemetry-exporter-otlp) and set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf with an "
    "OTLP/HTTP endpoint (a Collector's :4318, or usermon serve's :4400). In code, set the SDK's "
    "providers before calling instrument()."
)

_lock = threading.Lock()
_checked = False


def _describe(provider: Any) -> str:
    return type(provider).__name__


def _tracer_problem(provider: Any) -> str | None:
    if _describe(provider) in _NO_OP_PROVIDERS:
        name = _describe(provider)
        return f"no OpenTelemetry SDK tracer provider is set (the global one is {name})"
    sdk_trace = sys.modules.get("opentelemetry.sdk.trace")
    if sdk_trace is not None and isinstance(provider, sdk_trace.TracerProvider):
        # The SDK keeps its processors privately; when that changes, assume they are there.
        active = getattr(provider, "_active_span_processor", None)
        processors = getattr(active, "_span_processors", None)
        if processors is not None and len(processors) == 0:
            return (
                "the OpenTelemetry SDK tracer provider has no span processor, so no exporter "
                "(OTEL_TRACES_EXPORTER=none?)"
            )
    return None


def _logger_problem(provider: Any) -> str | None:
    if _describe(provider) in _NO_OP_PROVIDERS:
        name = _describe(provider)
        return f"no OpenTelemetry SDK logger provider is set (the global one is {name})"
    return None


def export_problem(
    signal: EventSignal,
    *,
    tracer_provider: Any = None,
    logger_provider: Any = None,
) -> str | None:
    """Why events on ``signal`` would be dropped by these providers (default: the global ones),
    or ``None`` when they have somewhere to go. With ``both``, one working signal is enough."""
    problems: list[str] = []
    if signal in (EventSignal.SPAN, EventSignal.BOTH):
        tracer = trace.get_tracer_provider() if tracer_provider is None else tracer_provider
        if (problem := _tracer_problem(tracer)) is None:
            return None
        problems.append(problem)
    if signal in (EventSignal.LOGS, EventSignal.BOTH):
        logs = _logs.get_logger_provider() if logger_provider is None else logger_provider
        if (problem := _logger_problem(logs)) is None:
            return None
        problems.append(problem)
    return "; ".join(problems) or None


def warn_if_not_exported(settings: Settings) -> None:
    """Log one WARNING, the first time usermon starts in this process, if its events would be
    dropped. Never raises: this is advice, and a failure here must not stop an instrumentor."""
    global _checked
    with _lock:
        if _checked:
            return
        _checked = True
    try:
        if settings.mode is Mode.DISABLED and settings.auto_mode is Mode.DISABLED:
            return
        problem = export_problem(settings.event_signal)
        if problem is not None:
            _logger.warning(
                "usermon: login and signup events will NOT be exported: %s. %s", problem, _HINT
            )
    except Exception:
        _logger.debug("usermon: the export check failed", exc_info=True)


def _reset() -> None:
    """Forget that the check ran (tests)."""
    global _checked
    with _lock:
        _checked = False
