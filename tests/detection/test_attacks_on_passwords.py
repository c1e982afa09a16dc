"""Brute force, distributed brute force, credential stuffing, password spraying, takeover."""

from __future__ import annotations

from tests.detection.conftest import (
    HOUR,
    LILLE_MOBILE,
    NEW_YORK,
    PARIS,
    SAFARI_IPHONE,
    T0,
    Stream,
)


def hammer(stream: Stream, failures: int, user: str = "alice", ip: str = "203.0.113.9") -> None:
    for i in range(failures):
        stream.login(T0 + i * 5, user, ip, success=False, network=NEW_YORK)


# -- brute_force -------------------------------------------------------------------------------


def test_ten_failures_on_one_account_from_one_ip_are_a_brute_force(stream: Stream) -> None:
    hammer(stream, 10)
    (signal,) = stream.of("brute_force")
    assert signal.severity == "medium"
    assert signal.subject.type == "user"
    assert signal.subject.id == "h-alice"
    assert signal.evidence["failures"] == 10
    assert signal.related_ips == ("203.0.113.9",)


def test_nine_failures_are_not_yet_a_brute_force(stream: Stream) -> None:
    hammer(stream, 9)
    assert stream.of("brute_force") == []


def test_a_brute_force_grows_with_every_further_failure_and_turns_high_at_100(
    stream: Stream,
) -> None:
    hammer(stream, 100)
    signals = stream.of("brute_force")
    assert len(signals) == 91  # failures 10..100, one signal each: the engine grows one finding
    assert {s.subject for s in signals} == {signals[0].subject}
    assert signals[-2].severity == "medium"
    assert signals[-1].severity == "high"


def test_each_signal_carries_the_trace_id_of_its_event(stream: Stream) -> None:
    hammer(stream, 12)
    trace_ids = [s.event.trace_id for s in stream.of("brute_force")]
    assert len(set(trace_ids)) == 3
    assert all(t is not None and len(t) == 32 for t in trace_ids)


# -- distributed_brute_force -------------------------------------------------------------------


def test_41_failures_on_one_account_from_many_ips_are_a_distributed_brute_force(
    stream: Stream,
) -> None:
    for i in range(41):
        stream.login(T0 + i * 30, "alice", f"198.51.{i % 5}.7", success=False, network=NEW_YORK)
    (signal,) = stream.of("distributed_brute_force")
    assert signal.severity == "high"
    assert signal.subject.id == "h-alice"
    assert signal.evidence == {"failures": 41, "sources": 5, "window": 3600.0}
    assert stream.of("brute_force") == []  # no single source reached ten


def test_30_guesses_rotating_addresses_one_each_are_a_distributed_brute_force(
    stream: Stream,
) -> None:
    for i in range(30):  # a proxy or Tor rotation: every guess from a fresh address
        stream.login(T0 + i * 60, "alice", f"198.51.{i}.7", success=False, network=NEW_YORK)
    signals = stream.of("distributed_brute_force")
    assert signals[0].evidence == {"failures": 20, "sources": 20, "window": 3600.0}
    assert len(signals) == 11  # guesses 20..30 grow the one finding
    assert {s.subject.id for s in signals} == {"h-alice"}


def test_a_user_failing_from_a_few_addresses_is_not_rotating(stream: Stream) -> None:
    for i in range(30):  # phone, home and office, forgetting their password all afternoon
        stream.login(T0 + i * 100, "alice", f"198.51.{i % 14}.7", success=False)
    assert stream.of("distributed_brute_force") == []


def test_failures_from_few_sources_are_not_distributed(stream: Stream) -> None:
    for i in range(60):
        stream.login(T0 + i * 30, "alice", f"198.51.100.{i % 2}", success=False)
    assert stream.of("distributed_brute_force") == []
    assert stream.of("brute_force")  # two sources hammering: each is a brute force


# -- credential_stuffing -----------------------------------------------------------------------


def test_one_ip_failing_on_many_accounts_fast_is_credential_stuffing(stream: Stream) -> None:
    for i in range(31):
        stream.login(T0 + i * 3, f"victim{i}", "192.0.2.66", success=False, network=NEW_YORK)
    (signal,) = stream.of("credential_stuffing")
    assert signal.subject.type == "ip"
    assert signal.subject.id == "192.0.2.66"
    assert signal.severity == "high"
    assert signal.evidence["failures"] == 31
    assert signal.evidence["accounts"] == 31
    assert signal.evidence["success_ratio"] == 0
    assert stream.of("password_spraying") == []  # a fast burst is not a slow spray


def test_a_source_that_mostly_succeeds_is_not_stuffing(stream: Stream) -> None:
    for i in range(40):
        stream.login(T0 + i * 3, f"user{i}", "192.0.2.80", success=False)
    for i in range(400):
        stream.login(T0 + 120 + i, f"user{i}", "192.0.2.80", success=True)
    stream.signals.clear()
    stream.login(T0 + 530, "user1", "192.0.2.80", success=False)
    assert stream.of("credential_stuffing") == []


