"""The C walker (usermon.processor._otlpwalk) reads exactly what the Python walk reads.

Differential: every body goes through ``decode_traces`` / ``decode_logs`` twice, ``fast=True``
(upb parses, the C walker reads the bytes) and ``fast=False`` (upb parses, Python walks the
message), and both must give equal ``Decoded`` results (events, rejection counts, reasons) or
both raise ``MalformedRequest``. The bodies: every payload shape the other processor tests send,
hand-made wire encodings where protobuf's rules get subtle, hypothesis-generated export requests
with every ``AnyValue`` type, and those requests mutated, truncated and spliced. Where the C
walker is expected to read a body rather than decline it (real exporters' encodings), the tests
say so, or a walker that declined everything would pass.

Without the extension built these tests skip; ``test_the_c_walker_is_built_and_used`` (an
integration test, run by scripts/test and CI) then fails, so a missing build cannot pass for a
green run.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import struct
import subprocess
import sys
from collections.abc import Callable
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
from usermon.processor.otlp import Decoded, MalformedRequest, decode_logs, decode_traces

from .payloads import (
    T0,
    log_record,
    login_attributes,
    logins,
    logs_request,
    span,
    traces_request,
)

BUILT = importlib.util.find_spec("usermon.processor._otlpwalk") is not None
needs_walker = pytest.mark.skipif(
    not BUILT,
    reason="the C walker is not built (python setup.py build_ext --inplace, or pip install -e .)",
)
Outcome = Decoded | tuple[str, str]


def outcome(decode: Callable[..., Decoded], body: bytes, *, fast: bool) -> Outcome:
    try:
        return decode(body, fast=fast)
    except MalformedRequest as exc:
        return ("malformed", str(exc))


def assert_same_traces(body: bytes) -> Outcome:
    fast = outcome(decode_traces, body, fast=True)
    assert fast == outcome(decode_traces, body, fast=False)
    return fast


def assert_same_logs(body: bytes) -> Outcome:
    fast = outcome(decode_logs, body, fast=True)
    assert fast == outcome(decode_logs, body, fast=False)
    return fast


def walked_traces(body: bytes) -> list[Any] | None:
    """The C walker's own answer (None: it declined and the Python walk ran)."""
    from usermon.processor import _otlpwalk

    return _otlpwalk.walk_traces(body, otlp._KINDS, A.SERVICE_NAME, otlp._IP_KEYS)


def walked_logs(body: bytes) -> list[Any] | None:
    from usermon.processor import _otlpwalk

    return _otlpwalk.walk_logs(body, otlp._KINDS, A.SERVICE_NAME, otlp._EVENT_NAME_ATTRIBUTE)


# -- the payloads the other processor tests send ---------------------------------------------------


def _without_success() -> dict[str, Any]:
    attrs = login_attributes()
    del attrs[A.LOGIN_SUCCESS]
    return attrs


TRACE_PAYLOADS = {
    "one login": traces_request([span(7, login_attributes(success=True))]),
    "not a usermon span": traces_request([span(7, {}, name="http.request")]),
    "a login without its outcome, then one with": traces_request(
        [span(7, _without_success()), span(8, login_attributes())]
    ),
    "unknown schema version": traces_request([span(7, {**login_attributes(), A.SCHEMA: 2})]),
    "signup": traces_request([span(7, {A.USER_HASH: "h"}, name=A.SIGNUP_EVENT)]),
    "twenty logins": logins(20, t0=T0 + 20, user="victim@example.com"),
    "logins with an address": logins(2, ip="192.0.2.44"),
    "a late login": traces_request([span(1, login_attributes(user="late@example.com"), T0 + 1e6)]),
    "no timestamp": traces_request([span(7, login_attributes(), t=0)]),
    "string outcome": traces_request([span(7, {**login_attributes(), A.LOGIN_SUCCESS: "true"})]),
    "two identifiers": traces_request(
        [span(7, {**login_attributes(), A.IDENTIFIER_PREFIX + "platform_id": 42})]
    ),
}
LOG_PAYLOADS = {
    "one login": logs_request([log_record(9, login_attributes())]),
    "signup": logs_request([log_record(9, {A.USER_HASH: "h"}, name=A.SIGNUP_EVENT)]),
    "not a usermon record": logs_request([log_record(9, login_attributes(), name="other")]),
    "event.name attribute": logs_request(
        [log_record(9, {**login_attributes(), "event.name": A.LOGIN_EVENT}, name="")]
    ),
    "a login without its outcome": logs_request([log_record(9, _without_success())]),
}


