"""Login and signup tracking: the public ``auth_track`` / ``signup_track`` and their engine.

This module owns turning one call into the event of the contract (``docs/schema.md``):
normalize the identifiers (:mod:`usermon.identifiers`), pseudonymize them per mode
(:mod:`usermon.pseudonymize`), find the client (:mod:`usermon.request_context`), and emit a
``usermon.login`` / ``usermon.signup`` span event on the current recording span (or on a short
INTERNAL span of its own when none records), plus, when USERMON_EVENT_SIGNAL asks, a log record
with the same ``event_name``, attributes, timestamp and trace/span ids. :func:`record_login` and
:func:`record_signup` are the internal entry points the framework instrumentors share with the
public functions. Nothing here raises into the caller (except in strict mode): usermon's own
failures are logged once and swallowed; the host's exceptions never pass through usermon at all.
The hot path reads cached settings, cached key classifications and a prepared HMAC key, logs
nothing per call, memoizes computed identities per settings, and remembers what it already read
from and wrote to the current span (see ``docs/performance.md``).
"""

from __future__ import annotations

import logging
import sys
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from time import time_ns
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber, get_logger
from opentelemetry.trace import Link, SpanKind, get_current_span

from usermon import attributes as attrs
from usermon.identifiers import (
    Identity,
    normalize_identifiers,
    normalize_one,
    normalize_plain,
    warn_once,
)
from usermon.pseudonymize import hash_value, identity_hash
from usermon.request_context import (
    RequestInfo,
    client_and_agent_from_span_attributes,
    current_request,
    normalize_ip,
    request_from_flask,
    resolve_client_ip,
)
from usermon.settings import EventSignal, Mode, Settings, get_settings

__all__ = ["TrackContext", "auth_track", "record_login", "record_signup", "signup_track"]

_logger = logging.getLogger("usermon")

MAX_USER_AGENT_LENGTH: Final = 1024
"""User-Agent values are cut to this many characters: the header is attacker-controlled."""

_INSTRUMENTATION_NAME: Final = "usermon"


@dataclass(frozen=True)
class TrackContext:
    """Facts about a tracking call that are not identifiers.

    Pass it as ``context=`` to :func:`auth_track` / :func:`signup_track`. It is a distinct type
    so it can never be mistaken for an identifier: a ``context=`` keyword whose value is *not* a
    ``TrackContext`` is treated as an identifier named ``context``.

    - ``client_ip``: the client address, when the request is not visible to usermon (otherwise it
      is taken from the current request with the trusted-proxy rule).
    - ``user_agent``: the client's User-Agent, same rule.
    - ``exists``: for a failed login, whether the account exists (ignored on success and signup).
    - ``request``: a :class:`~usermon.request_context.RequestInfo` to take IP and User-Agent from.
    - ``blocked``: for a failed login, the attempt was refused by protection before any password
      was checked (``usermon.login.blocked``); ``decision_id`` names the decision that refused it.
    """

    client_ip: str | None = None
    user_agent: str | None = None
    exists: bool | None = None
    request: RequestInfo | None = None
    blocked: bool = False
    decision_id: str | None = None


_tracer: trace.Tracer | None = None
_log_emitter: Any = None


def _get_tracer() -> trace.Tracer:
    # A ProxyTracer when no provider is set yet: it follows the global provider once one is set,
    # so caching it is safe and saves a provider lookup per call.
    global _tracer
    if _tracer is None:
        from usermon import __version__

        _tracer = trace.get_tracer(_INSTRUMENTATION_NAME, __version__)
    return _tracer


def _get_log_emitter() -> Any:
    global _log_emitter
    if _log_emitter is None:
        from usermon import __version__

        _log_emitter = get_logger(_INSTRUMENTATION_NAME, __version__)
    return _log_emitter


_identifier_names: dict[str, str] = {}


def _identifier_attribute(key: str) -> str:
    name = _identifier_names.get(key)
    if name is None:
        name = attrs.IDENTIFIER_PREFIX + key
        if len(_identifier_names) < 2048:
            _identifier_names[key] = name
    return name


def _as_mode(mode: Mode | str | None, settings: Settings) -> Mode:
    if mode is None:
        return settings.mode
    if isinstance(mode, Mode):
        return mode
    return Mode(str(mode).strip().lower())  # a bad value is a usermon failure, logged


