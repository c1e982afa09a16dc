"""The dashboard's routes: one function per page, each reading the store off the event loop.

A page handler gathers what its template shows in one function run under the processor's lock
(:func:`_read`), then renders it; nothing here computes a profile or a finding (that is the
engine's and :mod:`usermon.processor.profiles`' job). :data:`NAV` is the navigation: a later page
adds itself there, so no link ever points nowhere; the Decisions page is :mod:`.decisions`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote, urlencode

import anyio
from anyio import to_thread
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from usermon.processor.dashboard import charts, decisions
from usermon.processor.dashboard.auth import Sessions
from usermon.processor.model import FINDING_KINDS, SEVERITIES, Finding
from usermon.processor.queries import (
    SINCE_FORMS,
    attacking_sources,
    decode_cursor,
    encode_cursor,
    find_user,
    findings_page,
    parse_since,
)
from usermon.processor.service import Processor

__all__ = ["CSP", "NAV", "routes"]

_T = TypeVar("_T")

NAV: list[tuple[str, str]] = [
    ("Overview", "/"),
    ("Findings", "/findings"),
    ("Users", "/users"),
    ("Sources", "/sources"),
    ("Decisions", "/decisions"),
]
"""The navigation bar: (title, path)."""

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Our URLs never leave for another site (a trace link), and a POST keeps its Origin (with
    # no-referrer, a browser sends "Origin: null", which the CSRF check refuses).
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

RECENT = 1000
"""Findings the overview and a source's page read (newest first) to rank sources and users."""

CHART_MINUTES = 24 * 60
CHART_STEP = 10
"""The overview charts the last 24 hours of event time, 10 minutes a point."""

LABELS_READ = 64
"""A finding's page names at most this many of its users by label (one profile read each)."""

MEMBERS_READ = RECENT
"""A campaign's page looks for the findings that name it among this many, the newest since it
began."""

PAGE = 100
"""Rows a page of findings or users shows; "Next page" follows a cursor."""
_RANK = {s: i for i, s in enumerate(SEVERITIES)}
_TRACE_ID = re.compile(r"[0-9a-f]{32}")