@needs_walker
@pytest.mark.parametrize("name", TRACE_PAYLOADS)
def test_the_test_suites_trace_payloads_decode_the_same_and_are_read_by_c(name: str) -> None:
    body = TRACE_PAYLOADS[name]
    assert walked_traces(body) is not None
    assert isinstance(assert_same_traces(body), Decoded)


@needs_walker
@pytest.mark.parametrize("name", LOG_PAYLOADS)
def test_the_test_suites_log_payloads_decode_the_same_and_are_read_by_c(name: str) -> None:
    body = LOG_PAYLOADS[name]
    assert walked_logs(body) is not None
    assert isinstance(assert_same_logs(body), Decoded)


@needs_walker
def test_what_the_walkers_decode_is_what_the_existing_tests_expect() -> None:
    """Not only equal to each other: right (the fields test_otlp.py checks)."""
    decoded = decode_traces(TRACE_PAYLOADS["a login without its outcome, then one with"], fast=True)
    assert (decoded.rejected_items, decoded.rejected_events) == (1, 1)
    (event,) = decoded.events
    assert event.service == "shop"
    assert event.trace_id == f"{8:032x}"
    assert event.identifiers == (("email", "alice@example.com"),)
    assert event.time == pytest.approx(T0)


@needs_walker
def test_the_opentelemetry_sdks_own_encoding_is_read_by_c() -> None:
    """What the OTLP exporter really sends (usermon's SDK on an SDK span, encoded by
    opentelemetry-exporter-otlp-proto-common) is read by the C walker, not declined."""
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
    assert walked_traces(body) is not None
    decoded = assert_same_traces(body)
    assert isinstance(decoded, Decoded)
    assert [(e.kind, e.success) for e in decoded.events] == [
        ("login", False),
        ("login", True),
        ("signup", None),
    ]
    assert {e.client_ip for e in decoded.events} == {"203.0.113.9"}


# -- hand-made wire encodings ----------------------------------------------------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def vfield(number: int, n: int) -> bytes:
    return varint(number << 3) + varint(n)


def ffield(number: int, n: int) -> bytes:
    return varint(number << 3 | 1) + struct.pack("<Q", n)