def _coerce_success(success: object, strict: bool) -> bool:
    if success is True or success is False:
        return success
    if strict:
        raise TypeError(f"usermon: success must be a bool, not {type(success).__name__}")
    warn_once(
        "success-type",
        type(success).__name__,
        "usermon: auth_track's success should be a bool, got a %s; %s",
        type(success).__name__,
        "an int counts by truth value, anything else as a failed login",
    )
    return bool(success) if isinstance(success, int) else False


def _identifier_mapping(identifiers: object, strict: bool) -> Mapping[Any, object]:
    if type(identifiers) is dict:  # the common case, without an ABC isinstance check
        return identifiers
    if isinstance(identifiers, Mapping):
        return identifiers
    if identifiers is None:
        return {}
    if strict:
        raise TypeError(f"usermon: identifiers must be a mapping, not {type(identifiers).__name__}")
    warn_once(
        "identifiers-type",
        type(identifiers).__name__,
        "usermon: identifiers must be a mapping such as {'email': ...}, got a %s; ignored",
        type(identifiers).__name__,
    )
    return {}


class _SpanMemo:
    """What usermon already did to one span: repeated calls on it skip the span reads and writes.

    Reading a span's attributes or setting them costs about as much as the event itself, so a
    per-span note of the client found there and of the attributes already set keeps the second
    and later calls on an open span cheap (a batch of signups in one span, a retry loop). Only
    the latest span is remembered, through a weak reference.
    """

    __slots__ = ("client", "marked", "span")

    def __init__(self, span: trace.Span) -> None:
        self.span = weakref.ref(span)
        self.client: tuple[str | None, str | None] | None = None
        self.marked: str | None = None  # "" once tracked, else the user.hash already set


_memo: _SpanMemo | None = None


def _memo_for(span: trace.Span) -> _SpanMemo | None:
    global _memo
    memo = _memo  # one read: another thread may replace it at any time
    if memo is not None and memo.span() is span:
        return memo
    try:
        memo = _SpanMemo(span)
    except TypeError:  # a span type without weak references: no memo
        return None
    _memo = memo
    return memo


def _cut_agent(agent: str | None) -> str | None:
    if agent is not None and len(agent) > MAX_USER_AGENT_LENGTH:
        return agent[:MAX_USER_AGENT_LENGTH]
    return agent


def _client_from_span(span: trace.Span, memo: _SpanMemo | None) -> tuple[str | None, str | None]:
    """Client IP and User-Agent an HTTP instrumentation recorded on the span."""
    if memo is not None and memo.client is not None:
        return memo.client
    ip, agent = client_and_agent_from_span_attributes(getattr(span, "attributes", None))
    found = (ip, _cut_agent(agent))
    if memo is not None:
        memo.client = found
    return found


def _client(
    context: TrackContext | None, span: trace.Span, memo: _SpanMemo | None, settings: Settings
) -> tuple[str | None, str | None]:
    """Client IP and User-Agent: explicit values, else the request, else the span's attributes."""
    if context is None:
        info = current_request()
        if info is None and "flask" in _modules:  # saves a call where Flask is not in use
            info = request_from_flask()
        if info is None:
            if memo is not None and memo.client is not None:
                return memo.client
            return _client_from_span(span, memo)
        return resolve_client_ip(info, settings.trusted_proxies), _cut_agent(info.user_agent)
    client_ip, user_agent = context.client_ip, context.user_agent
    info = context.request or current_request() or request_from_flask()
    if client_ip is None and user_agent is None:
        if info is None:
            return _client_from_span(span, memo)
        return resolve_client_ip(info, settings.trusted_proxies), _cut_agent(info.user_agent)
    ip = normalize_ip(client_ip) if client_ip is not None else None
    agent = user_agent if isinstance(user_agent, str) and user_agent else None
    if info is not None:
        if client_ip is None:
            ip = resolve_client_ip(info, settings.trusted_proxies)
        if agent is None:
            agent = info.user_agent
    elif client_ip is None or agent is None:
        span_ip, span_agent = _client_from_span(span, memo)
        if client_ip is None:
            ip = span_ip
        if agent is None:
            agent = span_agent
    return ip, _cut_agent(agent)


class _IdentityPart:
    """The identity part of an event, computed once per distinct identifiers and mode.

    ``event`` holds the identity attributes of the event (never mutated once built: every memo
    hit shares it), ``user`` the span attributes a success or a signup sets, ``found`` whether
    any identifier was usable.
    """

    __slots__ = ("event", "found", "user", "user_hash")

    def __init__(self, event: dict[str, Any], user: dict[str, Any] | None, found: bool) -> None:
        self.event = event
        self.user = user
        self.user_hash: str = user[attrs.USER_HASH] if user else ""
        self.found = found


