"""A processor loaded with generator traffic, and Debian's Chromium driven by Playwright: what the
dashboard's browser tests and ``scripts/dashboard-screenshots`` share."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from typing import Any

from usermon.processor.detectors import default_detectors
from usermon.processor.model import Event
from usermon.processor.service import Processor
from usermon.processor.settings import resolve
from usermon.processor.simulate import Scenario, Traffic, batches, generate

__all__ = ["TRACE_URL", "chromium_path", "feed", "launch", "loaded_processor", "traffic"]

TRACE_URL = "http://jaeger.example:16686/trace/{trace_id}"

_TRAFFIC: dict[int, Traffic] = {}


def traffic(seed: int = 1) -> Traffic:
    """Two weeks of 500 users and one labelled campaign of every kind (about 12 000 events)."""
    if seed not in _TRAFFIC:
        _TRAFFIC[seed] = generate(Scenario(seed=seed, users=500, days=14, campaigns_per_kind=1))
    return _TRAFFIC[seed]


def feed(processor: Processor, events: Sequence[Event]) -> None:
    """Ingest ``events`` as OTLP/HTTP protobuf batches, as a Collector would send them."""
    for request in batches(list(events), 512):
        processor.ingest("traces", request.SerializeToString(), json_format=False)


def loaded_processor(
    *,
    token: str | None = None,
    trace_url: str | None = TRACE_URL,
    upto: int | None = None,
    app_tokens: Sequence[str] = (),
) -> tuple[Processor, Traffic]:
    """An in-memory processor that took the generated traffic (its first ``upto`` events)."""
    generated = traffic()
    flags: dict[str, Any] = {
        "store": "memory://",
        "token": token,
        "trace_url": trace_url,
        "app_tokens": list(app_tokens) or None,
    }
    processor = Processor(
        resolve(flags, env={}), detectors=default_detectors(), enricher=generated.world
    )
    feed(processor, generated.events[:upto])
    return processor, generated


def chromium_path() -> str | None:
    """Debian's Chromium: ``USERMON_TEST_CHROMIUM``, else ``chromium`` on the PATH."""
    return os.environ.get("USERMON_TEST_CHROMIUM") or shutil.which("chromium")


def launch(playwright: Any, executable: str) -> Any:
    """Headless Chromium from ``executable`` (never a browser Playwright downloads)."""
    args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    return playwright.chromium.launch(executable_path=executable, headless=True, args=args)
