"""The dashboard's Decisions page: active decisions, block and unblock, the allowlist, the audit.

Every change a person makes here goes through the functions the JSON API uses
(:func:`~usermon.processor.decisions_api.create_decision`, ``remove_decision``, ``add_allowed``,
``remove_allowed``), so it is validated, stored, exported and audited exactly as
``POST /api/decisions`` is, under the name :data:`WHO` (a decision's origin is
``manual:dashboard``). Each action takes two POSTs: the form's, answered with a page that shows
what would change (or why it cannot), and that page's, which carries ``confirm=yes`` and does it.
Both need the session's CSRF token and an admin session (:func:`may_change`). This module also
reads the decisions a user's, a source's and a finding's page show.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from usermon.processor.dashboard.auth import Sessions
from usermon.processor.decisions_api import (
    DecisionError,
    add_allowed,
    allow_entry,
    allowed_key,
    create_decision,
    decision_store,
    decisions_for_key,
    manual_decision,
    remove_allowed,
    remove_decision,
)
from usermon.processor.model import DECISION_ACTIONS, DECISION_SCOPES, Decision
from usermon.processor.service import Processor
from usermon.processor.storage.base import AllowEntry, DecisionStore
from usermon.processor.storage.errors import StoreError

__all__ = ["ACTIVE_READ", "AUDIT_SHOWN", "WHO", "about", "routes"]

_T = TypeVar("_T")

WHO = "dashboard"
"""Who the audit log and a decision's origin name for a change made from the dashboard."""

ACTIVE_READ = 10_000
"""Active decisions a user's or a source's page looks through (newest first) for theirs."""

LABELS_READ = 64
"""User profiles the Decisions page reads to name the users its decisions are about."""

AUDIT_SHOWN = 50
"""Audit entries the Decisions page shows (``GET /api/decisions/audit`` has the rest)."""

DURATIONS = ("15m", "1h", "4h", "1d", "7d", "30d")
DONE = {
    "block": "Decision made.",
    "remove": "Decision removed.",
    "allow": "Added to the allowlist.",
    "unallow": "Taken off the allowlist.",
}

Page = Callable[..., Response]
Read = Callable[[Callable[[], Any]], Awaitable[Any]]
Guard = Callable[[Request], Response | None]
Form = Callable[[Request], Awaitable[dict[str, str]]]


def status(decision: Decision, active: set[str], now: float) -> str:
    if decision.id in active:
        return "active"
    return "expired" if decision.until <= now else "removed"


def about(processor: Processor, kind: str, value: str, now: float) -> dict[str, Any]:
    """The active decisions on a user (``kind`` ``user``, ``value`` its hash) or a source (an
    address or a network) and the allowlist entries that cover it. A source's are those on it,
    on a network that holds or overlaps it, and on a pair with it; a user's, those on it and on a
    pair with it. Call it under the processor's lock."""
    store = processor.store
    if not isinstance(store, DecisionStore):
        return {"decisions": [], "allowed": [], "scope": None, "value": value}
    active = store.decisions(now=now, limit=ACTIVE_READ)
    allow = store.allowlist()
    if kind == "user":
        mine = [
            d
            for d in active
            if (d.scope == "user" and d.value == value)
            or (d.scope == "user_ip" and d.value.rpartition("|")[0] == value)
        ]
        allowed = [e for e in allow if (e.kind, e.value) == (kind, value)]
        return {
            "decisions": [(d, "active") for d in mine],
            "allowed": allowed,
            "scope": "user",
            "value": value,
        }
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return {"decisions": [], "allowed": [], "scope": None, "value": value}

    def covers(text: str) -> bool:
        try:
            other = ipaddress.ip_network(text, strict=False)
        except ValueError:
            return False
        return other.version == net.version and other.overlaps(net)

    mine = [
        d
        for d in active
        if (d.scope in ("ip", "network") and covers(d.value))
        or (d.scope == "user_ip" and covers(d.value.rpartition("|")[2]))
    ]
    return {
        "decisions": [(d, "active") for d in mine],
        "labels": labels(processor, mine),
        "allowed": [e for e in allow if e.kind == "network" and covers(e.value)],
        "scope": "ip" if net.num_addresses == 1 and "/" not in value else "network",
        "value": str(net.network_address) if "/" not in value else str(net),
    }


