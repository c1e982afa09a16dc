"""The HTTP side of the processor: the OTLP/HTTP receiver and the JSON API, on Starlette.

This module owns the wire rules. Ingest (``POST /v1/traces``, ``POST /v1/logs``) follows the
OTLP/HTTP spec: ``application/x-protobuf`` or ``application/json`` (else 415), optional
``Content-Encoding: gzip`` (else 415), a body over ``max_body_bytes`` before *or after*
decompression is 413, a body that does not decode is 400 (with a ``google.rpc.Status``), too many
requests at once is 429 and a store that cannot take the batch is 503 (both with
``Retry-After``), and a 200 carries ``partial_success`` when some usermon events were rejected.
The API (``/api/...``) serves findings, users and addresses as JSON; ``/healthz`` says what is
down. With a token configured every route but ``/healthz`` wants ``Authorization: Bearer``.
"""

from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import json
import logging
import zlib
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from anyio import to_thread
from google.rpc import status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from usermon.processor import otlp
from usermon.processor.model import FINDING_KINDS, SEVERITIES
from usermon.processor.otlp import MalformedRequest
from usermon.processor.service import Processor
from usermon.processor.storage.errors import StoreError
from usermon.processor.storage.state.memory import MemoryState

__all__ = ["create_app"]

logger = logging.getLogger("usermon.processor")

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
RETRY_AFTER_BUSY = "1"
RETRY_AFTER_DOWN = "5"


_T = TypeVar("_T")


