"""Decoding OTLP export requests (protobuf and OTLP/JSON) into events."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from usermon import attributes as A
from usermon.processor import otlp
from usermon.processor.model import Event
from usermon.processor.otlp import (
    MAX_USER_AGENT_LENGTH,
    MAX_VALUE_LENGTH,
    Decoded,
    MalformedRequest,
    decode_logs,
    decode_traces,
)

from .payloads import (
    T0,
    json_traces,
    log_record,
    login_attributes,
    logs_request,
    span,
    traces_request,
)
from .wire import GROUP, LOG_WIRE, NANOS, WIRE_CASES, ffield, lfield, log_request, vfield


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


_ATTEMPT: dict[str, Any] = {
    "kind": "login",
    "time": 1_750_000_000.5,
    "success": False,
    "user_hash": "ab" * 32,
    "user_id": "ann@example.com",
    "primary_key": "email",
    "identifiers": (("email", "ann@example.com"),),
    "client_ip": "192.0.2.1",
    "user_agent": "Mozilla/5.0",
    "exists": True,
    "source": "django",
    "service": "shop",
    "trace_id": "0af7651916cd43dd8448eb211c80319c",
    "span_id": "b7ad6b7169203331",
    "time_ns": 1_750_000_000_500_000_123,
}


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({}, "9bf84c372534094423a84cba"),
        (
            {"identifiers": (("email", "ann@example.com"), ("platform_id", "7"))},
            "b17eed4fb70a4d5179800283",
        ),
        ({"blocked": True}, "21579fa9f3295ade73af3b54"),
        (
            {
                "identifiers": (),
                "user_hash": None,
                "user_id": None,
                "trace_id": None,
                "span_id": None,
                "time_ns": 0,
                "exists": None,
                "success": True,
            },
            "cc0d7839cc823cfbc4b4555c",
        ),
    ],
)
def test_the_dedupe_key_of_an_attempt_does_not_change_between_versions(
    changes: dict[str, Any], key: str
) -> None:
    """Dedupe maps are checkpointed and the journal is replayed against them (after an upgrade
    too, and by replicas of two versions sharing Redis): the key of an attempt is what the
    versions before computed, however it is computed now."""
    assert Event(**{**_ATTEMPT, **changes}).dedupe_key == key


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


# -- encodings upb accepts, and what they decode to ------------------------------------------------


@pytest.mark.parametrize("name", WIRE_CASES)
def test_hand_made_encodings_decode(name: str) -> None:
    assert isinstance(decode_traces(WIRE_CASES[name]), Decoded)


def test_hand_made_encodings_give_the_values_protobuf_gives() -> None:
    def user_id(name: str) -> str | None:
        return decode_traces(WIRE_CASES[name]).events[0].user_id

    assert user_id("bool value 2") == "true"
    assert user_id("negative int value") == "-5"
    assert user_id("double value") == "-0.0"
    assert user_id("array value") is None
    assert user_id("unset value") is None
    (zero_ids,) = decode_traces(WIRE_CASES["all-zero trace id, 3-byte span id"]).events
    assert (zero_ids.trace_id, zero_ids.span_id) == (None, "000102")
    (no_time,) = decode_traces(WIRE_CASES["no event time: the span's start"]).events
    assert no_time.time == pytest.approx(T0)
    (span_ip,) = decode_traces(WIRE_CASES["address only on the span, twice (last wins)"]).events
    assert span_ip.client_ip == "192.0.2.2"
    (int_service,) = decode_traces(WIRE_CASES["service.name an int"]).events
    assert int_service.service == "5"
    (first_service,) = decode_traces(WIRE_CASES["two service.name attributes (first wins)"]).events
    assert first_service.service == "shop"
    (twice,) = decode_traces(WIRE_CASES["an attribute key twice (last wins)"]).events
    assert twice.success is True


@pytest.mark.parametrize("name", LOG_WIRE)
def test_hand_made_log_records_decode(name: str) -> None:
    timed = name != "observed time only"
    decoded = decode_logs(log_request(LOG_WIRE[name] + (ffield(1, NANOS) if timed else b"")))
    assert decoded.rejected_events == 0
    kinds = [e.kind for e in decoded.events]
    expected = {
        "event_name wins over the attribute": ["signup"],
        "the last event.name attribute counts": [],
        "event.name an int": [],
        "event.name unset": [],
    }
    assert kinds == expected.get(name, ["login"])


def test_the_opentelemetry_sdks_own_encoding_decodes_to_the_calls_made() -> None:
    """What the OTLP exporter really sends: usermon's SDK on an SDK span, encoded by
    opentelemetry-exporter-otlp-proto-common."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import usermon

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({A.SERVICE_NAME: "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    context = usermon.TrackContext(client_ip="203.0.113.9", user_agent="curl/8")
    with tracer.start_as_current_span("POST /login"):
        usermon.auth_track(False, email="ada@example.com", context=context)
    with tracer.start_as_current_span("POST /login"):
        usermon.auth_track(True, email="ada@example.com", context=context)
    with tracer.start_as_current_span("POST /signup"):
        usermon.signup_track(email="bob@example.com", context=context)
    body = encode_spans(exporter.get_finished_spans()).SerializeToString()
    decoded = decode_traces(body)
    assert [(e.kind, e.success) for e in decoded.events] == [
        ("login", False),
        ("login", True),
        ("signup", None),
    ]
    assert {e.client_ip for e in decoded.events} == {"203.0.113.9"}
    assert {e.service for e in decoded.events} == {"shop"}
    assert all(e.time_ns > 0 and e.time == e.time_ns / 1e9 for e in decoded.events)


def test_garbage_is_malformed_for_logs_too() -> None:
    for body in (b"\x0a\xff\xff\xff\xff\x0f", b"not protobuf at all \xff\xfe"):
        with pytest.raises(MalformedRequest):
            decode_logs(body)


# -- generated and damaged requests ----------------------------------------------------------------

KEYS = [
    A.LOGIN_SUCCESS,
    A.PRIMARY_KEY,
    A.USER_ID,
    A.USER_HASH,
    A.CLIENT_ADDRESS,
    A.USER_AGENT,
    A.USER_EXISTS,
    A.SOURCE,
    A.SCHEMA,
    A.IDENTIFIER_PREFIX + "email",
    A.IDENTIFIER_PREFIX + "platform_id",
    A.IDENTIFIER_PREFIX,
    *A.LEGACY_CLIENT_ADDRESSES,
    A.SERVICE_NAME,
    "event.name",
    "",
]
texts = st.one_of(
    st.sampled_from(
        ["", "true", "FALSE", "0", "1", "email", "203.0.113.7", A.LOGIN_EVENT, A.SIGNUP_EVENT]
    ),
    st.text(max_size=12),
)
scalars = st.one_of(
    texts.map(lambda s: common_pb2.AnyValue(string_value=s)),
    st.booleans().map(lambda b: common_pb2.AnyValue(bool_value=b)),
    st.integers(-(2**63), 2**63 - 1).map(lambda i: common_pb2.AnyValue(int_value=i)),
    st.floats().map(lambda d: common_pb2.AnyValue(double_value=d)),
    st.binary(max_size=4).map(lambda b: common_pb2.AnyValue(bytes_value=b)),
    st.just(common_pb2.AnyValue()),
)
any_values = st.one_of(
    scalars,
    st.lists(scalars, max_size=2).map(
        lambda vs: common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=vs))
    ),
    st.lists(st.tuples(st.sampled_from(KEYS), scalars), max_size=2).map(
        lambda kvs: common_pb2.AnyValue(
            kvlist_value=common_pb2.KeyValueList(
                values=[common_pb2.KeyValue(key=k, value=v) for k, v in kvs]
            )
        )
    ),
)
key_values = st.builds(
    lambda k, v, has_value: (
        common_pb2.KeyValue(key=k, value=v) if has_value else common_pb2.KeyValue(key=k)
    ),
    st.one_of(st.sampled_from(KEYS), st.text(max_size=8)),
    any_values,
    st.booleans(),
)
attribute_lists = st.lists(key_values, max_size=6)
names = st.sampled_from([A.LOGIN_EVENT, A.SIGNUP_EVENT, "usermon.logout", "", "exception"])
times = st.one_of(st.just(0), st.just(NANOS), st.integers(0, 2**64 - 1))
ids = st.one_of(st.binary(max_size=17), st.just(bytes(16)), st.just(bytes(8)))
span_events = st.builds(
    trace_pb2.Span.Event,
    name=names,
    time_unix_nano=times,
    attributes=attribute_lists,
    dropped_attributes_count=st.integers(0, 3),
)
spans = st.builds(
    trace_pb2.Span,
    trace_id=ids,
    span_id=ids,
    name=st.text(max_size=5),
    start_time_unix_nano=times,
    attributes=attribute_lists,
    events=st.lists(span_events, max_size=2),
    links=st.lists(st.builds(trace_pb2.Span.Link, trace_id=ids), max_size=1),
)
resources = st.builds(resource_pb2.Resource, attributes=attribute_lists)
trace_requests = st.builds(
    trace_service_pb2.ExportTraceServiceRequest,
    resource_spans=st.lists(
        st.builds(
            trace_pb2.ResourceSpans,
            resource=resources,
            scope_spans=st.lists(
                st.builds(trace_pb2.ScopeSpans, spans=st.lists(spans, max_size=2)), max_size=2
            ),
        ),
        max_size=2,
    ),
)
log_records = st.builds(
    logs_pb2.LogRecord,
    time_unix_nano=times,
    observed_time_unix_nano=times,
    event_name=names,
    trace_id=ids,
    span_id=ids,
    attributes=attribute_lists,
    body=any_values,
)
log_requests = st.builds(
    logs_service_pb2.ExportLogsServiceRequest,
    resource_logs=st.lists(
        st.builds(
            logs_pb2.ResourceLogs,
            resource=resources,
            scope_logs=st.lists(
                st.builds(logs_pb2.ScopeLogs, log_records=st.lists(log_records, max_size=3)),
                max_size=2,
            ),
        ),
        max_size=3,
    ),
)
generated = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _every_event_is_usable(decoded: Decoded) -> None:
    for event in decoded.events:
        assert event.time_ns > 0
        assert event.success in ((None,) if event.kind == "signup" else (True, False))