_IDENTITY_CACHE_SIZE: Final = 1024


def _identity_part(identifiers: object, mode: Mode, settings: Settings) -> _IdentityPart:
    """Normalize and pseudonymize identifiers, memoized per settings for plain string dicts.

    A login path sees the same identifiers again and again (an attacker hammering one account
    above all), and normalizing and hashing them is most of usermon's own cost. Only dicts of
    ``str`` to ``str`` are stored: their items are hashable and compare exactly, and no other
    value equals a ``str``, so a lookup with any other dict never hits (``True == 1`` cannot
    alias). The memo is bounded.
    """
    memo: dict[Any, _IdentityPart] = settings.memo
    cache_key: tuple[Any, ...] | None = None
    normalized: Identity | None = None
    part: _IdentityPart | None
    if type(identifiers) is dict and len(identifiers) == 1:
        # The usual call, one identifier: its key (mode, key, value) never equals the key of a
        # dict of several items, whose items are tuples.
        [(key, value)] = identifiers.items()
        try:
            cache_key = (mode, key, value)
            part = memo.get(cache_key)
        except TypeError:  # an unhashable value: not memoizable
            cache_key = part = None
        if part is not None:
            return part
        if type(key) is str and type(value) is str:
            pair = normalize_one(key, value)
            if pair is not None:
                part = _one_identifier_part(pair, mode, settings)
                if part is not None:
                    _remember(memo, cache_key, part)
                    return part
                normalized = Identity((pair,), pair[0])
        else:
            cache_key = None
    elif type(identifiers) is dict:
        try:
            cache_key = (mode, *identifiers.items())
            part = memo.get(cache_key)
        except TypeError:  # an unhashable value: not memoizable
            cache_key = part = None
        if part is not None:
            return part
        # A dict of plain strings, the usual call: the fast path also proves it memoizable.
        normalized = normalize_plain(identifiers)
        if normalized is None and cache_key is not None:
            for key, value in identifiers.items():
                if type(key) is not str or type(value) is not str:
                    cache_key = None
                    break
    else:
        cache_key = None
    if normalized is None:
        strict = settings.strict
        normalized = normalize_identifiers(_identifier_mapping(identifiers, strict), strict=strict)
    event: dict[str, Any] = {}
    user = _identity_attributes(event, normalized, mode, settings)
    part = _IdentityPart(event, user, normalized.primary_key is not None)
    if cache_key is not None:
        _remember(memo, cache_key, part)
    return part


def _remember(memo: dict[Any, _IdentityPart], cache_key: Any, part: _IdentityPart) -> None:
    if len(memo) >= _IDENTITY_CACHE_SIZE:
        memo.clear()  # cheaper than LRU bookkeeping on every call
    memo[cache_key] = part


def _one_identifier_part(
    pair: tuple[str, str], mode: Mode, settings: Settings
) -> _IdentityPart | None:
    """:func:`_identity_attributes` of a one-identifier identity, built in one go (the first
    login of every user); ``None`` when the general path must decide (a configuration error,
    anonymization without a key)."""
    keyed = settings.keyed_hash
    if settings.config_error is not None:
        return None
    key, value = pair
    if mode is Mode.IDENTIFICATION:
        user_hash = identity_hash((pair,), keyed)
        event = {
            attrs.PRIMARY_KEY: key,
            _identifier_attribute(key): value,
            attrs.USER_ID: value,
            attrs.USER_HASH: user_hash,
        }
        return _IdentityPart(event, {attrs.USER_HASH: user_hash, attrs.USER_ID: value}, True)
    if keyed is None:
        return None
    user_hash = identity_hash((pair,), keyed)
    event = {
        attrs.PRIMARY_KEY: key,
        _identifier_attribute(key): hash_value(keyed, value),
        attrs.USER_HASH: user_hash,
    }
    return _IdentityPart(event, {attrs.USER_HASH: user_hash}, True)