def lfield(number: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return varint(number << 3 | 2) + varint(len(data)) + data


def string_value(s: str) -> bytes:
    return lfield(1, s)


def kv(key: str, value: bytes | None) -> bytes:
    return lfield(1, key) + (b"" if value is None else lfield(2, value))


def event(name: str, time: int, *kvs: bytes) -> bytes:
    return ffield(1, time) + lfield(2, name) + b"".join(lfield(3, x) for x in kvs)


NANOS = int(T0 * 1e9)
LOGIN_KVS = [kv(k, string_value(str(v))) for k, v in login_attributes().items()]
LOGIN_KVS[0] = kv(A.LOGIN_SUCCESS, vfield(2, 0))  # a bool, as the SDK sends it
LOGIN = event(A.LOGIN_EVENT, NANOS, *LOGIN_KVS)
TRACE = bytes(range(1, 17))
SPAN_ID = bytes(range(1, 9))


def span_bytes(*fields: bytes) -> bytes:
    return b"".join(fields)


def plain_span(*extra: bytes, events: tuple[bytes, ...] = (LOGIN,)) -> bytes:
    return span_bytes(
        lfield(1, TRACE),
        lfield(2, SPAN_ID),
        lfield(5, "POST /login"),
        ffield(7, NANOS),
        ffield(8, NANOS + 1000),
        lfield(9, kv(A.TRACKED, vfield(2, 1))),
        *extra,
        *(lfield(11, e) for e in events),
    )


RESOURCE = lfield(1, kv(A.SERVICE_NAME, string_value("shop")))


def trace_request(*spans: bytes, resource: bytes = RESOURCE, extra: bytes = b"") -> bytes:
    scope = b"".join(lfield(2, s) for s in spans)
    return lfield(1, lfield(1, resource) + lfield(2, scope) + extra)


def any_login(value: bytes) -> bytes:
    """A login whose user.id attribute has this AnyValue."""
    return trace_request(
        plain_span(events=(event(A.LOGIN_EVENT, NANOS, *LOGIN_KVS, kv(A.USER_ID, value)),))
    )


GROUP = varint(99 << 3 | 3) + vfield(1, 5) + varint(99 << 3 | 4)  # a well-formed unknown group

# name -> (body, whether the C walker reads it (True) or must decline it (False))
WIRE_CASES: dict[str, tuple[bytes, bool]] = {
    "canonical": (trace_request(plain_span()), True),
    "fields in reverse order": (
        lfield(
            1,
            lfield(
                2,
                lfield(
                    2,
                    span_bytes(
                        lfield(11, LOGIN), ffield(7, NANOS), lfield(2, SPAN_ID), lfield(1, TRACE)
                    ),
                ),
            )
            + lfield(1, RESOURCE),
        ),
        True,
    ),
    "unknown fields everywhere": (
        trace_request(
            plain_span(vfield(1000, 7), varint(1001 << 3 | 5) + b"abcd", lfield(1002, b"x")),
            resource=RESOURCE + vfield(77, 1),
            extra=lfield(50, b"zz"),
        )
        + vfield(9, 3),
        True,
    ),
    "a non-canonical length varint": (
        lfield(1, lfield(1, RESOURCE) + varint(2 << 3 | 2) + b"\x80\x80\x00"),
        True,
    ),
    "bool value 2": (any_login(vfield(2, 2)), True),
    "negative int value": (any_login(vfield(3, -5)), True),
    "double value": (any_login(ffield(4, struct.unpack("<Q", struct.pack("<d", -0.0))[0])), True),
    "array value": (any_login(lfield(5, lfield(1, string_value("x")))), True),
    "kvlist value": (any_login(lfield(6, lfield(1, kv("k", string_value("v"))))), True),
    "bytes value": (any_login(lfield(7, b"\xff")), True),
    "empty string value": (any_login(string_value("")), True),
    "unset value": (any_login(b""), True),
    "key_strindex only": (
        trace_request(plain_span(events=(event(A.LOGIN_EVENT, NANOS, *LOGIN_KVS, vfield(3, 4)),))),
        True,
    ),
    "empty request": (b"", True),
    "all-zero trace id, 3-byte span id": (
        trace_request(
            span_bytes(lfield(1, bytes(16)), lfield(2, b"\x00\x01\x02"), lfield(11, LOGIN))
        ),
        True,
    ),
    "no event time: the span's start": (
        trace_request(plain_span(events=(event(A.LOGIN_EVENT, 0, *LOGIN_KVS),))),
        True,
    ),
    "address only on the span, twice (last wins)": (
        trace_request(
            plain_span(
                lfield(9, kv(A.CLIENT_ADDRESS, string_value("192.0.2.1"))),
                lfield(9, kv(A.CLIENT_ADDRESS, string_value("192.0.2.2"))),
                lfield(9, kv("net.peer.ip", string_value("192.0.2.3"))),
                events=(event(A.LOGIN_EVENT, NANOS, LOGIN_KVS[0]),),
            )
        ),
        True,
    ),
    "two service.name attributes (first wins)": (
        trace_request(
            plain_span(), resource=RESOURCE + lfield(1, kv(A.SERVICE_NAME, string_value("x")))
        ),
        True,
    ),
    "service.name an int": (
        trace_request(plain_span(), resource=lfield(1, kv(A.SERVICE_NAME, vfield(3, 5)))),
        True,
    ),
    "an attribute key twice (last wins)": (
        trace_request(
            plain_span(
                events=(event(A.LOGIN_EVENT, NANOS, *LOGIN_KVS, kv(A.LOGIN_SUCCESS, vfield(2, 1))),)
            )
        ),
        True,
    ),
    "trace id twice": (trace_request(plain_span(lfield(1, bytes(16)))), False),
    "start time twice": (trace_request(plain_span(ffield(7, 1))), False),
    "resource twice": (lfield(1, lfield(1, RESOURCE) + lfield(1, RESOURCE)), False),
    "event name twice": (
        trace_request(plain_span(events=(LOGIN + lfield(2, "other"),))),
        False,
    ),
    "event time twice": (trace_request(plain_span(events=(LOGIN + ffield(1, 5),))), False),
    "two AnyValue members": (any_login(string_value("a") + vfield(3, 1)), False),
    "the same AnyValue member twice": (any_login(string_value("a") + string_value("b")), False),
    "string_value_strindex": (any_login(vfield(8, 1)), False),
    "a KeyValue key twice": (
        trace_request(plain_span(events=(LOGIN + lfield(3, lfield(1, "a") + lfield(1, "b")),))),
        False,
    ),
    "event time as a varint": (
        trace_request(plain_span(events=(vfield(1, NANOS) + lfield(2, A.LOGIN_EVENT),))),
        False,
    ),
    "trace id as a varint": (trace_request(span_bytes(vfield(1, 5), lfield(11, LOGIN))), False),
    "events as a varint": (trace_request(span_bytes(vfield(11, 5))), False),
    "a group in a span": (trace_request(plain_span(GROUP)), False),
    "a group in the request": (trace_request(plain_span()) + GROUP, False),
}


@needs_walker
@pytest.mark.parametrize("name", WIRE_CASES)
def test_hand_made_encodings_decode_the_same(name: str) -> None:
    body, read_by_c = WIRE_CASES[name]
    result = assert_same_traces(body)
    assert isinstance(result, Decoded), result  # upb accepts all of these
    assert (walked_traces(body) is not None) is read_by_c


@needs_walker
def test_hand_made_encodings_give_the_values_protobuf_gives() -> None:
    def user_id(name: str) -> str | None:
        decoded = decode_traces(WIRE_CASES[name][0], fast=True)
        return decoded.events[0].user_id

    assert user_id("bool value 2") == "true"
    assert user_id("negative int value") == "-5"
    assert user_id("double value") == "-0.0"
    assert user_id("array value") is None
    assert user_id("unset value") is None
    (zero_ids,) = decode_traces(WIRE_CASES["all-zero trace id, 3-byte span id"][0]).events
    assert (zero_ids.trace_id, zero_ids.span_id) == (None, "000102")
    (no_time,) = decode_traces(WIRE_CASES["no event time: the span's start"][0]).events
    assert no_time.time == pytest.approx(T0)
    (span_ip,) = decode_traces(WIRE_CASES["address only on the span, twice (last wins)"][0]).events
    assert span_ip.client_ip == "192.0.2.2"
    (int_service,) = decode_traces(WIRE_CASES["service.name an int"][0]).events
    assert int_service.service == "5"
    (twice,) = decode_traces(WIRE_CASES["an attribute key twice (last wins)"][0]).events
    assert twice.success is True


LOG_WIRE = {
    "event_name wins over the attribute": lfield(12, A.SIGNUP_EVENT)
    + lfield(6, kv("event.name", string_value(A.LOGIN_EVENT))),
    "the last event.name attribute counts": lfield(6, kv("event.name", string_value(A.LOGIN_EVENT)))
    + lfield(6, kv("event.name", string_value("other"))),
    "event.name an int": lfield(6, kv("event.name", vfield(3, 1))),
    "event.name unset": lfield(6, kv("event.name", None)),
    "observed time only": lfield(12, A.LOGIN_EVENT) + ffield(11, NANOS),
    "trace id twice": lfield(12, A.LOGIN_EVENT) + lfield(9, TRACE) + lfield(9, TRACE),
}


@needs_walker
@pytest.mark.parametrize("name", LOG_WIRE)
def test_hand_made_log_records_decode_the_same(name: str) -> None:
    record = LOG_WIRE[name] + b"".join(lfield(6, x) for x in LOGIN_KVS)
    body = lfield(1, lfield(1, RESOURCE) + lfield(2, lfield(2, record)))
    assert isinstance(assert_same_logs(body), Decoded)
    assert (walked_logs(body) is None) is (name == "trace id twice")


# -- generated requests ----------------------------------------------------------------------------

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
events = st.builds(
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
    events=st.lists(events, max_size=2),
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
generated = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@needs_walker
@generated
@given(trace_requests)
def test_generated_trace_requests_decode_the_same_and_are_read_by_c(
    request: trace_service_pb2.ExportTraceServiceRequest,
) -> None:
    body = request.SerializeToString()
    assert walked_traces(body) is not None  # protobuf's own encoding: nothing to decline
    assert isinstance(assert_same_traces(body), Decoded)


@needs_walker
@generated
@given(log_requests)
def test_generated_log_requests_decode_the_same_and_are_read_by_c(
    request: logs_service_pb2.ExportLogsServiceRequest,
) -> None:
    body = request.SerializeToString()
    assert walked_logs(body) is not None
    assert isinstance(assert_same_logs(body), Decoded)


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


@needs_walker
@generated
@given(trace_requests, st.data())
def test_damaged_trace_requests_decode_the_same_or_are_malformed_alike(
    request: trace_service_pb2.ExportTraceServiceRequest, data: st.DataObject
) -> None:
    body = request.SerializeToString()
    for _ in range(3):
        body = mutate(body, data)
        assert_same_traces(body)


@needs_walker
@generated
@given(log_requests, st.data())
def test_damaged_log_requests_decode_the_same_or_are_malformed_alike(
    request: logs_service_pb2.ExportLogsServiceRequest, data: st.DataObject
) -> None:
    body = request.SerializeToString()
    for _ in range(3):
        body = mutate(body, data)
        assert_same_logs(body)


@needs_walker
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(st.binary(max_size=64), trace_requests.map(lambda r: r.SerializeToString())),
    st.data(),
)
def test_the_walker_survives_any_bytes_even_those_upb_rejects(
    body: bytes, data: st.DataObject
) -> None:
    """Memory safety: straight to the walker, without upb in front (a crash fails the run)."""
    body = mutate(body, data)
    for walked in (walked_traces(body), walked_logs(body)):
        assert walked is None or isinstance(walked, list)


@needs_walker
def test_garbage_is_malformed_for_both_walkers() -> None:
    for body in (b"\x0a\xff\xff\xff\xff\x0f", b"not protobuf at all \xff\xfe"):
        assert assert_same_traces(body)[0] == "malformed"
        assert assert_same_logs(body)[0] == "malformed"


# -- building the Event ----------------------------------------------------------------------------

field_values = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["login", "signup"]),
        "time": st.floats(allow_nan=False),
        "success": st.one_of(st.none(), st.booleans()),
        "user_hash": st.one_of(st.none(), st.text(max_size=4)),
        "user_id": st.one_of(st.none(), st.text(max_size=4)),
        "primary_key": st.one_of(st.none(), st.text(max_size=4)),
        "identifiers": st.lists(st.tuples(st.text(max_size=3), st.text(max_size=3))).map(tuple),
        "client_ip": st.one_of(st.none(), st.text(max_size=4)),
        "user_agent": st.one_of(st.none(), st.text(max_size=4)),
        "exists": st.one_of(st.none(), st.booleans()),
        "source": st.one_of(st.none(), st.text(max_size=4)),
        "service": st.one_of(st.none(), st.text(max_size=4)),
        "trace_id": st.one_of(st.none(), st.text(max_size=4)),
        "span_id": st.one_of(st.none(), st.text(max_size=4)),
    }
)


