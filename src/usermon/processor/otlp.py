"""OTLP in: decode trace and log export requests (protobuf or OTLP/JSON) into :class:`Event`.

This module owns the translation from the wire to the engine's model. It reads the span events
named ``usermon.login`` / ``usermon.signup`` (and log records whose ``event_name``, or
``event.name`` attribute, is one of those), takes ``service.name`` from the resource, the trace and
span ids from the span (or the log record), and every attribute of the event contract from
:mod:`usermon.attributes`. Spans and log records that carry no usermon event are ignored.

A malformed body raises :class:`MalformedRequest` (the receiver answers 400). A usermon event
that cannot be used (a login without its outcome, an unknown schema version, no timestamp) is
*rejected*: it is left out and counted, and the receiver reports it in ``partial_success``.
OTLP/JSON follows the OTLP spec: lowerCamelCase keys, hex trace and span ids, 64-bit integers as
strings or numbers.

Protobuf bodies are parsed by upb (``ParseFromString``), which alone decides whether a body is
malformed. What usermon needs is then read by the C walker, ``usermon.processor._otlpwalk``, from
the same bytes when it is built (:data:`FAST_DECODE`), else by walking the parsed message in
Python. Both hand the same values to :func:`_build`, where every rule lives; the C walker
declines (and the Python walk runs) on any encoding where it could read something other than
upb did, so the results are the same by construction, and tests/processor/test_otlp_fast.py
checks it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from usermon import attributes as A
from usermon.processor.model import Event, EventKind
from usermon.processor.settings import pure_python_decode

try:
    from usermon.processor import _otlpwalk
except ImportError:  # built without a compiler or Python's headers: the Python walk
    _otlpwalk = None  # type: ignore[assignment]

__all__ = [
    "DECODER",
    "FAST_DECODE",
    "Decoded",
    "MalformedRequest",
    "decode",
    "decode_logs",
    "decode_traces",
]

FAST_DECODE: bool = _otlpwalk is not None and not pure_python_decode()
"""Whether protobuf requests are read by the C walker (else by the pure-Python walk, with the
same results): the extension is built and ``USERMON_PURE_PYTHON_DECODE`` does not say otherwise.
Decided once, at import."""

DECODER: str = (
    "C walker"
    if FAST_DECODE
    else "pure-Python walk ("
    + ("USERMON_PURE_PYTHON_DECODE is set" if _otlpwalk else "the C walker is not built")
    + ")"
)
"""Which walker reads protobuf requests, and why, for the startup log."""

DECLINED: dict[str, int] = {"traces": 0, "logs": 0}
"""Protobuf bodies the C walker declined (an encoding it leaves to the Python walk: same events,
several times the CPU), per signal since start; ``/healthz`` shows them. An encoder that always
lands here (a new OTLP value type, say) shows up as a count that grows with every request."""

logger = logging.getLogger("usermon.processor")

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
        if len(self.reasons) < 5 and reason not in self.reasons:
            self.reasons.append(reason)


# -- building an Event from attribute values -------------------------------------------------------

_BUILT_FIELDS = (
    "kind",
    "time",
    "success",
    "user_hash",
    "user_id",
    "primary_key",
    "identifiers",
    "client_ip",
    "user_agent",
    "exists",
    "source",
    "service",
    "trace_id",
    "span_id",
)


def _event_factory(fast: bool) -> Callable[..., Event]:
    """A constructor of :class:`Event` from the decoded fields, in :data:`_BUILT_FIELDS` order,
    equal in every way to calling ``Event(...)`` but about 1.7 µs cheaper per event (a frozen
    dataclass's ``__init__`` goes through ``object.__setattr__`` once per field; this sets the
    slots through their descriptors, straight-line), and about 1 µs cheaper again with ``fast``,
    where the C extension makes the same descriptor calls in one call. Falls back to ``Event``
    itself when the class is not the plain slotted dataclass this relies on."""
    fields = dataclasses.fields(Event)
    names = [f.name for f in fields]
    plain = (
        getattr(Event, "__slots__", None) == tuple(names)
        and not hasattr(Event, "__post_init__")
        and names[: len(_BUILT_FIELDS)] == list(_BUILT_FIELDS)
        and all(f.default is not dataclasses.MISSING for f in fields[len(_BUILT_FIELDS) :])
    )
    if not plain:
        return Event
    if fast:
        defaulted = fields[len(_BUILT_FIELDS) :]
        setters = tuple(getattr(Event, f.name) for f in [*defaulted, *fields[: len(_BUILT_FIELDS)]])
        return functools.partial(
            _otlpwalk.new_object, Event, setters, *[f.default for f in defaulted]
        )
    scope: dict[str, Any] = {"_new": object.__new__, "_Event": Event}
    body = ["    event = _new(_Event)"]
    for f in fields:
        scope["_set_" + f.name] = getattr(Event, f.name).__set__
        if f.name in _BUILT_FIELDS:
            body.append(f"    _set_{f.name}(event, {f.name})")
        else:
            scope["_default_" + f.name] = f.default
            body.append(f"    _set_{f.name}(event, _default_{f.name})")
    source = f"def build({', '.join(_BUILT_FIELDS)}):\n" + "\n".join(body) + "\n    return event\n"
    exec(source, scope)  # noqa: S102 - generated from the dataclass's own field names
    built: Callable[..., Event] = scope["build"]
    return built


_new_event = _event_factory(FAST_DECODE)


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
        return None
    if isinstance(value, int | float):
        return bool(value)
    return None


_SHARED: dict[str, str] = {}
_MAX_SHARED = 4096


def _shared(value: str) -> str:
    """One string object for a value many events repeat (user agents, primary key names): the
    state keeps them per user (last success, distinct user agents), once instead of once per
    user. Bounded: a stream of ever-new values just empties the table now and then."""
    shared = _SHARED.get(value)
    if shared is not None:
        return shared
    if len(_SHARED) >= _MAX_SHARED:
        _SHARED.clear()
    _SHARED[value] = value
    return value


_IDENTIFIER_KEYS: dict[tuple[str, ...], tuple[tuple[str, str], ...]] = {}
_MAX_KEY_SETS = 1024
_MAX_MEMO_KEYS = 64


def _identifier_keys(keys: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The identifier attributes among ``keys`` (in their order), each with its identifier
    name. Memoized per key set: the events of one app carry the same few attribute key sets, so
    the prefix test runs once per key set rather than once per attribute of every event.
    Bounded like :data:`_SHARED`, and only sets of up to 64 keys are kept."""
    found = tuple([(k, k[_PREFIX_LEN:]) for k in keys if k.startswith(_PREFIX)])
    if len(keys) <= _MAX_MEMO_KEYS:
        if len(_IDENTIFIER_KEYS) >= _MAX_KEY_SETS:
            _IDENTIFIER_KEYS.clear()
        _IDENTIFIER_KEYS[keys] = found
    return found


