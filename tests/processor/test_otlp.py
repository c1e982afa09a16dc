"""Decoding OTLP export requests (protobuf and OTLP/JSON) into events."""

from __future__ import annotations

import json

import pytest

from usermon import attributes as A
from usermon.processor.otlp import MalformedRequest, decode_logs, decode_traces

from .payloads import (
    T0,
    json_traces,
    log_record,
    login_attributes,
    logs_request,
    span,
    traces_request,
)


def test_a_login_span_event_becomes_an_event_with_the_resource_service() -> None:
    decoded = decode_traces(traces_request([span(7, login_attributes(success=True))]))
    assert decoded.rejected_events == 0
    (event,) = decoded.events
    assert event.kind == "login"
    assert event.success is True
    assert event.time == pytest.approx(T0)
    assert event.user_hash == "h-alice@example.com"
    assert event.user_id == "alice@example.com"
    assert event.identifiers == (("email", "alice@example.com"),)
    assert event.client_ip == "203.0.113.7"
    assert event.service == "shop"
    assert event.source == "sdk"
    assert event.trace_id == f"{7:032x}"
    assert event.span_id == f"{7:016x}"


def test_spans_without_usermon_events_are_ignored() -> None:
    decoded = decode_traces(traces_request([span(7, {}, name="http.request")]))
    assert decoded.events == []
    assert decoded.rejected_events == 0


def test_a_login_without_its_outcome_is_rejected_with_a_reason() -> None:
    attrs = login_attributes()
    del attrs[A.LOGIN_SUCCESS]
    decoded = decode_traces(traces_request([span(7, attrs), span(8, login_attributes())]))
    assert len(decoded.events) == 1
    assert (decoded.rejected_items, decoded.rejected_events) == (1, 1)
    assert A.LOGIN_SUCCESS in decoded.reasons[0]


def test_an_unknown_schema_version_is_rejected() -> None:
    attrs = {**login_attributes(), A.SCHEMA: 2}
    assert decode_traces(traces_request([span(7, attrs)])).rejected_events == 1


def test_a_signup_needs_no_outcome() -> None:
    decoded = decode_traces(traces_request([span(7, {A.USER_HASH: "h"}, name=A.SIGNUP_EVENT)]))
    assert [e.kind for e in decoded.events] == ["signup"]


def test_a_log_record_with_the_event_name_decodes_like_the_span_event() -> None:
    attrs = login_attributes()
    from_span = decode_traces(traces_request([span(7, attrs)])).events[0]
    from_log = decode_logs(logs_request([log_record(7, attrs)])).events[0]
    assert from_log == from_span
    assert from_log.dedupe_key == from_span.dedupe_key


def test_otlp_json_with_hex_ids_and_string_integers_decodes() -> None:
    (event,) = decode_traces(json_traces(7, login_attributes()), json_format=True).events
    assert event.trace_id == f"{7:032x}"
    assert event.time == pytest.approx(T0)
    assert event.service == "shop"


@pytest.mark.parametrize(
    "body",
    [
        b"\x0a\xff\xff\xff\xff\x0f",  # a length prefix far past the end
        b"not protobuf at all \xff\xfe",
    ],
)
def test_garbage_protobuf_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedRequest):
        decode_traces(body)


def test_a_truncated_protobuf_body_is_malformed() -> None:
    body = traces_request([span(7, login_attributes())])
    with pytest.raises(MalformedRequest):
        decode_traces(body[: len(body) // 2])


@pytest.mark.parametrize(
    "document",
    [
        "[]",
        '{"resourceSpans": {}}',
        '{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz", "events": []}]}]}]}',
        "{not json",
    ],
)
def test_malformed_json_is_rejected(document: str) -> None:
    with pytest.raises(MalformedRequest):
        decode_traces(document.encode(), json_format=True)


def test_bad_json_timestamp_is_malformed() -> None:
    data = json.loads(json_traces(7, login_attributes()))
    data["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["events"][0]["timeUnixNano"] = "soon"
    with pytest.raises(MalformedRequest):
        decode_traces(json.dumps(data).encode(), json_format=True)
