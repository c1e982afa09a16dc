"""Generated events as OTLP: ``ExportTraceServiceRequest`` batches shaped as the SDK exports them.

Each event becomes one SERVER span (``POST /login`` or ``POST /signup``) marked
``usermon.tracked``, carrying one ``usermon.login`` / ``usermon.signup`` span event with the
contract's attributes (:mod:`usermon.attributes`) at the event's own timestamp, and, after a
successful login or a signup, ``user.hash`` / ``user.id`` on the span. Trace and span ids are the
events', so a finding's evidence can be matched back to the generated ground truth. Batches
group spans by ``service.name`` as an SDK's BatchSpanProcessor would.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from usermon import attributes
from usermon.processor.model import Event


def _kv(key: str, value: str | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def event_attributes(event: Event) -> list[KeyValue]:
    """The span event's attributes for ``event``, as the SDK records them."""
    values: list[tuple[str, Any]] = []
    if event.kind == "login" and event.success is not None:
        values.append((attributes.LOGIN_SUCCESS, event.success))
    values += [
        (attributes.PRIMARY_KEY, event.primary_key),
        *((attributes.IDENTIFIER_PREFIX + k, v) for k, v in event.identifiers),
        (attributes.USER_ID, event.user_id),
        (attributes.USER_HASH, event.user_hash),
        (attributes.CLIENT_ADDRESS, event.client_ip),
        (attributes.USER_AGENT, event.user_agent),
        (attributes.USER_EXISTS, event.exists),
        (attributes.SOURCE, event.source),
    ]
    return [_kv(k, v) for k, v in values if v is not None]


def to_span(event: Event) -> trace_pb2.Span:
    """One SERVER span carrying ``event``; its ids are the event's."""
    t = int(event.time * 1e9)
    login = event.kind == "login"
    span = trace_pb2.Span(
        trace_id=bytes.fromhex(event.trace_id or "0" * 31 + "1"),
        span_id=bytes.fromhex(event.span_id or "0" * 15 + "1"),
        name="POST /login" if login else "POST /signup",
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=t - 2_000_000,
        end_time_unix_nano=t + 3_000_000,
        attributes=[_kv(attributes.TRACKED, True)],
        events=[
            trace_pb2.Span.Event(
                time_unix_nano=t,
                name=attributes.LOGIN_EVENT if login else attributes.SIGNUP_EVENT,
                attributes=event_attributes(event),
            )
        ],
    )
    if (not login or event.success) and event.user_hash:
        span.attributes.append(_kv(attributes.USER_HASH, event.user_hash))
        if event.user_id:
            span.attributes.append(_kv(attributes.USER_ID, event.user_id))
    return span


def to_request(events: Iterable[Event]) -> ExportTraceServiceRequest:
    """One export request carrying ``events``, one resource per ``service.name``."""
    request = ExportTraceServiceRequest()
    by_service: dict[str, trace_pb2.ScopeSpans] = {}
    for event in events:
        service = event.service or "unknown_service"
        scope = by_service.get(service)
        if scope is None:
            resource_spans = request.resource_spans.add()
            resource_spans.resource.attributes.append(_kv(attributes.SERVICE_NAME, service))
            scope = resource_spans.scope_spans.add()
            scope.scope.name = "usermon"
            by_service[service] = scope
        scope.spans.append(to_span(event))
    return request


def batches(events: Iterable[Event], size: int = 512) -> Iterator[ExportTraceServiceRequest]:
    """``events`` in export requests of at most ``size`` spans, in order."""
    it = iter(events)
    while chunk := list(islice(it, size)):
        yield to_request(chunk)
