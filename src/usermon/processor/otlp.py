"""OTLP in: decode trace and log export requests (protobuf or OTLP/JSON) into :class:`Event`.

This module owns the translation from the wire to the engine's model. It reads the span events
named ``usermon.login`` / ``usermon.signup`` (and log records whose ``event_name``, or
``event.name`` attribute, is one of those), takes ``service.name`` from the resource, the trace and
span ids from the span (or the log record), and every attribute of the event contract from
:mod:`usermon.attributes`. Spans and log records that carry no usermon event are ignored.
Protobuf bodies are parsed by upb (the ``protobuf`` package), which alone decides whether a body
is malformed, and the parsed message is walked in Python; OTLP/JSON follows the OTLP spec
(lowerCamelCase keys, hex trace and span ids, 64-bit integers as strings or numbers).

A malformed body raises :class:`MalformedRequest` (the receiver answers 400). A usermon event
that cannot be used is *rejected*: it is left out and counted, and the receiver reports it in
``partial_success``. That is a login whose ``usermon.login.success`` is not a boolean, an unknown
schema version, no timestamp, a value over its cap (:data:`MAX_VALUE_LENGTH`,
:data:`MAX_IDENTIFIER_KEY_LENGTH`, :data:`MAX_IDENTIFIERS`), or text that is not Unicode (a lone
surrogate, which only OTLP/JSON can carry). Only the User-Agent is cut rather than rejected, at
:data:`MAX_USER_AGENT_LENGTH`, as the SDK cuts it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from usermon import attributes as A
from usermon.identifiers import is_unicode_text
from usermon.processor.model import Event, EventKind, note_rejection

__all__ = [
    "MAX_IDENTIFIERS",
    "MAX_IDENTIFIER_KEY_LENGTH",
    "MAX_USER_AGENT_LENGTH",
    "MAX_VALUE_LENGTH",
    "Decoded",
    "MalformedRequest",
    "decode",
    "decode_logs",
    "decode_traces",
]

MAX_VALUE_LENGTH = 256
"""Longest ``user.hash``, ``user.id``, identifier value, ``usermon.primary_key``, client address,
``usermon.source`` and ``service.name`` (characters) an event may carry; longer, it is rejected.
The SDK never sends an identifier over 256 characters (docs/schema.md)."""

MAX_IDENTIFIER_KEY_LENGTH = 64
"""Longest identifier name (the part after ``usermon.identifiers.``), as the SDK's own limit."""

MAX_IDENTIFIERS = 16
"""Most ``usermon.identifiers.*`` attributes one event may carry."""

MAX_USER_AGENT_LENGTH = 1024
"""``user_agent.original`` is cut to this many characters, as the SDK cuts it."""

_KINDS: dict[str, EventKind] = {A.LOGIN_EVENT: "login", A.SIGNUP_EVENT: "signup"}
_EVENT_NAME_ATTRIBUTE = "event.name"  # older log-based events carry their name here


class MalformedRequest(ValueError):
    """The body is not a valid export request of the declared format."""


@dataclass(slots=True)
class Decoded:
    """Events decoded from one request, and what was rejected."""

    events: list[Event] = field(default_factory=list)
    rejected_items: int = 0  # spans / log records with at least one rejected event
    rejected_events: int = 0
    reasons: list[str] = field(default_factory=list)

    def reject(self, reason: str) -> None:
        self.rejected_events += 1
        note_rejection(self.reasons, reason)


# -- building an Event from attribute values -------------------------------------------------------


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _boolean(value: Any) -> bool | None:
    """A boolean attribute's value: a bool, or the strings ``true`` / ``false`` (any case) that
    exporters which stringify attributes send; anything else (numbers included) is not one."""
    if value.__class__ is bool:
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low == "true":
            return True
        if low == "false":
            return False
    return None


_SHARED: dict[str, str] = {}
_MAX_SHARED = 4096
_MAX_SHARED_CHARS = 1 << 20
_shared_chars = 0


def _shared(value: str) -> str:
    """One string object for a value many events repeat (user agents, primary key names): the
    state keeps them per user (last success, distinct user agents), once instead of once per
    user. Bounded in entries and in characters (each value is capped before it gets here): a
    stream of ever-new values just empties the table now and then."""
    global _shared_chars
    shared = _SHARED.get(value)
    if shared is not None:
        return shared
    if len(_SHARED) >= _MAX_SHARED or _shared_chars + len(value) > _MAX_SHARED_CHARS:
        _SHARED.clear()
        _shared_chars = 0
    _SHARED[value] = value
    _shared_chars += len(value)
    return value


