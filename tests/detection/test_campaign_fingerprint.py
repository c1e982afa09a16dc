"""Campaign fingerprints (detectors/fingerprint.py): from a campaign's attempts to what an
application can match at login time, a User-Agent digest and a client network, leaving the
service's own traffic alone, then the ``service_campaign`` challenge an application enforces; and
the campaign's id on the findings of the sources that belong to it.

Each event test gives the service three days of ordinary life (unknown-account failures and
signups, as in test_campaigns.py, plus forty users logging in every day from their homes in the
same ASN the attack comes from, with the three common browsers), then plays the attack."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timezone

import pytest
from tests.detection.conftest import (
    CHROME_WINDOWS,
    DAY,
    FIREFOX_LINUX,
    PARIS,
    SAFARI_IPHONE,
    T0,
    Stream,
)
from tests.detection.test_campaigns import ordinary_days

from usermon.decisions import Allowlist as SdkAllowlist
from usermon.decisions import Decision, DecisionIndex, ip_key, user_agent_hash
from usermon.processor.detectors.fingerprint import Fingerprint, derive, observe
from usermon.processor.model import Event, Finding, Signal
from usermon.processor.responses import Allowlist, load_responses, respond

AGENTS = (CHROME_WINDOWS, FIREFOX_LINUX, SAFARI_IPHONE)
BOT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120"
DAY3 = T0 + 3 * DAY
POOL = ("203.0.113", "192.0.2", "100.64.7")  # the proxy pool's three /24s, in the users' ASN


def send(stream: Stream, t: float, user: str, ip: str, agent: str, *, ok: bool) -> list[Signal]:
    return stream.send(
        Event(
            kind="login",
            time=t,
            success=ok,
            user_hash=f"h-{user}",
            user_id=user,
            client_ip=ip,
            user_agent=agent,
            exists=ok or None,
            service="shop",
            trace_id=f"{int(t * 1000) % 2**64:032x}",
            network=PARIS,  # one big ISP: the benign users and the proxies share its ASN
        )
    )


def ordinary_life(stream: Stream) -> None:
    ordinary_days(stream)
    for day in range(3):
        for i in range(40):
            home = f"198.51.{100 + i // 20}.{i % 20 + 1}"
            send(stream, T0 + day * DAY + 600 + i * 30, f"user{i}", home, AGENTS[i % 3], ok=True)


def stuffing(stream: Stream, agent: str, address: Iterable[str], count: int = 400) -> None:
    """A combo list through the proxy pool: one attempt per address, unknown accounts."""
    for i, ip in zip(range(count), address, strict=False):
        send(stream, DAY3 + i * 9, f"combo{i}", ip, agent, ok=False)


def pool(width: int = 3) -> Iterable[str]:
    i = 0
    while True:
        yield f"{POOL[i % width]}.{i // width % 250 + 1}"
        i += 1


def proxies(count: int) -> list[str]:
    addresses = pool()
    return [next(addresses) for _ in range(count)]


def residential() -> Iterable[str]:
    i = 0
    while True:  # every attempt from another /24
        yield f"10.{i // 250}.{i % 250}.9"
        i += 1


def campaign(stream: Stream) -> Signal:
    found = [s for s in stream.of("credential_stuffing") if s.subject.type == "service"]
    assert found, "no campaign"
    return found[-1]


def as_finding(signal: Signal) -> Finding:
    return Finding(
        id="f-campaign",
        kind=signal.kind,
        severity=signal.severity,
        subject=signal.subject,
        first_seen=signal.event.time,
        last_seen=signal.event.time,
        event_count=1,
        summary=signal.summary,
        evidence=dict(signal.evidence),
    )


def answer(signal: Signal) -> list[tuple[str, str, str, float]]:
    """The decisions the processor's default responses make for the campaign finding."""
    made = respond(
        [as_finding(signal)],
        load_responses(environ={}),
        allowlist=Allowlist(),
        held=lambda scope, value: None,
        repeats=lambda scope, value: 0,
        now=DAY3,
    )
    return [(d.action, d.scope, d.value, d.until) for d in made]