@generated
@given(trace_requests)
def test_generated_trace_requests_decode(
    request: trace_service_pb2.ExportTraceServiceRequest,
) -> None:
    _every_event_is_usable(decode_traces(request.SerializeToString()))


@generated
@given(log_requests)
def test_generated_log_requests_decode(request: logs_service_pb2.ExportLogsServiceRequest) -> None:
    _every_event_is_usable(decode_logs(request.SerializeToString()))


def mutate(body: bytes, data: st.DataObject) -> bytes:
    """One random damage: truncation, a flipped byte, inserted bytes, a spliced copy of a slice
    (repeating fields), or a hand-made field appended."""
    if not body:
        return data.draw(st.binary(max_size=8))
    i = data.draw(st.integers(0, len(body)))
    j = data.draw(st.integers(i, len(body)))
    how = data.draw(st.sampled_from(["truncate", "flip", "insert", "splice", "append"]))
    if how == "truncate":
        return body[:i]
    if how == "flip" and i < len(body):
        return body[:i] + bytes([body[i] ^ data.draw(st.integers(1, 255))]) + body[i + 1 :]
    if how == "insert":
        return body[:i] + data.draw(st.binary(min_size=1, max_size=4)) + body[i:]
    if how == "splice":
        return body[:j] + body[i:j] + body[j:]
    return body + data.draw(st.sampled_from([GROUP, vfield(1, 3), lfield(1, b""), ffield(1, 1)]))