# -- password_spraying -------------------------------------------------------------------------


def spray(stream: Stream, ips: list[str], accounts: int = 20, rounds: int = 2) -> None:
    t = T0
    for r in range(rounds):
        for a in range(accounts):
            stream.login(t, f"staff{a}", ips[(r * accounts + a) % len(ips)], success=False)
            t += 150  # one guess every two and a half minutes


def test_a_slow_spray_over_many_accounts_from_one_ip_is_password_spraying(
    stream: Stream,
) -> None:
    spray(stream, ["192.0.2.10"])
    signals = stream.of("password_spraying")
    assert signals
    assert {(s.subject.type, s.subject.id) for s in signals} == {("ip", "192.0.2.10")}
    assert stream.of("credential_stuffing") == []


def test_a_spray_rotating_through_one_network_is_reported_on_the_network(
    stream: Stream,
) -> None:
    spray(stream, [f"192.0.2.{i}" for i in range(10, 18)])
    subjects = {(s.subject.type, s.subject.id) for s in stream.of("password_spraying")}
    assert ("network", "192.0.2.0/24") in subjects


def test_a_stray_failure_next_to_an_earlier_stuffing_run_is_not_a_network_spray(
    stream: Stream,
) -> None:
    """One address stuffs 150 accounts in a few minutes; hours later a neighbour in its /24
    fails once. The network's day then holds many accounts and few failures each, but they are
    one address's attack, already reported on that address: the network is not spraying."""
    for i in range(150):
        stream.login(T0 + i * 3, f"victim{i}", "192.0.2.66", success=False)
    stream.login(T0 + 5 * HOUR, "someone", "192.0.2.200", success=False)
    assert stream.of("credential_stuffing")
    assert [s for s in stream.of("password_spraying") if s.subject.type == "network"] == []


# -- account_takeover --------------------------------------------------------------------------


def test_the_owner_at_the_signup_address_after_a_brute_force_is_not_a_takeover(
    stream: Stream,
) -> None:
    """A new account, created from home, is brute-forced from elsewhere; its owner then
    mistypes the password once at home and gets in. No login history yet, but the address the
    account was created from is the owner's."""
    stream.signup(T0 - 600, "alice", "198.51.100.1")
    hammer(stream, 15)
    stream.login(T0 + 200, "alice", "198.51.100.1", success=False)
    stream.login(T0 + 210, "alice", "198.51.100.1", success=True)
    assert stream.of("brute_force")
    assert stream.of("account_takeover") == []


def test_the_attacker_after_a_brute_force_on_a_new_account_is_still_a_takeover(
    stream: Stream,
) -> None:
    stream.signup(T0 - 600, "alice", "198.51.100.1")
    hammer(stream, 15)
    stream.login(T0 + 100, "alice", "203.0.113.9", success=True, network=NEW_YORK)
    (signal,) = stream.of("account_takeover")
    assert signal.subject.id == "h-alice"


def test_a_success_after_a_brute_force_from_the_same_ip_is_a_takeover(stream: Stream) -> None:
    stream.login(T0 - 5 * HOUR, "alice", "198.51.100.1", success=True)
    hammer(stream, 15)
    stream.login(T0 + 100, "alice", "203.0.113.9", success=True, network=NEW_YORK)
    (signal,) = stream.of("account_takeover")
    assert signal.severity == "critical"
    assert signal.subject.id == "h-alice"
    (attack,) = signal.evidence["attacks"]
    assert attack["kind"] == "brute_force"
    assert attack["ip"] == "203.0.113.9"
    assert attack["trace_id"] is not None  # the attack's own trace, to open beside the login


def test_a_success_from_a_stuffing_source_is_a_takeover(stream: Stream) -> None:
    for i in range(40):
        stream.login(T0 + i * 3, f"victim{i}", "192.0.2.66", success=False, network=NEW_YORK)
    stream.login(T0 + 130, "bob", "192.0.2.66", success=True, network=NEW_YORK)
    (signal,) = stream.of("account_takeover")
    assert signal.subject.id == "h-bob"
    assert signal.evidence["attacks"][0]["scope"] == "ip"
    assert signal.evidence["attacks"][0]["kind"] == "credential_stuffing"


def test_a_success_from_the_users_usual_address_once_it_is_stuffing_is_a_takeover(
    stream: Stream,
) -> None:
    for day in range(3):
        stream.login(T0 - (day + 1) * 86400, "bob", "192.0.2.66", success=True, network=NEW_YORK)
    for i in range(40):
        stream.login(T0 + i * 3, f"victim{i}", "192.0.2.66", success=False, network=NEW_YORK)
    stream.login(T0 + 130, "bob", "192.0.2.66", success=True, network=NEW_YORK)
    (signal,) = stream.of("account_takeover")
    assert signal.subject.id == "h-bob"
    assert signal.evidence["attacks"][0]["scope"] == "ip"


