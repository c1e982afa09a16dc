"""The decision routes of the processor's JSON API: list, stream, create, remove, allowlist.

This module owns what ``/api/decisions`` and ``/api/allowlist`` accept and answer
(docs/protection.md): the validation of a decision a person makes (action, scope, a value that
fits the scope, a duration within a year), the decision stream the applications pull
(``GET /api/decisions/stream?cursor=...``: the full active set without a cursor or with one this
store does not know, else what was added and removed since), and the allowlist. Only the stream is
open to application tokens; everything else needs the admin token. Every answer is bounded: the
stream holds at most :data:`MAX_STREAM_DECISIONS` decisions, a request body at most
:data:`MAX_BODY` bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import re
import time
import uuid
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from usermon.decisions import MAX_FINGERPRINT_PARTS
from usermon.processor.access import APP, Role
from usermon.processor.model import DECISION_ACTIONS, DECISION_SCOPES, Decision
from usermon.processor.profiles import Profiles
from usermon.processor.queries import find_user, parse_duration
from usermon.processor.responses import MAX_DURATION
from usermon.processor.storage.base import ALLOW_KINDS, DecisionStore, Store
from usermon.processor.storage.errors import StoreError

__all__ = [
    "MAX_ALLOWLIST",
    "MAX_BODY",
    "MAX_STREAM_BYTES",
    "MAX_STREAM_DECISIONS",
    "DecisionError",
    "add_allowed",
    "allowed_key",
    "create_decision",
    "decision_routes",
    "decision_store",
    "decisions_for_key",
    "decisions_of",
    "manual_decision",
    "normalize_value",
    "remove_allowed",
    "remove_decision",
]

MAX_STREAM_DECISIONS = 50_000
"""Decisions in one stream answer: the SDK keeps at most this many (usermon.decisions)."""

MAX_STREAM_BYTES = 15 * 1024 * 1024
"""Bytes of decisions in one stream answer, under the SDK's 16 MiB cap on a whole answer
(usermon.protection.MAX_BODY_BYTES) with room for the allowlist."""

MAX_ALLOWLIST = 10_000
"""Allowlist entries; the SDK rejects an answer with more than 100 000."""

MAX_BODY = 64 * 1024
"""Largest request body the decision routes read."""

MAX_VALUE = 1024
MAX_REASON = 500
_HASH = re.compile(r"^[^\s|]{1,256}$")
_UA = re.compile(r"^[0-9a-f]{64}$")

Guard = Callable[[Request, Role], JSONResponse | None]


class Processor(Protocol):
    """What the routes need of the service (usermon.processor.service.Processor), which this
    module must not import (it sits above the routes)."""

    store: Store
    profiles: Profiles

    def add_decisions(self, decisions: Sequence[Decision], who: str) -> list[Decision]: ...

    def remove_decisions(self, ids: Sequence[str], who: str) -> list[Decision]: ...


class DecisionError(ValueError):
    """A decision or an allowlist entry that cannot be made: the message says why (400)."""


def normalize_value(scope: str, value: str) -> str:
    """``value`` checked against ``scope`` and written canonically (an address as
    :mod:`ipaddress` prints it, a network with its host bits cleared)."""
    value = value.strip()
    if not value or len(value) > MAX_VALUE:
        raise DecisionError(f"value must be 1 to {MAX_VALUE} characters")
    if scope == "ip":
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise DecisionError(f"not an IP address: {value!r}") from None
    if scope == "network":
        try:
            return str(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise DecisionError(
                f"not a CIDR network: {value!r} (e.g. 198.51.100.0/24 or 2001:db8::/32)"
            ) from None
    if scope == "user":
        if not _HASH.match(value):
            raise DecisionError("a user is its user.hash: no spaces, no '|', at most 256 chars")
        return value
    if scope == "user_ip":
        user, sep, ip = value.rpartition("|")
        if not sep or not _HASH.match(user):
            raise DecisionError("a user_ip value is '<user.hash>|<address>'")
        return f"{user}|{normalize_value('ip', ip)}"
    if scope == "service_campaign":
        usable = False
        for part in value.split(";"):
            name, sep, text = part.partition("=")
            if not sep or not name:
                raise DecisionError(f"a fingerprint is name=value;name=value, not {part!r}")
            if name == "ua":
                if not _UA.match(text):
                    raise DecisionError("ua= is the SHA-256 of the User-Agent, 64 hex digits")
                usable = True
            elif name == "net":
                normalize_value("network", text)
                usable = True
        if not usable:
            raise DecisionError("a fingerprint needs a ua= or net= part an application can match")
        parts = sum(1 for part in value.split(";") if part.startswith(("ua=", "net=")))
        if parts > MAX_FINGERPRINT_PARTS:
            raise DecisionError(
                f"a fingerprint has at most {MAX_FINGERPRINT_PARTS} ua= and net= parts together"
            )
        return value
    raise DecisionError(f"unknown scope {scope!r}; scopes: {', '.join(DECISION_SCOPES)}")


def manual_decision(body: Any, now: float) -> Decision:
    """The decision a person asks for in a ``POST /api/decisions`` body: ``action``, ``scope``,
    ``value``, ``duration`` (``15m``, ``4h``, seconds), ``reason`` and ``by`` (who)."""
    if not isinstance(body, dict):
        raise DecisionError("the body is a JSON object: {action, scope, value, duration, reason}")
    unknown = set(body) - {"action", "scope", "value", "duration", "reason", "by"}
    if unknown:
        raise DecisionError(f"unknown field(s) {sorted(unknown)}")
    action = body.get("action", "block")
    if action not in DECISION_ACTIONS:
        raise DecisionError(f"unknown action {action!r}; actions: {', '.join(DECISION_ACTIONS)}")
    scope = body.get("scope")
    if scope not in DECISION_SCOPES:
        raise DecisionError(f"unknown scope {scope!r}; scopes: {', '.join(DECISION_SCOPES)}")
    value = body.get("value")
    if not isinstance(value, str):
        raise DecisionError("value is a string")
    duration = body.get("duration")
    if duration is None:
        raise DecisionError("duration is required (e.g. 15m, 4h, 7d)")
    if not isinstance(duration, (str, int, float)) or isinstance(duration, bool):
        raise DecisionError("duration is a string such as 15m or a number of seconds")
    try:
        seconds = parse_duration(duration, maximum=MAX_DURATION)
    except ValueError as exc:
        raise DecisionError(str(exc)) from None
    reason = body.get("reason") or "manual decision"
    who = body.get("by") or "admin"
    if not isinstance(reason, str) or not isinstance(who, str):
        raise DecisionError("reason and by are strings")
    return Decision(
        id="m-" + uuid.uuid4().hex[:16],
        action=action,
        scope=scope,
        value=normalize_value(scope, value),
        until=now + seconds,
        reason=reason[:MAX_REASON],
        origin=f"manual:{who[:100]}",
        created=now,
    )


def allow_entry(body: Any) -> tuple[str, str, str]:
    """``(kind, value, who)`` from a ``POST /api/allowlist`` body ``{value, kind?, by?}``: the
    kind is ``network`` for an address or a CIDR, else ``user``."""
    if not isinstance(body, dict) or not isinstance(body.get("value"), str):
        raise DecisionError("the body is a JSON object: {value, kind?, by?}")
    value = body["value"].strip()
    kind = body.get("kind")
    if kind is None:
        kind = "network" if _is_network(value) else "user"
    if kind not in ALLOW_KINDS:
        raise DecisionError(f"kind is one of {', '.join(ALLOW_KINDS)}")
    if kind == "network":
        value = normalize_value("network", value)
    else:
        value = normalize_value("user", value)
    who = body.get("by") or "admin"
    return kind, value, str(who)[:100]


def _is_network(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


def decisions_of(processor: Processor, finding_ids: Sequence[str]) -> dict[str, list[str]]:
    """The ids of the decisions made for each finding (additive ``decisions`` on findings)."""
    store = processor.store
    if not isinstance(store, DecisionStore):
        return {}
    out: dict[str, list[str]] = {}
    for fid in finding_ids:
        found = store.decisions(now=0.0, include_inactive=True, finding=fid, limit=100)
        if found:
            out[fid] = [d.id for d in found]
    return out


def decision_store(processor: Processor) -> DecisionStore:
    """The processor's store as a :class:`DecisionStore` (every shipped store is one)."""
    found = processor.store
    if not isinstance(found, DecisionStore):  # pragma: no cover - every shipped store is
        raise DecisionError("this store keeps no decisions")
    return found