@needs_walker
@settings(max_examples=100, deadline=None)
@given(field_values)
def test_the_c_event_constructor_builds_what_the_dataclass_builds(values: dict[str, Any]) -> None:
    expected = Event(**values)
    for fast in (True, False):
        built = otlp._event_factory(fast)(*[values[name] for name in otlp._BUILT_FIELDS])
        assert built == expected
        assert dataclasses.astuple(built) == dataclasses.astuple(expected)
        assert hash(built) == hash(expected)


@needs_walker
def test_the_c_event_constructor_refuses_bad_arguments() -> None:
    from usermon.processor import _otlpwalk

    setters = (Event.kind, Event.time)
    with pytest.raises(TypeError):
        _otlpwalk.new_object(Event, setters, "login")  # one value short
    with pytest.raises(TypeError):
        _otlpwalk.new_object(Event, ("not a descriptor",), "login")
    with pytest.raises(TypeError):
        _otlpwalk.new_object(
            int,
            (),
        )  # not object.__new__
    with pytest.raises(TypeError):
        _otlpwalk.new_object(Event, (Decoded.events,), [])  # another class's slot


# -- the build is used -----------------------------------------------------------------------------


def _decoder_in_fresh_process(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("USERMON_")}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from usermon.processor import otlp; print(otlp.FAST_DECODE, otlp.DECODER)",
        ],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=60,
        check=False,
    )