def of_finding(processor: Processor, finding_id: str, now: float) -> list[tuple[Decision, str]]:
    """The decisions made from a finding, each with its status (active, expired, removed)."""
    store = processor.store
    if not isinstance(store, DecisionStore):
        return []
    made = store.decisions(now=0.0, include_inactive=True, finding=finding_id, limit=100)
    ids = [d.id for d in made]
    active = {d.id for d in store.decisions(now=now, ids=ids, limit=max(1, len(ids)))}
    return [(d, status(d, active, now)) for d in made]


def labels(processor: Processor, decisions: list[Decision]) -> dict[str, str]:
    """The labels of the users ``decisions`` are about (up to :data:`LABELS_READ` profiles
    read), so a page names them as the other pages do. Call it under the processor's lock."""
    hashes = {
        d.value.rpartition("|")[0] if d.scope == "user_ip" else d.value
        for d in decisions
        if d.scope in ("user", "user_ip")
    }
    found = {}
    for h in sorted(hashes)[:LABELS_READ]:
        profile = processor.profiles.user(h)
        if profile and profile.get("label"):
            found[h] = str(profile["label"])
    return found


def may_change(sessions: Sessions, processor: Processor, request: Request) -> bool:
    """Whether this request may change decisions: an admin session (signed in with the admin
    token; an application token never gets one), or, with no token configured at all (the
    processor then listens on loopback only), anyone, as the API. With application tokens but
    no admin token the API lets nobody change decisions, and neither does the dashboard."""
    if sessions.needs_login:
        return sessions.signed_in(request)
    return not processor.settings.app_tokens