def create_decision(processor: Processor, body: Any, now: float) -> Decision:
    """Validate a person's decision (:func:`manual_decision`), store it and export it; the audit
    log records it under its ``by``. The API's ``POST /api/decisions`` and the dashboard both
    make decisions through here."""
    decision = manual_decision(body, now)
    if decision.scope in ("user", "user_ip"):
        user, sep, ip = decision.value.partition("|")
        decision = dataclasses.replace(decision, value=_user_hash(processor, user) + sep + ip)
    decision_store(processor)
    processor.add_decisions([decision], decision.origin.split(":", 1)[1])
    return decision


def decisions_for_key(processor: Processor, key: str, now: float) -> list[Decision]:
    """What removing ``key`` removes: the decision with that id, else every active decision on
    that value (an address or a network written either way, a user hash)."""
    book = decision_store(processor)
    found = book.decisions(now=0.0, include_inactive=True, ids=[key])
    if found:
        return found
    values = {key}
    for scope in ("ip", "network"):
        with contextlib.suppress(DecisionError):
            values.add(normalize_value(scope, key))
    return [d for v in values for d in book.decisions(now=now, value=v, limit=100_000)]


def remove_decision(processor: Processor, key: str, who: str, now: float) -> list[Decision]:
    """Remove the decision with id ``key``, or every active decision on that value; returns
    those that were active (``DELETE /api/decisions/{key}`` and the dashboard)."""
    ids = [d.id for d in decisions_for_key(processor, key, now)]
    return processor.remove_decisions(ids, who)