def _identity_attributes(
    event: dict[str, Any], identity: Identity, mode: Mode, settings: Settings
) -> dict[str, Any] | None:
    """Add identity attributes to ``event``; return the span attributes for user attribution."""
    if identity.primary_key is None:
        return None
    event[attrs.PRIMARY_KEY] = identity.primary_key
    keyed = settings.keyed_hash
    if settings.config_error is not None:
        return None  # a bad configuration emits nothing identifying
    if mode is Mode.IDENTIFICATION:
        items = identity.items
        if len(items) == 1:  # the usual login: the one identifier is the primary key
            [(key, user_id)] = items
            event[_identifier_attribute(key)] = user_id
        else:
            user_id = None
            for key, value in items:
                event[_identifier_attribute(key)] = value
                if key == identity.primary_key:
                    user_id = value
        user_hash = identity_hash(items, keyed)
        event[attrs.USER_ID] = user_id
        event[attrs.USER_HASH] = user_hash
        return {attrs.USER_HASH: user_hash, attrs.USER_ID: user_id}
    if keyed is None:
        return None  # anonymization without a key: nothing identifying (said loudly at startup)
    for key, value in identity.items:
        event[_identifier_attribute(key)] = hash_value(keyed, value)
    user_hash = identity_hash(identity.items, keyed)
    event[attrs.USER_HASH] = user_hash
    return {attrs.USER_HASH: user_hash}


class _Origin:
    """Who records an event: the ``usermon.source`` it names, the mode it is recorded in
    (``None``: the configured manual mode), and the tracer of a span of usermon's own (``None``:
    the global provider's; an instrumentor passes the one its ``tracer_provider`` gives)."""

    __slots__ = ("mode", "source", "tracer")

    def __init__(self, source: str, mode: Mode | str | None, tracer: trace.Tracer | None) -> None:
        self.source = source
        self.mode = mode
        self.tracer = tracer


_SDK_ORIGIN: Final = _Origin(attrs.SOURCE_SDK, None, None)


def _record(
    event_name: str,
    success: object,
    identifiers: object,
    context: TrackContext | None,
    origin: _Origin,
) -> None:
    """One tracking call, start to end: every call and attribute read here is paid on every
    login, and the budget is a fraction of one ``span.add_event``."""
    settings = get_settings()
    mode = origin.mode
    if mode is None:
        mode = settings.mode
    elif mode.__class__ is not Mode:
        mode = _as_mode(mode, settings)
    if mode is _DISABLED:
        return
    login = event_name is _LOGIN
    if login and success is not True and success is not False:
        success = _coerce_success(success, settings.strict)

    part = _identity_part(identifiers, mode, settings)
    if not part.found:
        if settings.strict:
            raise ValueError("usermon: the call has no usable identifier")
        warn_once(
            "no-identifier",
            origin.source,
            "usermon: a %s call (source %r) had no usable identifier; it is recorded without "
            "one (it still counts for its client IP). Pass e.g. {'email': ...}.",
            event_name,
            origin.source,
        )
    event = part.event.copy()
    event[_SOURCE] = origin.source
    if login:
        event[_SUCCESS] = success
        if success is False and context is not None:
            exists = context.exists
            if exists is True or exists is False:
                event[attrs.USER_EXISTS] = exists
            if context.blocked is True:
                event[_BLOCKED] = True
                if isinstance(context.decision_id, str) and context.decision_id:
                    event[_DECISION_ID] = context.decision_id

    span = get_current_span()
    recording = span.is_recording()
    memo: _SpanMemo | None = None
    if recording:
        memo = _memo
        if memo is None or memo.span() is not span:
            memo = _memo_for(span)
    ip, agent = _client(context, span, memo, settings)
    if ip is not None:
        event[_CLIENT_ADDRESS] = ip
    if agent is not None:
        event[_USER_AGENT] = agent

    # Only a success or a signup attributes the trace to the user; a failure names a target.
    user = part.user if success is not False else None
    timestamp = time_ns()
    signal = settings.event_signal
    own_span: trace.Span | None = None
    try:
        if signal is not _LOGS:
            if not recording:
                own_span = span = _start_own_span(event_name, span, timestamp, origin.tracer)
            span.add_event(event_name, event, timestamp=timestamp)
            wanted = part.user_hash if user else ""
            if memo is None or memo.marked is None or (wanted and memo.marked != wanted):
                # One set_attribute per value, not one set_attributes: the OpenTelemetry SDK's
                # set_attributes first cleans a copy of the whole mapping, which costs more than
                # one or two set_attribute calls and as much as three (docs/performance.md).
                if user:
                    for name, value in user.items():
                        span.set_attribute(name, value)
                if memo is None or memo.marked is None:
                    span.set_attribute(_TRACKED, True)
                if memo is not None:
                    memo.marked = wanted
        elif recording and user:
            span.set_attributes(user)
        if signal is not _SPAN:
            _emit_log(event_name, event, timestamp, span if own_span or recording else None)
    finally:
        if own_span is not None:
            own_span.end()


