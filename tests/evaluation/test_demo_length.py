"""``usermon demo`` has one run, short, and the README says how long it takes."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from usermon.demo import DEFAULT_DURATION, demo

README = Path(__file__).resolve().parents[2] / "README.md"


def test_there_is_one_run_and_it_is_the_short_one() -> None:
    """The one-minute run and --quick printed the same findings: the short run is the only one
    offered; --duration still stretches it for whoever wants to watch."""
    result = CliRunner().invoke(demo, ["--help"])

    assert result.exit_code == 0, result.output
    assert "--quick" not in result.output
    assert "--duration" in result.output
    assert DEFAULT_DURATION <= 15


def test_the_readmes_first_command_says_how_long_the_demo_takes() -> None:
    first_block = README.read_text().split("```")[1]
    [line] = [line for line in first_block.splitlines() if "usermon demo" in line]
    claimed = re.search(r"\(~(\d+) s\)", line)

    assert claimed is not None, line
    # The traffic plus starting the processor and the shop, and reading the findings back.
    assert DEFAULT_DURATION < int(claimed.group(1)) <= DEFAULT_DURATION + 10