def routes(
    processor: Processor,
    sessions: Sessions,
    page: Page,
    guard: Guard,
    read: Read,
    form: Form,
    headers: dict[str, str],
) -> list[BaseRoute]:
    """The Decisions page and its four actions, for ``views.routes`` to add."""

    async def work(call: Callable[[], _T]) -> _T:
        # As the API's routes: the store's decisions have their own lock.
        return await to_thread.run_sync(call)

    async def decisions_page(
        request: Request, status_code: int = 200, error: str | None = None, **keep: Any
    ) -> Response:
        show_all = request.query_params.get("state") == "all"

        def gather() -> dict[str, Any]:
            store = processor.store
            if not isinstance(store, DecisionStore):
                return {"keeps": False}
            now = time.time()
            listed = store.decisions(now=now, include_inactive=show_all, limit=1000)
            active = (
                {d.id for d in store.decisions(now=now, limit=ACTIVE_READ)}
                if show_all
                else {d.id for d in listed}
            )
            return {
                "keeps": True,
                "labels": labels(processor, listed),
                "rows": [(d, status(d, active, now)) for d in listed],
                "allowlist": store.allowlist(),
                "audit": store.audit(AUDIT_SHOWN),
            }

        data = await read(gather)
        done = DONE.get(request.query_params.get("done", ""))
        return page(
            request,
            "decisions.html",
            status_code,
            show_all=show_all,
            can_change=may_change(sessions, processor, request),
            actions=DECISION_ACTIONS,
            scopes=DECISION_SCOPES,
            durations=DURATIONS,
            error=error,
            done=None if error else done,
            form=keep,
            **data,
        )

    async def get_page(request: Request) -> Response:
        if (denied := guard(request)) is not None:
            return denied
        return await decisions_page(request)

    def refused(message: str) -> Response:
        return Response(message, 403, media_type="text/plain", headers=headers)

    async def act(
        request: Request,
        op: str,
        preview: Callable[[dict[str, str], float], dict[str, Any]],
        do: Callable[[dict[str, str], float], Any],
    ) -> Response:
        fields = await form(request)
        if not sessions.valid_post(request, fields.get("csrf", "")):
            return refused("refused: this request did not come from a page of this dashboard")
        if not may_change(sessions, processor, request):
            return refused("refused: only a session signed in with the admin token may do this")
        now = time.time()
        try:
            if fields.get("confirm") != "yes":
                shown = await work(partial(preview, fields, now))
                keep = {k: v for k, v in fields.items() if k not in ("csrf", "confirm")}
                return page(request, "confirm.html", op=op, fields=keep, **shown)
            await work(partial(do, fields, now))
        except DecisionError as exc:
            keep = {k: v for k, v in fields.items() if k not in ("csrf", "confirm")}
            return await decisions_page(request, 400, str(exc), **keep)
        except StoreError as exc:
            return await decisions_page(request, 503, f"the store is unavailable: {exc}")
        return RedirectResponse(f"/decisions?done={op}", 303, headers=headers)

    def block_body(fields: dict[str, str]) -> dict[str, Any]:
        return {
            "action": fields.get("action", "block"),
            "scope": fields.get("scope", ""),
            "value": fields.get("value", ""),
            "duration": fields.get("duration", ""),
            "reason": fields.get("reason") or "decided from the dashboard",
            "by": WHO,
        }

    def block_preview(fields: dict[str, str], now: float) -> dict[str, Any]:
        return {"decision": manual_decision(block_body(fields), now)}

    def block_do(fields: dict[str, str], now: float) -> Any:
        return create_decision(processor, block_body(fields), now)

    def remove_preview(fields: dict[str, str], now: float) -> dict[str, Any]:
        key = fields.get("key", "").strip()
        ids = [d.id for d in decisions_for_key(processor, key, now)]
        found = decision_store(processor).decisions(now=now, ids=ids, limit=max(1, len(ids)))
        if not found:
            raise DecisionError(f"no active decision has the id or the value {key!r}")
        return {"removing": found}

    def remove_do(fields: dict[str, str], now: float) -> Any:
        key = fields.get("key", "").strip()
        if not remove_decision(processor, key, WHO, now):
            raise DecisionError(f"no active decision has the id or the value {key!r}")

    def allow_body(fields: dict[str, str]) -> dict[str, Any]:
        return {"value": fields.get("value", ""), "by": WHO}

    def allow_preview(fields: dict[str, str], now: float) -> dict[str, Any]:
        kind, value, _ = allow_entry(allow_body(fields))
        decision_store(processor)
        return {"entry": (kind, value)}

    def allow_do(fields: dict[str, str], now: float) -> Any:
        return add_allowed(processor, allow_body(fields))

    def unallow_preview(fields: dict[str, str], now: float) -> dict[str, Any]:
        kind, value = allowed_key(fields.get("value", "").strip())
        listed: list[AllowEntry] = decision_store(processor).allowlist()
        if not any((e.kind, e.value) == (kind, value) for e in listed):
            raise DecisionError(f"{value!r} is not on the allowlist")
        return {"entry": (kind, value)}

    def unallow_do(fields: dict[str, str], now: float) -> Any:
        _, value, changed = remove_allowed(processor, fields.get("value", "").strip(), WHO)
        if not changed:
            raise DecisionError(f"{value!r} is not on the allowlist")

    async def block(request: Request) -> Response:
        return await act(request, "block", block_preview, block_do)

    async def remove(request: Request) -> Response:
        return await act(request, "remove", remove_preview, remove_do)

    async def allow(request: Request) -> Response:
        return await act(request, "allow", allow_preview, allow_do)

    async def unallow(request: Request) -> Response:
        return await act(request, "unallow", unallow_preview, unallow_do)

    return [
        Route("/decisions", get_page, methods=["GET"]),
        Route("/decisions/block", block, methods=["POST"]),
        Route("/decisions/remove", remove, methods=["POST"]),
        Route("/decisions/allow", allow, methods=["POST"]),
        Route("/decisions/unallow", unallow, methods=["POST"]),
    ]