def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("usermon.processor.dashboard", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["utc"] = _utc
    env.filters["iso"] = _iso
    env.filters["ago"] = _ago
    env.filters["short"] = lambda text, n=12: text if len(text) <= n else text[: n - 1] + "…"
    return env


def _when(seconds: float | None) -> dt.datetime | None:
    if seconds is None:
        return None
    try:
        return dt.datetime.fromtimestamp(float(seconds), dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _utc(seconds: float | None) -> str:
    when = _when(seconds)
    return "—" if when is None else f"{when:%Y-%m-%d %H:%M:%S} UTC"


def _iso(seconds: float | None) -> str:
    when = _when(seconds)
    return "" if when is None else when.isoformat()


def _ago(seconds: float | None, now: float | None) -> str:
    if seconds is None or now is None:
        return ""
    delta = max(0.0, now - seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if delta >= size:
            return f"{int(delta // size)} {unit} before the newest event"
    return "at the newest event"


def subject_path(kind: str, value: str) -> str | None:
    """The dashboard page of a finding's subject, or None (a service has none)."""
    if kind == "user":
        return "/users/" + quote(value, safe="")
    if kind in ("ip", "network"):
        return "/sources/" + quote(value, safe="")
    return None


def routes(processor: Processor) -> list[BaseRoute]:
    """The dashboard's routes for ``processor``, to add to the app's."""
    settings = processor.settings
    sessions = Sessions(settings.token)
    env = _env()
    trace_url = settings.trace_url
    env.globals["nav"] = NAV
    env.globals["subject_path"] = subject_path
    env.globals["severities"] = SEVERITIES
    env.globals["kinds"] = FINDING_KINDS

    def trace_link(trace_id: Any) -> str | None:
        if trace_url is None or not isinstance(trace_id, str) or not _TRACE_ID.fullmatch(trace_id):
            return None
        return trace_url.replace("{trace_id}", trace_id)

    env.globals["trace_link"] = trace_link

    async def read(call: Callable[[], _T]) -> _T:
        def run() -> _T:
            with processor.lock:
                return call()

        return await to_thread.run_sync(run)

    def page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
        session = sessions.session(request)
        fresh = session is None
        if session is None:
            session = sessions.issue(signed_in=False)
        context.update(
            path=request.url.path,
            csrf=sessions.csrf(session),
            signed_in=sessions.needs_login and sessions.signed_in(request),
            needs_login=sessions.needs_login,
        )
        body = env.get_template(template).render(**context)
        response = Response(body, status, media_type="text/html; charset=utf-8", headers=HEADERS)
        if fresh:
            sessions.set_cookie(request, response, session)
        return response

    def guard(request: Request) -> Response | None:
        if sessions.signed_in(request):
            return None
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/login?" + urlencode({"next": target}), 303, headers=HEADERS)

    async def login_form(request: Request) -> Response:
        if not sessions.needs_login:
            return RedirectResponse("/", 303, headers=HEADERS)
        return page(request, "login.html", next=_safe_next(request.query_params.get("next")))

    async def login(request: Request) -> Response:
        form = await _form(request, settings.body_timeout)
        target = _safe_next(str(form.get("next", "/")))
        if not sessions.valid_post(request, str(form.get("csrf", ""))):
            return _forbidden()
        if not sessions.check_token(str(form.get("token", ""))):
            return page(request, "login.html", 401, next=target, error="That is not the token.")
        response = RedirectResponse(target, 303, headers=HEADERS)
        sessions.set_cookie(request, response, sessions.issue(signed_in=True))
        return response

    async def logout(request: Request) -> Response:
        form = await _form(request, settings.body_timeout)
        if not sessions.valid_post(request, str(form.get("csrf", ""))):
            return _forbidden()
        response = RedirectResponse("/login" if sessions.needs_login else "/", 303, headers=HEADERS)
        sessions.set_cookie(request, response, sessions.issue(signed_in=False))
        return response

    async def overview(request: Request) -> Response:
        if (denied := guard(request)) is not None:
            return denied

        def gather() -> dict[str, Any]:
            recent = processor.store.findings(limit=RECENT)
            return {"recent": recent, "newest": recent[0].last_seen if recent else None}

        data = await read(gather)
        recent: list[Finding] = data["recent"]
        first, series = processor.activity.series(CHART_MINUTES, CHART_STEP)
        activity = [
            (
                service,
                charts.lines(
                    f"Logins and signups of {service}, per minute",
                    first,
                    CHART_STEP,
                    [
                        ("logins ok", "ok", [r[0] for r in rows]),
                        ("logins failed", "failed", [r[1] for r in rows]),
                        ("signups", "signup", [r[2] for r in rows]),
                    ],
                ),
                [sum(r[i] for r in rows) for i in range(3)],
            )
            for service, rows in list(series.items())[:6]
        ]
        severities = Counter(f.severity for f in recent)
        sources = _top_sources(recent, processor)
        return page(
            request,
            "overview.html",
            activity=activity,
            severity_chart=charts.bars(
                "Findings by severity",
                [(s, severities.get(s, 0), s) for s in reversed(SEVERITIES)],
            ),
            severities=severities,
            campaigns=[f for f in recent if str(f.subject.type) == "service"][:10],
            sources=sources[:10],
            networks=_rollup(sources, "network")[:8],
            countries=_rollup(sources, "country")[:8],
            at_risk=_users_at_risk(recent)[:10],
            latest=recent[:10],
            newest=data["newest"],
            scanned=len(recent),
        )

    async def findings_list(request: Request) -> Response:
        if (denied := guard(request)) is not None:
            return denied
        q = request.query_params
        kind = q.get("kind") or None
        severity = q.get("severity") or None
        subject = (q.get("subject") or "").strip() or None
        since_text = (q.get("since") or "").strip()
        error = None
        if kind is not None and kind not in FINDING_KINDS:
            error, kind = f"unknown kind {kind!r}", None
        if severity is not None and severity not in SEVERITIES:
            error, severity = f"unknown severity {severity!r}", None
        try:
            since = parse_since(since_text)
        except ValueError:
            error, since = f"since is {SINCE_FORMS}", None
        try:
            after = decode_cursor(q.get("cursor"))
        except ValueError:
            error, after = "that page's link is no longer valid", None
        found, cursor = await read(
            partial(
                findings_page,
                processor.store,
                kind=kind,
                severity=severity,
                since=since,
                subject=subject,
                limit=PAGE,
                after=after,
            )
        )
        more = None
        if cursor is not None:
            params = {k: v for k, v in q.items() if k != "cursor" and v}
            more = "/findings?" + urlencode({**params, "cursor": encode_cursor(cursor)})
        return page(
            request,
            "findings.html",
            findings=found,
            more=more,
            error=error,
            filters={"kind": kind, "severity": severity, "subject": subject, "since": since_text},
            live=not (kind or severity or subject or since_text or after),
        )

    async def finding_page(request: Request) -> Response:
        if (denied := guard(request)) is not None:
            return denied
        finding_id = request.path_params["finding_id"]

        def gather() -> tuple[
            Finding | None, dict[str, str | None], list[Any], Finding | None, list[Finding]
        ]:
            found = processor.store.finding(finding_id)
            if found is None:
                return None, {}, [], None, []
            hashes = [u for u in found.evidence.get("users", []) if isinstance(u, str)]
            labels = {}
            for h in hashes[:LABELS_READ]:
                profile = processor.profiles.user(h)
                labels[h] = profile.get("label") if profile else None
            made = decisions.of_finding(processor, found.id, time.time())
            labels.update(decisions.labels(processor, [d for d, _ in made]))
            # The campaign this finding's source belongs to, read for its summary.
            named = found.evidence.get("campaign")
            campaign = None
            if isinstance(named, str) and named != found.id:
                campaign = processor.store.finding(named)
            # A campaign's page lists the findings on its sources that name it, among the
            # newest since it began (a bounded read: the store has no index on evidence).
            members: list[Finding] = []
            if found.subject.type == "service":
                recent = processor.store.findings(since=found.first_seen, limit=MEMBERS_READ)
                members = [
                    m for m in recent if m.id != found.id and m.evidence.get("campaign") == found.id
                ]
            return found, labels, made, campaign, members

        found, labels, made, campaign, members = await read(gather)
        if found is None:
            return page(request, "missing.html", 404, what="finding", key=finding_id)
        evidence = dict(found.evidence)
        evidence.pop("users", None)
        campaign_id = evidence.get("campaign")
        if isinstance(campaign_id, str) and campaign_id != found.id:
            evidence.pop("campaign")
        else:
            campaign_id = None  # a campaign's own finding names itself
        return page(
            request,
            "finding.html",
            f=found,
            trace_ids=[t for t in evidence.pop("trace_ids", []) if isinstance(t, str)],
            ips=[i for i in evidence.pop("ips", []) if isinstance(i, str)],
            users=[
                (h, labels.get(h))
                for h in found.evidence.get("users", [])[:LABELS_READ]
                if isinstance(h, str)
            ],
            labels={h: v for h, v in labels.items() if v},
            details=evidence,
            timeline=_timeline(found),
            campaign_id=campaign_id,
            campaign=campaign,
            members=members,
            members_read=MEMBERS_READ,
            made=made,
            can_change=decisions.may_change(sessions, processor, request),
        )

    async def users_page(request: Request) -> Response:
        if (denied := guard(request)) is not None:
            return denied
        q = request.query_params
        search = (q.get("q") or "").strip()
        if search:
            found = await read(partial(find_user, processor.profiles, search))
            if found is not None:
                return RedirectResponse(subject_path("user", found["user_hash"]) or "/", 303)
        try:
            after = decode_cursor(q.get("cursor"))
        except ValueError:
            after = None
        listed, cursor = await read(partial(processor.profiles.users_page, limit=PAGE, after=after))
        more = None if cursor is None else "/users?" + urlencode({"cursor": encode_cursor(cursor)})
        return page(
            request,
            "users.html",
            users=listed,
            more=more,
            search=search,
            not_found=bool(search),
        )

    async def user_page(request: Request) -> Response:
        if (denied := guard(request)) is not None:
            return denied
        key = request.path_params["user"]

        def gather() -> tuple[dict[str, Any] | None, list[Finding], dict[str, Any]]:
            found = find_user(processor.profiles, key)
            if found is None:
                return None, [], {}
            h = found["user_hash"]
            about = processor.store.findings(subject=h, limit=50)
            return found, about, decisions.about(processor, "user", h, time.time())

        profile, about, decided = await read(gather)
        if profile is None:
            return page(request, "missing.html", 404, what="user", key=key)
        enricher = processor.engine.enricher
        places = [
            (ip, enricher.lookup(ip) if enricher is not None else None) for ip in profile["ips"]
        ]
        history = charts.bars(
            "Logins over the windows",
            [
                (f"{label} {window}", profile[field].get(window, 0), css)
                for window in ("1h", "24h")
                for label, field, css in (
                    ("ok", "successes", "ok"),
                    ("failed", "failures", "failed"),
                )
            ],
        )
        countries = sorted({n.country for _, n in places if n is not None and n.country})
        return page(
            request,
            "user.html",
            u=profile,
            places=places,
            countries=countries,
            history=history,
            findings=about,
            decided=decided,
            can_change=decisions.may_change(sessions, processor, request),
        )

    async def sources_page(request: Request) -> Response:
        if (denied := guard(request)) is not None:
            return denied
        search = (request.query_params.get("q") or "").strip()
        if search:
            return RedirectResponse(subject_path("ip", search) or "/", 303)
        try:
            after = decode_cursor(request.query_params.get("cursor"))
        except ValueError:
            after = None

        def gather() -> tuple[list[Finding], Any]:
            recent = processor.store.findings(limit=RECENT)
            return recent, processor.profiles.ips_page(limit=PAGE, after=after)

        recent, (addresses, cursor) = await read(gather)
        more = (
            None if cursor is None else "/sources?" + urlencode({"cursor": encode_cursor(cursor)})
        )
        return page(
            request,
            "sources.html",
            sources=_top_sources(recent, processor)[:50] if after is None else None,
            addresses=addresses,
            more=more,
        )

    async def source_page(request: Request) -> Response:
        if (denied := guard(request)) is not None:
            return denied
        value = request.path_params["source"]
        try:
            address: str | None = str(ipaddress.ip_address(value))
        except ValueError:
            address = None

        def gather() -> dict[str, Any]:
            profile = processor.profiles.ip(address) if address is not None else None
            about = processor.store.findings(subject=value, limit=50)
            seen = {f.id for f in about}
            # Findings about users (a takeover, a Tor login) name this source in their evidence.
            for f in processor.store.findings(limit=RECENT):
                if f.id not in seen and value in f.evidence.get("ips", ()):
                    about.append(f)
                    seen.add(f.id)
            hashes = list(profile["users"]) if profile is not None else []
            if profile is None:
                hashes = list(dict.fromkeys(u for f in about for u in f.evidence.get("users", ())))
            victims = []
            for h in hashes[:64]:
                user = processor.profiles.user(h)
                victims.append((h, user.get("label") if user else None, user))
            decided = decisions.about(processor, "source", value, time.time())
            return {"profile": profile, "findings": about, "victims": victims, "decided": decided}

        data = await read(gather)
        decided = data["decided"]
        known = data["findings"] or decided["decisions"] or decided["allowed"]
        if data["profile"] is None and not known:
            return page(request, "missing.html", 404, what="source", key=value)
        enricher = processor.engine.enricher
        network = enricher.lookup(address) if enricher is not None and address else None
        return page(
            request,
            "source.html",
            value=value,
            address=address,
            network=network,
            can_change=decisions.may_change(sessions, processor, request),
            **data,
        )

    async def live_findings(request: Request) -> Response:
        if not sessions.signed_in(request):
            return JSONResponse({"error": "sign in"}, 401, headers=HEADERS)
        try:
            after = float(request.query_params.get("after") or 0)
        except ValueError:
            after = 0.0
        found = await read(partial(processor.store.findings, since=after, limit=50))
        rows = [
            {
                "id": f.id,
                "url": "/findings/" + quote(f.id, safe=""),
                "severity": f.severity,
                "kind": f.kind,
                "subject": f.subject.label or f.subject.id,
                "subject_url": subject_path(f.subject.type, f.subject.id),
                "summary": f.summary,
                "last_seen": f.last_seen,
                "event_count": f.event_count,
            }
            for f in found
            if f.last_seen > after
        ]
        return JSONResponse({"findings": rows}, headers=HEADERS)

    static = Path(__file__).with_name("static")
    return [
        Route("/", overview, methods=["GET"]),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/findings", findings_list, methods=["GET"]),
        Route("/findings/{finding_id}", finding_page, methods=["GET"]),
        Route("/users", users_page, methods=["GET"]),
        Route("/users/{user:path}", user_page, methods=["GET"]),
        Route("/sources", sources_page, methods=["GET"]),
        Route("/sources/{source:path}", source_page, methods=["GET"]),
        Route("/live/findings", live_findings, methods=["GET"]),
        *decisions.routes(
            processor,
            sessions,
            page,
            guard,
            read,
            partial(_form, timeout=settings.body_timeout),
            HEADERS,
        ),
        Mount("/static", StaticFiles(directory=static), name="static"),
    ]


FORM_BYTES = 4096
"""The dashboard's forms are a token and a few short fields: a larger body is not read."""


async def _form(request: Request, timeout: float) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body's fields (the first of each), read within
    :data:`FORM_BYTES` and ``timeout`` seconds; anything else reads as no field (and so fails the
    CSRF check)."""
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return {}
    body = b""
    with anyio.move_on_after(timeout) as deadline:
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > FORM_BYTES:
                    return {}
        except ClientDisconnect:
            return {}
    if deadline.cancelled_caught:
        return {}
    try:
        fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=16)
    except ValueError:  # more fields than any form of ours has
        return {}
    return {k: v[0] for k, v in fields.items() if v}


def _forbidden() -> Response:
    return Response(
        "refused: this request did not come from a page of this dashboard",
        403,
        media_type="text/plain",
        headers=HEADERS,
    )


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this site only (never another host)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _top_sources(recent: Iterable[Finding], processor: Processor) -> list[dict[str, Any]]:
    """:func:`~usermon.processor.queries.attacking_sources`, with what enrichment knows of each
    address (country, network)."""
    rows = attacking_sources(recent)
    enricher = processor.engine.enricher
    for row in rows:
        info = enricher.lookup(row["id"]) if enricher and row["type"] == "ip" else None
        row["country"] = info.country if info else None
        row["network"] = (
            (f"AS{info.asn}" + (f" {info.as_org}" if info.as_org else ""))
            if info and info.asn
            else (info.network_name if info else None)
        )
        row["category"] = info.category if info else None
    return rows


def _rollup(sources: list[dict[str, Any]], field: str) -> list[tuple[str, int]]:
    totals: Counter[str] = Counter()
    for row in sources:
        if row.get(field):
            totals[row[field]] += row["events"]
    return totals.most_common()


def _users_at_risk(recent: Iterable[Finding]) -> list[dict[str, Any]]:
    """Users that findings are about, worst severity first, then most recent."""
    by: dict[str, dict[str, Any]] = {}
    for f in recent:
        if f.subject.type != "user":
            continue
        row = by.setdefault(
            f.subject.id,
            {"id": f.subject.id, "label": f.subject.label, "worst": f.severity, "findings": []},
        )
        row["findings"].append(f)
        if _RANK[f.severity] > _RANK[row["worst"]]:
            row["worst"] = f.severity
    for row in by.values():
        row["last_seen"] = max(f.last_seen for f in row["findings"])
        row["kinds"] = sorted({f.kind for f in row["findings"]})
    return sorted(by.values(), key=lambda r: (-_RANK[r["worst"]], -r["last_seen"]))


def _timeline(finding: Finding) -> list[tuple[float, str]]:
    """The moments a finding's evidence names, oldest first: its first and last event, and every
    timed item of the evidence (a previous login, the attack a takeover followed)."""
    moments: list[tuple[float, str]] = [(finding.first_seen, "first event of this finding")]

    def walk(value: Any, where: str) -> None:
        if isinstance(value, dict):
            for key in ("time", "since"):
                t = value.get(key)
                if isinstance(t, int | float) and not isinstance(t, bool):
                    parts = [
                        f"{k} {v}"
                        for k, v in value.items()
                        if k not in ("time", "since") and isinstance(v, str | int | float)
                    ]
                    moments.append((float(t), f"{where}: " + ", ".join(parts)))
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for item in value[:50]:
                walk(item, where)

    walk(finding.evidence, "evidence")
    if finding.last_seen != finding.first_seen:
        moments.append((finding.last_seen, f"latest event ({finding.event_count} in all)"))
    return sorted(moments, key=lambda m: m[0])