_LOGIN: Final = attrs.LOGIN_EVENT
_DISABLED: Final = Mode.DISABLED
_LOGS: Final = EventSignal.LOGS
_SPAN: Final = EventSignal.SPAN
_SIGNUP: Final = attrs.SIGNUP_EVENT
_SOURCE: Final = attrs.SOURCE
_SUCCESS: Final = attrs.LOGIN_SUCCESS
_BLOCKED: Final = attrs.LOGIN_BLOCKED
_DECISION_ID: Final = attrs.DECISION_ID
_CLIENT_ADDRESS: Final = attrs.CLIENT_ADDRESS
_USER_AGENT: Final = attrs.USER_AGENT
_TRACKED: Final = attrs.TRACKED
_modules: Final = sys.modules


def _emit_log(
    event_name: str, event: dict[str, Any], timestamp: int, span: trace.Span | None
) -> None:
    # The same timestamp and span as the span event: consumers of "both" deduplicate on
    # (event, trace_id, span_id, timestamp).
    _get_log_emitter().emit(
        LogRecord(
            timestamp=timestamp,
            observed_timestamp=timestamp,
            context=trace.set_span_in_context(span) if span is not None else None,
            severity_number=SeverityNumber.INFO,
            attributes=event,
            event_name=event_name,
        )
    )


def _start_own_span(
    event_name: str, current: trace.Span, timestamp: int, tracer: trace.Tracer | None
) -> trace.Span:
    # A root span (linked to the unsampled parent, if any) so that a sampled-out parent does not
    # drag the login event down with it: no call is lost to a ParentBased sampler.
    parent = current.get_span_context()
    return (tracer or _get_tracer()).start_span(
        event_name,
        context=otel_context.Context(),
        kind=SpanKind.INTERNAL,
        links=[Link(parent)] if parent.is_valid else None,
        start_time=timestamp,
    )


def _safely(
    event_name: str,
    success: object,
    identifiers: object,
    context: TrackContext | None,
    origin: _Origin,
) -> None:
    try:
        _record(event_name, success, identifiers, context, origin)
    except Exception as error:
        _failed(error, event_name)


def _failed(error: Exception, event_name: str) -> None:
    """Handle usermon's own failure: re-raise in strict mode, else log once per kind.

    Only the exception's type is logged: its text may come from the host (a mapping or a string
    subclass that failed inside usermon) and may carry a secret. Nothing here raises, even when
    the type's own name does.
    """
    if _is_strict():
        raise error
    try:
        kind = _type_name(error)
        # Our failure, never the host's: the host's exceptions never pass through usermon.
        warn_once(
            "internal",
            kind,
            "usermon: failed to record a %s event (%s); the login is unaffected",
            event_name,
            kind,
        )
    except Exception:  # noqa: S110 - the last resort: a failure to log a failure is dropped
        pass


def _type_name(error: BaseException) -> str:
    try:
        name = type(error).__name__
    except Exception:
        return "an exception of an unnamed type"
    return name if isinstance(name, str) else "an exception of an unnamed type"


def _is_strict() -> bool:
    try:
        return get_settings().strict
    except Exception:
        return False


def record_login(
    success: bool,
    identifiers: Mapping[str, object],
    *,
    request: RequestInfo | None = None,
    client_ip: str | None = None,
    user_agent: str | None = None,
    exists: bool | None = None,
    source: str = attrs.SOURCE_SDK,
    mode: Mode | None = None,
    tracer: trace.Tracer | None = None,
    blocked_by: str | None = None,
) -> None:
    """Record one login attempt (the engine behind :func:`auth_track` and the instrumentors).

    ``request`` / ``client_ip`` / ``user_agent`` override what the current request says;
    ``exists`` is kept on failures only; ``blocked_by`` (a decision id) marks a failure as
    refused by protection (``usermon.login.blocked``); ``mode=None`` is the configured manual mode
    (instrumentors pass ``get_settings().auto_mode``); ``tracer`` starts the span of usermon's
    own when none is recording (instrumentors pass their ``tracer_provider``'s). Never raises
    unless strict mode is on.
    """
    _safely(
        attrs.LOGIN_EVENT,
        success,
        identifiers,
        _context_of(request, client_ip, user_agent, exists, blocked_by),
        _origin_of(source, mode, tracer),
    )


