"""Through the processor's engine: signals grow one finding per attack, with its trace ids."""

from __future__ import annotations

from click.testing import CliRunner
from tests.detection.conftest import NEW_YORK, T0

from usermon.cli import main
from usermon.processor.detectors import default_detectors
from usermon.processor.engine import Engine
from usermon.processor.findings import merge_finding
from usermon.processor.model import Event, Finding
from usermon.processor.rules import Rules
from usermon.processor.storage.state.memory import MemoryState


def failure(i: int) -> Event:
    return Event(
        kind="login",
        time=T0 + i * 5,
        success=False,
        user_hash="h-alice",
        user_id="alice",
        client_ip="203.0.113.9",
        user_agent="curl/8.5.0",
        trace_id=f"{i + 1:032x}",
        span_id=f"{i + 1:016x}",
        network=NEW_YORK,
    )


def test_a_brute_force_is_one_finding_that_grows_and_keeps_its_trace_ids() -> None:
    engine = Engine(MemoryState(), default_detectors(Rules()))
    findings: dict[str, Finding] = {}
    for batch in ([failure(i) for i in range(12)], [failure(i) for i in range(12, 15)]):
        for delta in engine.process(batch).findings:
            findings[delta.id] = merge_finding(findings.get(delta.id), delta)
    (finding,) = [f for f in findings.values() if f.kind == "brute_force"]
    assert finding.subject.id == "h-alice"
    assert finding.event_count == 6  # the 10th to the 15th failure
    assert finding.first_seen == T0 + 9 * 5
    assert finding.last_seen == T0 + 14 * 5
    assert set(finding.evidence["trace_ids"]) == {f"{i + 1:032x}" for i in range(9, 15)}
    assert finding.evidence["ips"] == ["203.0.113.9"]


def test_usermon_intel_is_a_command_of_the_cli() -> None:
    result = CliRunner().invoke(main, ["intel", "--help"])
    assert result.exit_code == 0
    assert "--tor-exits" in result.output
