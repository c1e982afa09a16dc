"""The dashboard's Decisions page over HTTP: every change takes a confirmation, goes through the
API's own validation and store calls, is audited as the dashboard's, and needs an admin session
and the page's CSRF token; users', sources' and findings' pages show their decisions."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import httpx
import pytest
from starlette.requests import Request
from tests.support.dashboard import loaded_processor
from tests.support.servers import ServedInThread

from usermon.processor.dashboard.auth import Sessions
from usermon.processor.dashboard.decisions import may_change
from usermon.processor.dashboard.views import CSP
from usermon.processor.service import Processor
from usermon.processor.storage.base import DecisionStore

TOKEN = "decisions-page-admin-token"
APP_TOKEN = "decisions-page-application-token"


def _book(processor: Processor) -> DecisionStore:
    store = processor.store
    assert isinstance(store, DecisionStore)
    return store


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found is not None
    return found.group(1)


@pytest.fixture(scope="module")
def loaded() -> Iterator[tuple[Processor, str]]:
    """Generator traffic (whose findings made automatic decisions), no token, as on loopback."""
    processor, _ = loaded_processor()
    with ServedInThread(processor) as served:
        yield processor, served.url
    processor.close()


@pytest.fixture
def empty() -> Iterator[tuple[Processor, httpx.Client]]:
    """A processor with no traffic and no token, and a browser-like client holding a session."""
    processor, _ = loaded_processor(upto=0)
    with ServedInThread(processor) as served, httpx.Client(base_url=served.url) as client:
        yield processor, client
    processor.close()


def _active(processor: Processor, value: str) -> list[str]:
    import time

    return [d.origin for d in _book(processor).decisions(now=time.time(), value=value)]


def test_a_block_is_made_only_once_confirmed(empty: tuple[Processor, httpx.Client]) -> None:
    processor, client = empty
    page = client.get("/decisions")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CSP
    fields = {
        "csrf": _csrf(page.text),
        "action": "block",
        "scope": "ip",
        "value": "192.0.2.7",
        "duration": "4h",
        "reason": "scanner",
    }
    asked = client.post("/decisions/block", data=fields)
    assert asked.status_code == 200
    assert 'name="confirm" value="yes"' in asked.text
    assert "<script>" not in asked.text
    assert _active(processor, "192.0.2.7") == []  # nothing yet
    done = client.post("/decisions/block", data={**fields, "confirm": "yes"})
    assert done.status_code == 303
    assert done.headers["location"] == "/decisions?done=block"
    assert _active(processor, "192.0.2.7") == ["manual:dashboard"]
    audit = _book(processor).audit(1)[0]
    assert (audit.op, audit.who) == ("add", "dashboard")
    listed = client.get("/decisions?done=block").text
    assert "Decision made." in listed
    assert 'href="/sources/192.0.2.7"' in listed
    assert "scanner" in listed.split('class="audit"', 1)[1]


def test_the_dashboard_refuses_what_the_api_refuses_with_the_same_words(
    empty: tuple[Processor, httpx.Client],
) -> None:
    processor, client = empty
    csrf = _csrf(client.get("/decisions").text)
    for scope, value, duration in (
        ("ip", "not-an-address", "4h"),
        ("network", "198.51.100.0/33", "4h"),
        ("ip", "192.0.2.7", "2y"),
        ("user_ip", "no-pipe", "4h"),
    ):
        body = {"action": "block", "scope": scope, "value": value, "duration": duration}
        api = client.post("/api/decisions", json=body)
        assert api.status_code == 400
        page = client.post("/decisions/block", data={**body, "csrf": csrf, "confirm": "yes"})
        assert page.status_code == 400
        shown = re.search(r'<p class="error" role="alert">([^<]*)</p>', page.text)
        assert shown is not None
        assert html.unescape(shown.group(1)) == api.json()["error"]
    assert _book(processor).decisions(now=0.0, include_inactive=True) == []


def test_unblocking_and_the_allowlist_are_confirmed_and_audited(
    empty: tuple[Processor, httpx.Client],
) -> None:
    processor, client = empty
    csrf = _csrf(client.get("/decisions").text)
    block = {"csrf": csrf, "scope": "network", "value": "198.51.100.7/24", "duration": "1d"}
    client.post("/decisions/block", data={**block, "confirm": "yes"})
    (made,) = _book(processor).decisions(now=0.0)
    assert made.value == "198.51.100.0/24"  # written canonically, as the API writes it
    asked = client.post("/decisions/remove", data={"csrf": csrf, "key": made.id})
    assert asked.status_code == 200
    assert made.id in asked.text
    assert _active(processor, made.value) == ["manual:dashboard"]
    done = client.post("/decisions/remove", data={"csrf": csrf, "key": made.id, "confirm": "yes"})
    assert done.status_code == 303
    assert _active(processor, made.value) == []
    again = client.post("/decisions/remove", data={"csrf": csrf, "key": made.id})
    assert again.status_code == 400  # nothing active to remove
    allow = {"csrf": csrf, "value": "10.1.2.3/8"}
    assert client.post("/decisions/allow", data=allow).status_code == 200
    assert _book(processor).allowlist() == []
    assert client.post("/decisions/allow", data={**allow, "confirm": "yes"}).status_code == 303
    assert [(e.kind, e.value, e.who) for e in _book(processor).allowlist()] == [
        ("network", "10.0.0.0/8", "dashboard")
    ]
    off = {"csrf": csrf, "value": "10.0.0.0/8", "confirm": "yes"}
    assert client.post("/decisions/unallow", data=off).status_code == 303
    assert _book(processor).allowlist() == []
    ops = [(e.op, e.who) for e in _book(processor).audit(10)]
    assert ops == [
        ("unallow", "dashboard"),
        ("allow", "dashboard"),
        ("remove", "dashboard"),
        ("add", "dashboard"),
    ]


def test_every_decision_post_needs_the_page_csrf_and_this_origin(
    empty: tuple[Processor, httpx.Client],
) -> None:
    processor, client = empty
    csrf = _csrf(client.get("/decisions").text)
    block = {"scope": "ip", "value": "192.0.2.9", "duration": "4h", "confirm": "yes"}
    for path, fields in (
        ("/decisions/block", block),
        ("/decisions/remove", {"key": "192.0.2.9", "confirm": "yes"}),
        ("/decisions/allow", {"value": "192.0.2.0/24", "confirm": "yes"}),
        ("/decisions/unallow", {"value": "192.0.2.0/24", "confirm": "yes"}),
    ):
        assert client.post(path, data=fields).status_code == 403
        assert client.post(path, data={**fields, "csrf": "0" * 64}).status_code == 403
        foreign = client.post(
            path, data={**fields, "csrf": csrf}, headers={"Origin": "http://evil.example"}
        )
        assert foreign.status_code == 403
        # Without the session cookie the token is no one's.
        bare = httpx.post(str(client.base_url) + path, data={**fields, "csrf": csrf})
        assert bare.status_code == 403
    assert _book(processor).decisions(now=0.0, include_inactive=True) == []
    assert _book(processor).allowlist() == []


def test_a_form_with_too_many_fields_is_refused_not_an_error(
    empty: tuple[Processor, httpx.Client],
) -> None:
    processor, client = empty
    csrf = _csrf(client.get("/decisions").text)
    fields = {"csrf": csrf, "scope": "ip", "value": "192.0.2.9", "duration": "4h"}
    fields.update({f"pad{i}": "x" for i in range(20)}, confirm="yes")
    assert client.post("/decisions/block", data=fields).status_code == 403
    assert _book(processor).decisions(now=0.0, include_inactive=True) == []


def test_an_application_token_gets_no_session_and_changes_nothing() -> None:
    processor, _ = loaded_processor(upto=0, token=TOKEN, app_tokens=[APP_TOKEN])
    try:
        with ServedInThread(processor) as served, httpx.Client(base_url=served.url) as client:
            csrf = _csrf(client.get("/login").text)
            refused = client.post("/login", data={"csrf": csrf, "token": APP_TOKEN})
            assert refused.status_code == 401
            assert client.get("/decisions").status_code == 303  # still to the sign-in form
            block = {"csrf": csrf, "scope": "ip", "value": "192.0.2.9", "duration": "4h"}
            assert client.post("/decisions/block", data=block).status_code == 403
            assert (
                client.post("/decisions/block", data={**block, "confirm": "yes"}).status_code == 403
            )
            # The admin token signs in, and then the same form works.
            client.post("/login", data={"csrf": csrf, "token": TOKEN})
            csrf = _csrf(client.get("/decisions").text)
            block["csrf"] = csrf
            assert (
                client.post("/decisions/block", data={**block, "confirm": "yes"}).status_code == 303
            )
        assert _active(processor, "192.0.2.9") == ["manual:dashboard"]
    finally:
        processor.close()


def test_with_application_tokens_but_no_admin_token_nobody_changes_decisions() -> None:
    """As the API: it then has no admin, so neither has the dashboard (loopback only)."""
    processor, _ = loaded_processor(upto=0, app_tokens=[APP_TOKEN])
    try:
        request = Request({"type": "http", "method": "POST", "headers": []})
        assert not may_change(Sessions(None), processor, request)
        with ServedInThread(processor) as served, httpx.Client(base_url=served.url) as client:
            page = client.get("/decisions")
            assert page.status_code == 200
            assert 'action="/decisions/block"' not in page.text
            assert "Only a session signed in with the admin token" in page.text
    finally:
        processor.close()
    open_processor, _ = loaded_processor(upto=0)
    try:
        assert may_change(Sessions(None), open_processor, request)  # no token at all: open
    finally:
        open_processor.close()


def test_users_sources_and_findings_show_their_decisions(loaded: tuple[Processor, str]) -> None:
    processor, url = loaded
    book = _book(processor)
    stuffing = processor.store.findings(kind="credential_stuffing")[0]
    (made,) = book.decisions(now=0.0, include_inactive=True, finding=stuffing.id)
    assert made.scope == "ip"
    source = httpx.get(f"{url}/sources/{stuffing.subject.id}").text
    panel = source.split('class="panel decided"', 1)[1]
    assert f'data-id="{made.id}"' in panel
    finding = httpx.get(f"{url}/findings/{stuffing.id}").text
    assert f'data-id="{made.id}"' in finding.split('class="panel decided"', 1)[1]
    takeover = processor.store.findings(kind="account_takeover")[0]
    (challenge,) = book.decisions(now=0.0, include_inactive=True, finding=takeover.id)
    user = httpx.get(f"{url}/users/{takeover.subject.label}").text
    assert f'data-id="{challenge.id}"' in user.split('class="panel decided"', 1)[1]
    # An address with a decision but no traffic still has its page.
    with httpx.Client(base_url=url) as client:
        csrf = _csrf(client.get("/decisions").text)
        block = {"csrf": csrf, "scope": "ip", "value": "192.0.2.201", "duration": "1h"}
        client.post("/decisions/block", data={**block, "confirm": "yes"})
        quiet = client.get("/sources/192.0.2.201")
        assert quiet.status_code == 200
        assert "manual:dashboard" in quiet.text
        # ...and so does a network that holds it.
        assert "192.0.2.201" in client.get("/sources/192.0.2.0/24").text
