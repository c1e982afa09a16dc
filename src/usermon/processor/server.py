"""The HTTP side of the processor: the OTLP/HTTP receiver and the JSON API, on Starlette.

This module owns the wire rules. Ingest (``POST /v1/traces``, ``POST /v1/logs``) follows the
OTLP/HTTP spec: ``application/x-protobuf`` or ``application/json`` (else 415), optional
``Content-Encoding: gzip`` (else 415, inflated in a worker thread), a body over ``max_body_bytes``
before *or after* decompression is 413, one not complete within ``body_timeout`` is 408, a body
that does not decode is 400 (with a ``google.rpc.Status``), too many requests being processed
(counted once their bodies are in) or too many body bytes held at once is 429 and a store that
cannot take the batch is 503 (both with ``Retry-After``), and a 200 carries ``partial_success``
when some usermon events were rejected. The API (``/api/...``) serves findings, users and
addresses as JSON that no stored value can fail to render; ``/healthz`` says what is down. With a
token configured every route but ``/healthz`` wants ``Authorization: Bearer``; an application
token may only ingest and read the decision stream (:mod:`usermon.processor.access`); the
decision routes are :mod:`usermon.processor.decisions_api`. docs/security.md explains each limit."""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import zlib
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import anyio
from anyio import to_thread
from google.rpc import status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from usermon.processor import dashboard
from usermon.processor.access import ADMIN, APP, Access, Role
from usermon.processor.decisions_api import decision_routes, decisions_of
from usermon.processor.model import FINDING_KINDS, SEVERITIES
from usermon.processor.otlp import MalformedRequest
from usermon.processor.queries import (
    attacking_sources,
    decode_cursor,
    encode_cursor,
    find_user,
    findings_page,
    parse_since,
)
from usermon.processor.service import Processor
from usermon.processor.storage.base import SharedStore
from usermon.processor.storage.errors import StoreError
from usermon.processor.storage.repair import scrub, scrub_text
from usermon.processor.storage.state.base import CappedDedupe, InProcessState

__all__ = ["create_app"]

logger = logging.getLogger("usermon.processor")

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
RETRY_AFTER_BUSY = "1"
RETRY_AFTER_DOWN = "5"


_T = TypeVar("_T")