@generated
@given(trace_requests, log_requests, st.data())
def test_damaged_requests_decode_or_are_malformed(
    traces: trace_service_pb2.ExportTraceServiceRequest,
    logs: logs_service_pb2.ExportLogsServiceRequest,
    data: st.DataObject,
) -> None:
    for decode, body in (
        (decode_traces, traces.SerializeToString()),
        (decode_logs, logs.SerializeToString()),
    ):
        for _ in range(3):
            body = mutate(body, data)
            with contextlib.suppress(MalformedRequest):
                _every_event_is_usable(decode(body))


# -- issue 12: what one request could do -----------------------------------------------------------

ISSUE_12_CRASH = bytes.fromhex(
    "0a4a124812460a1001010101010101010101010101010101120801010101010101014a170a0e636c69656e742e"
    "6164647265737312050a017818015a0f120d757365726d6f6e2e6c6f67696e"
)
"""76 bytes that made the C walker read freed memory (SIGSEGV): a login event without a time on
a span whose client.address AnyValue holds two members (a string, then an int)."""


def test_the_body_that_crashed_the_c_walker_decodes_as_upb_reads_it() -> None:
    decoded = decode_traces(ISSUE_12_CRASH)
    assert decoded.events == []
    assert (decoded.rejected_items, decoded.rejected_events) == (1, 1)
    assert decoded.reasons == ["usermon event without a timestamp"]


