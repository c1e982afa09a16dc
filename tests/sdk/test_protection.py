"""Protection in the application: the decision sync against a real HTTP server, and ``check``.

The server (tests/sdk/decision_server.py) listens on 127.0.0.1 and speaks the stream format of
docs/protection.md. Time-dependent behaviour (expiry) moves a controlled clock instead of
sleeping; the sync is observed through ``usermon.protection_status()``, never through timings.
"""

from __future__ import annotations

import gc
import logging
import os
import select
import socket
import struct
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from tests.support.protection import (
    Clock,
    DecisionServer,
    decision,
    protect,
    sync_again,
    synced_more,
    wait_until,
)

import usermon
from usermon import protection
from usermon.decisions import user_agent_hash
from usermon.pseudonymize import identity_hash
from usermon.settings import ConfigurationError, get_settings
from usermon.testing import CapturedEvents


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    controlled = Clock()
    monkeypatch.setattr(protection, "_clock", controlled)
    return controlled


@pytest.fixture
def server() -> Iterator[DecisionServer]:
    with DecisionServer() as running:
        yield running
        # The test's sync ends here, while its server still listens: a sync winding down into
        # the next test, connecting as the server closes, is how one test disturbed another.
        protection.stop()


def ids(found: usermon.Decision | None) -> str | None:
    return found.id if found is not None else None


# -- the stream -------------------------------------------------------------------------------


def test_full_set_first_then_changes_since_the_cursor(server: DecisionServer) -> None:
    server.add(decision("d1", "ip", "192.0.2.10"), decision("d2", "ip", "192.0.2.11"))
    protect(server)
    assert ids(usermon.check(ip="192.0.2.10")) == "d1"
    assert ids(usermon.check(ip="192.0.2.11")) == "d2"

    server.add(decision("d3", "ip", "192.0.2.12"))
    server.delete("d1")
    sync_again()
    assert usermon.check(ip="192.0.2.10") is None
    assert ids(usermon.check(ip="192.0.2.12")) == "d3"
    assert ids(usermon.check(ip="192.0.2.11")) == "d2"

    cursors = list(server.cursors())
    assert cursors[0] is None  # the first call asks for everything
    assert all(c is not None for c in cursors[1:])  # then only for what changed
    status = usermon.protection_status()
    assert status.enabled
    assert status.running
    assert status.decisions == 2
    assert status.consecutive_failures == 0
    assert status.failures == 0


def test_an_unknown_cursor_gets_the_full_set_which_replaces_the_local_one(
    server: DecisionServer,
) -> None:
    server.add(decision("old", "ip", "192.0.2.1"))
    protect(server)
    assert ids(usermon.check(ip="192.0.2.1")) == "old"
    # The server forgets its history (a restart): the next answer is full and lacks "old",
    # without any "deleted" entry naming it.
    with server.lock:
        server.active = {"new": decision("new", "ip", "192.0.2.2")}
        server.log = []
        server.version = 0
    sync_again()
    assert usermon.check(ip="192.0.2.1") is None
    assert ids(usermon.check(ip="192.0.2.2")) == "new"


def test_the_token_is_sent_as_a_bearer_header_and_omitted_without_one(
    server: DecisionServer,
) -> None:
    protect(server)
    assert all("Authorization" not in headers for _, headers in server.requests)
    seen = len(server.requests)
    usermon.configure(decisions_token="app-token-123")
    wait_until(lambda: usermon.protection_status().syncs > 0)
    # (The previous sync may have had one request in flight: it carries no token.)
    with_token = [(path, h) for path, h in server.requests[seen:] if "Authorization" in h]
    assert with_token[0][1]["Authorization"] == "Bearer app-token-123"
    assert with_token[0][0] == "/api/decisions/stream"  # a new configuration starts over


def test_the_base_url_may_have_a_path(server: DecisionServer) -> None:
    server.add(decision("d1", "ip", "192.0.2.10"))
    usermon.configure(protect=True, decisions_url=server.url + "/usermon/", decisions_interval=0.02)
    wait_until(lambda: len(server.requests) > 0)
    assert server.requests[0][0] == "/usermon/api/decisions/stream"


# -- what check() answers ---------------------------------------------------------------------