_IDENTIFIER_KEYS: dict[tuple[str, ...], tuple[tuple[str, str], ...]] = {}
_MAX_KEY_SETS = 1024
_MAX_MEMO_KEYS = 64
_MAX_MEMO_CHARS = 2048


def _identifier_keys(keys: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The identifier attributes among ``keys`` (in their order), each with its identifier
    name. Memoized per key set: the events of one app carry the same few attribute key sets, so
    the prefix test runs once per key set rather than once per attribute of every event.
    Bounded like :data:`_SHARED`: only sets of up to 64 keys and 2048 characters are kept."""
    found = tuple([(k, k[_PREFIX_LEN:]) for k in keys if k.startswith(_PREFIX)])
    if len(keys) <= _MAX_MEMO_KEYS and sum(map(len, keys)) <= _MAX_MEMO_CHARS:
        if len(_IDENTIFIER_KEYS) >= _MAX_KEY_SETS:
            _IDENTIFIER_KEYS.clear()
        _IDENTIFIER_KEYS[keys] = found
    return found


# The contract's attribute names, bound once: _build reads them for every event.
_SCHEMA = A.SCHEMA
_LOGIN_SUCCESS = A.LOGIN_SUCCESS
_LOGIN_BLOCKED = A.LOGIN_BLOCKED
_CLIENT_ADDRESS = A.CLIENT_ADDRESS
_LEGACY_CLIENT_ADDRESSES = A.LEGACY_CLIENT_ADDRESSES
_USER_HASH = A.USER_HASH
_USER_ID = A.USER_ID
_USER_AGENT = A.USER_AGENT
_USER_EXISTS = A.USER_EXISTS
_PRIMARY_KEY = A.PRIMARY_KEY
_SOURCE = A.SOURCE
_PREFIX = A.IDENTIFIER_PREFIX
_PREFIX_LEN = len(_PREFIX)
_IP_KEYS = A.CLIENT_ADDRESS_ATTRIBUTES
_MAX = MAX_VALUE_LENGTH


def _build(
    out: Decoded,
    kind: EventKind,
    nanos: int,
    attrs: dict[str, Any],
    service: str | None,
    trace_id: str | None,
    span_id: str | None,
    ip_from: Callable[[Any], str | None] | None,
    ip_source: Any,
    check_unicode: bool = False,
) -> bool:
    """Append the event to ``out`` or reject it; return whether it was accepted. Without a
    client address among the event's attributes, ``ip_from(ip_source)`` may find the span's.
    ``check_unicode``: the body may hold lone surrogates (OTLP/JSON's ``\\ud800`` escapes).

    The usual case is written out inline (a non-empty ``str`` taken as it is, a shared string
    found in its table) because this runs for every event; each ``_text`` / ``_boolean`` /
    ``_shared`` call it skips is what that function would have returned."""
    get = attrs.get
    schema = get(_SCHEMA)
    if schema is not None and schema not in (1, "1"):
        out.reject(f"unsupported usermon schema version {schema!r}")
        return False
    if nanos <= 0:
        out.reject("usermon event without a timestamp")
        return False
    success = None
    blocked = False
    if kind == "login":
        success = get(_LOGIN_SUCCESS)
        if success.__class__ is not bool:
            success = _boolean(success)
            if success is None:
                out.reject(f"login event without a boolean {_LOGIN_SUCCESS}")
                return False
        refused = get(_LOGIN_BLOCKED)
        if refused is not None:
            # Additive in schema 1: true only when it says so; a refused login never succeeded.
            blocked = (refused if refused.__class__ is bool else _boolean(refused)) is True
            if blocked:
                success = False
    ip = get(_CLIENT_ADDRESS)
    if ip.__class__ is not str or not ip:
        ip = _text(ip)
        if ip is None:
            for legacy in _LEGACY_CLIENT_ADDRESSES:
                ip = _text(get(legacy))
                if ip is not None:
                    break
            else:
                if ip_from is not None:
                    ip = ip_from(ip_source)
    keys = tuple(attrs)
    pairs = _IDENTIFIER_KEYS.get(keys)
    if pairs is None:
        pairs = _identifier_keys(keys)
    identifiers: tuple[tuple[str, str], ...] = ()
    if pairs:
        if len(pairs) > MAX_IDENTIFIERS:
            out.reject(f"more than {MAX_IDENTIFIERS} identifiers")
            return False
        found = []
        for key, name in pairs:
            value = attrs[key]
            if value.__class__ is not str or not value:
                value = _text(value) or ""
            if len(value) > _MAX or len(name) > MAX_IDENTIFIER_KEY_LENGTH:
                out.reject("an identifier over its cap of 64 (name) or 256 characters (value)")
                return False
            found.append((name, value))
        identifiers = tuple(sorted(found) if len(found) > 1 else found)
    user_hash = get(_USER_HASH)
    if user_hash.__class__ is not str or not user_hash:
        user_hash = _text(user_hash)
    user_id = get(_USER_ID)
    if user_id.__class__ is not str or not user_id:
        user_id = _text(user_id)
    user_agent = get(_USER_AGENT)
    if user_agent.__class__ is not str or not user_agent:
        user_agent = _text(user_agent)
    if user_agent is not None and len(user_agent) > MAX_USER_AGENT_LENGTH:
        user_agent = user_agent[:MAX_USER_AGENT_LENGTH]
    exists = get(_USER_EXISTS)
    if exists is not None and exists.__class__ is not bool:
        exists = _boolean(exists)
    primary_key = get(_PRIMARY_KEY)
    if primary_key.__class__ is not str or not primary_key:
        primary_key = _text(primary_key)
    source = get(_SOURCE)
    if source.__class__ is not str or not source:
        source = _text(source)
    if (
        (user_hash is not None and len(user_hash) > _MAX)
        or (user_id is not None and len(user_id) > _MAX)
        or (primary_key is not None and len(primary_key) > _MAX)
        or (ip is not None and len(ip) > _MAX)
        or (source is not None and len(source) > _MAX)
        or (service is not None and len(service) > _MAX)
    ):
        out.reject(f"an attribute over its cap of {_MAX} characters")
        return False
    if check_unicode and not all(
        map(
            is_unicode_text,
            [
                t
                for t in (user_hash, user_id, primary_key, ip, user_agent, source, service)
                if t is not None
            ]
            + [t for pair in identifiers for t in pair],
        )
    ):
        out.reject("an attribute holds a lone surrogate (not Unicode text)")
        return False
    if user_agent is not None:
        user_agent = _SHARED.get(user_agent) or _shared(user_agent)
    if primary_key is not None:
        primary_key = _SHARED.get(primary_key) or _shared(primary_key)
    out.events.append(
        Event(
            kind,
            nanos / 1e9,
            success,
            user_hash,
            user_id,
            primary_key,
            identifiers,
            ip,
            user_agent,
            exists,
            source,
            service,
            trace_id,
            span_id,
            nanos,
            blocked,
        )
    )
    return True


def _span_ip(attrs: dict[str, Any]) -> str | None:
    for key in _IP_KEYS:
        ip = _text(attrs.get(key))
        if ip is not None:
            return ip
    return None


# -- protobuf --------------------------------------------------------------------------------------


def _pb_attrs(kvs: Any) -> dict[str, Any]:
    """Attribute values by key: strings, booleans, ints and doubles (arrays, maps and bytes are
    None: no contract attribute has those types)."""
    out: dict[str, Any] = {}
    for kv in kvs:
        v = kv.value
        # Most values are non-empty strings, and a non-empty string_value can only be the oneof's
        # member: one call instead of WhichOneof and then the member.
        text = v.string_value
        if text:
            out[kv.key] = text
            continue
        which = v.WhichOneof("value")
        if which == "bool_value":
            out[kv.key] = v.bool_value
        elif which == "int_value":
            out[kv.key] = v.int_value
        elif which == "double_value":
            out[kv.key] = v.double_value
        elif which == "string_value":
            out[kv.key] = ""
        else:
            out[kv.key] = None
    return out


def _pb_service(resource: Any) -> str | None:
    for kv in resource.attributes:
        if kv.key == A.SERVICE_NAME:
            return _text(_pb_attrs((kv,))[kv.key])
    return None


def _pb_span_ip(span: Any) -> str | None:
    return _span_ip(_pb_attrs(span.attributes))


def _hex(raw: bytes) -> str | None:
    # An id of zero bytes is no id; stripping them tells in C (``any`` walks the bytes in Python).
    return raw.hex() if raw.strip(b"\x00") else None


def decode_traces(body: bytes, *, json_format: bool = False) -> Decoded:
    """Usermon events from an ``ExportTraceServiceRequest``."""
    if json_format:
        return _decode_traces_json(body)
    request = trace_service_pb2.ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except Exception as exc:  # protobuf raises DecodeError, and others on deep nesting
        raise MalformedRequest(f"not a protobuf ExportTraceServiceRequest: {exc}") from None
    out = Decoded()
    kinds = _KINDS
    build = _build
    attributes = _pb_attrs
    for rs in request.resource_spans:
        service: str | None = None  # decoded lazily: most resources carry no event
        service_known = False
        for ss in rs.scope_spans:
            for span in ss.spans:
                events = span.events
                if not events:
                    continue
                trace_id = span_id = None
                ids_known = rejected = False
                for ev in events:
                    kind = kinds.get(ev.name)
                    if kind is None:
                        continue
                    if not service_known:
                        service, service_known = _pb_service(rs.resource), True
                    if not ids_known:  # (_hex written out: every span with an event)
                        raw = span.trace_id
                        trace_id = raw.hex() if raw.strip(b"\x00") else None
                        raw = span.span_id
                        span_id = raw.hex() if raw.strip(b"\x00") else None
                        ids_known = True
                    if not build(
                        out,
                        kind,
                        ev.time_unix_nano or span.start_time_unix_nano,
                        attributes(ev.attributes),
                        service,
                        trace_id,
                        span_id,
                        _pb_span_ip,
                        span,
                    ):
                        rejected = True
                if rejected:
                    out.rejected_items += 1
    return out


def decode_logs(body: bytes, *, json_format: bool = False) -> Decoded:
    """Usermon events from an ``ExportLogsServiceRequest``."""
    if json_format:
        return _decode_logs_json(body)
    request = logs_service_pb2.ExportLogsServiceRequest()
    try:
        request.ParseFromString(body)
    except Exception as exc:
        raise MalformedRequest(f"not a protobuf ExportLogsServiceRequest: {exc}") from None
    out = Decoded()
    for rl in request.resource_logs:
        service: str | None = None
        service_known = False
        for sl in rl.scope_logs:
            for record in sl.log_records:
                attrs = _pb_attrs(record.attributes)
                kind = _KINDS.get(record.event_name) or _KINDS.get(
                    str(attrs.get(_EVENT_NAME_ATTRIBUTE))
                )
                if kind is None:
                    continue
                if not service_known:
                    service, service_known = _pb_service(rl.resource), True
                nanos = record.time_unix_nano or record.observed_time_unix_nano
                if not _build(
                    out,
                    kind,
                    nanos,
                    attrs,
                    service,
                    _hex(record.trace_id),
                    _hex(record.span_id),
                    None,
                    None,
                ):
                    out.rejected_items += 1
    return out


# -- OTLP/JSON -------------------------------------------------------------------------------------

_INT64 = (-(2**63), 2**63 - 1)
_UINT64 = (0, 2**64 - 1)


def _load_json(body: bytes) -> tuple[dict[str, Any], bool]:
    """The request object, and whether it may hold a lone surrogate. The body must be UTF-8
    (as OTLP/JSON is): ``json.loads`` on bytes would also take UTF-16 and UTF-32, and pass
    surrogates through, encoded or escaped. Strict UTF-8 leaves only the ``\\uD800``-
    ``\\uDFFF`` escapes to look for, and only bodies holding one are checked event by event."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MalformedRequest(f"OTLP/JSON must be UTF-8: {exc}") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MalformedRequest(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MalformedRequest("an OTLP/JSON request is a JSON object")
    return data, "\\ud" in text or "\\uD" in text


def _list(obj: Any, camel: str, snake: str) -> list[Any]:
    if not isinstance(obj, dict):
        raise MalformedRequest("expected a JSON object in the OTLP request")
    value = obj.get(camel, obj.get(snake))
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedRequest(f"{camel} must be a JSON array")
    return value


def _integer(value: Any, what: str, bounds: tuple[int, int]) -> int:
    """A protobuf 64-bit integer in OTLP/JSON: a JSON number or a string holding one, in
    ``bounds``. A bool, a fraction, a non-finite number (``1e400``) or one out of range is
    malformed."""
    if isinstance(value, str):
        try:
            number = int(value)
        except ValueError:
            raise MalformedRequest(f"{what} must be an integer (or a string holding one)") from None
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise MalformedRequest(f"{what} must be an integer (or a string holding one)")
    if not bounds[0] <= number <= bounds[1]:
        raise MalformedRequest(f"{what} is out of the range of a 64-bit integer")
    return number


def _json_value(value: Any) -> Any:
    """An ``AnyValue``: strings, booleans, ints and doubles (as the protobuf walk reads them),
    None for the others and for an unset value; a member of the wrong JSON type is malformed."""
    if not isinstance(value, dict):
        return None
    for key in ("stringValue", "string_value"):
        if key in value:
            text = value[key]
            if not isinstance(text, str):
                raise MalformedRequest("stringValue must be a JSON string")
            return text
    for key in ("boolValue", "bool_value"):
        if key in value:
            flag = value[key]
            if not isinstance(flag, bool):
                raise MalformedRequest("boolValue must be true or false")
            return flag
    for key in ("intValue", "int_value"):
        if key in value:
            return _integer(value[key], "intValue", _INT64)
    for key in ("doubleValue", "double_value"):
        if key in value:
            number = value[key]
            if isinstance(number, str):  # proto3 JSON: "NaN", "Infinity", or a number as text
                try:
                    return float(number)
                except ValueError:
                    raise MalformedRequest("doubleValue must be a number") from None
            if isinstance(number, int | float) and not isinstance(number, bool):
                return float(number)
            raise MalformedRequest("doubleValue must be a number")
    return None


def _json_attrs(obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in _list(obj, "attributes", "attributes"):
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise MalformedRequest("an attribute is an object with a string key")
        out[kv["key"]] = _json_value(kv.get("value"))
    return out


def _json_time(obj: dict[str, Any], camel: str, snake: str) -> int:
    return _integer(obj.get(camel, obj.get(snake, 0)), camel, _UINT64)


def _json_id(obj: dict[str, Any], camel: str, snake: str, size: int) -> str | None:
    value = obj.get(camel, obj.get(snake))
    if not value:
        return None
    if not isinstance(value, str) or len(value) != size * 2:
        raise MalformedRequest(f"{camel} must be {size * 2} hex digits")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise MalformedRequest(f"{camel} must be {size * 2} hex digits") from None
    return raw.hex() if any(raw) else None


def _json_service(container: Any) -> str | None:
    if not isinstance(container, dict):
        raise MalformedRequest("expected a JSON object in the OTLP request")
    resource = container.get("resource") or {}
    if not isinstance(resource, dict):
        raise MalformedRequest("resource must be a JSON object")
    return _text(_json_attrs(resource).get(A.SERVICE_NAME))


def _json_span_ip(span: dict[str, Any]) -> str | None:
    return _span_ip(_json_attrs(span))


def _decode_traces_json(body: bytes) -> Decoded:
    data, check = _load_json(body)
    out = Decoded()
    for rs in _list(data, "resourceSpans", "resource_spans"):
        service = _json_service(rs)
        for ss in _list(rs, "scopeSpans", "scope_spans"):
            for span in _list(ss, "spans", "spans"):
                if not isinstance(span, dict):
                    raise MalformedRequest("a span is a JSON object")
                trace_id = _json_id(span, "traceId", "trace_id", 16)
                span_id = _json_id(span, "spanId", "span_id", 8)
                start = _json_time(span, "startTimeUnixNano", "start_time_unix_nano")
                rejected = False
                for ev in _list(span, "events", "events"):
                    if not isinstance(ev, dict):
                        raise MalformedRequest("a span event is a JSON object")
                    name = ev.get("name")
                    kind = _KINDS.get(name) if isinstance(name, str) else None
                    if kind is None:
                        continue
                    nanos = _json_time(ev, "timeUnixNano", "time_unix_nano") or start
                    if not _build(
                        out,
                        kind,
                        nanos,
                        _json_attrs(ev),
                        service,
                        trace_id,
                        span_id,
                        _json_span_ip,
                        span,
                        check,
                    ):
                        rejected = True
                if rejected:
                    out.rejected_items += 1
    return out


def _decode_logs_json(body: bytes) -> Decoded:
    data, check = _load_json(body)
    out = Decoded()
    for rl in _list(data, "resourceLogs", "resource_logs"):
        service = _json_service(rl)
        for sl in _list(rl, "scopeLogs", "scope_logs"):
            for record in _list(sl, "logRecords", "log_records"):
                if not isinstance(record, dict):
                    raise MalformedRequest("a log record is a JSON object")
                attrs = _json_attrs(record)
                name = record.get("eventName", record.get("event_name"))
                kind = _KINDS.get(name) if isinstance(name, str) else None
                if kind is None:
                    kind = _KINDS.get(str(attrs.get(_EVENT_NAME_ATTRIBUTE)))
                if kind is None:
                    continue
                nanos = _json_time(record, "timeUnixNano", "time_unix_nano") or _json_time(
                    record, "observedTimeUnixNano", "observed_time_unix_nano"
                )
                if not _build(
                    out,
                    kind,
                    nanos,
                    attrs,
                    service,
                    _json_id(record, "traceId", "trace_id", 16),
                    _json_id(record, "spanId", "span_id", 8),
                    None,
                    None,
                    check,
                ):
                    out.rejected_items += 1
    return out


def decode(signal: str, body: bytes, *, json_format: bool) -> Decoded:
    """Decode a ``traces`` or ``logs`` export request."""
    if signal == "traces":
        return decode_traces(body, json_format=json_format)
    return decode_logs(body, json_format=json_format)