def add_allowed(processor: Processor, body: Any) -> tuple[str, str, bool]:
    """Put ``{value, kind?, by?}`` on the allowlist (:func:`allow_entry`): ``(kind, value,
    whether it changed)``. Refused when the allowlist is full."""
    kind, value, who = allow_entry(body)
    if kind == "user":
        value = _user_hash(processor, value)
    book = decision_store(processor)
    if len(book.allowlist()) >= MAX_ALLOWLIST:
        raise DecisionError(f"the allowlist is full ({MAX_ALLOWLIST} entries)")
    return kind, value, book.set_allowed(kind, value, who)


def _user_hash(processor: Processor, user: str) -> str:
    """A user named by its label (``ada@example.com``) as its ``user.hash``, the value the
    applications match, as ``GET /api/users/{user}`` resolves it; a value no profile answers to
    is taken as a hash (an account not seen yet)."""
    found = find_user(processor.profiles, user)
    return str(found["user_hash"]) if found is not None else user


def allowed_key(value: str) -> tuple[str, str]:
    """``(kind, value)`` of an allowlist entry as written by a person: a network (an address or
    a CIDR, written canonically) or a user hash."""
    if _is_network(value):
        return "network", normalize_value("network", value)
    return "user", value


def remove_allowed(processor: Processor, value: str, who: str) -> tuple[str, str, bool]:
    """Take ``value`` off the allowlist: ``(kind, canonical value, whether it was on)``."""
    kind, canonical = allowed_key(value)
    return (
        kind,
        canonical,
        decision_store(processor).set_allowed(kind, canonical, who, allowed=False),
    )


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status)


