"""The ingest path under mutated requests (tests/processor/fuzz_ingest.py): through the real app,
and straight into decode and the engine. Seeded and bounded in time: ``USERMON_FUZZ_SECONDS``
(default 60, shared two to one between the two targets) and ``USERMON_FUZZ_SEED`` (default 12);
a failure names its input. Longer runs: ``python -m tests.processor.fuzz_ingest --seconds 600``."""

from __future__ import annotations

import os

import pytest

from .fuzz_ingest import corpus, fuzz_app, fuzz_decode

SECONDS = float(os.environ.get("USERMON_FUZZ_SECONDS", "60"))
SEED = int(os.environ.get("USERMON_FUZZ_SEED", "12"))

pytestmark = pytest.mark.slow


@pytest.mark.timeout(SECONDS + 120)
def test_the_app_answers_every_mutated_request_with_200_400_or_413_in_time() -> None:
    stats = fuzz_app(SECONDS * 2 / 3, SEED)
    # Not vacuous: the whole corpus and mutants past it ran, and both verdicts were reached.
    assert stats.runs > 2 * len(corpus())
    assert stats.statuses.get(200, 0) > 0
    assert stats.statuses.get(400, 0) > 0


@pytest.mark.timeout(SECONDS + 120)
def test_decode_raises_only_malformed_request_and_the_engine_takes_what_it_returns() -> None:
    stats = fuzz_decode(SECONDS / 3, SEED)
    assert stats.runs > 2 * len(corpus())
    assert stats.events > 0
    assert stats.malformed > 0
