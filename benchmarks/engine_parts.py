"""Where the engine's time goes per event, by taking parts of aggregation out.

Run by hand (see docs/performance.md, "Processor ingest"):

    python benchmarks/engine_parts.py

bench_ingest.py's batches (512 login span events each, 20 000 users, 50 000 addresses) decoded
once, then the engine (no detectors, a fresh ``MemoryState`` each run) with aggregation replaced
by: the real one; nothing (what is left is deduplication and the engine's own loop); only the
user's fold; only the address's fold; the user's fold without its distinct sets. Each variant's
best CPU time per event over alternated runs.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_ingest import T0, batch

from usermon.processor import aggregation as AG
from usermon.processor import engine as E
from usermon.processor.engine import Engine
from usermon.processor.model import Event
from usermon.processor.otlp import decode_traces
from usermon.processor.storage.state.base import FAIL, OK, State
from usermon.processor.storage.state.memory import MemoryState


def nothing(event: Event, state: State) -> None:
    pass


def user_only(event: Event, state: State) -> None:
    assert event.user_hash is not None
    state.fold_subject(
        "u:" + event.user_hash,
        event.time,
        AG.WINDOWS,
        AG.PROFILE_TTL,
        OK if event.success else FAIL,
        (event.client_ip, None, event.user_agent),
        label=event.user_id,
        primary_key=event.primary_key,
        service=event.service,
        success=(event.client_ip, event.user_agent) if event.success else None,
    )


def address_only(event: Event, state: State) -> None:
    assert event.client_ip is not None
    state.fold_subject(
        "ip:" + event.client_ip,
        event.time,
        AG.WINDOWS,
        AG.PROFILE_TTL,
        OK if event.success else FAIL,
        (event.user_hash,),
    )


def user_without_sets(event: Event, state: State) -> None:
    assert event.user_hash is not None
    state.fold_subject(
        "u:" + event.user_hash,
        event.time,
        AG.WINDOWS,
        AG.PROFILE_TTL,
        OK if event.success else FAIL,
        (),
        label=event.user_id,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(7)
    batches = [
        decode_traces(batch(512, rng, T0 + b * 512 * 0.001, 20_000, 50_000)).events
        for b in range(args.batches)
    ]
    n = sum(len(b) for b in batches)
    variants: dict[str, Callable[[Event, State], None]] = {
        "aggregation as it is": E.aggregate,
        "no aggregation (dedupe and the loop)": nothing,
        "the user's fold only": user_only,
        "the address's fold only": address_only,
        "the user's fold without its sets": user_without_sets,
    }
    best: dict[str, float] = {}
    try:
        for _ in range(args.repeat):
            for name, fold in variants.items():
                E.aggregate = fold  # type: ignore[assignment]
                engine = Engine(MemoryState())
                started = time.thread_time()
                for events in batches:
                    engine.process(events)
                per_event = (time.thread_time() - started) / n * 1e6
                best[name] = min(best.get(name, per_event), per_event)
    finally:
        E.aggregate = AG.aggregate
    print(f"{n:,} events, best of {args.repeat} alternated runs, CPU µs per event:")
    for name, us in best.items():
        print(f"  {name:40s} {us:6.2f}")


if __name__ == "__main__":
    main()