class SafeJSONResponse(JSONResponse):
    """A JSON response that cannot fail on what the store holds: content that does not render
    as it is (a lone surrogate, NaN, a value JSON has no type for) is rendered scrubbed
    (U+FFFD, null, its text) instead of answering 500."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except (UnicodeEncodeError, ValueError, TypeError):
            return super().render(scrub(content, finite=True))


class _Reject(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _status_response(exc: _Reject, json_format: bool) -> Response:
    if json_format:
        return SafeJSONResponse(
            {"code": exc.status, "message": exc.message}, exc.status, headers=exc.headers
        )
    body = status_pb2.Status(code=exc.status, message=exc.message).SerializeToString()
    return Response(body, exc.status, headers=exc.headers, media_type=PROTOBUF)


def _parse_since(value: str | None) -> float | None:
    try:
        return parse_since(value)
    except ValueError as exc:
        raise _Reject(400, str(exc)) from None


ATTACK_FINDINGS = 1000
"""``GET /api/ips`` ranks the sources of the newest this many findings."""


def _cursor(value: str | None) -> tuple[float, str] | None:
    try:
        return decode_cursor(value)
    except ValueError as exc:
        raise _Reject(400, str(exc)) from None


def _limit(value: str | None) -> int:
    if value is None:
        return 100
    try:
        n = int(value)
    except ValueError:
        raise _Reject(400, "limit must be an integer") from None
    if not 1 <= n <= 10_000:
        raise _Reject(400, "limit must be between 1 and 10000")
    return n


_FIRST_STEP = 64
_MAX_STEP = 64 * 1024
_OUT_STEP = 1024 * 1024


class _Stopped(Exception):
    """Decompression was abandoned: the request was cancelled or the server is stopping."""


def gunzip(
    body: bytes,
    limit: int,
    *,
    reserve: Callable[[int], None] | None = None,
    stopped: Callable[[], bool] | None = None,
) -> bytes:
    """Decompress a gzip request body of one or more members (RFC 1952 allows several in a
    row, and ``gzip.compress`` of two chunks concatenated is one valid body), never inflating
    more than ``limit`` bytes in all: over it is 413, anything that is not gzip to its end
    (a truncated member, trailing bytes that are not another member) is 400.

    Linear in the body's size whatever its members: each member is fed a window that starts
    small and doubles, so what zlib copies past a member's end is bounded by what that member
    consumed (one inflater per whole remaining body made many tiny members quadratic).
    ``reserve`` is told each output chunk's size before it is kept (it may raise to refuse),
    and ``stopped()`` is asked between chunks, so a worker thread running this ends promptly."""
    if not body:
        raise _Reject(400, "empty gzip body")
    view = memoryview(body)
    end = len(body)
    parts: list[bytes] = []
    size = 0
    pos = 0
    while pos < end:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        step = _FIRST_STEP
        while True:
            if stopped is not None and stopped():
                raise _Stopped
            data: bytes | memoryview = view[pos : pos + step]
            pos += len(data)
            while True:
                cap = min(limit - size + 1, _OUT_STEP)
                try:
                    out = inflater.decompress(data, cap)
                except zlib.error as exc:
                    raise _Reject(400, f"invalid gzip body: {exc}") from None
                size += len(out)
                if size > limit:
                    raise _Reject(413, f"decompressed body over the {limit}-byte limit")
                if out:
                    if reserve is not None:
                        reserve(len(out))
                    parts.append(out)
                data = inflater.unconsumed_tail
                # A full output chunk may leave output pending inside zlib with no input left.
                if inflater.eof or (not data and len(out) < cap):
                    break
                if stopped is not None and stopped():
                    raise _Stopped
            if inflater.eof:
                pos -= len(inflater.unused_data)  # the next member starts there
                break
            if pos >= end:
                raise _Reject(400, "truncated gzip body")
            step = min(step * 2, _MAX_STEP)
    return b"".join(parts)


class ByteBudget:
    """The bytes of request bodies held at once across requests: as received, and as
    decompressed while they are decoded. Thread-safe (gzip is inflated in worker threads)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.used -= n


class _Held:
    """What one request holds of the :class:`ByteBudget`; over it is 429. Once released, a
    worker thread still inflating (its request abandoned) can take nothing more."""

    def __init__(self, budget: ByteBudget) -> None:
        self.budget = budget
        self.bytes = 0
        self._released = False
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        with self._lock:
            if self._released:
                raise _Stopped
            if not self.budget.take(n):
                raise _Reject(
                    429,
                    f"over the {self.budget.limit}-byte budget of request bodies in flight",
                    {"Retry-After": RETRY_AFTER_BUSY},
                )
            self.bytes += n

    def give(self, n: int) -> None:
        with self._lock:
            n = min(n, self.bytes)
            self.bytes -= n
            self.budget.give(n)

    def release(self) -> None:
        with self._lock:
            self._released = True
            self.budget.give(self.bytes)
            self.bytes = 0