class _Reject(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _status_response(exc: _Reject, json_format: bool) -> Response:
    if json_format:
        return JSONResponse(
            {"code": exc.status, "message": exc.message}, exc.status, headers=exc.headers
        )
    body = status_pb2.Status(code=exc.status, message=exc.message).SerializeToString()
    return Response(body, exc.status, headers=exc.headers, media_type=PROTOBUF)


def _parse_since(value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _Reject(400, "since is seconds since the epoch or an ISO 8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.timestamp()


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


def gunzip(body: bytes, limit: int) -> bytes:
    """Decompress a gzip request body of one or more members (RFC 1952 allows several in a
    row, and ``gzip.compress`` of two chunks concatenated is one valid body), never inflating
    more than ``limit`` bytes in all: over it is 413, anything that is not gzip to its end
    (a truncated member, trailing bytes that are not another member) is 400."""
    parts: list[bytes] = []
    size = 0
    rest = body
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out = inflater.decompress(rest, limit - size + 1)
        except zlib.error as exc:
            raise _Reject(400, f"invalid gzip body: {exc}") from None
        size += len(out)
        if size > limit or inflater.unconsumed_tail:
            raise _Reject(413, f"decompressed body over the {limit}-byte limit")
        if not inflater.eof:
            raise _Reject(400, "truncated gzip body")
        parts.append(out)
        rest = inflater.unused_data
        if not rest:
            return b"".join(parts)


def create_app(processor: Processor) -> Starlette:
    """The ASGI app serving ``processor``."""
    settings = processor.settings
    token = settings.token.encode() if settings.token else None
    limit = settings.max_body_bytes
    state = {"inflight": 0}

    def authorized(request: Request) -> bool:
        if token is None:
            return True
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _Reject(413, f"request body over the {limit}-byte limit")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _Reject(413, f"request body over the {limit}-byte limit")
            chunks.append(chunk)
        body = b"".join(chunks)
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("", "identity"):
            return body
        if encoding != "gzip":
            raise _Reject(415, f"unsupported Content-Encoding {encoding!r} (use gzip or none)")
        return gunzip(body, limit)

    def make_ingest(signal: str) -> Any:
        async def ingest(request: Request) -> Response:
            ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
            json_format = ctype == JSON
            try:
                if not authorized(request):
                    raise _Reject(401, "missing or wrong bearer token")
                if ctype not in (PROTOBUF, JSON):
                    raise _Reject(
                        415, f"unsupported Content-Type {ctype!r}: use {PROTOBUF} or {JSON}"
                    )
                if state["inflight"] >= settings.max_inflight:
                    raise _Reject(
                        429, "too many requests at once", {"Retry-After": RETRY_AFTER_BUSY}
                    )
                state["inflight"] += 1
                try:
                    body = await read_body(request)
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
            return _success(signal, json_format, result.rejected_items, result.message)

        return ingest

    async def locked(call: Callable[[], _T]) -> _T:
        """Read the store under the processor's lock, off the loop: the engine mutates the
        same state from its thread."""

        def run() -> _T:
            with processor.lock:
                return call()

        return await to_thread.run_sync(run)

    def api_guard(request: Request) -> JSONResponse | None:
        if not authorized(request):
            return JSONResponse({"error": "missing or wrong bearer token"}, 401)
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
                processor.store.findings,
                kind=kind,
                severity=severity,
                since=_parse_since(q.get("since")),
                subject=q.get("subject") or None,
                limit=_limit(q.get("limit")),
            )
            found = await locked(query)
        except _Reject as exc:
            return JSONResponse({"error": exc.message}, exc.status)
        return JSONResponse({"findings": [f.to_json() for f in found]})

    async def finding(request: Request) -> Response:
        if (denied := api_guard(request)) is not None:
            return denied
        found = await locked(partial(processor.store.finding, request.path_params["finding_id"]))
        if found is None:
            return JSONResponse({"error": "no such finding"}, 404)
        return JSONResponse(found.to_json())

    async def users(request: Request) -> Response:
        if (denied := api_guard(request)) is not None:
            return denied
        q = request.query_params
        try:
            query = partial(
                processor.profiles.users,
                since=_parse_since(q.get("since")),
                limit=_limit(q.get("limit")),
            )
            profiles = await locked(query)
        except _Reject as exc:
            return JSONResponse({"error": exc.message}, exc.status)
        return JSONResponse({"users": profiles})

    async def user(request: Request) -> Response:
        if (denied := api_guard(request)) is not None:
            return denied
        user_hash = request.path_params["user_hash"]

        def read() -> tuple[dict[str, Any] | None, list[Any]]:
            found = processor.profiles.user(user_hash)
            if found is None:
                return None, []
            return found, processor.store.findings(subject=user_hash, limit=50)

        profile, about = await locked(read)
        if profile is None:
            return JSONResponse({"error": "no such user"}, 404)
        return JSONResponse({**profile, "findings": [f.to_json() for f in about]})

    async def ip(request: Request) -> Response:
        if (denied := api_guard(request)) is not None:
            return denied
        raw = request.path_params["ip"]
        try:
            address = str(ipaddress.ip_address(raw))
        except ValueError:
            return JSONResponse({"error": f"not an IP address: {raw!r}"}, 400)

        def read() -> tuple[dict[str, Any] | None, list[Any]]:
            found = processor.profiles.ip(address)
            if found is None:
                return None, []
            return found, processor.store.findings(subject=address, limit=50)

        profile, about = await locked(read)
        if profile is None:
            return JSONResponse({"error": "address not seen"}, 404)
        return JSONResponse({**profile, "findings": [f.to_json() for f in about]})

    async def healthz(request: Request) -> Response:
        health = await to_thread.run_sync(processor.store.health)
        components = dict(health.components)
        components["engine"] = "ok"
        body: dict[str, Any] = {
            "status": "ok" if health.ok else "down",
            "components": components,
            "down": sorted(k for k, v in components.items() if v != "ok"),
            "detector_errors": processor.engine.detector_errors,
            "decoder": {"walker": "c" if otlp.FAST_DECODE else "python", "declined": otlp.DECLINED},
        }
        # How full an in-process state is, and what its caps cost. It tells how many users and
        # addresses are active: with a token (off loopback), only to a bearer, as the API.
        state = processor.store.state
        if isinstance(state, MemoryState) and authorized(request):
            body["state"] = {
                "keys": len(state),
                "max_keys": state.max_keys,
                "evicted": state.evicted,
                "maps_evicted": state.maps_evicted,
            }
        return JSONResponse(body, 200 if health.ok else 503)

    routes = [
        Route("/v1/traces", make_ingest("traces"), methods=["POST"]),
        Route("/v1/logs", make_ingest("logs"), methods=["POST"]),
        Route("/api/findings", findings, methods=["GET"]),
        Route("/api/findings/{finding_id}", finding, methods=["GET"]),
        Route("/api/users", users, methods=["GET"]),
        Route("/api/users/{user_hash}", user, methods=["GET"]),
        Route("/api/ips/{ip}", ip, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.processor = processor
    return app


def _success(signal: str, json_format: bool, rejected: int, message: str) -> Response:
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