def challenge_for(signal: Signal) -> DecisionIndex:
    """The campaign answered as the processor answers it, held as an application holds it."""
    [(action, scope, value, until)] = answer(signal)
    assert (action, scope) == ("challenge", "service_campaign")
    held = Decision(
        id="d-1",
        action=action,
        scope=scope,
        value=value,
        until=datetime.fromtimestamp(until, tz=timezone.utc),
        reason="campaign",
        origin="response:campaign",
        created=datetime.fromtimestamp(DAY3, tz=timezone.utc),
        expires=until,
    )
    return DecisionIndex({held.id: held}, SdkAllowlist())


def challenged(index: DecisionIndex, ip: str, agent: str) -> bool:
    decision = index.match(ip_key(ip), None, user_agent_hash(agent), DAY3 + 60)
    return decision is not None and decision.action == "challenge"


# -- from events -------------------------------------------------------------------------------


def test_a_bots_user_agent_through_a_proxy_pool_is_the_fingerprint() -> None:
    stream = Stream()
    ordinary_life(stream)
    stuffing(stream, BOT, pool())
    evidence = campaign(stream).evidence
    assert evidence["fingerprint"] == f"ua={user_agent_hash(BOT)}"
    assert evidence["fingerprint_coverage"] >= 0.95
    index = challenge_for(campaign(stream))
    assert challenged(index, "203.0.113.77", BOT)
    assert challenged(index, "10.9.9.9", BOT)  # the pool's next network, same tool
    assert not challenged(index, "198.51.100.3", CHROME_WINDOWS)  # a user at home, same ASN
    assert not challenged(index, "203.0.113.77", CHROME_WINDOWS)


def test_a_bot_copying_the_common_browser_is_fingerprinted_by_its_networks_too() -> None:
    stream = Stream()
    ordinary_life(stream)
    stuffing(stream, CHROME_WINDOWS, pool())
    value = campaign(stream).evidence["fingerprint"]
    assert value == ";".join(
        [f"ua={user_agent_hash(CHROME_WINDOWS)}"] + [f"net={p}.0/24" for p in sorted(POOL)]
    )
    index = challenge_for(campaign(stream))
    assert challenged(index, "192.0.2.200", CHROME_WINDOWS)
    # the users of that browser elsewhere in the ASN, and another browser in the pool, are not
    assert not challenged(index, "198.51.100.3", CHROME_WINDOWS)
    assert not challenged(index, "198.51.101.9", CHROME_WINDOWS)
    assert not challenged(index, "192.0.2.200", FIREFOX_LINUX)


def test_a_network_where_the_services_users_log_in_is_never_challenged() -> None:
    """The same attack as above, but one of the pool's three networks is also an office's whose
    users log in all morning: it is left out, and the two others do not cover 80 % of the
    attack, so there is no fingerprint (without the office's logins, it would be in it)."""
    stream = Stream()
    ordinary_life(stream)
    office = POOL[2]
    for i in range(60):
        ip = f"{office}.{200 + i % 5}"
        send(stream, DAY3 + 100 + i * 30, f"user{i % 40}", ip, FIREFOX_LINUX, ok=True)
    stuffing(stream, CHROME_WINDOWS, pool())
    assert campaign(stream).evidence["fingerprint"] is None
    assert answer(campaign(stream)) == []


def test_common_browser_through_residential_proxies_has_no_fingerprint_and_no_decision() -> None:
    stream = Stream()
    ordinary_life(stream)
    stuffing(stream, CHROME_WINDOWS, residential())
    signal = campaign(stream)
    assert signal.evidence["fingerprint"] is None
    assert answer(signal) == []


def test_a_young_campaign_has_no_fingerprint_until_its_sample() -> None:
    stream = Stream()
    ordinary_life(stream)
    stuffing(stream, BOT, pool(), count=110)  # fires at 100: ten attempts into the campaign
    assert campaign(stream).evidence["fingerprint"] is None


# -- the derivation itself, over counts -----------------------------------------------------------


def summary(events: Iterable[tuple[str, str]]) -> dict[str, object]:
    record: dict[str, object] = {}
    for agent, net in events:
        observe(record, agent, net)
    return record