def record_signup(
    identifiers: Mapping[str, object],
    *,
    request: RequestInfo | None = None,
    client_ip: str | None = None,
    user_agent: str | None = None,
    source: str = attrs.SOURCE_SDK,
    mode: Mode | None = None,
    tracer: trace.Tracer | None = None,
) -> None:
    """Record one account creation (the engine behind :func:`signup_track` and instrumentors).

    Same arguments and guarantees as :func:`record_login`, without ``success`` and ``exists``.
    """
    _safely(
        attrs.SIGNUP_EVENT,
        None,
        identifiers,
        _context_of(request, client_ip, user_agent, None, None),
        _origin_of(source, mode, tracer),
    )


def _context_of(
    request: RequestInfo | None,
    client_ip: str | None,
    user_agent: str | None,
    exists: bool | None,
    blocked_by: str | None,
) -> TrackContext | None:
    if (
        request is None
        and client_ip is None
        and user_agent is None
        and exists is None
        and blocked_by is None
    ):
        return None
    return TrackContext(
        client_ip=client_ip,
        user_agent=user_agent,
        exists=exists,
        request=request,
        blocked=blocked_by is not None,
        decision_id=blocked_by,
    )


def _origin_of(source: str, mode: Mode | str | None, tracer: trace.Tracer | None) -> _Origin:
    if source is _SDK_ORIGIN.source and mode is None and tracer is None:
        return _SDK_ORIGIN
    return _Origin(source, mode, tracer)


_CONTEXT_KEYWORD: Final = "context"


def _split_call(
    user_identifiers: object, keywords: dict[str, object]
) -> tuple[object, TrackContext | None]:
    """Merge the mapping and keyword call styles; take ``context=`` out if it is a TrackContext."""
    context = keywords.get(_CONTEXT_KEYWORD)
    if isinstance(context, TrackContext):
        del keywords[_CONTEXT_KEYWORD]
    else:
        context = None
    if not keywords:
        return user_identifiers, context
    if user_identifiers is None:
        return keywords, context
    if isinstance(user_identifiers, Mapping):
        merged: dict[Any, object] = dict(user_identifiers)
        merged.update(keywords)
        return merged, context
    return user_identifiers, context  # reported as a bad mapping by the engine


def _track(
    event_name: str, success: object, user_identifiers: object, keywords: dict[str, object]
) -> None:
    """The one path of both public calls: split the call styles, then record."""
    try:
        context: TrackContext | None = None
        if keywords:
            user_identifiers, context = _split_call(user_identifiers, keywords)
        _record(event_name, success, user_identifiers, context, _SDK_ORIGIN)
    except Exception as error:
        _failed(error, event_name)


def auth_track(
    success: bool, user_identifiers: Mapping[str, object] | None = None, /, **identifiers: object
) -> None:
    """Record a login attempt, successful or not.

    Call it once per login attempt, where your code decides the outcome (not on every
    authenticated request). Both call styles work and may be combined::

        usermon.auth_track(True, {"email": user.email})                    # the mapping style
        usermon.auth_track(False, {"email": email, "platform_id": shop.id})  # composite identity
        usermon.auth_track(True, email=user.email)                         # Sqreen keyword style
        usermon.auth_track(False, email=email,
                           context=usermon.TrackContext(exists=False))

    ``success`` is the outcome. The identifiers (mapping and/or keywords) identify the user: all
    of them together are the identity, the primary key is the first of ``email``, ``mail``,
    ``e-mail``, ``username``, ``login`` present, else the first key alphabetically. Send only
    identifiers, the same keys for one account everywhere; secret-looking keys (``password``,
    ``token``, ...) are dropped. ``context=TrackContext(client_ip=..., user_agent=...,
    exists=...)`` carries what is not an identifier. Never raises (unless strict mode is on).
    """
    _track(_LOGIN, success, user_identifiers, identifiers)


def signup_track(
    user_identifiers: Mapping[str, object] | None = None, /, **identifiers: object
) -> None:
    """Record an account creation.

    Call it once, where the account is created, with the same identifier keys the login path
    sends for that account::

        usermon.signup_track({"email": user.email})
        usermon.signup_track(email=user.email)   # Sqreen keyword style

    ``context=TrackContext(client_ip=..., user_agent=...)`` is accepted as for
    :func:`auth_track` (``exists`` is ignored). Never raises (unless strict mode is on).
    """
    _track(_SIGNUP, None, user_identifiers, identifiers)
