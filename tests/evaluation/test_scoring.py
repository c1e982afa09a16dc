"""Scoring findings against the generator's ground truth."""

from __future__ import annotations

from typing import Any

import pytest

from usermon.processor.model import FINDING_KINDS
from usermon.processor.simulate import Scenario, Traffic, generate, score


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    return generate(Scenario(seed=5, users=800, days=14, campaigns_per_kind=2))


def _finding(
    kind: str, trace_ids: list[str], subject: tuple[str, str] = ("ip", "0.0.0.0"), n: int = 0
) -> dict[str, Any]:
    return {
        "id": f"{kind}-{n}",
        "kind": kind,
        "subject": {"type": subject[0], "id": subject[1], "label": None},
        "evidence": {"trace_ids": trace_ids, "ips": [], "users": []},
    }


def _one_per_campaign(traffic: Traffic) -> list[dict[str, Any]]:
    first_trace: dict[str, str] = {}
    for event, label in traffic.labelled():
        if label and label not in first_trace and event.trace_id:
            first_trace[label] = event.trace_id
    return [
        _finding(c.kind, [first_trace[cid]], n=i)
        for i, (cid, c) in enumerate(traffic.campaigns.items())
    ]


def test_one_finding_per_campaign_scores_perfectly(traffic: Traffic) -> None:
    report = score(traffic, _one_per_campaign(traffic))
    assert set(report.kinds) == set(FINDING_KINDS)
    assert all(s.precision == 1.0 and s.recall == 1.0 for s in report.kinds.values())
    assert report.benign_flagged == ()
    assert report.failures() == []


def test_a_finding_on_benign_traffic_is_a_false_positive_and_flags_its_user(
    traffic: Traffic,
) -> None:
    event = next(
        e
        for e, label in traffic.labelled()
        if label is None and e.success and e.user_hash in traffic.benign_users
    )
    findings = [*_one_per_campaign(traffic), _finding("suspicious_login", [event.trace_id or ""])]
    report = score(traffic, findings)
    assert report.kinds["suspicious_login"].precision == pytest.approx(2 / 3)
    assert report.benign_flagged == (event.user_hash,)
    assert any("suspicious_login: precision" in line for line in report.failures())


def test_a_missed_campaign_lowers_recall_of_its_kind_only(traffic: Traffic) -> None:
    findings = _one_per_campaign(traffic)
    findings.remove(next(f for f in findings if f["kind"] == "brute_force"))
    report = score(traffic, findings)
    assert report.kinds["brute_force"].recall == 0.5
    assert len(report.kinds["brute_force"].missed_campaigns) == 1
    assert report.kinds["credential_stuffing"].recall == 1.0


def test_a_finding_of_a_kind_its_campaign_may_also_raise_is_true(traffic: Traffic) -> None:
    ato = next(c for c in traffic.campaigns.values() if "credential_stuffing" in c.also)
    ip = next(iter(ato.attacker_ips))
    report = score(traffic, [_finding("credential_stuffing", [], subject=("ip", ip))])
    assert report.kinds["credential_stuffing"].precision == 1.0
    # It is not a credential-stuffing campaign, so it detects none of those.
    assert report.kinds["credential_stuffing"].detected == 0


def test_a_network_subject_matches_the_campaigns_inside_it(traffic: Traffic) -> None:
    campaign = next(c for c in traffic.campaigns.values() if c.kind == "password_spraying")
    ip = next(iter(campaign.attacker_ips))
    network = ".".join(ip.split(".")[:3]) + ".0/24"
    report = score(traffic, [_finding("password_spraying", [], subject=("network", network))])
    assert report.kinds["password_spraying"].detected == 1