def test_expired_decisions_are_ignored_at_check_and_purged_at_sync(
    server: DecisionServer, clock: Clock
) -> None:
    now = datetime.fromtimestamp(clock.now, timezone.utc)
    server.add(
        decision("short", "ip", "192.0.2.1", ttl=60, now=now),
        decision("long", "ip", "192.0.2.2", ttl=3600, now=now),
    )
    protect(server)
    assert ids(usermon.check(ip="192.0.2.1")) == "short"
    clock.now += 61
    assert usermon.check(ip="192.0.2.1") is None  # before any sync: compared at check time
    assert ids(usermon.check(ip="192.0.2.2")) == "long"
    sync_again()
    assert usermon.protection_status().decisions == 1
    assert "short" not in protection._index.decisions  # purged from the set


def test_an_expired_block_uncovers_a_longer_challenge_on_the_same_subject(
    server: DecisionServer, clock: Clock
) -> None:
    now = datetime.fromtimestamp(clock.now, timezone.utc)
    server.add(
        decision("b", "ip", "192.0.2.1", action="block", ttl=60, now=now),
        decision("c", "ip", "192.0.2.1", action="challenge", ttl=600, now=now),
    )
    protect(server)
    assert ids(usermon.check(ip="192.0.2.1")) == "b"
    clock.now += 120
    assert ids(usermon.check(ip="192.0.2.1")) == "c"


def test_longest_prefix_wins_between_equal_actions_ipv4_and_ipv6(server: DecisionServer) -> None:
    server.add(
        decision("v4-16", "network", "198.51.0.0/16", action="challenge"),
        decision("v4-24", "network", "198.51.100.0/24", action="challenge"),
        decision("v6-32", "network", "2001:db8::/32", action="challenge"),
        decision("v6-64", "network", "2001:db8:0:1::/64", action="challenge"),
        decision("v6-ip", "ip", "2001:db8:0:1::7", action="challenge"),
    )
    protect(server)
    assert ids(usermon.check(ip="198.51.100.7")) == "v4-24"
    assert ids(usermon.check(ip="198.51.7.7")) == "v4-16"
    assert usermon.check(ip="198.52.0.1") is None
    assert ids(usermon.check(ip="2001:db8:0:1::7")) == "v6-ip"
    assert ids(usermon.check(ip="2001:db8:0:1::8")) == "v6-64"
    assert ids(usermon.check(ip="2001:db8:ffff::1")) == "v6-32"
    assert ids(usermon.check(ip="2001:0db8:0000:0001:0000:0000:0000:0008")) == "v6-64"
    assert usermon.check(ip="2001:db9::1") is None
    # An IPv4-mapped IPv6 client is its IPv4 address.
    assert ids(usermon.check(ip="::ffff:198.51.100.7")) == "v4-24"


def test_block_wins_over_challenge_whatever_the_scope(server: DecisionServer) -> None:
    server.add(
        decision("narrow-challenge", "ip", "203.0.113.5", action="challenge"),
        decision("wide-block", "network", "203.0.113.0/24", action="block"),
    )
    protect(server)
    assert ids(usermon.check(ip="203.0.113.5")) == "wide-block"


def test_user_decisions_use_the_user_hash_auth_track_reports(
    server: DecisionServer, events: CapturedEvents, hash_key: str
) -> None:
    usermon.configure(hash_key=hash_key)
    usermon.auth_track(True, {"email": "  Ada@Example.com "})
    reported = events.logins[0].attributes["user.hash"]
    server.add(
        decision("u", "user", reported, action="challenge"),
        decision("ui", "user_ip", f"{reported}|192.0.2.9"),
    )
    protect(server)
    assert ids(usermon.check(identifiers={"email": "ada@example.com"})) == "u"
    assert ids(usermon.check(ip="192.0.2.9", identifiers={"email": "ADA@example.com"})) == "ui"
    assert ids(usermon.check(ip="192.0.2.8", identifiers={"email": "ada@example.com"})) == "u"
    assert usermon.check(ip="192.0.2.9", identifiers={"email": "bob@example.com"}) is None
    assert usermon.check(ip="192.0.2.9") is None  # a user_ip decision needs the user
    # Composite identities and the keyword-free Mapping path hash the same way.
    composite = {"email": "ada@example.com", "platform_id": "7"}
    server.add(decision("c", "user", identity_hash(tuple(sorted(composite.items())), None)))
    usermon.configure(hash_key=None)
    sync_again()
    assert ids(usermon.check(identifiers=composite)) == "c"


