"""Protobuf wire encodings written field by field: the encodings protobuf's own serializer never
produces (fields out of order or repeated, unknown fields and groups, non-canonical varints),
which upb still accepts and the decoder must read as upb does."""

from __future__ import annotations

import struct

from usermon import attributes as A

from .payloads import T0, login_attributes


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

WIRE_CASES: dict[str, bytes] = {
    "canonical": trace_request(plain_span()),
    "fields in reverse order": lfield(
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
    "unknown fields everywhere": trace_request(
        plain_span(vfield(1000, 7), varint(1001 << 3 | 5) + b"abcd", lfield(1002, b"x")),
        resource=RESOURCE + vfield(77, 1),
        extra=lfield(50, b"zz"),
    )
    + vfield(9, 3),
    "a non-canonical length varint": lfield(
        1, lfield(1, RESOURCE) + varint(2 << 3 | 2) + b"\x80\x80\x00"
    ),
    "bool value 2": any_login(vfield(2, 2)),
    "negative int value": any_login(vfield(3, -5)),
    "double value": any_login(ffield(4, struct.unpack("<Q", struct.pack("<d", -0.0))[0])),
    "array value": any_login(lfield(5, lfield(1, string_value("x")))),
    "kvlist value": any_login(lfield(6, lfield(1, kv("k", string_value("v"))))),
    "bytes value": any_login(lfield(7, b"\xff")),
    "empty string value": any_login(string_value("")),
    "unset value": any_login(b""),
    "key_strindex only": trace_request(
        plain_span(events=(event(A.LOGIN_EVENT, NANOS, *LOGIN_KVS, vfield(3, 4)),))
    ),
    "empty request": b"",
    "all-zero trace id, 3-byte span id": trace_request(
        span_bytes(lfield(1, bytes(16)), lfield(2, b"\x00\x01\x02"), lfield(11, LOGIN))
    ),
    "no event time: the span's start": trace_request(
        plain_span(events=(event(A.LOGIN_EVENT, 0, *LOGIN_KVS),))
    ),
    "address only on the span, twice (last wins)": trace_request(
        plain_span(
            lfield(9, kv(A.CLIENT_ADDRESS, string_value("192.0.2.1"))),
            lfield(9, kv(A.CLIENT_ADDRESS, string_value("192.0.2.2"))),
            lfield(9, kv("net.peer.ip", string_value("192.0.2.3"))),
            events=(event(A.LOGIN_EVENT, NANOS, LOGIN_KVS[0]),),
        )
    ),
    "two service.name attributes (first wins)": trace_request(
        plain_span(), resource=RESOURCE + lfield(1, kv(A.SERVICE_NAME, string_value("x")))
    ),
    "service.name an int": trace_request(
        plain_span(), resource=lfield(1, kv(A.SERVICE_NAME, vfield(3, 5)))
    ),
    "an attribute key twice (last wins)": trace_request(
        plain_span(
            events=(event(A.LOGIN_EVENT, NANOS, *LOGIN_KVS, kv(A.LOGIN_SUCCESS, vfield(2, 1))),)
        )
    ),
    "trace id twice": trace_request(plain_span(lfield(1, bytes(16)))),
    "start time twice": trace_request(plain_span(ffield(7, 1))),
    "resource twice": lfield(1, lfield(1, RESOURCE) + lfield(1, RESOURCE)),
    "event name twice": trace_request(plain_span(events=(LOGIN + lfield(2, "other"),))),
    "event time twice": trace_request(plain_span(events=(LOGIN + ffield(1, 5),))),
    "two AnyValue members": any_login(string_value("a") + vfield(3, 1)),
    "the same AnyValue member twice": any_login(string_value("a") + string_value("b")),
    "string_value_strindex": any_login(vfield(8, 1)),
    "a KeyValue key twice": trace_request(
        plain_span(events=(LOGIN + lfield(3, lfield(1, "a") + lfield(1, "b")),))
    ),
    "event time as a varint": trace_request(
        plain_span(events=(vfield(1, NANOS) + lfield(2, A.LOGIN_EVENT),))
    ),
    "trace id as a varint": trace_request(span_bytes(vfield(1, 5), lfield(11, LOGIN))),
    "events as a varint": trace_request(span_bytes(vfield(11, 5))),
    "a group in a span": trace_request(plain_span(GROUP)),
    "a group in the request": trace_request(plain_span()) + GROUP,
}
"""Trace requests upb accepts, by what is odd about their encoding."""

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
"""Log records (without their login attributes), by what is odd about them."""


def log_request(record: bytes) -> bytes:
    """A logs request of one record: ``record`` followed by the login's attributes."""
    record = record + b"".join(lfield(6, x) for x in LOGIN_KVS)
    return lfield(1, lfield(1, RESOURCE) + lfield(2, lfield(2, record)))
