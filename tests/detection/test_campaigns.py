"""campaigns: surges on a whole service, against its baseline (issue 15).

Each test first gives the service two days of ordinary life to learn from (a few failed logins
on unknown accounts an hour, a few signups), then plays the day in question."""

from __future__ import annotations

from tests.detection.conftest import (
    CHROME_WINDOWS,
    DAY,
    FIREFOX_LINUX,
    PARIS,
    SAFARI_IPHONE,
    T0,
    Stream,
)

from usermon.processor.detectors.campaign import SOURCES_EVERY
from usermon.processor.model import Event, Signal

AGENTS = (CHROME_WINDOWS, FIREFOX_LINUX, SAFARI_IPHONE)
DAY3 = T0 + 3 * DAY


def login(
    stream: Stream,
    t: float,
    user: str,
    ip: str,
    success: bool,
    exists: bool | None,
    service: str = "shop",
) -> list[Signal]:
    return stream.send(
        Event(
            kind="login",
            time=t,
            success=success,
            user_hash=f"h-{user}",
            user_id=user,
            client_ip=ip,
            user_agent=CHROME_WINDOWS,
            exists=exists,
            service=service,
            trace_id=f"{int(t * 1000) % 2**64:032x}",
            network=PARIS,
        )
    )


def signup(stream: Stream, t: float, user: str, ip: str, agent: str) -> list[Signal]:
    return stream.send(
        Event(
            kind="signup",
            time=t,
            user_hash=f"h-{user}",
            user_id=user,
            client_ip=ip,
            user_agent=agent,
            service="shop",
            network=PARIS,
        )
    )


def ordinary_days(stream: Stream, days: int = 3, service: str = "shop") -> None:
    """Three unknown-account failures and two signups an hour, from ordinary addresses."""
    for hour in range(days * 24):
        t = T0 + hour * 3600
        for i in range(3):
            login(
                stream,
                t + i * 600,
                f"typo{hour}-{i}",
                f"192.0.{hour % 200}.{i}",
                False,
                False,
                service,
            )
        for i in range(2):
            signup(stream, t + i * 900, f"new{hour}-{i}", f"198.18.{hour % 200}.{i}", AGENTS[i])


def campaign_signals(stream: Stream, kind: str) -> list[Signal]:
    return [s for s in stream.of(kind) if s.subject.type == "service"]


def test_stuffing_through_residential_proxies_is_one_campaign_on_the_service() -> None:
    stream = Stream()
    ordinary_days(stream)
    for i in range(600):  # two hours, every attempt from another address, unknown accounts
        login(stream, DAY3 + i * 12, f"combo{i}", f"10.{i // 250}.{i % 250}.9", False, False)
    signals = campaign_signals(stream, "credential_stuffing")
    assert signals
    first = signals[0]
    assert first.subject.id == "shop"
    assert first.evidence["attempts"] == 100  # min_failures, far above 3 an hour
    assert {s.evidence["campaign"] for s in signals} == {first.evidence["campaign"]}
    assert {s.episode_gap for s in signals} == {3600.0}
    # The sources are re-read every SOURCES_EVERY attempts: at most that many behind.
    assert signals[-1].evidence["sources"][0]["count"] > 501 - SOURCES_EVERY
    assert signals[-1].evidence["accounts"] >= 500
    # Nothing per address: each was used once.
    assert not [s for s in stream.of("credential_stuffing") if s.subject.type == "ip"]