def test_a_new_hash_key_changes_the_user_hash_check_computes(server: DecisionServer) -> None:
    unkeyed = identity_hash((("username", "ada"),), None)
    server.add(decision("u", "user", unkeyed))
    protect(server)
    assert ids(usermon.check(identifiers={"username": "ada"})) == "u"  # now memoized
    usermon.configure(hash_key="another-test-key-0123456789")
    sync_again()
    assert usermon.check(identifiers={"username": "ada"}) is None


def test_service_campaign_matches_the_user_agent_hash_and_the_client_network(
    server: DecisionServer,
) -> None:
    agent = "python-requests/2.31.0"
    server.add(
        decision(
            "camp",
            "service_campaign",
            f"asn=64500;ua={user_agent_hash(agent)};net=192.0.2.0/24",
            action="challenge",
        ),
        decision("any-net", "service_campaign", f"ua={user_agent_hash('EvilBot/1.0')}"),
        decision("net-only", "service_campaign", "net=2001:db8:aa::/48"),
    )
    protect(server)
    assert ids(usermon.check(ip="192.0.2.44", user_agent=agent)) == "camp"
    assert usermon.check(ip="192.0.3.44", user_agent=agent) is None
    assert usermon.check(ip="192.0.2.44", user_agent=agent + " ") is None
    assert usermon.check(user_agent=agent) is None  # the campaign is tied to a network
    assert ids(usermon.check(ip="198.51.100.1", user_agent="EvilBot/1.0")) == "any-net"
    assert ids(usermon.check(user_agent="EvilBot/1.0")) == "any-net"
    assert ids(usermon.check(ip="2001:db8:aa:1::5", user_agent="Mozilla/5.0")) == "net-only"


def test_service_campaign_matches_one_of_its_user_agents_from_one_of_its_networks(
    server: DecisionServer,
) -> None:
    """A fingerprint with several ua= and net= parts (what the processor derives from a
    campaign): one of the User-Agents and one of the networks."""
    tools = ("Tool/1", "Tool/2")
    server.add(
        decision(
            "both",
            "service_campaign",
            ";".join(
                [f"ua={user_agent_hash(t)}" for t in tools]
                + ["net=192.0.2.0/24", "net=2001:db8:bb::/48"]
            ),
            action="challenge",
        ),
        decision("nets", "service_campaign", "net=198.18.1.0/24;net=198.18.7.0/24"),
        decision("too-many", "service_campaign", ";".join(f"net=10.{i}.0.0/16" for i in range(33))),
    )
    protect(server)
    assert ids(usermon.check(ip="192.0.2.5", user_agent="Tool/1")) == "both"
    assert ids(usermon.check(ip="2001:db8:bb::9", user_agent="Tool/2")) == "both"
    assert usermon.check(ip="192.0.3.5", user_agent="Tool/1") is None
    assert usermon.check(ip="192.0.2.5", user_agent="Mozilla/5.0") is None
    assert ids(usermon.check(ip="198.18.7.1", user_agent="Mozilla/5.0")) == "nets"
    assert ids(usermon.check(ip="198.18.1.1")) == "nets"
    assert usermon.check(ip="198.18.2.1") is None
    assert usermon.check(ip="10.3.0.1") is None  # more than 32 parts: skipped
    assert usermon.protection_status().skipped_decisions == 1


def test_the_allowlist_overrides_every_decision(
    server: DecisionServer,
) -> None:
    ada = identity_hash((("email", "ada@example.com"),), None)
    server.add(
        decision("ip", "ip", "192.0.2.10"),
        decision("net", "network", "10.0.0.0/8"),
        decision("user", "user", ada),
        decision("pair", "user_ip", f"{ada}|192.0.2.20"),
    )
    server.allow = {"networks": ["10.1.0.0/16", "192.0.2.10"], "users": [ada]}
    protect(server)
    assert usermon.check(ip="192.0.2.10") is None
    assert usermon.check(ip="10.1.2.3") is None
    assert ids(usermon.check(ip="10.2.2.3")) == "net"
    assert usermon.check(identifiers={"email": "ada@example.com"}) is None
    assert usermon.check(ip="192.0.2.20", identifiers={"email": "ada@example.com"}) is None
    # An allowlisted user is not refused even from a blocked address (docs/protection.md).
    assert usermon.check(ip="10.2.2.3", identifiers={"email": "ada@example.com"}) is None
    assert usermon.protection_status().allowlist_entries == 3