def derived(events: list[tuple[str, str]], **kwargs: object) -> Fingerprint | None:
    record = summary(events)
    agents = {sha: entry[0] for sha, entry in record["ua"].items()}  # type: ignore[attr-defined]
    nets = {net: entry[0] for net, entry in record["net"].items()}  # type: ignore[attr-defined]
    options: dict[str, object] = {
        "common_agents": set(),
        "busy_nets": set(),
        "coverage": 0.8,
        "max_agents": 4,
        "max_nets": 8,
    }
    options.update(kwargs)
    return derive(int(record["n"]), agents, nets, **options)  # type: ignore[arg-type]


def test_a_few_tools_are_covered_by_their_user_agents() -> None:
    tools = [f"tool/{k}" for k in range(3)]
    events = [(tools[i % 3], f"10.{i}.0.0/24") for i in range(300)]
    found = derived(events)
    assert found is not None
    assert sorted(found.agents) == sorted(user_agent_hash(t) for t in tools)
    assert found.nets == ()


def test_user_agents_spread_too_wide_are_no_fingerprint() -> None:
    events = [(f"agent/{i % 50}", f"10.{i}.0.0/24") for i in range(500)]
    assert derived(events) is None


def test_without_a_baseline_a_user_agent_needs_networks() -> None:
    events = [(BOT, "192.0.2.0/24" if i % 2 else "198.18.0.0/24") for i in range(100)]
    found = derived(events, common_agents=None)
    assert found is not None
    assert found.agents == (user_agent_hash(BOT),)
    assert sorted(found.nets) == ["192.0.2.0/24", "198.18.0.0/24"]
    spread = [(BOT, f"10.{i}.0.0/24") for i in range(100)]
    assert derived(spread, common_agents=None) is None


def test_the_summary_stays_bounded_and_keeps_the_heavy_hitters() -> None:
    events = [(BOT if i % 2 else f"noise/{i}", f"10.{i % 1000}.0.0/24") for i in range(20_000)]
    record = summary(events)
    assert len(record["ua"]) <= 8  # type: ignore[arg-type]
    assert len(record["net"]) <= 16  # type: ignore[arg-type]
    assert user_agent_hash(BOT) in record["ua"]  # type: ignore[operator]


def test_the_value_is_canonical() -> None:
    a = Fingerprint(("bb" * 32, "aa" * 32), ("192.0.2.0/24",), 0.9).value
    b = Fingerprint(("aa" * 32, "bb" * 32), ("192.0.2.0/24",), 0.9).value
    assert a == b == f"ua={'aa' * 32};ua={'bb' * 32};net=192.0.2.0/24"


# -- findings on single sources name the campaign they belong to ----------------------------------

Attempt = tuple[float, str, str, str, bool]  # time, user, address, User-Agent, success


def play(stream: Stream, attempts: list[Attempt]) -> None:
    for t, user, ip, agent, ok in sorted(attempts):
        send(stream, t, user, ip, agent, ok=ok)


def named(stream: Stream, kind: str, subject: str) -> set[object]:
    """The ``campaign`` of each signal of ``kind`` on ``subject`` (None when it names none)."""
    found = [s for s in stream.of(kind) if s.subject.id == subject]
    assert found, f"no {kind} on {subject}"
    return {s.evidence.get("campaign") for s in found}