# The contract's attribute names, bound once: _build reads them for every event.
_SCHEMA = A.SCHEMA
_LOGIN_SUCCESS = A.LOGIN_SUCCESS
_CLIENT_ADDRESS = A.CLIENT_ADDRESS
_LEGACY_CLIENT_ADDRESSES = A.LEGACY_CLIENT_ADDRESSES
_USER_HASH = A.USER_HASH
_USER_ID = A.USER_ID
_USER_AGENT = A.USER_AGENT
_USER_EXISTS = A.USER_EXISTS
_PRIMARY_KEY = A.PRIMARY_KEY
_SOURCE = A.SOURCE


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
) -> bool:
    """Append the event to ``out`` or reject it; return whether it was accepted. Without a
    client address among the event's attributes, ``ip_from(ip_source)`` may find the span's.

    The usual case is written out inline (a non-empty ``str`` taken as it is, a shared string
    found in its table) because this runs for every event; each ``_text`` / ``_flag`` /
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
    if kind == "login":
        success = get(_LOGIN_SUCCESS)
        if success.__class__ is not bool:
            success = _flag(success)
            if success is None:
                out.reject(f"login event without a boolean {_LOGIN_SUCCESS}")
                return False
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
        found = []
        for key, name in pairs:
            value = attrs[key]
            if value.__class__ is not str or not value:
                value = _text(value) or ""
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
    if user_agent is not None:
        user_agent = _SHARED.get(user_agent) or _shared(user_agent)
    exists = get(_USER_EXISTS)
    if exists is not None and exists.__class__ is not bool:
        exists = _flag(exists)
    primary_key = get(_PRIMARY_KEY)
    if primary_key.__class__ is not str or not primary_key:
        primary_key = _text(primary_key)
    if primary_key is not None:
        primary_key = _SHARED.get(primary_key) or _shared(primary_key)
    source = get(_SOURCE)
    if source.__class__ is not str or not source:
        source = _text(source)
    out.events.append(
        _new_event(
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
        )
    )
    return True


_PREFIX = A.IDENTIFIER_PREFIX
_PREFIX_LEN = len(_PREFIX)


_IP_KEYS = (A.CLIENT_ADDRESS, *A.LEGACY_CLIENT_ADDRESSES)


def _span_ip(attrs: dict[str, Any]) -> str | None:
    for key in _IP_KEYS:
        ip = _text(attrs.get(key))
        if ip is not None:
            return ip
    return None


# -- protobuf --------------------------------------------------------------------------------------


def _pb_value(v: Any) -> Any:
    which = v.WhichOneof("value")
    if which == "string_value":
        return v.string_value
    if which == "bool_value":
        return v.bool_value
    if which == "int_value":
        return v.int_value
    if which == "double_value":
        return v.double_value
    return None  # arrays, maps, bytes: no contract attribute has those types


def _pb_attrs(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        v = kv.value
        which = v.WhichOneof("value")
        if which == "string_value":
            out[kv.key] = v.string_value
        elif which == "bool_value":
            out[kv.key] = v.bool_value
        else:
            out[kv.key] = _pb_value(v)
    return out


def _pb_service(resource: Any) -> str | None:
    for kv in resource.attributes:
        if kv.key == A.SERVICE_NAME:
            return _text(_pb_value(kv.value))
    return None


def _pb_span_ip(span: Any) -> str | None:
    return _span_ip(_pb_attrs(span.attributes))


def _hex(raw: bytes) -> str | None:
    return raw.hex() if raw and any(raw) else None


_UNSET = object()


def _declined(signal: str) -> None:
    DECLINED[signal] += 1
    if DECLINED[signal] == 1:  # once per signal: an operator should know, a log should not flood
        logger.warning(
            "the C walker declined an OTLP %s body (an encoding it leaves to the Python walk): "
            "decoded by the Python walk, same events, more CPU; /healthz counts these",
            signal,
        )


def _use_fast(fast: bool | None) -> bool:
    if fast is None:
        return FAST_DECODE
    if fast and _otlpwalk is None:
        raise RuntimeError("the C walker (usermon.processor._otlpwalk) is not built")
    return fast


def decode_traces(body: bytes, *, json_format: bool = False, fast: bool | None = None) -> Decoded:
    """Usermon events from an ``ExportTraceServiceRequest``. ``fast`` chooses how a protobuf
    body is read once upb has parsed it: ``None`` as :data:`FAST_DECODE` says, ``True`` by the
    C walker (``RuntimeError`` when it is not built), ``False`` by the Python walk."""
    if json_format:
        return _decode_traces_json(body)
    request = trace_service_pb2.ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except Exception as exc:  # protobuf raises DecodeError, and others on deep nesting
        raise MalformedRequest(f"not a protobuf ExportTraceServiceRequest: {exc}") from None
    if _use_fast(fast):
        walked = _otlpwalk.walk_traces(body, _KINDS, A.SERVICE_NAME, _IP_KEYS)
        if walked is not None:
            return _traces_from_walk(walked)
        _declined("traces")
    return _traces_from_message(request)


def _traces_from_walk(walked: list[Any]) -> Decoded:
    """What the C walker read (one tuple per usermon event, see _otlpwalk.c), through the same
    :func:`_build` as the Python walk."""
    out = Decoded()
    service_value: Any = _UNSET
    service = None
    counted = False
    for value, trace_id, span_id, ip_attrs, first, kind, nanos, attrs in walked:
        if value is not service_value:  # one object per resource
            service_value, service = value, _text(value)
        if first:
            counted = False
        if (
            not _build(
                out,
                kind,
                nanos,
                attrs,
                service,
                trace_id,
                span_id,
                None if ip_attrs is None else _span_ip,
                ip_attrs,
            )
            and not counted
        ):
            out.rejected_items += 1
            counted = True
    return out


def _traces_from_message(request: Any) -> Decoded:
    out = Decoded()
    kinds = _KINDS
    for rs in request.resource_spans:
        service: str | None = None  # decoded lazily: most resources carry no event
        service_known = False
        for ss in rs.scope_spans:
            for span in ss.spans:
                events = span.events
                if not events:
                    continue
                trace_id = span_id = None
                rejected = False
                for ev in events:
                    kind = kinds.get(ev.name)
                    if kind is None:
                        continue
                    if not service_known:
                        service, service_known = _pb_service(rs.resource), True
                    if trace_id is None:
                        trace_id, span_id = _hex(span.trace_id), _hex(span.span_id)
                    nanos = ev.time_unix_nano or span.start_time_unix_nano
                    if not _build(
                        out,
                        kind,
                        nanos,
                        _pb_attrs(ev.attributes),
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


def decode_logs(body: bytes, *, json_format: bool = False, fast: bool | None = None) -> Decoded:
    """Usermon events from an ``ExportLogsServiceRequest`` (``fast``: as for
    :func:`decode_traces`)."""
    if json_format:
        return _decode_logs_json(body)
    request = logs_service_pb2.ExportLogsServiceRequest()
    try:
        request.ParseFromString(body)
    except Exception as exc:
        raise MalformedRequest(f"not a protobuf ExportLogsServiceRequest: {exc}") from None
    if _use_fast(fast):
        walked = _otlpwalk.walk_logs(body, _KINDS, A.SERVICE_NAME, _EVENT_NAME_ATTRIBUTE)
        if walked is not None:
            return _logs_from_walk(walked)
        _declined("logs")
    return _logs_from_message(request)


def _logs_from_walk(walked: list[Any]) -> Decoded:
    out = Decoded()
    service_value: Any = _UNSET
    service = None
    for value, trace_id, span_id, kind, nanos, attrs in walked:
        if value is not service_value:
            service_value, service = value, _text(value)
        if not _build(out, kind, nanos, attrs, service, trace_id, span_id, None, None):
            out.rejected_items += 1
    return out


def _logs_from_message(request: Any) -> Decoded:
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


def _load_json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise MalformedRequest(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MalformedRequest("an OTLP/JSON request is a JSON object")
    return data


def _list(obj: Any, camel: str, snake: str) -> list[Any]:
    if not isinstance(obj, dict):
        raise MalformedRequest("expected a JSON object in the OTLP request")
    value = obj.get(camel, obj.get(snake))
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedRequest(f"{camel} must be a JSON array")
    return value


def _json_value(value: Any) -> Any:
    if not isinstance(value, dict):
        return None
    for key in ("stringValue", "string_value"):
        if key in value:
            return value[key]
    for key in ("boolValue", "bool_value"):
        if key in value:
            return value[key]
    for key in ("intValue", "int_value"):
        if key in value:
            try:
                return int(value[key])
            except (TypeError, ValueError):
                raise MalformedRequest("intValue must be a 64-bit integer") from None
    for key in ("doubleValue", "double_value"):
        if key in value:
            return value[key]
    return None


def _json_attrs(obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in _list(obj, "attributes", "attributes"):
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise MalformedRequest("an attribute is an object with a string key")
        out[kv["key"]] = _json_value(kv.get("value"))
    return out


def _json_int(obj: dict[str, Any], camel: str, snake: str) -> int:
    value = obj.get(camel, obj.get(snake, 0))
    try:
        return int(value)
    except (TypeError, ValueError):
        raise MalformedRequest(f"{camel} must be an integer (or a string holding one)") from None


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


def _json_service(container: dict[str, Any]) -> str | None:
    resource = container.get("resource") or {}
    if not isinstance(resource, dict):
        raise MalformedRequest("resource must be a JSON object")
    return _text(_json_attrs(resource).get(A.SERVICE_NAME))


def _json_span_ip(span: dict[str, Any]) -> str | None:
    return _span_ip(_json_attrs(span))


def _decode_traces_json(body: bytes) -> Decoded:
    data = _load_json(body)
    out = Decoded()
    for rs in _list(data, "resourceSpans", "resource_spans"):
        service = _json_service(rs)
        for ss in _list(rs, "scopeSpans", "scope_spans"):
            for span in _list(ss, "spans", "spans"):
                trace_id = _json_id(span, "traceId", "trace_id", 16)
                span_id = _json_id(span, "spanId", "span_id", 8)
                start = _json_int(span, "startTimeUnixNano", "start_time_unix_nano")
                rejected = False
                for ev in _list(span, "events", "events"):
                    if not isinstance(ev, dict):
                        raise MalformedRequest("a span event is a JSON object")
                    kind = _KINDS.get(ev.get("name"))  # type: ignore[arg-type]
                    if kind is None:
                        continue
                    nanos = _json_int(ev, "timeUnixNano", "time_unix_nano") or start
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
                    ):
                        rejected = True
                if rejected:
                    out.rejected_items += 1
    return out


def _decode_logs_json(body: bytes) -> Decoded:
    data = _load_json(body)
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
                nanos = _json_int(record, "timeUnixNano", "time_unix_nano") or _json_int(
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
                ):
                    out.rejected_items += 1
    return out


def decode(signal: str, body: bytes, *, json_format: bool) -> Decoded:
    """Decode a ``traces`` or ``logs`` export request."""
    if signal == "traces":
        return decode_traces(body, json_format=json_format)
    return decode_logs(body, json_format=json_format)