def test_the_c_walker_is_gone() -> None:
    """One decode path: what upb parsed, walked in Python (issue 12's decision)."""
    import importlib.util
    from pathlib import Path

    assert importlib.util.find_spec("usermon.processor._otlpwalk") is None
    assert not list(Path(otlp.__file__).parent.glob("_otlpwalk*"))


def _json_login(attrs: dict[str, Any], **event: Any) -> bytes:
    """An OTLP/JSON traces body of one login with these raw JSON attribute values."""
    data = json.loads(json_traces(7, login_attributes()))
    ev = data["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["events"][0]
    kept = [kv for kv in ev["attributes"] if kv["key"] not in attrs]
    ev["attributes"] = kept + [{"key": k, "value": v} for k, v in attrs.items()]
    ev.update(event)
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    "key",
    [
        A.USER_ID,
        A.USER_HASH,
        A.USER_AGENT,
        A.IDENTIFIER_PREFIX + "email",
        A.CLIENT_ADDRESS,
        A.SOURCE,
        A.PRIMARY_KEY,
    ],
)
def test_a_lone_surrogate_in_otlp_json_rejects_the_event(key: str) -> None:
    body = _json_login({key: {"stringValue": "x\ud800"}})
    assert b"\\ud800" in body  # the JSON escape, as a sender writes it
    decoded = decode_traces(body, json_format=True)
    assert decoded.events == []
    assert (decoded.rejected_items, decoded.rejected_events) == (1, 1)
    assert "surrogate" in decoded.reasons[0]


def test_a_lone_surrogate_in_the_service_name_or_a_log_record_rejects_the_event() -> None:
    data = json.loads(json_traces(7, login_attributes()))
    data["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"] = "\udfff"
    decoded = decode_traces(json.dumps(data).encode(), json_format=True)
    assert (len(decoded.events), decoded.rejected_events) == (0, 1)
    record = {
        "eventName": A.LOGIN_EVENT,
        "timeUnixNano": str(NANOS),
        "attributes": [
            {"key": A.LOGIN_SUCCESS, "value": {"boolValue": True}},
            {"key": A.USER_HASH, "value": {"stringValue": "\ud800"}},
        ],
    }
    body = json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]}).encode()
    decoded = decode_logs(body, json_format=True)
    assert (len(decoded.events), decoded.rejected_events) == (0, 1)