def test_the_owner_logging_in_from_home_after_an_attack_is_not_a_takeover(
    stream: Stream,
) -> None:
    for day in range(3):
        stream.login(T0 - (day + 1) * 86400, "alice", "198.51.100.1", success=True, network=PARIS)
    hammer(stream, 30)
    stream.login(T0 + 300, "alice", "198.51.100.1", success=False, network=PARIS)  # a typo
    stream.login(T0 + 310, "alice", "198.51.100.1", success=True, network=PARIS)
    assert stream.of("account_takeover") == []


def test_a_combo_list_hit_before_the_source_looks_like_stuffing_is_reported_later(
    stream: Stream,
) -> None:
    for i in range(3):
        stream.login(T0 + i * 3, f"victim{i}", "192.0.2.66", success=False, network=NEW_YORK)
    hit = stream.login(T0 + 10, "bob", "192.0.2.66", success=True, network=NEW_YORK)
    assert not [s for s in hit if s.kind == "account_takeover"]  # not yet known as an attacker
    for i in range(3, 40):
        stream.login(T0 + 10 + i * 3, f"victim{i}", "192.0.2.66", success=False, network=NEW_YORK)
    (signal,) = stream.of("account_takeover")
    assert signal.subject.id == "h-bob"
    assert signal.evidence["login"]["trace_id"] == f"{4:032x}"  # the stream's 4th event
    assert signal.event.trace_id == f"{4:032x}"  # the finding stands on the login itself
    assert signal.event.time == T0 + 10
    assert signal.evidence["attacks"][0]["kind"] == "credential_stuffing"


def test_the_owner_on_their_phone_after_an_attack_is_not_a_takeover(stream: Stream) -> None:
    for day in range(3):
        stream.login(T0 - (day + 1) * 86400, "alice", "198.51.100.1", True, network=PARIS)
        stream.login(
            T0 - (day + 1) * 86400 + 600,
            "alice",
            f"100.64.{day}.1",
            True,
            SAFARI_IPHONE,
            LILLE_MOBILE,
        )
    hammer(stream, 30)
    # a fresh carrier address, a typo, then in
    stream.login(T0 + 300, "alice", "100.64.9.9", False, SAFARI_IPHONE, LILLE_MOBILE)
    stream.login(T0 + 310, "alice", "100.64.9.9", True, SAFARI_IPHONE, LILLE_MOBILE)
    assert stream.of("account_takeover") == []


def test_an_attacker_with_one_guess_from_a_new_network_after_a_botnet_attack_is_a_takeover(
    stream: Stream,
) -> None:
    stream.login(T0 - 86400, "alice", "198.51.100.1", True, network=PARIS)
    for i in range(41):
        stream.login(T0 + i * 30, "alice", f"203.0.{i}.7", False, network=NEW_YORK)
    stream.login(T0 + 1300, "alice", "203.0.40.7", True, network=NEW_YORK)
    (signal,) = stream.of("account_takeover")
    assert signal.evidence["attacks"][0]["kind"] == "distributed_brute_force"


def test_a_neighbour_of_a_network_spray_logging_in_from_home_is_not_a_takeover(
    stream: Stream,
) -> None:
    stream.login(T0 - 86400, "carol", "192.0.2.200", success=True)
    spray(stream, [f"192.0.2.{i}" for i in range(10, 18)])
    assert stream.of("password_spraying")
    stream.login(T0 + 6000, "carol", "192.0.2.200", success=True)
    stream.login(T0 + 6010, "dave", "192.0.2.201", success=True)  # first time from there
    assert [s.subject.id for s in stream.of("account_takeover")] == ["h-dave"]


# -- distributed slow attacks (issue 15) --------------------------------------------------------


def test_low_and_slow_spraying_from_one_hosting_provider_is_one_finding_on_the_provider(
    stream: Stream,
) -> None:
    from tests.detection.conftest import DAY, HOSTING

    accounts = [f"user{i}" for i in range(80)]
    tries = dict.fromkeys(accounts, 0)
    k = 0
    for day in range(3):  # 30 addresses of one provider, three attempts each a day
        for a in range(30):
            for n in range(3):
                user = accounts[k % 80]
                k += 1
                if tries[user] >= 3:
                    continue
                tries[user] += 1
                when = T0 + day * DAY + a * 2400 + n * 800
                stream.login(when, user, f"198.18.{a}.{day + 1}", False, network=HOSTING)
    spraying = stream.of("password_spraying")
    assert spraying
    assert {s.subject.id for s in spraying} == {"AS24940"}
    assert {s.episode_gap for s in spraying} == {86400.0}
    hosting = stream.of("vpn_or_hosting_login")
    # the first address alone, then the provider: two subjects for 30 addresses over 3 days
    assert len({(s.subject.type, s.subject.id) for s in hosting}) == 2


def test_slow_credential_stuffing_from_one_address_is_not_also_spraying(stream: Stream) -> None:
    for i in range(500):  # one attempt every 19 s for two and a half hours, every account new
        stream.login(T0 + i * 19, f"victim{i}", "203.0.113.77", False, network=NEW_YORK)
    assert stream.of("credential_stuffing")
    assert stream.of("password_spraying") == []
