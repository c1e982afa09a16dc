"""Fixtures for the processor's tests: events, OTLP payloads and a running processor."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from tests.support.example_rule import ExampleRule
from tests.support.servers import ServedInThread

from usermon.processor.service import Processor
from usermon.processor.settings import Settings, resolve


@dataclass
class Running:
    url: str
    processor: Processor
    settings: Settings


@pytest.fixture
def make_processor() -> Iterator[Any]:
    """Build processors (memory store, the example rule) that are closed after the test."""
    made: list[Processor] = []

    def make(**flags: Any) -> Processor:
        settings = resolve({"store": "memory://", **flags}, env={})
        processor = Processor(settings, detectors=[ExampleRule(threshold=3)])
        made.append(processor)
        return processor

    yield make
    for processor in made:
        processor.close()


@pytest.fixture
def running(make_processor: Any) -> Iterator[Running]:
    """A processor serving HTTP on 127.0.0.1 (an ephemeral port), memory store."""
    processor = make_processor(max_body_bytes=64 * 1024)
    with ServedInThread(processor) as served:
        yield Running(served.url, processor, processor.settings)
