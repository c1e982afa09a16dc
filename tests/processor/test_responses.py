"""Responses (usermon.processor.responses): findings in, decisions out, from a list of findings."""

from __future__ import annotations

from pathlib import Path

import pytest

from usermon.processor.model import Finding, Subject
from usermon.processor.responses import (
    Allowlist,
    Responses,
    ResponsesError,
    load_responses,
    parse_responses,
    respond,
)
from usermon.processor.rules import load_rules

NOW = 1_800_000_000.0
DEFAULTS = load_responses(environ={})


def _finding(
    kind: str,
    subject: Subject,
    *,
    fid: str = "f1",
    evidence: dict[str, object] | None = None,
) -> Finding:
    return Finding(
        id=fid,
        kind=kind,
        severity="medium",
        subject=subject,
        first_seen=NOW - 60,
        last_seen=NOW,
        event_count=12,
        summary="12 failed logins",
        evidence={"trace_ids": [], "ips": [], "users": [], **(evidence or {})},
    )


BRUTE = _finding("brute_force", Subject("user", "u1", "alice"), evidence={"ip": "192.0.2.7"})
STUFFING = _finding("credential_stuffing", Subject("ip", "198.51.100.9"), fid="f2")


def _respond(
    findings: list[Finding],
    responses: Responses = DEFAULTS,
    *,
    allow: Allowlist | None = None,
    held: dict[tuple[str, str], str] | None = None,
    repeats: dict[tuple[str, str], int] | None = None,
) -> list[tuple[str, str, str, float]]:
    made = respond(
        findings,
        responses,
        allowlist=allow or Allowlist(),
        held=lambda scope, value: (held or {}).get((scope, value)),
        repeats=lambda scope, value: (repeats or {}).get((scope, value), 0),
        now=NOW,
    )
    return [(d.action, d.scope, d.value, d.until - NOW) for d in made]


def test_brute_force_on_an_account_blocks_the_account_from_that_address_for_15_minutes() -> None:
    assert _respond([BRUTE]) == [("block", "user_ip", "u1|192.0.2.7", 900.0)]


def test_credential_stuffing_blocks_the_address_for_15_minutes() -> None:
    assert _respond([STUFFING]) == [("block", "ip", "198.51.100.9", 900.0)]


def test_distributed_brute_force_challenges_the_account_rather_than_locking_its_owner_out() -> None:
    finding = _finding("distributed_brute_force", Subject("user", "u1"))
    assert _respond([finding]) == [("challenge", "user", "u1", 3600.0)]


def test_password_spraying_from_a_network_blocks_that_network_for_4_hours() -> None:
    finding = _finding("password_spraying", Subject("network", "203.0.113.0/24"))
    assert _respond([finding]) == [("block", "network", "203.0.113.0/24", 14400.0)]


def test_a_campaign_is_challenged_by_its_fingerprint_never_blocked() -> None:
    fingerprint = "asn=64500;net=192.0.2.0/24"
    finding = _finding(
        "campaign", Subject("service", "shop"), evidence={"fingerprint": fingerprint}
    )
    assert _respond([finding]) == [("challenge", "service_campaign", fingerprint, 3600.0)]
    with pytest.raises(ResponsesError, match="never blocked"):
        parse_responses(
            {"campaign": {"action": "block", "scope": "service_campaign", "duration": "1h"}}, "x"
        )


def test_a_stuffing_campaign_on_the_service_is_answered_as_a_campaign_never_by_address() -> None:
    """The campaign detector reports stuffing on the whole service as credential_stuffing with
    the service as its subject: the campaign's response applies (a challenge on its fingerprint,
    or nothing without one), never the per-address block of credential_stuffing."""
    fingerprint = "net=203.0.113.0/24"
    with_print = _finding(
        "credential_stuffing", Subject("service", "shop"), evidence={"fingerprint": fingerprint}
    )
    assert _respond([with_print]) == [("challenge", "service_campaign", fingerprint, 3600.0)]
    without = _finding(
        "credential_stuffing", Subject("service", "shop"), evidence={"ip": "203.0.113.5"}, fid="f9"
    )
    assert _respond([without]) == []


def test_risk_signals_on_legitimate_users_produce_no_decision_by_default() -> None:
    for kind in ("tor_login", "vpn_or_hosting_login", "suspicious_login", "impossible_travel"):
        assert _respond([_finding(kind, Subject("user", "u1"), evidence={"ip": "192.0.2.1"})]) == []


def test_the_allowlist_beats_automatic_decisions() -> None:
    office = Allowlist.of([("network", "198.51.100.0/24"), ("user", "u1")])
    assert _respond([STUFFING, BRUTE], allow=office) == []
    probe_only = Allowlist.of([("network", "192.0.2.7")])
    assert _respond([BRUTE], allow=probe_only) == []
    spraying = _finding("password_spraying", Subject("network", "198.51.0.0/16"))
    assert _respond([spraying], allow=office) == []  # the network holds the office


def test_a_subject_already_decided_as_strongly_gets_nothing_new() -> None:
    assert _respond([STUFFING], held={("ip", "198.51.100.9"): "block"}) == []
    # a challenge in force does not stop a block
    assert _respond([STUFFING], held={("ip", "198.51.100.9"): "challenge"})[0][0] == "block"


def test_a_repeat_offender_is_blocked_longer_up_to_the_cap() -> None:
    key = ("ip", "198.51.100.9")
    assert _respond([STUFFING], repeats={key: 1})[0][3] == 1800.0
    assert _respond([STUFFING], repeats={key: 3})[0][3] == 7200.0
    assert _respond([STUFFING], repeats={key: 40})[0][3] == 7 * 86400.0


def test_one_decision_per_subject_per_batch_and_a_stable_id() -> None:
    twice = [STUFFING, STUFFING]
    made = respond(
        twice,
        DEFAULTS,
        allowlist=Allowlist(),
        held=lambda *_: None,
        repeats=lambda *_: 0,
        now=NOW,
    )
    again = respond(
        [STUFFING],
        DEFAULTS,
        allowlist=Allowlist(),
        held=lambda *_: None,
        repeats=lambda *_: 0,
        now=NOW + 5,
    )
    assert len(made) == 1
    assert made[0].id == again[0].id  # two replicas answering one finding make one decision
    assert made[0].origin == "response:credential_stuffing"
    assert made[0].finding == "f2"


def test_a_rules_file_changes_responses_and_is_validated(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[responses]\nescalation = 3\n[responses.credential_stuffing]\naction = "none"\n'
        '[responses.tor_login]\naction = "challenge"\nscope = "user"\nduration = "30m"\n'
    )
    responses = load_responses(rules)
    assert "credential_stuffing" not in responses.kinds
    assert responses.kinds["tor_login"].duration == 1800.0
    assert responses.escalation == 3.0
    load_rules(rules)  # the detectors' loader leaves [responses] to this module
    for bad, message in [
        ('[responses.brute_force]\naction = "ban"\nscope = "ip"\nduration = "1h"', "action"),
        ('[responses.brute_force]\naction = "block"\nscope = "planet"\nduration = "1h"', "scope"),
        ('[responses.brute_force]\naction = "block"\nscope = "ip"\nduration = "-5m"', "duration"),
        ('[responses.brute_force]\naction = "block"\nscope = "ip"\nduration = "900d"', "at most"),
        ("[responses.nope]\naction = 1", "unknown key"),
    ]:
        rules.write_text(bad)
        with pytest.raises(ResponsesError, match=message):
            load_responses(rules)