def test_every_finding_of_a_source_in_the_campaign_names_it_and_no_other_does() -> None:
    stream = Stream()
    ordinary_life(stream)
    attempts: list[Attempt] = [
        (DAY3 + i * 9, f"combo{i}", ip, BOT, False) for i, ip in enumerate(proxies(400))
    ]
    # the same tool, meanwhile: a brute force on a real account from one of the pool's proxies,
    attempts += [(DAY3 + 1800 + i * 20, "user1", "203.0.113.250", BOT, False) for i in range(12)]
    # a rotating brute force on another, one guess per proxy,
    attempts += [
        (DAY3 + 1900 + i * 30, "user2", f"192.0.2.{200 + i}", BOT, False) for i in range(25)
    ]
    # a slow spray from one proxy, which then gets into an account,
    attempts += [
        (DAY3 + 600 + i * 480, f"user{10 + i}", "100.64.7.251", BOT, False) for i in range(12)
    ]
    attempts += [(DAY3 + 600 + 12 * 480, "user30", "100.64.7.251", BOT, True)]
    # and, unrelated, a user's ex guessing their password from home with their own browser
    attempts += [
        (DAY3 + 2000 + i * 20, "user3", "198.51.100.4", FIREFOX_LINUX, False) for i in range(12)
    ]
    play(stream, attempts)
    the_campaign = campaign(stream).evidence["campaign"]
    assert campaign(stream).evidence["fingerprint"] == f"ua={user_agent_hash(BOT)}"
    assert named(stream, "brute_force", "h-user1") == {the_campaign}
    assert named(stream, "distributed_brute_force", "h-user2") == {the_campaign}
    assert named(stream, "password_spraying", "100.64.7.251") == {the_campaign}
    assert named(stream, "account_takeover", "h-user30") == {the_campaign}
    assert named(stream, "brute_force", "h-user3") == {None}


def test_a_stuffing_address_in_the_campaign_names_it_and_one_outside_its_fingerprint_does_not() -> (
    None
):
    stream = Stream()
    ordinary_life(stream)
    attempts: list[Attempt] = [
        (DAY3 + i * 9, f"combo{i}", ip, BOT, False) for i, ip in enumerate(proxies(400))
    ]
    attempts += [(DAY3 + 1800 + i * 5, f"list{i}", "192.0.2.251", BOT, False) for i in range(40)]
    attempts += [
        (DAY3 + 1800 + i * 5, f"other{i}", "198.18.9.9", "curl/8.5", False) for i in range(40)
    ]
    play(stream, attempts)
    the_campaign = campaign(stream).evidence["campaign"]
    assert named(stream, "credential_stuffing", "192.0.2.251") == {the_campaign}
    assert named(stream, "credential_stuffing", "198.18.9.9") == {None}


def test_an_address_signing_up_in_bursts_during_a_signup_farm_names_it() -> None:
    stream = Stream()
    ordinary_days(stream)
    headless = "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/131.0.0.0 Safari/537.36"
    for i in range(300):
        ip = "10.6.250.1" if 200 <= i < 210 else f"10.6.{i % 250}.{i // 250}"
        t = DAY3 + i * 12 if ip != "10.6.250.1" else DAY3 + 200 * 12 + (i - 200) * 5
        stream.send(
            Event(
                kind="signup",
                time=t,
                user_hash=f"h-shopper{i}",
                user_id=f"shopper{i}",
                client_ip=ip,
                user_agent=headless,
                service="shop",
                network=PARIS,
            )
        )
    farm = [s for s in stream.of("signup_abuse") if s.subject.type == "service"]
    assert farm
    assert named(stream, "signup_abuse", "10.6.250.1") == {farm[-1].evidence["campaign"]}


@pytest.mark.redis
def test_on_redis_the_fingerprint_and_the_campaigns_sources_are_the_same(redis_url: str) -> None:
    """Replicas share the campaign's record in Redis (JSON): the summaries, the fingerprint and
    the membership come out as in memory."""
    from usermon.processor.storage.state.redis import RedisState

    state = RedisState.from_url(redis_url, prefix=f"test-fingerprint-{uuid.uuid4().hex[:8]}:")
    try:
        stream = Stream()
        stream.state = state  # type: ignore[assignment]
        ordinary_life(stream)
        attempts: list[Attempt] = [
            (DAY3 + i * 9, f"combo{i}", ip, BOT, False) for i, ip in enumerate(proxies(400))
        ]
        attempts += [
            (DAY3 + 1800 + i * 20, "user1", "203.0.113.250", BOT, False) for i in range(12)
        ]
        play(stream, attempts)
        evidence = campaign(stream).evidence
        assert evidence["fingerprint"] == f"ua={user_agent_hash(BOT)}"
        assert named(stream, "brute_force", "h-user1") == {evidence["campaign"]}
    finally:
        state.clear()
