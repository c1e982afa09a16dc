"""Fixtures for the processor's tests: events, OTLP payloads and a running processor."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from tests.support.example_rule import ExampleRule

from usermon.processor.server import create_app
from usermon.processor.service import Processor
from usermon.processor.settings import Settings, resolve


@dataclass
class Running:
    url: str
    processor: Processor
    settings: Settings


def start_server(processor: Processor) -> tuple[uvicorn.Server, threading.Thread, str]:
    config = uvicorn.Config(
        create_app(processor), host="127.0.0.1", port=0, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the processor did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


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
    server, thread, url = start_server(processor)
    yield Running(url, processor, processor.settings)
    server.should_exit = True
    thread.join(10)
