"""The dashboard over HTTP, without a browser: what each page answers, who may see it, what a
POST needs, and the per-minute activity behind the overview's chart."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.support.dashboard import TRACE_URL, feed, loaded_processor
from tests.support.servers import ServedInThread

from usermon.processor.activity import MAX_SERVICES, SPAN_MINUTES, Activity
from usermon.processor.dashboard.views import CSP
from usermon.processor.model import Event
from usermon.processor.service import Processor

TOKEN = "pages-test-token"


@pytest.fixture(scope="module")
def open_dashboard() -> Iterator[tuple[Processor, str]]:
    processor, _ = loaded_processor()
    with ServedInThread(processor) as served:
        yield processor, served.url
    processor.close()


@pytest.fixture(scope="module")
def guarded() -> Iterator[tuple[Processor, str]]:
    processor, _ = loaded_processor(token=TOKEN)
    with ServedInThread(processor) as served:
        yield processor, served.url
    processor.close()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found is not None
    return found.group(1)


def test_every_page_answers_with_the_strict_policy(open_dashboard: tuple[Processor, str]) -> None:
    processor, url = open_dashboard
    takeover = processor.store.findings(kind="account_takeover")[0]
    stuffing = processor.store.findings(kind="credential_stuffing")[0]
    paths = [
        "/",
        "/findings",
        "/findings?kind=brute_force&severity=medium&since=2026-01-01&subject=x",
        f"/findings/{takeover.id}",
        "/users",
        f"/users/{takeover.subject.id}",
        f"/users/{takeover.subject.label}",
        "/sources",
        f"/sources/{stuffing.subject.id}",
    ]
    for path in paths:
        response = httpx.get(url + path)
        assert response.status_code == 200, path
        assert response.headers["content-security-policy"] == CSP
        assert "<script>" not in response.text
        assert " style=" not in response.text
    assert httpx.get(url + "/static/dashboard.js").status_code == 200


def test_unknown_subjects_are_404_pages(open_dashboard: tuple[Processor, str]) -> None:
    _, url = open_dashboard
    for path in ("/findings/nope", "/users/nobody@example.com", "/sources/192.0.2.200"):
        assert httpx.get(url + path).status_code == 404


def test_a_bad_filter_is_said_not_raised(open_dashboard: tuple[Processor, str]) -> None:
    _, url = open_dashboard
    response = httpx.get(url + "/findings", params={"kind": "nope", "since": "soon"})
    assert response.status_code == 200
    assert "since is" in response.text


def test_a_user_is_found_by_label_from_the_search_form(
    open_dashboard: tuple[Processor, str],
) -> None:
    processor, url = open_dashboard
    takeover = processor.store.findings(kind="account_takeover")[0]
    response = httpx.get(url + "/users", params={"q": takeover.subject.label})
    assert response.status_code == 303
    assert response.headers["location"] == f"/users/{takeover.subject.id}"


def test_the_trace_links_follow_the_template(open_dashboard: tuple[Processor, str]) -> None:
    processor, url = open_dashboard
    finding = processor.store.findings(kind="credential_stuffing")[0]
    html = httpx.get(f"{url}/findings/{finding.id}").text
    for trace_id in finding.evidence["trace_ids"]:
        assert f'href="{TRACE_URL.replace("{trace_id}", trace_id)}"' in html


def test_with_a_token_nothing_is_shown_before_signing_in(guarded: tuple[Processor, str]) -> None:
    processor, url = guarded
    label = processor.store.findings(kind="account_takeover")[0].subject.label
    assert label
    for path in ("/", "/findings", "/users", f"/users/{label}", "/sources"):
        response = httpx.get(url + path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=")
    assert httpx.get(url + "/live/findings").status_code == 401
    assert label not in httpx.get(url + "/login").text


def test_signing_in_needs_the_token_and_the_page_csrf(guarded: tuple[Processor, str]) -> None:
    _, url = guarded
    with httpx.Client(base_url=url) as client:
        csrf = _csrf(client.get("/login").text)
        assert client.post("/login", data={"token": TOKEN}).status_code == 403  # no CSRF
        wrong = client.post("/login", data={"token": "nope", "csrf": csrf})
        assert wrong.status_code == 401
        foreign = client.post(
            "/login",
            data={"token": TOKEN, "csrf": csrf},
            headers={"Origin": "http://evil.example"},
        )
        assert foreign.status_code == 403
        right = client.post("/login", data={"token": TOKEN, "csrf": csrf, "next": "//evil"})
        assert right.status_code == 303
        assert right.headers["location"] == "/"  # never to another host
        cookie = right.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        assert TOKEN not in cookie
        assert client.get("/").status_code == 200
        assert client.get("/live/findings").status_code == 200


def test_a_forged_session_cookie_is_refused(guarded: tuple[Processor, str]) -> None:
    _, url = guarded
    forged = "0" * 32 + ".9999999999.1." + "0" * 64
    response = httpx.get(url + "/", cookies={"usermon_session": forged})
    assert response.status_code == 303


def _event(minute: int, service: str, **kw: Any) -> Event:
    return Event(kind=kw.pop("kind", "login"), time=minute * 60.0 + 1, service=service, **kw)


def test_activity_counts_each_minute_per_service() -> None:
    activity = Activity()
    activity.add(
        [
            _event(100, "shop", success=True),
            _event(100, "shop", success=False),
            _event(101, "shop", success=False),
            _event(101, "blog", kind="signup"),
        ]
    )
    first, series = activity.series(minutes=3)
    assert first == 99
    assert series == {
        "blog": [(0, 0, 0), (0, 0, 0), (0, 0, 1)],
        "shop": [(0, 0, 0), (1, 1, 0), (0, 1, 0)],
    }
    first, series = activity.series(minutes=4, step=2)
    assert first == 98
    assert series["shop"] == [(0, 0, 0), (1, 2, 0)]


def test_activity_forgets_what_is_older_than_a_day() -> None:
    activity = Activity()
    activity.add([_event(10, "shop", success=True)])
    # Minute 10 is a day before minute 1450: the first is forgotten, the late one not counted.
    activity.add([_event(10 + 24 * 60, "shop", success=True), _event(10, "shop", success=True)])
    _, series = activity.series(minutes=24 * 60)
    assert sum(ok for ok, _, _ in series["shop"]) == 1


def test_sources_list_recent_addresses_page_by_page(open_dashboard: tuple[Processor, str]) -> None:
    _, url = open_dashboard
    first = httpx.get(url + "/sources").text
    link = re.search(r'href="(/sources\?cursor=[^"]+)"', first)
    assert link is not None
    second = httpx.get(url + link.group(1).replace("&amp;", "&")).text

    def addresses(html: str) -> list[str]:
        recent = html.split('class="sources recent"', 1)[1]
        return re.findall(r'<td class="addr"><a href="/sources/[^"]+">([^<]+)</a>', recent)

    assert len(addresses(first)) == 100
    assert addresses(second)
    assert not set(addresses(first)) & set(addresses(second))


def test_in_anonymization_mode_users_are_shown_by_their_hash() -> None:
    """No label (the SDK sends none in anonymization mode): pages show what the processor has."""
    processor, _ = loaded_processor(upto=0)
    hashed = "ab" * 32
    feed(
        processor,
        [
            Event(
                kind="login",
                time=1_767_571_200.0 + i,
                success=False,
                user_hash=hashed,
                identifiers=(("email", "cd" * 32),),
                client_ip="198.51.100.7",
                service="shop",
            )
            for i in range(3)
        ],
    )
    try:
        with ServedInThread(processor) as served:
            html = httpx.get(served.url + "/users").text
            assert f'href="/users/{hashed}">{hashed}</a>' in html
            assert hashed in httpx.get(f"{served.url}/users/{hashed}").text
    finally:
        processor.close()


def test_a_form_over_4_kib_or_not_urlencoded_is_refused(guarded: tuple[Processor, str]) -> None:
    _, url = guarded
    with httpx.Client(base_url=url) as client:
        csrf = _csrf(client.get("/login").text)
        big = client.post("/login", data={"csrf": csrf, "token": TOKEN, "pad": "x" * 5000})
        assert big.status_code == 403
        as_json = client.post("/login", json={"csrf": csrf, "token": TOKEN})
        assert as_json.status_code == 403
        assert client.post("/login", data={"csrf": csrf, "token": TOKEN}).status_code == 303


def test_the_chart_counts_each_attempt_once() -> None:
    """A batch sent twice (a retry, or the SDK's "both" mode) is one set of attempts."""
    processor, _ = loaded_processor(upto=0)
    events = [
        Event(
            kind="login",
            time=1_767_571_200.0 + i,
            success=i % 2 == 0,
            user_hash="ef" * 16,
            client_ip="198.51.100.8",
            service="shop",
            trace_id=f"{i + 1:032x}",
            span_id=f"{i + 1:016x}",
        )
        for i in range(6)
    ]
    try:
        feed(processor, events)
        feed(processor, events)
        _, series = processor.activity.series(minutes=5)
        assert [sum(column) for column in zip(*series["shop"], strict=True)] == [3, 3, 0]
    finally:
        processor.close()


def test_a_finding_in_a_campaign_links_to_the_campaigns_finding() -> None:
    from usermon.processor.detectors import default_detectors
    from usermon.processor.model import Finding, Subject
    from usermon.processor.settings import resolve

    def finding(fid: str, kind: str, subject: Subject, **evidence: Any) -> Finding:
        return Finding(
            id=fid,
            kind=kind,
            severity="high",
            subject=subject,
            first_seen=1_767_571_200.0,
            last_seen=1_767_571_800.0,
            event_count=40,
            summary=f"{kind} summary",
            evidence={"trace_ids": [], "ips": [], "users": [], **evidence},
        )

    processor = Processor(resolve({"store": "memory://"}, env={}), detectors=default_detectors())
    processor.store.record_findings(
        [
            finding(
                "camp1",
                "credential_stuffing",
                Subject("service", "shop", "shop"),
                campaign="camp1",
                fingerprint="ua=" + "a" * 64,
                sources=[
                    {"source": "AS64500 Example Hosting", "count": 31},
                    {"source": "AS64501 <Other>", "count": 9},
                ],
            ),
            finding("bf1", "brute_force", Subject("user", "h-ada", "ada"), campaign="camp1"),
            finding("bf2", "brute_force", Subject("user", "h-bob", "bob")),
        ]
    )
    try:
        with ServedInThread(processor) as served:
            linked = httpx.get(f"{served.url}/findings/bf1").text
            alone = httpx.get(f"{served.url}/findings/bf2").text
            itself = httpx.get(f"{served.url}/findings/camp1").text
    finally:
        processor.close()
    assert '<dd class="campaign"><a href="/findings/camp1">' in linked
    assert "credential_stuffing against shop: credential_stuffing summary" in linked
    assert 'class="campaign"' not in alone
    assert 'class="campaign"' not in itself  # the campaign's own finding names itself
    assert "ua=" + "a" * 64 in itself
    members = itself.split('class="panel members"')[1].split("</section>")[0]
    assert 'href="/findings/bf1"' in members
    assert 'href="/findings/bf2"' not in members
    assert 'class="panel members"' not in linked
    # A list of records in the evidence reads as a table, escaped; a finding whose evidence is
    # all shown above says so instead of an empty panel.
    evidence = itself.split("<h2>Evidence</h2>")[1].split("</section>")[0]
    assert '<table class="evidence-rows">' in evidence
    assert '<th>source</th><th class="num">count</th>' in evidence
    assert '<td>AS64501 &lt;Other&gt;</td><td class="num">9</td>' in evidence
    assert '<dd><code class="json">' not in evidence.split("sources")[1][:40]
    member = linked.split("<h2>Evidence</h2>")[1].split("</section>")[0]
    assert "<dl" not in member
    assert "and the campaign it belongs to" in member


def test_activity_of_batches_matches_counting_each_event_alone() -> None:
    """Batches that cross minutes (on their exact boundaries too), interleave services (some
    sent as equal strings that are distinct objects), go past the service cap, jump more than a
    day ahead and carry events too old to chart count as each event counted on its own would."""
    rng = random.Random(17)
    activity = Activity()
    counts: dict[tuple[str, int], list[int]] = {}
    services: list[str] = []
    newest = 0
    clock = 1_000_000 * 60.0
    for round in range(120):
        batch = []
        for _ in range(rng.randrange(1, 60)):
            clock += rng.choice(
                (0.0, 0.5, 30.0, 60.0 - clock % 60, 2 * 24 * 3600.0 * (rng.random() < 0.01))
            )
            when = clock - (rng.choice((1, 600, 25 * 3600)) if rng.random() < 0.05 else 0)
            name = rng.choice(("shop", "blog", None, *[f"svc{i}" for i in range(MAX_SERVICES + 4)]))
            service = None if name is None else "".join(list(name))  # a distinct object
            kind = "signup" if rng.random() < 0.2 else "login"
            event = Event(kind=kind, time=when, service=service, success=rng.random() < 0.7)
            batch.append(event)
            minute = int(when // 60)
            if minute <= newest - SPAN_MINUTES:
                continue
            key = service or "(unnamed)"
            if key not in services:
                if len(services) >= MAX_SERVICES:
                    key = "(other)"
                if key not in services:
                    services.append(key)
            row = counts.setdefault((key, minute), [0, 0, 0])
            row[2 if kind == "signup" else 0 if event.success else 1] += 1
            newest = max(newest, minute)
        activity.add(batch)
        if round % 10:
            continue  # a day's series is long: compared every tenth batch
        first, series = activity.series(minutes=SPAN_MINUTES)
        expected: dict[str, list[tuple[int, int, int]]] = {}
        for (key, minute), row in counts.items():
            if first <= minute <= newest:
                points = expected.setdefault(key, [(0, 0, 0)] * (newest - first + 1))
                points[minute - first] = (row[0], row[1], row[2])
        assert series == expected