def test_a_campaign_over_many_networks_does_not_read_its_sources_at_each_attempt() -> None:
    """The campaign's map of sources has a field per ASN; ranking it at every attempt made each
    attempt of a wide pool cost a walk of thousands of fields."""
    from tests.support.state import CountingState

    from usermon.processor.model import NetworkInfo

    stream = Stream()
    stream.state = CountingState()
    ordinary_days(stream)

    def attempt(i: int) -> None:
        stream.send(
            Event(
                kind="login",
                time=DAY3 + i * 12,
                success=False,
                user_hash=f"h-combo{i}",
                client_ip=f"10.{i // 250}.{i % 250}.9",
                user_agent=CHROME_WINDOWS,
                exists=False,
                service="shop",
                network=NetworkInfo(country="US", asn=64000 + i),
            )
        )

    for i in range(150):
        attempt(i)
    assert campaign_signals(stream, "credential_stuffing")
    before = stream.state.calls["fields"]
    for i in range(150, 450):
        attempt(i)
    # Per attempt, it was two reads of the map; now a few for every SOURCES_EVERY attempts.
    assert stream.state.calls["fields"] - before <= 2 * (300 // SOURCES_EVERY + 1)
    evidence = campaign_signals(stream, "credential_stuffing")[-1].evidence
    assert evidence["distinct_sources"] > 350 - SOURCES_EVERY


def test_a_steady_flood_stays_one_campaign_reported_to_its_end() -> None:
    """Its own attempts do not enter the baseline it is compared with: twelve hours at 200
    attempts an hour (about 70 times the baseline) once stopped being reported after eight, as
    the flood became the usual rate. A second flood the next day is measured against the same
    quiet baseline."""
    stream = Stream()
    ordinary_days(stream)
    end = DAY3 + 12 * 3600
    for i in range(12 * 200):
        t = DAY3 + i * 18
        login(stream, t, f"combo{i}", f"10.{i // 250}.{i % 250}.{1 + i % 7}", False, False)
    signals = campaign_signals(stream, "credential_stuffing")
    assert {s.evidence["campaign"] for s in signals} == {signals[0].evidence["campaign"]}
    assert signals[-1].event.time > end - 60
    assert signals[-1].evidence["expected"] == signals[0].evidence["expected"] < 5
    later = DAY3 + DAY
    for i in range(150):
        login(stream, later + i * 18, f"combo2-{i}", f"10.9.{i}.{1 + i % 7}", False, False)
    again = campaign_signals(stream, "credential_stuffing")[len(signals) :]
    assert again
    assert again[0].evidence["campaign"] != signals[0].evidence["campaign"]
    assert again[0].evidence["expected"] < 5


def test_a_forced_password_reset_on_known_accounts_is_quiet() -> None:
    stream = Stream()
    ordinary_days(stream)
    for i in range(1500):  # a third of the users fail once or twice from their own address
        login(stream, DAY3 + i * 2, f"user{i}", f"10.{i // 250}.{i % 250}.9", False, True)
        login(stream, DAY3 + i * 2 + 1, f"user{i}", f"10.{i // 250}.{i % 250}.9", True, True)
    assert campaign_signals(stream, "credential_stuffing") == []


def test_a_nat_with_hundreds_of_mistyped_accounts_behind_two_addresses_is_quiet() -> None:
    stream = Stream()
    ordinary_days(stream)
    for i in range(400):
        login(stream, DAY3 + i * 5, f"student{i}", f"203.0.113.{i % 2}", False, False)
    assert campaign_signals(stream, "credential_stuffing") == []


def test_a_young_or_small_service_does_not_alert() -> None:
    young = Stream()
    for i in range(600):  # the service's very first hours: nothing learned yet
        login(young, T0 + i * 6, f"combo{i}", f"10.{i // 250}.{i % 250}.9", False, False)
    assert campaign_signals(young, "credential_stuffing") == []
    small = Stream()
    ordinary_days(small)
    for i in range(99):  # 33 times the baseline, but below min_failures
        login(small, DAY3 + i * 30, f"combo{i}", f"10.0.{i}.9", False, False)
    assert campaign_signals(small, "credential_stuffing") == []


def test_without_the_exists_flag_unknown_means_never_seen_succeeding() -> None:
    stream = Stream()
    ordinary_days(stream)
    for i in range(300):  # known users: they logged in before, then fail once from anywhere
        login(stream, DAY3 - 7200 + i, f"user{i}", f"10.1.{i % 250}.{i // 250}", True, None)
    for i in range(300):
        login(stream, DAY3 + i * 10, f"user{i}", f"10.2.{i % 250}.{i // 250}", False, None)
    assert campaign_signals(stream, "credential_stuffing") == []
    for i in range(200):
        login(stream, DAY3 + 4000 + i * 10, f"combo{i}", f"10.3.{i}.9", False, None)
    assert campaign_signals(stream, "credential_stuffing")


def test_a_signup_farm_with_one_browser_is_a_campaign_and_a_marketing_surge_is_not() -> None:
    stream = Stream()
    ordinary_days(stream)
    for i in range(200):  # a newsletter: every browser there is
        signup(stream, DAY3 + i * 18, f"reader{i}", f"10.5.{i}.9", AGENTS[i % 3])
    assert campaign_signals(stream, "signup_abuse") == []
    headless = "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/131.0.0.0 Safari/537.36"
    for i in range(300):
        signup(
            stream,
            DAY3 + 7200 + i * 12,
            f"shopper{1000 + i}",
            f"10.6.{i % 250}.{i // 250}",
            headless,
        )
    signals = campaign_signals(stream, "signup_abuse")
    assert signals
    assert signals[0].subject.id == "shop"
    assert signals[0].evidence["attempts"] >= 50
    assert not [s for s in stream.of("signup_abuse") if s.subject.type == "ip"]


def test_services_are_judged_apart() -> None:
    stream = Stream()
    ordinary_days(stream, service="shop")
    ordinary_days(stream, service="blog")
    for i in range(600):
        login(
            stream, DAY3 + i * 12, f"combo{i}", f"10.{i // 250}.{i % 250}.9", False, False, "blog"
        )
    assert {s.subject.id for s in campaign_signals(stream, "credential_stuffing")} == {"blog"}


def proxy_login(stream: Stream, t: float, user: str, ip: str, success: bool, network) -> None:  # type: ignore[no-untyped-def]
    stream.send(
        Event(
            kind="login",
            time=t,
            success=success,
            user_hash=f"h-{user}",
            user_id=user,
            client_ip=ip,
            user_agent=FIREFOX_LINUX,
            exists=True,
            service="shop",
            trace_id=f"{int(t * 1000) % 2**64:032x}",
            network=network,
        )
    )


def stuffing_run(  # type: ignore[no-untyped-def]
    stream: Stream, start: float, count: int, network, agents: tuple[str, ...] = AGENTS
) -> None:
    """``count`` failures on unknown accounts, one every 12 s, each from another address of
    ``network`` (a residential-proxy pool), its tool cycling through ``agents``."""
    for i in range(count):
        stream.send(
            Event(
                kind="login",
                time=start + i * 12,
                success=False,
                user_hash=f"h-combo{i}",
                client_ip=f"10.{i // 250}.{i % 250}.9",
                user_agent=agents[i % len(agents)],
                exists=False,
                service="shop",
                network=network,
            )
        )


def with_history(stream: Stream, *users: str) -> None:
    """Three days of logins from home with Chrome for each of ``users``."""
    for day in range(3):
        for user in users:
            login(stream, T0 + day * DAY + 3600, user, f"198.51.100.{len(user)}", True, True)


def test_a_success_sharing_the_campaigns_fingerprint_is_a_takeover() -> None:
    from usermon.processor.model import NetworkInfo

    proxies = NetworkInfo(country="VN", asn=64644, as_org="VN Fibre")
    stream = Stream()
    ordinary_days(stream)
    for day in range(3):  # alice and bob log in from home with Chrome, every day
        for user in ("alice", "bob"):
            login(stream, T0 + day * DAY + 3600, user, f"198.51.100.{len(user)}", True, True)
    stuffing_run(stream, DAY3, 300, proxies)
    # alice's password was in the list: in from another proxy of the pool, another browser
    proxy_login(stream, DAY3 + 3000, "alice", "10.9.9.9", True, proxies)
    # bob logs in from home as usual
    login(stream, DAY3 + 3001, "bob", "198.51.100.3", True, True)
    (takeover,) = stream.of("account_takeover")
    assert takeover.subject.id == "h-alice"
    campaign = campaign_signals(stream, "credential_stuffing")[-1].evidence["campaign"]
    assert takeover.evidence["campaign"] == campaign


def test_an_owner_retrying_from_a_new_network_during_a_campaign_is_not_its_takeover() -> None:
    """A combo list holds one line per account, tried once per address; carol, travelling,
    mistypes her password twice from the hotel (a network of the campaign's pool) and gets in.
    dave, from another address of the pool with no failure before, is the campaign's victim."""
    from usermon.processor.model import NetworkInfo

    proxies = NetworkInfo(country="VN", asn=64644, as_org="VN Fibre")
    stream = Stream()
    ordinary_days(stream)
    with_history(stream, "carol", "dave")
    stuffing_run(stream, DAY3, 300, proxies)
    for k in range(2):
        proxy_login(stream, DAY3 + 3000 + k * 20, "carol", "10.8.8.8", False, proxies)
    proxy_login(stream, DAY3 + 3060, "carol", "10.8.8.8", True, proxies)
    proxy_login(stream, DAY3 + 3100, "dave", "10.9.9.9", True, proxies)
    assert [s.subject.id for s in stream.of("account_takeover")] == ["h-dave"]


def test_a_takeover_before_the_campaign_is_recognised_is_reported_when_it_is() -> None:
    """The combo list's first right password comes minutes into the run, before the failures
    are enough to call it a campaign: remembered then, reported when the campaign fires."""
    from usermon.processor.model import NetworkInfo

    proxies = NetworkInfo(country="VN", asn=64644, as_org="VN Fibre")
    stream = Stream()
    ordinary_days(stream)
    with_history(stream, "alice")
    stuffing_run(stream, DAY3, 20, proxies)
    proxy_login(stream, DAY3 + 250, "alice", "10.9.9.9", True, proxies)
    assert stream.of("account_takeover") == []
    stuffing_run(stream, DAY3 + 300, 300, proxies)
    (takeover,) = stream.of("account_takeover")
    assert takeover.subject.id == "h-alice"
    assert takeover.event.time == DAY3 + 250
    campaign = campaign_signals(stream, "credential_stuffing")
    assert takeover.evidence["campaign"] == campaign[0].evidence["campaign"]
    assert campaign[0].evidence["takeovers"] == 1


def test_an_early_victim_is_attributed_once_the_campaign_reaches_its_network() -> None:
    """The campaign is recognised while the victim's network has carried none of its failures
    yet: the success stays remembered and is matched at the campaign's next fingerprint."""
    from usermon.processor.model import NetworkInfo

    first = NetworkInfo(country="VN", asn=64644, as_org="VN Fibre")
    second = NetworkInfo(country="BR", asn=64645, as_org="BR Cabo")
    stream = Stream()
    ordinary_days(stream)
    with_history(stream, "alice")
    proxy_login(stream, DAY3 + 250, "alice", "10.200.0.9", True, second)
    stuffing_run(stream, DAY3 + 300, 120, first)
    campaign = campaign_signals(stream, "credential_stuffing")
    assert campaign
    assert stream.of("account_takeover") == []
    stuffing_run(stream, DAY3 + 2000, 100, second)
    (takeover,) = stream.of("account_takeover")
    assert takeover.subject.id == "h-alice"
    assert takeover.event.time == DAY3 + 250
    assert takeover.evidence["campaign"] == campaign[0].evidence["campaign"]
    assert campaign_signals(stream, "credential_stuffing")[-1].evidence["takeovers"] == 1


def test_a_proxy_in_the_victims_own_provider_is_a_takeover_with_another_browser() -> None:
    """The pool has addresses in the victim's own ISP: the network is familiar, the browser is
    not. The owner on a new address of that ISP with their own browser is not a takeover."""
    stream = Stream()
    ordinary_days(stream)
    with_history(stream, "alice", "bob")
    stuffing_run(stream, DAY3, 300, PARIS)
    proxy_login(stream, DAY3 + 3000, "alice", "10.9.9.9", True, PARIS)  # Firefox: never hers
    login(stream, DAY3 + 3001, "bob", "10.9.9.10", True, True)  # Chrome, as always
    assert [s.subject.id for s in stream.of("account_takeover")] == ["h-alice"]


def test_an_account_with_no_login_on_record_is_a_takeover_from_the_campaigns_networks() -> None:
    from usermon.processor.model import NetworkInfo

    proxies = NetworkInfo(country="VN", asn=64644, as_org="VN Fibre")
    elsewhere = NetworkInfo(country="US", asn=7922, as_org="Comcast")
    stream = Stream()
    ordinary_days(stream)
    stuffing_run(stream, DAY3, 300, proxies)
    proxy_login(stream, DAY3 + 3000, "dormant", "10.9.9.9", True, proxies)
    proxy_login(stream, DAY3 + 3001, "newcomer", "10.9.9.10", True, elsewhere)
    assert [s.subject.id for s in stream.of("account_takeover")] == ["h-dormant"]


def test_a_browser_the_campaign_does_not_send_is_not_its_fingerprint() -> None:
    """The pool's tool sends a stale Chrome and a Firefox; a new Chrome (a browser update), on
    a network of the pool new to the user, is the user, not the campaign."""
    from usermon.processor.model import NetworkInfo

    proxies = NetworkInfo(country="VN", asn=64644, as_org="VN Fibre")
    updated = CHROME_WINDOWS.replace("Chrome/131", "Chrome/132")
    stream = Stream()
    ordinary_days(stream)
    with_history(stream, "alice")
    stuffing_run(stream, DAY3, 300, proxies, (CHROME_WINDOWS, FIREFOX_LINUX))
    stream.send(
        Event(
            kind="login",
            time=DAY3 + 3000,
            success=True,
            user_hash="h-alice",
            user_id="alice",
            client_ip="10.9.9.9",
            user_agent=updated,
            service="shop",
            network=proxies,
        )
    )
    assert stream.of("account_takeover") == []
    proxy_login(stream, DAY3 + 3001, "alice", "10.9.9.10", True, proxies)  # Firefox: the tool's
    assert [s.subject.id for s in stream.of("account_takeover")] == ["h-alice"]


def test_a_tool_sending_a_new_string_every_time_is_matched_by_its_networks_alone() -> None:
    """No mix to match: the takeover is attributed on the pool's networks (the strings' keys
    stay bounded: one per bucket of digests)."""
    from usermon.processor.model import NetworkInfo

    proxies = NetworkInfo(country="VN", asn=64644, as_org="VN Fibre")
    agents = tuple(CHROME_WINDOWS.replace("131.0.0.0", f"131.0.{i}.0") for i in range(300))
    stream = Stream()
    ordinary_days(stream)
    with_history(stream, "alice")
    stuffing_run(stream, DAY3, 300, proxies, agents)
    proxy_login(stream, DAY3 + 3000, "alice", "10.9.9.9", True, proxies)  # a string never sent
    assert [s.subject.id for s in stream.of("account_takeover")] == ["h-alice"]
    buckets = stream.state.keys("det:svc:shop:uf:ua:")
    assert 0 < len(buckets) <= 4096


def test_a_combo_list_right_at_its_first_line_is_reported_when_the_source_is_marked() -> None:
    from tests.detection.conftest import NEW_YORK

    stream = Stream()
    for day in range(3):
        stream.login(T0 + day * DAY, "alice", "198.51.100.1", True)
    t = DAY3
    stream.login(t, "alice", "203.0.113.50", True, network=NEW_YORK)  # first line: right
    assert stream.of("account_takeover") == []
    for i in range(60):  # then the rest of the list, from the same address
        stream.login(t + 5 + i * 3, f"victim{i}", "203.0.113.50", False, network=NEW_YORK)
    (takeover,) = stream.of("account_takeover")
    assert takeover.subject.id == "h-alice"
    assert takeover.event.time == t


def test_a_first_line_hit_from_the_users_own_network_is_found_on_record_when_marked() -> None:
    """Through the engine (aggregation keeps each address's accounts and each account's last
    success): the proxy sits in alice's own ISP, so nothing remembered her login at the time."""
    from usermon.processor.detectors import default_detectors
    from usermon.processor.engine import Engine
    from usermon.processor.rules import Rules
    from usermon.processor.storage.state.memory import MemoryState

    def event(t: float, user: str, ip: str, success: bool) -> Event:
        return Event(
            kind="login",
            time=t,
            success=success,
            user_hash=f"h-{user}",
            user_id=user,
            client_ip=ip,
            user_agent=CHROME_WINDOWS,
            trace_id=f"{int(t * 10):032x}",
            network=PARIS,
        )

    engine = Engine(MemoryState(), default_detectors(Rules()))
    history = [event(T0 + day * DAY, "alice", "198.51.100.1", True) for day in range(3)]
    attack = [event(DAY3, "alice", "198.51.100.200", True)]  # same ISP, right at once
    attack += [event(DAY3 + 5 + i * 3, f"victim{i}", "198.51.100.200", False) for i in range(60)]
    engine.process(history)
    findings = engine.process(attack).findings
    takeovers = [f for f in findings if f.kind == "account_takeover"]
    assert [f.subject.id for f in takeovers] == ["h-alice"]
    assert takeovers[0].first_seen == DAY3


def test_an_address_stuffing_during_the_services_campaign_names_it() -> None:
    stream = Stream()
    ordinary_days(stream)
    for i in range(300):
        login(stream, DAY3 + i * 12, f"combo{i}", f"10.{i // 250}.{i % 250}.9", False, False)
    for i in range(40):  # one of the pool's addresses, busier than the rest
        login(stream, DAY3 + 3600 + i * 5, f"list{i}", "203.0.113.66", False, False)
    campaign = campaign_signals(stream, "credential_stuffing")[-1].evidence["campaign"]
    on_address = [s for s in stream.of("credential_stuffing") if s.subject.type == "ip"]
    assert on_address
    assert {s.evidence["campaign"] for s in on_address} == {campaign}