def test_otlp_json_that_is_not_utf_8_is_malformed() -> None:
    """json.loads on bytes would take surrogates encoded in the body (CESU-8 bytes, UTF-16)."""
    body = _json_login({A.USER_ID: {"stringValue": "@@"}})
    with pytest.raises(MalformedRequest, match="UTF-8"):
        decode_traces(body.replace(b"@@", b"\xed\xa0\x80"), json_format=True)
    utf16 = body.decode().replace("@@", "\ud800").encode("utf-16-le", "surrogatepass")
    with pytest.raises(MalformedRequest, match="UTF-8"):
        decode_traces(utf16, json_format=True)
    assert len(decode_traces(b"\xef\xbb\xbf" + body, json_format=True).events) == 1  # a BOM


def test_surrogate_pairs_and_other_unicode_in_otlp_json_are_kept() -> None:
    body = _json_login({A.USER_ID: {"stringValue": "\ud83d\ude00 \u00e9l\u00e8ve"}})
    (event,) = decode_traces(body, json_format=True).events
    assert event.user_id == "\U0001f600 élève"


def test_a_user_agent_is_cut_to_its_cap() -> None:
    agent = "Mozilla/5.0 " + "x" * (1 << 20)
    (event,) = decode_traces(traces_request([span(7, login_attributes(user_agent=agent))])).events
    assert event.user_agent == agent[:MAX_USER_AGENT_LENGTH]


@pytest.mark.parametrize(
    "key",
    [
        A.USER_ID,
        A.USER_HASH,
        A.IDENTIFIER_PREFIX + "email",
        A.CLIENT_ADDRESS,
        A.SOURCE,
        A.PRIMARY_KEY,
    ],
)
def test_a_value_over_its_cap_rejects_the_event(key: str) -> None:
    at_cap = decode_traces(
        traces_request([span(7, {**login_attributes(), key: "a" * MAX_VALUE_LENGTH})])
    )
    assert len(at_cap.events) == 1
    over = decode_traces(
        traces_request([span(7, {**login_attributes(), key: "a" * (MAX_VALUE_LENGTH + 1)})])
    )
    assert (len(over.events), over.rejected_items, over.rejected_events) == (0, 1, 1)
    assert "cap" in over.reasons[0]


def test_a_service_name_over_its_cap_rejects_its_events() -> None:
    body = traces_request([span(7, login_attributes())], service="s" * (MAX_VALUE_LENGTH + 1))
    decoded = decode_traces(body)
    assert (len(decoded.events), decoded.rejected_events) == (0, 1)


def test_identifier_names_and_counts_are_capped() -> None:
    long_name = {**login_attributes(), A.IDENTIFIER_PREFIX + "k" * 65: "v"}
    assert decode_traces(traces_request([span(7, long_name)])).rejected_events == 1
    many = {**login_attributes(), **{f"{A.IDENTIFIER_PREFIX}k{i}": "v" for i in range(16)}}
    assert decode_traces(traces_request([span(7, many)])).rejected_events == 1
    fifteen = {**login_attributes(), **{f"{A.IDENTIFIER_PREFIX}k{i}": "v" for i in range(15)}}
    assert len(decode_traces(traces_request([span(7, fifteen)])).events) == 1


def test_the_decoders_string_tables_are_bounded_in_characters() -> None:
    """A thousand distinct 1 MiB User-Agents once pinned a GiB in the shared-string table."""
    for i in range(200):
        agent = f"{i} " + "x" * (1 << 20)
        decode_traces(traces_request([span(7, login_attributes(user_agent=agent))]))
    assert sum(map(len, otlp._SHARED)) <= otlp._MAX_SHARED_CHARS
    for i in range(50):
        attrs = {**login_attributes(), f"k{i}" + "x" * 100_000: "v"}
        decode_traces(traces_request([span(7, attrs)]))
    assert sum(len(k) for keys in otlp._IDENTIFIER_KEYS for k in keys) <= 1024 * 2048


