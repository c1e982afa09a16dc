"""The CLI's tables at 80 columns and piped (click's runner is not a terminal): nothing cut in
the middle of a word, every address whole, and ``usermon ips``."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from tests.support.dashboard import loaded_processor
from tests.support.servers import ServedInThread

from usermon.cli import main
from usermon.demo import _accounts
from usermon.processor.model import FINDING_KINDS
from usermon.processor.service import Processor

NARROW = {"COLUMNS": "80"}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Processor, str]]:
    processor, _ = loaded_processor()
    with ServedInThread(processor) as running:
        yield processor, running.url
    processor.close()


def _run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), env=NARROW)
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    return result.output


def _no_cut_kind(output: str) -> None:
    """Every kind-looking word is a whole kind: none wrapped or folded mid-word."""
    for word in re.findall(r"\b[a-z]+_[a-z_]*\b", output):
        assert word in FINDING_KINDS, word


def test_usermon_ips_lists_the_attacking_addresses_whole(served: tuple[Processor, str]) -> None:
    processor, url = served
    output = _run("ips", "--url", url)
    sources = {f.subject.id for f in processor.store.findings() if f.subject.type == "ip"}
    assert sources
    for address in sources:
        assert re.search(rf"^\s*{re.escape(address)}\s", output, re.MULTILINE), address
    _no_cut_kind(output)
    recent = _run("ips", "--sort", "recent", "--limit", "5", "--url", url)
    assert len(re.findall(r"^\s*\d+\.\d+\.\d+\.\d+\s", recent, re.MULTILINE)) == 5


def test_findings_and_users_stay_whole_at_80_columns(served: tuple[Processor, str]) -> None:
    processor, url = served
    output = _run("findings", "--url", url)
    _no_cut_kind(output)
    for finding in processor.store.findings():
        if finding.subject.type == "ip":
            assert finding.subject.id in output
        assert finding.kind in output
    users = _run("users", "--limit", "20", "--url", url)
    assert "…" not in users.split("\n", 3)[-1].split()[0]  # the first label is whole


def test_usermon_decisions_shows_every_value_and_id_whole_at_80_columns(
    served: tuple[Processor, str],
) -> None:
    processor, url = served
    decided = processor.store.decisions(now=time.time())  # type: ignore[attr-defined]
    assert decided
    output = _run("decisions", "--url", url)
    words = output.split()
    for decision in decided:
        assert decision.id in words
        assert decision.value in words
        assert f"({decision.origin})" in output


def test_the_demo_counts_accounts_not_the_evidence_list() -> None:
    stuffing = {"evidence": {"accounts": 123, "users": ["a", "b"]}}
    takeover = {"evidence": {"users": ["a", "c"]}}
    assert _accounts([stuffing, takeover]) == 123
    assert _accounts([takeover]) == 2
    assert _accounts([{"evidence": {"signups": 25, "users": ["a"] * 20}}]) == 25
