"""Cost of ``auth_track`` on an open span against a bare ``span.add_event`` of the same attributes.

Run by hand (not a test)::

    python benchmarks/bench_sdk.py [--calls 100] [--batches 600]

One process, a real OpenTelemetry SDK ``TracerProvider`` with a no-op span processor (so the
numbers are the SDK's in-process cost, not an exporter's). A batch opens one span that already
carries ``client.address`` and ``user_agent.original`` (as an HTTP instrumentation sets them) and
makes ``--calls`` calls inside it (below the SDK's default limit of 128 events per span). Variants:

- ``bare``: ``trace.get_current_span().add_event("usermon.login", attributes)`` with exactly the
  attributes auth_track emits in identification mode;
- ``identification``: ``usermon.auth_track(True, {"email": ...})`` in identification mode;
- ``anonymization``: the same call in anonymization mode (HMAC-SHA256 with a key);
- ``identification, new user each call``: every call a different e-mail address, so nothing is
  memoized: the cost of a login by a user not seen recently (the memo's worst case). Each call
  also attributes the span to a new user (``user.hash`` / ``user.id`` set on the span), as the
  contract asks after every successful login;
- ``anonymization, new user each call``: the same in anonymization mode (two HMAC-SHA256);
- ``bare, one call per span`` and ``identification, new user, one per span``: a login request,
  one call on a fresh span (so every call also pays what the first call on a span pays: reading
  the client from the span, marking it ``usermon.tracked``); only the call is timed, and the
  ratio is to the bare event timed the same way.

Batches of the variants are interleaved, and each batch is timed in CPU time of this thread
(``time.thread_time_ns``), so other processes on a busy machine do not count. It prints the median
per-call time of each variant and its ratio to its bare row.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from itertools import count

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

import usermon
from usermon import attributes as attrs
from usermon.testing import capture_events

HASH_KEY = "benchmark-hash-key-0123456789abcdef"
IDENTIFIERS = {"email": "Ada.Lovelace@Example.com"}
SPAN_ATTRIBUTES = {attrs.CLIENT_ADDRESS: "192.0.2.10", attrs.USER_AGENT: "Mozilla/5.0 (bench)"}


class NoOpProcessor(SpanProcessor):
    """Receives spans like an exporting processor would, and drops them."""


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=100, help="calls per span (batch)")
    parser.add_argument("--batches", type=int, default=600, help="batches per variant")
    options = parser.parse_args()

    provider = TracerProvider()
    provider.add_span_processor(NoOpProcessor())
    trace.set_tracer_provider(provider)
    tracer = provider.get_tracer("bench")

    def open_span() -> AbstractContextManager[trace.Span]:
        return tracer.start_as_current_span("POST /login", attributes=SPAN_ATTRIBUTES)

    # The bare baseline sends exactly what auth_track sends.
    usermon.configure(mode="identification", hash_key=None)
    with capture_events() as captured, open_span():
        usermon.auth_track(True, IDENTIFIERS)
    bare_attributes = dict(captured.logins[0].attributes)

    def bare() -> None:
        trace.get_current_span().add_event(attrs.LOGIN_EVENT, bare_attributes)

    def track() -> None:
        usermon.auth_track(True, IDENTIFIERS)

    fresh: Iterator[int] = count()

    def track_new_user() -> None:
        usermon.auth_track(True, {"email": f"user{next(fresh)}@example.com"})

    identification: dict[str, object] = {"mode": "identification", "hash_key": None}
    anonymization: dict[str, object] = {"mode": "anonymization", "hash_key": HASH_KEY}
    # Every variant names its hash key: configure() keeps options not passed, and the rotation
    # would otherwise leave the previous variant's key in place.
    # (name, call, settings, one call per span, the bare row it is compared with)
    variants: list[tuple[str, Callable[[], None], dict[str, object], bool, str]] = [
        ("bare", bare, identification, False, "bare"),
        ("identification", track, identification, False, "bare"),
        ("anonymization", track, anonymization, False, "bare"),
        ("identification, new user each call", track_new_user, identification, False, "bare"),
        ("anonymization, new user each call", track_new_user, anonymization, False, "bare"),
        ("bare, one call per span", bare, identification, True, "bare, one call per span"),
        (
            "identification, new user, one per span",
            track_new_user,
            identification,
            True,
            "bare, one call per span",
        ),
    ]
    results: dict[str, list[float]] = {name: [] for name, *_ in variants}
    gc.collect()
    for batch in range(options.batches):
        shift = batch % len(variants)  # rotate, so no variant always runs first
        for name, call, config, per_span, _ in variants[shift:] + variants[:shift]:
            usermon.configure(**config)
            if per_span:
                # A login request: the call is the only one on its span, so it also pays what
                # the first call on a span pays. Only the call is timed, not the span.
                elapsed = 0
                for _ in range(options.calls):
                    with open_span():
                        start = time.thread_time_ns()
                        call()
                        elapsed += time.thread_time_ns() - start
            else:
                with open_span():
                    start = time.thread_time_ns()
                    for _ in range(options.calls):
                        call()
                    elapsed = time.thread_time_ns() - start
            results[name].append(elapsed / options.calls / 1000)

    medians = {name: statistics.median(values) for name, values in results.items()}
    print(f"{'variant':<40}{'µs/call':>9}{'ratio':>8}")
    for name, *_, baseline in variants:
        print(f"{name:<40}{medians[name]:>9.2f}{medians[name] / medians[baseline]:>8.2f}")


if __name__ == "__main__":
    main()