def create_app(processor: Processor) -> Starlette:
    """The ASGI app serving ``processor``."""
    settings = processor.settings
    access = Access(settings.token, settings.app_tokens)
    limit = settings.max_body_bytes
    state = {"inflight": 0}
    budget = ByteBudget(settings.max_inflight_bytes)
    stopping = threading.Event()  # set by the runner when the server begins to stop

    def refused(request: Request, need: Role = ADMIN) -> int | None:
        """401 / 403 when the request's token may not do what ``need`` says, else None."""
        return access.check(request.headers.get("authorization", ""), need)

    def authorized(request: Request, need: Role = ADMIN) -> bool:
        return refused(request, need) is None

    async def read_body(request: Request, held: _Held) -> bytes:
        """The body as received, within ``max_body_bytes``, the byte budget and the body
        timeout (a deadline for the whole body: a trickle of bytes does not extend it)."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _Reject(413, f"request body over the {limit}-byte limit")
        chunks: list[bytes] = []
        size = 0
        with anyio.move_on_after(settings.body_timeout) as deadline:
            try:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise _Reject(413, f"request body over the {limit}-byte limit")
                    held.take(len(chunk))
                    chunks.append(chunk)
            except ClientDisconnect:  # nobody to answer; nothing was taken
                raise _Reject(400, "the client left before sending its whole body") from None
        if deadline.cancelled_caught:
            raise _Reject(
                408,
                f"request body not received within {settings.body_timeout:g} s",
                {"Connection": "close"},
            )
        return b"".join(chunks)

    async def inflate(body: bytes, held: _Held) -> bytes:
        """``body`` decompressed in a worker thread (the loop keeps serving), the output
        counted against the byte budget; abandoned when the request is cancelled or the
        server stops."""
        cancelled = threading.Event()

        def stopped() -> bool:
            return cancelled.is_set() or stopping.is_set()

        def run() -> bytes:
            return gunzip(body, limit, reserve=held.take, stopped=stopped)

        try:
            return await to_thread.run_sync(run, abandon_on_cancel=True)
        except _Stopped:
            raise _Reject(
                503, "the processor is stopping", {"Retry-After": RETRY_AFTER_DOWN}
            ) from None
        finally:
            cancelled.set()

    def make_ingest(signal: str) -> Any:
        async def ingest(request: Request) -> Response:
            ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
            json_format = ctype == JSON
            held = _Held(budget)
            try:
                if (status := refused(request, APP)) is not None:
                    raise _Reject(status, "missing or wrong bearer token")
                if ctype not in (PROTOBUF, JSON):
                    raise _Reject(
                        415, f"unsupported Content-Type {ctype!r}: use {PROTOBUF} or {JSON}"
                    )
                encoding = request.headers.get("content-encoding", "identity").strip().lower()
                if encoding not in ("", "identity", "gzip"):
                    raise _Reject(
                        415, f"unsupported Content-Encoding {encoding!r} (use gzip or none)"
                    )
                body = await read_body(request, held)
                # The slot is taken once the body is complete: a slow sender holds a
                # connection and what it sent of the budget, never a slot.
                if state["inflight"] >= settings.max_inflight:
                    raise _Reject(
                        429, "too many requests at once", {"Retry-After": RETRY_AFTER_BUSY}
                    )
                state["inflight"] += 1
                try:
                    if encoding == "gzip":
                        received = len(body)
                        body = await inflate(body, held)
                        held.give(received)
                    try:
                        # The engine runs in a worker thread (one batch at a time, under the
                        # processor's lock) so the loop keeps reading bodies and serving the API.
                        result = await to_thread.run_sync(
                            partial(processor.ingest, signal, body, json_format=json_format)
                        )
                    except MalformedRequest as exc:
                        raise _Reject(400, str(exc)) from None
                    except StoreError as exc:
                        logger.error("cannot take a batch durably: %s", exc)
                        raise _Reject(
                            503, "the store cannot take data now", {"Retry-After": RETRY_AFTER_DOWN}
                        ) from None
                finally:
                    state["inflight"] -= 1
            except _Reject as exc:
                return _status_response(exc, json_format)
            finally:
                held.release()
            return _success(signal, json_format, result.rejected_items, result.message)

        return ingest

    async def locked(call: Callable[[], _T]) -> _T:
        """Read the store under the processor's lock, off the loop: the engine mutates the
        same state from its thread."""

        def run() -> _T:
            with processor.lock:
                return call()

        return await to_thread.run_sync(run)

    def api_guard(request: Request, need: Role = ADMIN) -> JSONResponse | None:
        status = refused(request, need)
        if status == 401:
            return SafeJSONResponse({"error": "missing or wrong bearer token"}, 401)
        if status is not None:
            return SafeJSONResponse(
                {"error": "this route needs the admin token (USERMON_TOKEN), not an application's"},
                status,
            )
        return None

    async def findings(request: Request) -> Response:
        if (denied := api_guard(request)) is not None:
            return denied
        q = request.query_params
        try:
            kind = q.get("kind") or None
            if kind is not None and kind not in FINDING_KINDS:
                raise _Reject(400, f"unknown kind {kind!r}; kinds: {', '.join(FINDING_KINDS)}")
            severity = q.get("severity") or None
            if severity is not None and severity not in SEVERITIES:
                raise _Reject(400, f"severity is one of {', '.join(SEVERITIES)}")
            query = partial(
                findings_page,
                processor.store,
                kind=kind,
                severity=severity,
                since=_parse_since(q.get("since")),
                subject=q.get("subject") or None,
                limit=_limit(q.get("limit")),
                after=_cursor(q.get("cursor")),
            )
            found, after = await locked(query)
            decided = await to_thread.run_sync(decisions_of, processor, [f.id for f in found])
        except _Reject as exc:
            return SafeJSONResponse({"error": exc.message}, exc.status)
        return SafeJSONResponse(
            {
                "findings": [{**f.to_json(), "decisions": decided.get(f.id, [])} for f in found],
                "next_cursor": encode_cursor(after),
            }
        )

    async def finding(request: Request) -> Response:
        if (denied := api_guard(request)) is not None:
            return denied
        found = await locked(partial(processor.store.finding, request.path_params["finding_id"]))
        if found is None:
            return SafeJSONResponse({"error": "no such finding"}, 404)
        decided = await to_thread.run_sync(decisions_of, processor, [found.id])
        return SafeJSONResponse({**found.to_json(), "decisions": decided.get(found.id, [])})

    async def users(request: Request) -> Response:
        if (denied := api_guard(request)) is not None:
            return denied
        q = request.query_params
        try:
            query = partial(
                processor.profiles.users_page,
                since=_parse_since(q.get("since")),
                limit=_limit(q.get("limit")),
                after=_cursor(q.get("cursor")),
            )
            profiles, after = await locked(query)
        except _Reject as exc:
            return SafeJSONResponse({"error": exc.message}, exc.status)
        return SafeJSONResponse({"users": profiles, "next_cursor": encode_cursor(after)})

    async def ips(request: Request) -> Response:
        """Sources: ``sort=attacking`` (default) ranks the addresses and networks findings are
        about by their events; ``sort=recent`` lists addresses most recently seen first, by
        cursor."""
        if (denied := api_guard(request)) is not None:
            return denied
        q = request.query_params
        try:
            limit = _limit(q.get("limit"))
            if q.get("sort", "attacking") == "attacking":
                recent = await locked(partial(processor.store.findings, limit=ATTACK_FINDINGS))
                return SafeJSONResponse({"ips": attacking_sources(recent)[:limit]})
            if q.get("sort") != "recent":
                raise _Reject(400, "sort is attacking or recent")
            query = partial(
                processor.profiles.ips_page,
                since=_parse_since(q.get("since")),
                limit=limit,
                after=_cursor(q.get("cursor")),
            )
            page = await locked(query)
        except _Reject as exc:
            return SafeJSONResponse({"error": exc.message}, exc.status)
        return SafeJSONResponse({"ips": page[0], "next_cursor": encode_cursor(page[1])})

    async def user(request: Request) -> Response:
        if (denied := api_guard(request)) is not None:
            return denied
        key = request.path_params["user"]  # the user's hash, or its label (queries.find_user)

        def read() -> tuple[dict[str, Any] | None, list[Any]]:
            found = find_user(processor.profiles, key)
            if found is None:
                return None, []
            return found, processor.store.findings(subject=found["user_hash"], limit=50)

        profile, about = await locked(read)
        if profile is None:
            return SafeJSONResponse({"error": "no such user"}, 404)
        return SafeJSONResponse({**profile, "findings": [f.to_json() for f in about]})

    async def ip(request: Request) -> Response:
        if (denied := api_guard(request)) is not None:
            return denied
        raw = request.path_params["ip"]
        try:
            address = str(ipaddress.ip_address(raw))
        except ValueError:
            return SafeJSONResponse({"error": f"not an IP address: {raw!r}"}, 400)

        def read() -> tuple[dict[str, Any] | None, list[Any]]:
            found = processor.profiles.ip(address)
            if found is None:
                return None, []
            return found, processor.store.findings(subject=address, limit=50)

        profile, about = await locked(read)
        if profile is None:
            return SafeJSONResponse({"error": "address not seen"}, 404)
        return SafeJSONResponse({**profile, "findings": [f.to_json() for f in about]})

    async def metrics(request: Request) -> Response:
        # An application exporting straight to the processor (OTEL_EXPORTER_OTLP_ENDPOINT, the
        # local-development path) sends its metrics here too. The processor has no use for them,
        # and a 404 would make the SDK log a failed export at every interval: answer as a
        # receiver that took them, without reading the body.
        json_format = request.headers.get("content-type", "").split(";", 1)[0].strip() == JSON
        if (status := refused(request, APP)) is not None:
            return _status_response(_Reject(status, "missing or wrong bearer token"), json_format)
        logger.debug("OTLP metrics dropped: the processor reads only traces and logs")
        if json_format:
            return Response("{}", 200, media_type=JSON)
        empty = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
        return Response(empty, 200, media_type=PROTOBUF)

    async def healthz(request: Request) -> Response:
        health = await to_thread.run_sync(processor.store.health)
        components = dict(health.components)
        components["engine"] = "ok"
        body: dict[str, Any] = {
            "status": "ok" if health.ok else "down",
            "components": components,
            "down": sorted(k for k, v in components.items() if v != "ok"),
            "detector_errors": processor.engine.detector_errors,
        }
        # How full an in-process state is, and what its caps cost. It tells how many users and
        # addresses are active: with a token (off loopback), only to a bearer, as the API.
        state = processor.store.state
        if isinstance(state, InProcessState) and authorized(request):
            body["state"] = state.usage()
        if isinstance(state, CappedDedupe):  # this replica's, since it started
            body["dedupe_unrecorded"] = state.unrecorded_claims
        if isinstance(processor.store, SharedStore):
            body["batches_to_replay"] = processor.batches_to_replay
        return SafeJSONResponse(body, 200 if health.ok else 503)

    routes = [
        Route("/v1/traces", make_ingest("traces"), methods=["POST"]),
        Route("/v1/logs", make_ingest("logs"), methods=["POST"]),
        Route("/v1/metrics", metrics, methods=["POST"]),
        Route("/api/findings", findings, methods=["GET"]),
        Route("/api/findings/{finding_id}", finding, methods=["GET"]),
        Route("/api/users", users, methods=["GET"]),
        Route("/api/users/{user:path}", user, methods=["GET"]),
        Route("/api/ips", ips, methods=["GET"]),
        Route("/api/ips/{ip}", ip, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        *decision_routes(processor, api_guard),
        *dashboard.routes(processor),  # the web dashboard at / (docs/dashboard.md)
    ]
    app = Starlette(routes=routes)
    app.state.processor = processor
    app.state.budget = budget
    app.state.stopping = stopping
    return app


def _success(signal: str, json_format: bool, rejected: int, message: str) -> Response:
    message = scrub_text(message)
    if json_format:
        body: dict[str, Any] = {}
        if rejected or message:
            field = "rejectedSpans" if signal == "traces" else "rejectedLogRecords"
            body["partialSuccess"] = {field: str(rejected), "errorMessage": message}
        return Response(json.dumps(body), 200, media_type=JSON)
    response: Any
    if signal == "traces":
        response = trace_service_pb2.ExportTraceServiceResponse()
        if rejected or message:
            response.partial_success.rejected_spans = rejected
            response.partial_success.error_message = message
    else:
        response = logs_service_pb2.ExportLogsServiceResponse()
        if rejected or message:
            response.partial_success.rejected_log_records = rejected
            response.partial_success.error_message = message
    return Response(response.SerializeToString(), 200, media_type=PROTOBUF)