async def _json_body(request: Request) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise DecisionError(f"body over {MAX_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise DecisionError(f"body over {MAX_BODY} bytes")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks) or b"null")
    except ValueError:
        raise DecisionError("the body is not JSON") from None


def _cursor(epoch: str, seq: int) -> str:
    return f"{epoch}.{seq}"


def _parse_cursor(cursor: str | None, epoch: str) -> int | None:
    if not cursor:
        return None
    head, _, tail = cursor.rpartition(".")
    if head != epoch or not tail.isdigit() or len(tail) > 18:
        return None
    return int(tail)


def stream(store: DecisionStore, cursor: str | None, now: float) -> dict[str, Any]:
    """One answer of the decision stream (docs/protection.md, "The decision stream")."""
    epoch = store.decision_epoch()
    after = _parse_cursor(cursor, epoch)
    allow = store.allowlist()
    allow_json = {
        "networks": [e.value for e in allow if e.kind == "network"],
        "users": [e.value for e in allow if e.kind == "user"],
    }
    if after is not None:
        changes = store.decision_changes(after, now)
        if changes is not None:
            new, complete = _bounded(changes.new)
            if complete:
                return {
                    "cursor": _cursor(epoch, changes.sequence),
                    "full": False,
                    "new": new,
                    "deleted": changes.deleted,
                    "allow": allow_json,
                }
    # The sequence first: a change made while the set is read is sent again next time (adding
    # a decision twice replaces it; removing an unknown id is ignored).
    seq = store.decision_sequence()
    active = store.decisions(now=now, limit=10 * MAX_STREAM_DECISIONS)
    active.sort(key=lambda d: (d.action != "block", -d.until))  # blocks first, then longest
    return {
        "cursor": _cursor(epoch, seq),
        "full": True,
        "new": _bounded(active)[0],
        "deleted": [],
        "allow": allow_json,
    }


def _bounded(decisions: Sequence[Decision]) -> tuple[list[dict[str, Any]], bool]:
    """The wire form of ``decisions`` in order, up to :data:`MAX_STREAM_DECISIONS` and
    :data:`MAX_STREAM_BYTES`; and whether they all fit."""
    out: list[dict[str, Any]] = []
    size = 0
    for decision in decisions[:MAX_STREAM_DECISIONS]:
        wire = _wire(decision)
        size += len(json.dumps(wire)) + 2
        if size > MAX_STREAM_BYTES:
            return out, False
        out.append(wire)
    return out, len(decisions) <= MAX_STREAM_DECISIONS


def _wire(decision: Decision) -> dict[str, Any]:
    data = decision.to_json()
    data.pop("finding", None)  # not part of the stream's eight fields
    return data


def decision_routes(processor: Processor, guard: Guard) -> list[Route]:
    """The routes, each behind ``guard(request, role)`` (None when allowed, else the answer)."""

    def store() -> DecisionStore:
        return decision_store(processor)

    async def run(call: Callable[[], Any]) -> Any:
        return await to_thread.run_sync(call)

    async def handle(request: Request, role: Role, work: Callable[[], Any]) -> Response:
        if (denied := guard(request, role)) is not None:
            return denied
        try:
            result = await work()
        except DecisionError as exc:
            return _error(str(exc))
        except StoreError as exc:
            return _error(f"the store is unavailable: {exc}", 503)
        if isinstance(result, Response):
            return result
        return JSONResponse(result)

    async def list_decisions(request: Request) -> Response:
        async def work() -> Any:
            q = request.query_params
            scope = q.get("scope") or None
            if scope is not None and scope not in DECISION_SCOPES:
                raise DecisionError(
                    f"unknown scope {scope!r}; scopes: {', '.join(DECISION_SCOPES)}"
                )
            state = q.get("state", "active")
            if state not in ("active", "all"):
                raise DecisionError("state is active or all")
            try:
                limit = int(q.get("limit", "1000"))
            except ValueError:
                raise DecisionError("limit must be an integer") from None
            if not 1 <= limit <= MAX_STREAM_DECISIONS:
                raise DecisionError(f"limit must be between 1 and {MAX_STREAM_DECISIONS}")
            value = q.get("value") or None
            if value is not None and scope is not None:
                value = normalize_value(scope, value)
            found = await run(
                partial(
                    store().decisions,
                    now=time.time(),
                    include_inactive=state == "all",
                    scope=scope,
                    value=value,
                    finding=q.get("finding") or None,
                    limit=limit,
                )
            )
            return {"decisions": [d.to_json() for d in found]}

        return await handle(request, "admin", work)

    async def decision_stream(request: Request) -> Response:
        async def work() -> Any:
            return await run(
                partial(stream, store(), request.query_params.get("cursor"), time.time())
            )

        return await handle(request, APP, work)

    async def create(request: Request) -> Response:
        async def work() -> Any:
            body = await _json_body(request)
            decision = await run(partial(create_decision, processor, body, time.time()))
            return JSONResponse(decision.to_json(), 201)

        return await handle(request, "admin", work)

    async def remove(request: Request) -> Response:
        key = request.path_params["key"]

        async def work() -> Any:
            who = request.query_params.get("by") or "admin"
            gone = await run(partial(remove_decision, processor, key, who, time.time()))
            if not gone:
                return _error(f"no active decision has the id or the value {key!r}", 404)
            return {"removed": [d.to_json() for d in gone]}

        return await handle(request, "admin", work)

    async def allowlist(request: Request) -> Response:
        async def work() -> Any:
            entries = await run(store().allowlist)
            return {
                "allowlist": [
                    {"kind": e.kind, "value": e.value, "by": e.who, "created": e.created}
                    for e in entries
                ]
            }

        return await handle(request, "admin", work)

    async def allow(request: Request) -> Response:
        async def work() -> Any:
            body = await _json_body(request)
            kind, value, changed = await run(partial(add_allowed, processor, body))
            return JSONResponse({"kind": kind, "value": value, "added": changed}, 201)

        return await handle(request, "admin", work)

    async def unallow(request: Request) -> Response:
        value = request.path_params["value"]

        async def work() -> Any:
            who = request.query_params.get("by") or "admin"
            kind, canonical, changed = await run(partial(remove_allowed, processor, value, who))
            if not changed:
                return _error(f"{value!r} is not on the allowlist", 404)
            return {"kind": kind, "value": canonical, "removed": True}

        return await handle(request, "admin", work)

    async def audit(request: Request) -> Response:
        async def work() -> Any:
            try:
                limit = min(max(int(request.query_params.get("limit", "100")), 1), 10_000)
            except ValueError:
                raise DecisionError("limit must be an integer") from None
            entries = await run(partial(store().audit, limit))
            return {
                "audit": [
                    {
                        "seq": e.seq,
                        "op": e.op,
                        "subject": e.subject,
                        "by": e.who,
                        "at": e.at,
                        "detail": e.detail,
                    }
                    for e in entries
                ]
            }

        return await handle(request, "admin", work)

    return [
        Route("/api/decisions", list_decisions, methods=["GET"]),
        Route("/api/decisions", create, methods=["POST"]),
        Route("/api/decisions/stream", decision_stream, methods=["GET"]),
        Route("/api/decisions/audit", audit, methods=["GET"]),
        Route("/api/decisions/{key:path}", remove, methods=["DELETE"]),
        Route("/api/allowlist", allowlist, methods=["GET"]),
        Route("/api/allowlist", allow, methods=["POST"]),
        Route("/api/allowlist/{value:path}", unallow, methods=["DELETE"]),
    ]