@pytest.mark.parametrize(
    "time",
    [1e400, -1e400, "1e400", 2**64, -1, True, 1.5, {"a": 1}, [1]],
)
def test_a_json_time_that_is_not_a_64_bit_integer_is_malformed(time: Any) -> None:
    body = _json_login({}).replace(str(NANOS).encode(), b"@@", 1)
    data = json.loads(body)
    ev = data["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["events"][0]
    ev["timeUnixNano"] = time
    with pytest.raises(MalformedRequest):
        decode_traces(json.dumps(data).encode(), json_format=True)


@pytest.mark.parametrize(
    "value",
    [
        {"intValue": 1e400},
        {"intValue": -1e400},
        {"intValue": 2**63},
        {"intValue": "NaN"},
        {"intValue": True},
        {"stringValue": 5},
        {"stringValue": ["x"]},
        {"boolValue": "true"},
        {"doubleValue": "many"},
        {"doubleValue": None},
    ],
)
def test_a_json_value_of_the_wrong_type_or_out_of_range_is_malformed(value: Any) -> None:
    with pytest.raises(MalformedRequest):
        decode_traces(_json_login({A.USER_ID: value}), json_format=True)


def test_json_infinity_as_a_double_is_a_value_not_a_crash() -> None:
    (event,) = decode_traces(
        _json_login({A.USER_ID: {"doubleValue": 1e400}}), json_format=True
    ).events
    assert event.user_id == "inf"


@pytest.mark.parametrize(
    "value",
    [
        {"doubleValue": 1.0},
        {"doubleValue": "NaN"},
        {"doubleValue": 0.0},
        {"intValue": "-1"},
        {"intValue": "1"},
        {"stringValue": "yes"},
        {"stringValue": "1"},
        {},
    ],
)
def test_a_login_whose_outcome_is_not_a_boolean_is_rejected(value: Any) -> None:
    decoded = decode_traces(_json_login({A.LOGIN_SUCCESS: value}), json_format=True)
    assert (len(decoded.events), decoded.rejected_events) == (0, 1)
    assert decoded.reasons == [f"login event without a boolean {A.LOGIN_SUCCESS}"]


@pytest.mark.parametrize("value", [-1, 2, 0])
def test_a_protobuf_login_with_an_int_or_double_outcome_is_rejected(value: int) -> None:
    attrs = {**login_attributes(), A.LOGIN_SUCCESS: value}
    decoded = decode_traces(traces_request([span(7, attrs)]))
    assert (decoded.events, decoded.rejected_events) == ([], 1)
    double = common_pb2.KeyValue(
        key=A.LOGIN_SUCCESS, value=common_pb2.AnyValue(double_value=float("nan"))
    )
    request = trace_service_pb2.ExportTraceServiceRequest()
    request.ParseFromString(traces_request([span(7, login_attributes())]))
    request.resource_spans[0].scope_spans[0].spans[0].events[0].attributes.append(double)
    assert decode_traces(request.SerializeToString()).rejected_events == 1


@pytest.mark.parametrize(("text", "success"), [("true", True), (" FALSE ", False)])
def test_a_login_outcome_sent_as_the_text_true_or_false_is_read(text: str, success: bool) -> None:
    (event,) = decode_traces(
        traces_request([span(7, {**login_attributes(), A.LOGIN_SUCCESS: text})])
    ).events
    assert event.success is success


def test_events_at_nanoseconds_apart_keep_their_exact_times() -> None:
    request = trace_service_pb2.ExportTraceServiceRequest()
    request.ParseFromString(traces_request([span(7, login_attributes())]))
    events = request.resource_spans[0].scope_spans[0].spans[0].events
    for i in (1, 2):
        copy = events.add()
        copy.CopyFrom(events[0])
        copy.time_unix_nano += i
    decoded = decode_traces(request.SerializeToString())
    assert [e.time_ns - decoded.events[0].time_ns for e in decoded.events] == [0, 1, 2]
