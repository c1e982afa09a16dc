"""``usermon demo`` runs the whole pipeline on a fresh machine and shows its attacks."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from usermon.demo.script import build_script
from usermon.processor.simulate.world import World

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _attack_kinds() -> list[str]:
    import random

    return build_script(World.build(random.Random(1)), 10.0, 1).expected_kinds


def test_the_script_attacks_with_several_kinds() -> None:
    assert len(_attack_kinds()) >= 5


def test_the_demo_exits_0_and_prints_a_finding_of_every_attack_it_ran() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("USERMON_", "OTEL_"))}
    env["COLUMNS"] = "200"  # one table row per line, whatever the terminal
    done = subprocess.run(
        [sys.executable, "-m", "usermon.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Users at risk" in done.stdout
    assert "Attacking sources" in done.stdout
    for kind in _attack_kinds():
        assert kind in done.stdout, f"{kind} missing from:\n{done.stdout}"
    assert "/api/findings" in done.stdout
    # The shop runs with protection on: the brute-force attacker, who keeps trying (with the right
    # password in the end), is refused once its finding lands, and the summary says so.
    attacker = re.search(r"brute force: \d+ guesses on \S+ from (\S+)", done.stdout)
    refused = re.search(
        r"protection: (\d+) login attempts? from (\S+) refused after brute_force", done.stdout
    )
    assert attacker is not None, done.stdout
    assert refused is not None, done.stdout
    assert refused.group(2) == attacker.group(1)
    assert int(refused.group(1)) >= 1
    # The takeovers' challenge decisions meet the shop's challenge handler: counted and told,
    # not a warning about a missing handler on the demo's stderr.
    assert re.search(
        r"protection: \d+ login attempts? challenged after account_takeover", done.stdout
    )
    assert "no challenge handler" not in done.stderr, done.stderr
