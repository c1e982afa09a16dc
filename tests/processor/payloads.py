"""OTLP export requests carrying usermon events, built with opentelemetry-proto."""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from usermon import attributes as A

T0 = 1_750_000_000.0


def login_attributes(
    user: str = "alice@example.com",
    *,
    success: bool = False,
    ip: str = "203.0.113.7",
    user_hash: str | None = None,
    user_agent: str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
) -> dict[str, Any]:
    return {
        A.LOGIN_SUCCESS: success,
        A.PRIMARY_KEY: "email",
        A.IDENTIFIER_PREFIX + "email": user,
        A.USER_ID: user,
        A.USER_HASH: user_hash or f"h-{user}",
        A.CLIENT_ADDRESS: ip,
        A.USER_AGENT: user_agent,
        A.SOURCE: A.SOURCE_SDK,
    }


def _kv(key: str, value: Any) -> common_pb2.KeyValue:
    if isinstance(value, bool):
        v = common_pb2.AnyValue(bool_value=value)
    elif isinstance(value, int):
        v = common_pb2.AnyValue(int_value=value)
    else:
        v = common_pb2.AnyValue(string_value=str(value))
    return common_pb2.KeyValue(key=key, value=v)


def span(
    trace_id: int,
    attrs: dict[str, Any],
    t: float = T0,
    name: str = A.LOGIN_EVENT,
    span_id: int | None = None,
) -> trace_pb2.Span:
    nanos = int(t * 1e9)
    return trace_pb2.Span(
        trace_id=trace_id.to_bytes(16, "big"),
        span_id=(span_id or trace_id).to_bytes(8, "big"),
        name="POST /login",
        start_time_unix_nano=nanos,
        end_time_unix_nano=nanos + 1000,
        attributes=[_kv(A.TRACKED, True)],
        events=[
            trace_pb2.Span.Event(
                name=name,
                time_unix_nano=nanos,
                attributes=[_kv(k, v) for k, v in attrs.items()],
            )
        ],
    )


def traces_request(spans: list[trace_pb2.Span], service: str = "shop") -> bytes:
    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource_pb2.Resource(attributes=[_kv(A.SERVICE_NAME, service)]),
                scope_spans=[trace_pb2.ScopeSpans(spans=spans)],
            )
        ]
    )
    return request.SerializeToString()


def logins(n: int, *, t0: float = T0, user: str = "alice@example.com", **kw: Any) -> bytes:
    """``n`` login span events, one per span, a second apart."""
    return traces_request([span(1000 + i, login_attributes(user, **kw), t0 + i) for i in range(n)])


def log_record(
    trace_id: int, attrs: dict[str, Any], t: float = T0, name: str = A.LOGIN_EVENT
) -> logs_pb2.LogRecord:
    nanos = int(t * 1e9)
    return logs_pb2.LogRecord(
        time_unix_nano=nanos,
        observed_time_unix_nano=nanos,
        event_name=name,
        trace_id=trace_id.to_bytes(16, "big"),
        span_id=trace_id.to_bytes(8, "big"),
        attributes=[_kv(k, v) for k, v in attrs.items()],
    )


def logs_request(records: list[logs_pb2.LogRecord], service: str = "shop") -> bytes:
    request = logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                resource=resource_pb2.Resource(attributes=[_kv(A.SERVICE_NAME, service)]),
                scope_logs=[logs_pb2.ScopeLogs(log_records=records)],
            )
        ]
    )
    return request.SerializeToString()


def json_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    return {"stringValue": str(value)}


def json_traces(trace_id: int, attrs: dict[str, Any], t: float = T0) -> bytes:
    nanos = str(int(t * 1e9))
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": A.SERVICE_NAME, "value": {"stringValue": "shop"}}]
                    },
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": f"{trace_id:032x}",
                                    "spanId": f"{trace_id:016x}",
                                    "name": "POST /login",
                                    "startTimeUnixNano": nanos,
                                    "endTimeUnixNano": nanos,
                                    "events": [
                                        {
                                            "name": A.LOGIN_EVENT,
                                            "timeUnixNano": nanos,
                                            "attributes": [
                                                {"key": k, "value": json_value(v)}
                                                for k, v in attrs.items()
                                            ],
                                        }
                                    ],
                                }
                            ]
                        }
                    ],
                }
            ]
        }
    ).encode()
