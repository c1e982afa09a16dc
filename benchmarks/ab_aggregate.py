"""A/B of aggregation in one process: another version of ``aggregation.py`` against this one.

Both run on this tree's ``MemoryState`` (whose older primitives are unchanged) over the same
decoded events (bench_ingest.py's traffic), through the engine without detectors, in alternating
runs; reported: CPU microseconds per event (best and median), State operations per event
(``CountingState``) and ``bench_ingest.memory_per_key``. For example, against the aggregation
before subject aggregates:

    git show de3eabd:src/usermon/processor/aggregation.py > /tmp/old_aggregation.py
    python benchmarks/ab_aggregate.py /tmp/old_aggregation.py --events 20480 --rounds 7
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The State counter is a test helper (tests/support/state.py), not part of the wheel.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_ingest
from tests.support.state import CountingState

from usermon.processor import aggregation, engine
from usermon.processor.model import Event
from usermon.processor.otlp import decode_traces
from usermon.processor.storage.state import base as state_base
from usermon.processor.storage.state.memory import MemoryState


def load_aggregate(path: str) -> Callable[[Event, Any], None]:
    # A version from before the state protocol moved under storage/state/ imports it from
    # usermon.processor.state: the protocol is the same module under its new name.
    sys.modules.setdefault("usermon.processor.state", state_base)
    spec = importlib.util.spec_from_file_location("other_aggregation", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.aggregate  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("other", help="path of the other version's aggregation.py")
    parser.add_argument("--events", type=int, default=20480)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    variants = {"other": load_aggregate(args.other), "this": aggregation.aggregate}
    rng = random.Random(7)
    bodies = [
        bench_ingest.batch(512, rng, bench_ingest.T0 + b * 512 * 0.001, 20_000, 50_000)
        for b in range(max(1, args.events // 512))
    ]
    events = [e for body in bodies for e in decode_traces(body).events]
    batches = [events[i : i + 512] for i in range(0, len(events), 512)]

    def run(name: str) -> float:
        engine.aggregate = variants[name]  # what Engine calls
        eng = engine.Engine(MemoryState())
        started = time.thread_time()
        for b in batches:
            eng.process(b)
        return (time.thread_time() - started) / len(events) * 1e6

    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.rounds):
        for name in ("other", "this") if r % 2 == 0 else ("this", "other"):
            times[name].append(run(name))
    print(f"{len(events)} events, engine without detectors, {args.rounds} alternating rounds")
    for name, xs in times.items():
        xs.sort()
        print(f"  {name}: best {xs[0]:.2f} µs/event, median {xs[len(xs) // 2]:.2f}")
    for name in variants:
        engine.aggregate = variants[name]
        counting = CountingState()
        engine.Engine(counting).process(events)
        calls = {k: v / len(events) for k, v in counting.calls.most_common()}
        ops = ", ".join(f"{k} {v:.2f}" for k, v in calls.items())
        memory = bench_ingest.memory_per_key(20_000)["bytes_per_active_key"]
        print(
            f"  {name}: {sum(calls.values()):.2f} State operations per event ({ops}); "
            f"{memory:.0f} bytes per active key"
        )
    engine.aggregate = aggregation.aggregate


if __name__ == "__main__":
    main()
