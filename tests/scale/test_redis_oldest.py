"""The oldest Redis usermon supports (6.2, docs/deploy.md): a processor whose store is a Redis
6.2 finds what one processor finds in its memory, through the planned scripts, the packed
subjects and the store's own scripts. The state's contract runs on it too (``redis-6.2`` in
``STATE_BACKENDS``)."""

from __future__ import annotations

import pytest

from usermon.processor.service import Processor
from usermon.processor.settings import resolve
from usermon.processor.simulate.otlp import to_request

from .conftest import unique_name
from .traffic import login_stream

pytestmark = pytest.mark.redis


def _findings(store: str) -> set[tuple[str, str, int]]:
    processor = Processor(resolve({"store": store}, env={}))
    try:
        stream = login_stream(users=80)
        for i in range(0, len(stream), 50):
            body = to_request(stream[i : i + 50]).SerializeToString()
            processor.ingest("traces", body, json_format=False)
        found = processor.store.findings(limit=1000)
        return {(f.kind, f.subject.id, f.event_count) for f in found}
    finally:
        processor.close()


def test_a_processor_on_redis_6_2_finds_what_one_in_memory_finds(redis62_url: str) -> None:
    expected = _findings("memory://")
    assert {kind for kind, _, _ in expected} >= {"brute_force", "credential_stuffing"}
    prefix = unique_name("usermon_test") + ":"
    assert _findings(f"{redis62_url}?prefix={prefix}") == expected
