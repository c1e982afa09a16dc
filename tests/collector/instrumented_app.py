"""The instrumented application of the Collector tests, run as its own process.

It does what a web app with usermon does: for each scripted request it opens a SERVER span and,
for a login or a signup, calls ``usermon.auth_track`` / ``usermon.signup_track`` inside it; the
OpenTelemetry SDK exports OTLP/HTTP to ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the Collector) with the
usual batch processor, and everything is flushed at exit.

    python instrumented_app.py SERVICE PACE SIGNAL < actions.json

SERVICE is ``service.name``; PACE seconds pass between requests; SIGNAL is the SDK's
event_signal (``span``, ``logs`` or ``both``). Each action is a JSON object:
``{"kind": "login", "email", "success", "ip"}``, ``{"kind": "signup", "email", "ip"}``,
``{"kind": "plain", "route"}`` (a request without usermon), or ``{"kind": "raw", "name",
"attributes", "event"}`` (a span with exactly those attributes and optionally one bare event).
"""

from __future__ import annotations

import json
import sys
import time

from opentelemetry import trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import usermon

USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) usermon-collector-test"


def main() -> None:
    service, pace, event_signal = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    actions = json.load(sys.stdin)

    resource = Resource.create({"service.name": service})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(), schedule_delay_millis=100)
    )
    trace.set_tracer_provider(tracer_provider)
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(), schedule_delay_millis=100)
    )
    set_logger_provider(logger_provider)
    usermon.configure(mode="identification", event_signal=event_signal)

    tracer = trace.get_tracer("shop")
    for action in actions:
        kind = action["kind"]
        if kind == "raw":
            with tracer.start_as_current_span(
                action["name"], attributes=action["attributes"]
            ) as span:
                if action.get("event"):
                    span.add_event(action["event"], {"note": "not from usermon"})
        elif kind == "plain":
            with tracer.start_as_current_span(action["route"], kind=trace.SpanKind.SERVER):
                pass
        else:
            context = usermon.TrackContext(client_ip=action["ip"], user_agent=USER_AGENT)
            route = "POST /login" if kind == "login" else "POST /signup"
            with tracer.start_as_current_span(route, kind=trace.SpanKind.SERVER):
                if kind == "login":
                    usermon.auth_track(action["success"], email=action["email"], context=context)
                else:
                    usermon.signup_track(email=action["email"], context=context)
        if pace:
            time.sleep(pace)

    tracer_provider.shutdown()
    logger_provider.shutdown()


if __name__ == "__main__":
    main()
