"""Detection meets its targets on a small seeded run of the synthetic traffic (issue 5):
precision and recall of at least 0.95 for every finding kind, at most 0.1 % of benign users
flagged. ``benchmarks/bench_detection.py`` runs the full-size evaluation and prints the table."""

from __future__ import annotations

import pytest

from usermon.processor.detectors import default_detectors
from usermon.processor.engine import Engine
from usermon.processor.findings import merge_finding
from usermon.processor.model import FINDING_KINDS, Finding
from usermon.processor.simulate import Report, Scenario, generate, score
from usermon.processor.storage.state.memory import MemoryState

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report() -> Report:
    traffic = generate(Scenario(seed=3, users=1500, days=14, campaigns_per_kind=6))
    engine = Engine(MemoryState(), default_detectors(), enricher=traffic.world)
    findings: dict[str, Finding] = {}
    for i in range(0, len(traffic.events), 512):
        for delta in engine.process(traffic.events[i : i + 512]).findings:
            findings[delta.id] = merge_finding(findings.get(delta.id), delta)
    return score(traffic, findings.values())


@pytest.mark.parametrize("kind", FINDING_KINDS)
def test_precision_of_each_kind_is_at_least_095(report: Report, kind: str) -> None:
    s = report.kinds[kind]
    assert s.precision >= 0.95, f"false positives: {report.unexpected.get(kind)}"


@pytest.mark.parametrize("kind", FINDING_KINDS)
def test_recall_of_each_kind_is_at_least_095(report: Report, kind: str) -> None:
    s = report.kinds[kind]
    assert s.recall >= 0.95, f"missed campaigns: {s.missed_campaigns}"


def test_at_most_one_benign_user_in_a_thousand_is_flagged(report: Report) -> None:
    assert report.benign_users >= 1000
    assert report.benign_flagged_share <= 0.001, f"flagged: {report.benign_flagged}"
