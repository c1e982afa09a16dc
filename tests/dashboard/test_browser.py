"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against a processor
that took generator traffic (two weeks of 500 users and one labelled campaign of every kind)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from tests.support.dashboard import TRACE_URL, feed, launch, loaded_processor
from tests.support.servers import ServedInThread

from usermon.processor.dashboard.views import CSP
from usermon.processor.service import Processor

pytestmark = pytest.mark.browser

TOKEN = "dashboard-test-token"


@pytest.fixture(scope="module")
def loaded() -> Iterator[tuple[Processor, Any, str]]:
    """A processor without a token (as on loopback) that took all the traffic, served."""
    processor, traffic = loaded_processor()
    with ServedInThread(processor) as served:
        yield processor, traffic, served.url
    processor.close()


@pytest.fixture(scope="module")
def guarded() -> Iterator[tuple[Processor, str]]:
    """A processor with a token (as off loopback) that took all the traffic, served."""
    processor, _ = loaded_processor(token=TOKEN)
    with ServedInThread(processor) as served:
        yield processor, served.url
    processor.close()


@pytest.fixture(scope="module")
def browser(chromium_binary: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright, chromium_binary)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(timezone_id="Asia/Tokyo")
    page = context.new_page()
    violations: list[str] = []
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.csp_violations = violations
    yield page
    context.close()


def _sign_in(page: Any, url: str) -> None:
    page.goto(url + "/")
    page.fill("input[name=token]", TOKEN)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(url + "/")


def test_the_users_taken_over_are_listed_with_their_finding(
    loaded: tuple[Processor, Any, str], page: Any
) -> None:
    processor, _, url = loaded
    takeovers = processor.store.findings(kind="account_takeover")
    assert takeovers
    page.goto(url + "/")
    at_risk = page.locator("section.panel", has_text="Users at risk")
    for finding in takeovers:
        row = at_risk.locator("tr", has_text=finding.subject.label or finding.subject.id)
        assert "account_takeover" in row.inner_text()
        assert "critical" in row.inner_text()
    # The list of takeovers, and one's page, name the user.
    page.goto(url + "/findings?kind=account_takeover")
    page.click(f"tr[data-id='{takeovers[0].id}'] a[href^='/findings/']")
    assert takeovers[0].subject.label in page.inner_text("main")
    assert page.csp_violations == []


def test_an_attacking_address_page_shows_its_victims(
    loaded: tuple[Processor, Any, str], page: Any
) -> None:
    processor, traffic, url = loaded
    stuffing = processor.store.findings(kind="credential_stuffing")[0]
    address = stuffing.subject.id
    victims = {
        traffic.users[e.user_hash]
        for e in traffic.events
        if e.client_ip == address and e.kind == "login" and e.user_hash
    }
    assert len(victims) > 64
    page.goto(url + "/sources")
    page.click(f"a[href='/sources/{address}']")
    shown = set(page.locator("table.victims td.user").all_inner_texts())
    # Every user it tried, up to the 64 an address's profile lists, and how many there were.
    assert shown <= victims
    assert len(shown) == 64
    assert f"{len(victims)} users tried in the last 24 h" in page.inner_text("main")
    assert "credential_stuffing" in page.inner_text("main")


def test_a_trace_link_follows_the_template(loaded: tuple[Processor, Any, str], page: Any) -> None:
    processor, _, url = loaded
    finding = processor.store.findings(kind="brute_force")[0]
    page.goto(f"{url}/findings/{finding.id}")
    links = page.locator("a.trace")
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    expected = [TRACE_URL.replace("{trace_id}", t) for t in finding.evidence["trace_ids"]]
    assert hrefs == expected


def test_times_are_shown_in_the_viewer_time_zone(
    loaded: tuple[Processor, Any, str], page: Any
) -> None:
    processor, _, url = loaded
    finding = processor.store.findings(kind="account_takeover")[0]
    page.goto(f"{url}/findings/{finding.id}")
    shown = page.locator("dl.facts time").first.inner_text()
    assert "UTC" not in shown
    assert "GMT+9" in shown  # the context's zone is Asia/Tokyo


def test_new_findings_appear_without_a_reload(browser: Any, chromium_binary: str) -> None:
    processor, traffic = loaded_processor(upto=6000)
    try:
        with ServedInThread(processor) as served:
            context = browser.new_context()
            page = context.new_page()
            page.goto(served.url + "/")
            before = set(
                page.locator("#live-findings tbody tr").evaluate_all(
                    "rows => rows.map(r => r.dataset.id)"
                )
            )
            feed(processor, traffic.events[6000:])
            newest = processor.store.findings(limit=1)[0]
            assert newest.id not in before
            page.wait_for_selector(
                f"#live-findings tr.fresh[data-id='{newest.id}']", timeout=15_000
            )
            context.close()
    finally:
        processor.close()