def test_protection_off_checks_nothing_and_starts_no_thread(server: DecisionServer) -> None:
    server.add(decision("d1", "ip", "192.0.2.10"))
    before = set(threading.enumerate())  # an earlier test's sync may still be winding down
    assert usermon.check(ip="192.0.2.10") is None
    assert not any(t.name == "usermon-decisions" for t in set(threading.enumerate()) - before)
    assert usermon.protection_status().enabled is False
    assert server.requests == []


def test_the_environment_turns_protection_on_at_the_first_check(
    server: DecisionServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.add(decision("d1", "ip", "192.0.2.10"))
    monkeypatch.setenv("USERMON_PROTECT", "on")
    monkeypatch.setenv("USERMON_DECISIONS_URL", server.url)
    monkeypatch.setenv("USERMON_DECISIONS_INTERVAL", "0.02")
    assert usermon.check(ip="192.0.2.10") is None  # nothing synced yet: fail open, no waiting
    wait_until(synced_more(0))
    assert ids(usermon.check(ip="192.0.2.10")) == "d1"


def test_stop_ends_the_thread_and_forgets_the_decisions(server: DecisionServer) -> None:
    server.add(decision("d1", "ip", "192.0.2.10"))
    protect(server)
    [thread] = [t for t in threading.enumerate() if t.name == "usermon-decisions"]
    protection.stop()
    assert not thread.is_alive()
    assert usermon.check(ip="192.0.2.10") is None
    assert usermon.protection_status().enabled is False


def test_check_never_raises_on_odd_arguments(server: DecisionServer) -> None:
    server.add(decision("d1", "ip", "192.0.2.10"), decision("u", "user", "abc"))
    protect(server)
    assert usermon.check(ip="not an address") is None
    assert usermon.check(ip="192.0.2.010") is None  # leading zeros are not an address
    assert usermon.check(ip=12345) is None  # type: ignore[arg-type]
    assert usermon.check(identifiers="ada") is None  # type: ignore[arg-type]
    assert usermon.check(identifiers={"email": ["x"]}) is None
    assert usermon.check(identifiers={"password": "hunter2"}) is None
    assert usermon.check(ip="192.0.2.10", user_agent=b"x") is not None  # type: ignore[arg-type]


# -- failing open -----------------------------------------------------------------------------


def test_with_the_processor_down_the_last_set_holds_until_it_expires_then_nothing_is_refused(
    server: DecisionServer, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    now = datetime.fromtimestamp(clock.now, timezone.utc)
    server.add(decision("d1", "ip", "192.0.2.10", ttl=300, now=now))
    protect(server)
    server.down()
    with caplog.at_level(logging.WARNING, logger="usermon"):
        wait_until(lambda: usermon.protection_status().consecutive_failures >= 3)
        assert ids(usermon.check(ip="192.0.2.10")) == "d1"
        clock.now += 301
        assert usermon.check(ip="192.0.2.10") is None
    lines = [
        r for r in caplog.records if f"cannot sync decisions from {server.url}" in r.getMessage()
    ]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
    assert "failing open" in lines[0].getMessage()
    status = usermon.protection_status()
    assert status.failures >= 3
    assert status.last_error
    assert status.running  # still trying


def test_an_http_error_is_a_failure_and_the_set_holds(server: DecisionServer) -> None:
    server.add(decision("d1", "ip", "192.0.2.10"))
    protect(server)
    server.mode, server.status = "status", 401
    wait_until(lambda: usermon.protection_status().consecutive_failures >= 2)
    assert "401" in (usermon.protection_status().last_error or "")
    assert ids(usermon.check(ip="192.0.2.10")) == "d1"


def test_https_to_a_server_without_tls_is_a_counted_failure(server: DecisionServer) -> None:
    """The TLS handshake fails (the server speaks plain HTTP): a failure, never an exception."""
    usermon.configure(
        protect=True,
        decisions_url=server.url.replace("http://", "https://"),
        decisions_interval=0.02,
    )
    wait_until(lambda: usermon.protection_status().consecutive_failures >= 1)
    status = usermon.protection_status()
    assert status.running
    assert status.syncs == 0
    assert "SSL" in (status.last_error or "")
    assert usermon.check(ip="192.0.2.10") is None


def test_a_connection_reset_before_the_tls_handshake_leaves_no_socket_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The standard library's TLS wrapper can raise without closing the socket it made when the
    peer resets the connection before the handshake (CPython gh-113280); the sync closes it, so
    no descriptor waits for the garbage collector (which warns: an error in this suite)."""
    listener = socket.create_server(("127.0.0.1", 0))
    connected, reset = threading.Event(), threading.Event()

    def accept_and_reset() -> None:
        peer, _ = listener.accept()
        connected.wait(10)  # reset only an established connection, not the connect itself
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()  # linger 0: a reset, as when a listener goes away with a pending connection
        reset.set()

    threading.Thread(target=accept_and_reset, daemon=True).start()
    connect = socket.create_connection

    def connect_then_wait_for_the_reset(*args: Any, **kwargs: Any) -> socket.socket:
        sock = connect(*args, **kwargs)
        connected.set()
        assert reset.wait(10)
        select.select([sock], [], [], 10)  # the reset has arrived: the socket reads as ready
        return sock

    monkeypatch.setattr(socket, "create_connection", connect_then_wait_for_the_reset)
    port = listener.getsockname()[1]
    sync = protection._Sync((f"https://127.0.0.1:{port}", None, 60.0), None)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(protection._SyncFailure, match="reset"):
                sync.sync_once()
            gc.collect()  # an unclosed socket warns when it is collected
    finally:
        listener.close()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []


def test_check_answers_from_memory_while_a_sync_is_stuck(
    server: DecisionServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request the server never answers holds the sync thread, not check(); stop() ends it.

    The timeouts are lifted so that only stop() can end the request, however slow the machine.
    """
    monkeypatch.setattr(protection, "READ_TIMEOUT", 3600.0)
    monkeypatch.setattr(protection, "TOTAL_TIMEOUT", 3600.0)
    server.add(decision("d1", "ip", "192.0.2.10"))
    protect(server)
    sync = protection._sync
    assert sync is not None
    server.mode = "hang"
    assert server.hanging.wait(10), "the sync never reached the hanging server"
    # The sync thread is now blocked in a request the server will not answer: check still
    # answers, from the last synced set, in this thread.
    for _ in range(1000):
        assert ids(usermon.check(ip="192.0.2.10")) == "d1"
    assert sync.connection is not None  # the request is still open
    assert usermon.protection_status().consecutive_failures == 0
    protection.stop(timeout=10)  # interrupts the request in flight
    assert not sync.is_alive()
    assert sync.failures == 0  # an interrupted sync is not a failure of the processor


def test_an_answer_dripping_bytes_is_cut_off_at_the_total_timeout(
    server: DecisionServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each byte arrives well within the read timeout; only the whole answer's deadline ends it."""
    server.add(decision("d1", "ip", "192.0.2.10"))
    protect(server)
    monkeypatch.setattr(protection, "TOTAL_TIMEOUT", 0.3)
    server.mode = "drip"
    wait_until(lambda: usermon.protection_status().consecutive_failures >= 1)
    assert "no answer in time" in (usermon.protection_status().last_error or "")
    assert ids(usermon.check(ip="192.0.2.10")) == "d1"
    server.mode = "ok"
    sync_again()
    assert usermon.protection_status().consecutive_failures == 0


def test_a_malformed_answer_is_rejected_whole_and_the_last_good_set_kept(
    server: DecisionServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.add(decision("d1", "ip", "192.0.2.10"))
    protect(server)
    bad_bodies = [
        b"{not json",
        b"[]",
        b'{"cursor": 1, "full": true, "new": [], "deleted": [], '
        b'"allow": {"networks": [], "users": []}}',
        b'{"cursor": "9", "full": true, "new": [{"id": "x"}], "deleted": [], '
        b'"allow": {"networks": [], "users": []}}',
        b'{"cursor": "9", "full": true, "new": [], "deleted": [], '
        b'"allow": {"networks": ["not-a-cidr"], "users": []}}',
    ]
    with caplog.at_level(logging.WARNING, logger="usermon"):
        for body in bad_bodies:
            rejected = usermon.protection_status().rejected_answers
            server.mode, server.raw_body = "raw", body
            wait_until(lambda r=rejected: usermon.protection_status().rejected_answers > r)
            assert ids(usermon.check(ip="192.0.2.10")) == "d1", body
    rejections = [r for r in caplog.records if "rejected a decision" in r.getMessage()]
    assert len([r for r in rejections if server.url in r.getMessage()]) == 1
    server.mode = "ok"
    server.add(decision("d2", "ip", "192.0.2.11"))
    sync_again()
    assert ids(usermon.check(ip="192.0.2.11")) == "d2"


def test_an_oversize_answer_is_rejected(server: DecisionServer) -> None:
    server.add(decision("d1", "ip", "192.0.2.10"))
    protect(server)
    server.mode = "endless"  # no Content-Length: the read cap stops it
    wait_until(lambda: usermon.protection_status().rejected_answers >= 1, timeout=30)
    assert "over" in (usermon.protection_status().last_error or "")
    server.mode, server.raw_body = "raw", b" " * (protection.MAX_BODY_BYTES + 1)
    rejected = usermon.protection_status().rejected_answers
    wait_until(lambda: usermon.protection_status().rejected_answers > rejected, timeout=30)
    assert ids(usermon.check(ip="192.0.2.10")) == "d1"


def test_unknown_scopes_and_actions_are_skipped_and_counted(server: DecisionServer) -> None:
    server.add(
        decision("ok", "ip", "192.0.2.10"),
        decision("new-scope", "asn", "64500"),
        decision("new-action", "ip", "192.0.2.11", action="tarpit"),
        decision("bad-cidr", "network", "192.0.2.0/33"),
        decision("bad-time", "ip", "192.0.2.12", until="tomorrow"),
        decision("no-ua", "service_campaign", "asn=64500"),
    )
    protect(server)
    assert ids(usermon.check(ip="192.0.2.10")) == "ok"
    assert usermon.check(ip="192.0.2.11") is None
    assert usermon.check(ip="192.0.2.12") is None
    assert usermon.protection_status().skipped_decisions >= 5


# -- fork -------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_forked_child_keeps_the_copy_and_restarts_the_sync(server: DecisionServer) -> None:
    server.add(decision("d1", "ip", "192.0.2.10"))
    protect(server)
    synced = usermon.protection_status().syncs
    pid = os.fork()
    if pid == 0:  # the child: exit code says what it saw
        code = 1
        try:
            if ids(usermon.check(ip="192.0.2.10")) == "d1":
                code = 2
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    status = usermon.protection_status()
                    if status.running and status.syncs > synced + 1:
                        code = 0
                        break
                    time.sleep(0.01)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"protect": True}, "USERMON_DECISIONS_URL is not set"),
        ({"protect": True, "decisions_url": "ftp://x"}, "not an http(s) base URL"),
        ({"protect": True, "decisions_url": "http://"}, "not an http(s) base URL"),
        ({"protect": True, "decisions_url": "http://h/?a=1"}, "not an http(s) base URL"),
        ({"decisions_url": "http://h:99999"}, "not an http(s) base URL"),
        ({"decisions_interval": 0}, "not a positive number"),
        ({"decisions_interval": -1}, "not a positive number"),
        ({"decisions_interval": "soon"}, "not a positive number"),
        ({"decisions_token": "two words"}, "printable ASCII"),
        ({"protect": "maybe"}, "not a boolean"),
    ],
)
def test_bad_protection_options_fail_at_configure(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        usermon.configure(**options)
    assert usermon.protection_status().enabled is False


def test_bad_protection_environment_fails_strict_validation_and_fails_open(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("USERMON_PROTECT", "on")
    with pytest.raises(ConfigurationError, match="USERMON_DECISIONS_URL"):
        get_settings(strict_validation=True)
    with caplog.at_level(logging.ERROR, logger="usermon"):
        assert usermon.check(ip="192.0.2.1") is None
    assert usermon.protection_status().enabled is False
    assert any("USERMON_DECISIONS_URL" in r.getMessage() for r in caplog.records)


def test_interval_and_url_resolve_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USERMON_DECISIONS_URL", "https://usermon.internal:8443/base/")
    monkeypatch.setenv("USERMON_DECISIONS_INTERVAL", "2.5")
    settings = get_settings(strict_validation=True)
    assert settings.decisions_url == "https://usermon.internal:8443/base"
    assert settings.decisions_interval == 2.5
    assert settings.protect is False
    assert get_settings().decisions_token is None
    usermon.configure(decisions_interval=7)
    assert get_settings().decisions_interval == 7.0
    assert "s3cret" not in repr(usermon.configure(decisions_token="s3cret"))


def test_a_configure_that_raises_changes_nothing() -> None:
    with pytest.raises(ConfigurationError):
        usermon.configure(protect=True)
    settings = get_settings()
    assert settings.protect is False
    assert settings.config_error is None  # tracking still emits identifiers