@pytest.mark.integration
def test_the_c_walker_is_built_and_used() -> None:
    """In this environment (CI's, scripts/test's) the extension is built and chosen: decoding
    cannot silently fall back to the slower Python walk."""
    result = _decoder_in_fresh_process()
    assert result.stdout.split()[:1] == ["True"], (
        "the C walker is not used: "
        + (result.stdout + result.stderr).strip()
        + " (build it: pip install -e . or python setup.py build_ext --inplace)"
    )


@pytest.mark.integration
def test_usermon_pure_python_decode_selects_the_python_walk() -> None:
    result = _decoder_in_fresh_process(USERMON_PURE_PYTHON_DECODE="1")
    assert result.stdout.startswith("False pure-Python walk"), result.stderr
    bad = _decoder_in_fresh_process(USERMON_PURE_PYTHON_DECODE="maybe")
    assert bad.returncode != 0
    assert "USERMON_PURE_PYTHON_DECODE must be true or false" in bad.stderr


def test_the_startup_log_line_says_which_walker_reads_protobuf() -> None:
    from usermon.processor.service import Processor
    from usermon.processor.settings import resolve

    processor = Processor(resolve({"store": "memory://"}, env={}), detectors=[])
    try:
        assert processor.describe().endswith(f"protobuf read by the {otlp.DECODER}")
    finally:
        processor.close()


@needs_walker
def test_a_declined_body_is_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """A body the C walker hands back is decoded by the Python walk and counted, so an encoder
    that always takes the slow path shows up (in /healthz) instead of only costing CPU."""
    body, read_by_c = WIRE_CASES["a group in a span"]
    assert not read_by_c
    before = dict(otlp.DECLINED)
    with caplog.at_level("WARNING", logger="usermon.processor"):
        otlp.decode_traces(body)
        otlp.decode_traces(body)
    assert otlp.DECLINED["traces"] == before["traces"] + 2
    assert otlp.DECLINED["logs"] == before["logs"]
    declined_lines = [r for r in caplog.records if "declined" in r.getMessage()]
    assert len(declined_lines) == (1 if before["traces"] == 0 else 0)