def test_off_loopback_a_browser_without_the_token_sees_the_login_form_and_no_data(
    guarded: tuple[Processor, str], page: Any
) -> None:
    processor, url = guarded
    labels = {f.subject.label for f in processor.store.findings() if f.subject.label}
    for path in ("/", "/findings", "/users", "/sources"):
        page.goto(url + path)
        assert page.locator("form[action='/login'] input[name=token]").is_visible()
        text = page.content()
        assert not any(label in text for label in labels)
    response = page.request.get(url + "/live/findings?after=0")
    assert response.status == 401
    page.fill("input[name=token]", "not-the-token")
    page.click("form[action='/login'] button[type=submit]")
    assert "That is not the token." in page.inner_text("main")


def test_off_loopback_with_the_token_a_browser_sees_the_pages(
    guarded: tuple[Processor, str], page: Any
) -> None:
    processor, url = guarded
    page.goto(url + "/users")
    page.fill("input[name=token]", TOKEN)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(url + "/users")  # back where it was going
    takeover = processor.store.findings(kind="account_takeover")[0]
    page.goto(url + "/")
    at_risk = page.locator("section.panel", has_text="Users at risk")
    assert takeover.subject.label in at_risk.inner_text()
    cookie = next(c for c in page.context.cookies() if c["name"] == "usermon_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert TOKEN not in cookie["value"]
    # Signing out ends the session.
    page.click("form.logout button")
    page.goto(url + "/findings")
    assert page.locator("input[name=token]").is_visible()


class _Attacker(BaseHTTPRequestHandler):
    """Another site: its page posts a form to the dashboard as soon as it loads."""

    target = ""
    action = "/logout"
    fields: dict[str, str] = {}  # noqa: RUF012 - set per test on a subclass

    def do_GET(self) -> None:
        hidden = "".join(
            f'<input type="hidden" name="{k}" value="{v}">'
            for k, v in {"csrf": "guessed", **self.fields}.items()
        )
        body = (
            f'<form id="f" method="post" action="{self.target}{self.action}">{hidden}</form>'
            '<script>document.getElementById("f").submit()</script>'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_forged_cross_site_post_is_refused(guarded: tuple[Processor, str], page: Any) -> None:
    _, url = guarded
    _sign_in(page, url)
    handler = type("Attacker", (_Attacker,), {"target": url})
    attacker = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        answers: list[int] = []
        page.on(
            "response", lambda r: answers.append(r.status) if r.url.endswith("/logout") else None
        )
        page.goto(f"http://localhost:{attacker.server_address[1]}/")
        page.wait_for_load_state("networkidle")
        assert answers == [403]
    finally:
        attacker.shutdown()
        attacker.server_close()
    # Still signed in: the forged sign-out did nothing.
    page.goto(url + "/findings")
    assert page.locator("form.logout").is_visible()
    # The same POST with the session cookie but without the page's CSRF token is refused too.
    session = next(c for c in page.context.cookies() if c["name"] == "usermon_session")
    refused = httpx.post(
        url + "/logout", data={"csrf": "guessed"}, cookies={"usermon_session": session["value"]}
    )
    assert refused.status_code == 403


def test_every_page_has_the_strict_policy_and_escapes_identifiers(
    loaded: tuple[Processor, Any, str], page: Any
) -> None:
    processor, traffic, url = loaded
    from usermon.processor.model import Event

    hostile = '<img src=x onerror="document.title=1">'
    feed(
        processor,
        [
            Event(
                kind="login",
                time=traffic.events[-1].time,
                success=True,
                user_hash="f" * 32,
                user_id=hostile,
                primary_key="email",
                identifiers=(("email", hostile),),
                client_ip="198.51.100.9",
                service="shop",
            )
        ],
    )
    response = page.goto(url + "/users/" + "f" * 32)
    assert response.headers["content-security-policy"] == CSP
    assert page.locator("h1").inner_text() == hostile  # shown as text, never as markup
    assert page.locator("main img").count() == 0
    assert page.title() != "1"
    for path in ("/", "/findings", "/users", "/sources"):
        assert page.goto(url + path).headers["content-security-policy"] == CSP
    assert page.csp_violations == []


def test_an_address_is_blocked_and_unblocked_from_the_decisions_page(
    guarded: tuple[Processor, str], page: Any
) -> None:
    processor, url = guarded
    _sign_in(page, url)
    page.click("nav a[href='/decisions']")
    form = page.locator("form#block")
    form.locator("select[name=action]").select_option("block")
    form.locator("select[name=scope]").select_option("ip")
    form.locator("input[name=value]").fill("192.0.2.123")
    form.locator("input[name=duration]").fill("4h")
    form.locator("input[name=reason]").fill("scanner seen in the logs")
    form.locator("button[type=submit]").click()
    # The confirmation step: what will happen, nothing done yet.
    assert page.locator("section.confirm h1").inner_text() == "Block ip 192.0.2.123?"
    assert "manual:dashboard" in page.inner_text("section.confirm")
    assert "192.0.2.123" not in page.context.request.get(url + "/decisions").text()
    page.click("section.confirm button[type=submit]")
    page.wait_for_url(url + "/decisions?done=block")
    row = page.locator("table.decisions tr", has_text="192.0.2.123")
    assert "scanner seen in the logs" in row.inner_text()
    assert "manual:dashboard" in row.inner_text()
    # The address's page shows it.
    row.locator("a.addr").click()
    page.wait_for_url(url + "/sources/192.0.2.123")
    decided = page.locator("section.decided")
    assert "scanner seen in the logs" in decided.inner_text()
    # Unblock it, from that page, with a confirmation again.
    decided.locator("tr", has_text="192.0.2.123").locator("button", has_text="Remove").click()
    assert "Remove 1 decision?" in page.locator("section.confirm h1").inner_text()
    page.click("section.confirm button[type=submit]")
    page.wait_for_url(url + "/decisions?done=remove")
    assert page.locator("table.decisions tr", has_text="192.0.2.123").count() == 0
    audit = page.locator("table.audit tbody tr")
    assert audit.nth(0).inner_text().split("\t")[1:4] == ["remove", row_id(processor), "dashboard"]
    assert audit.nth(1).inner_text().split("\t")[1:4] == ["add", row_id(processor), "dashboard"]
    assert page.csp_violations == []


def row_id(processor: Processor) -> str:
    """The id of the dashboard's decision on 192.0.2.123."""
    store: Any = processor.store
    (made,) = [
        d for d in store.decisions(now=0.0, include_inactive=True) if d.value == "192.0.2.123"
    ]
    return str(made.id)


def test_a_network_is_allowlisted_from_the_decisions_page(
    guarded: tuple[Processor, str], page: Any
) -> None:
    processor, url = guarded
    _sign_in(page, url)
    page.goto(url + "/decisions")
    page.fill("form#allow input[name=value]", "203.0.113.77/24")
    page.click("form#allow button[type=submit]")
    assert "203.0.113.0/24" in page.locator("section.confirm h1").inner_text()
    page.click("section.confirm button[type=submit]")
    page.wait_for_url(url + "/decisions?done=allow")
    assert "203.0.113.0/24" in page.locator("table.allowlist").inner_text()
    first = page.locator("table.audit tbody tr").first.inner_text()
    assert first.split("\t")[1:4] == ["allow", "network:203.0.113.0/24", "dashboard"]
    store: Any = processor.store
    assert ("network", "203.0.113.0/24") in {(e.kind, e.value) for e in store.allowlist()}
    # An address inside it says so on its page.
    page.goto(url + "/sources/203.0.113.5")
    assert "On the allowlist: 203.0.113.0/24" in page.inner_text("section.decided")


def test_a_forged_cross_site_post_to_block_is_refused(
    guarded: tuple[Processor, str], page: Any
) -> None:
    processor, url = guarded
    _sign_in(page, url)
    fields = {"scope": "ip", "value": "192.0.2.250", "duration": "7d", "confirm": "yes"}
    handler = type(
        "Attacker", (_Attacker,), {"target": url, "action": "/decisions/block", "fields": fields}
    )
    attacker = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        answers: list[int] = []
        page.on(
            "response",
            lambda r: answers.append(r.status) if r.url.endswith("/decisions/block") else None,
        )
        page.goto(f"http://localhost:{attacker.server_address[1]}/")
        page.wait_for_load_state("networkidle")
        assert answers == [403]
    finally:
        attacker.shutdown()
        attacker.server_close()
    store: Any = processor.store
    assert not [
        d for d in store.decisions(now=0.0, include_inactive=True) if d.value == "192.0.2.250"
    ]
