"""A/B of the engine with the default detectors: another source tree against this one.

Each side runs in its own process (``PYTHONPATH`` = that tree's ``src``), so any part of the
engine, the State or the detectors may differ. Reported, for each side:

* CPU microseconds per event (thread time, best and median of alternating runs) of the engine
  with the default detectors and without them, over bench_ingest.py's decoded traffic in batches
  of 512, with ``gc.set_threshold(100_000, 50, 100)`` as ``usermon serve`` sets it;
* State calls per event (``CountingState`` of ``tests/support/state.py``, engine + default
  detectors) on bench_ingest's traffic, bench_scale's (1 500 events, batches of 100) and
  bench_detection's (``--seed``, batches of 512): on Redis each is a round trip;
* a digest of every finding bench_detection's in-process run produces (each finding's JSON,
  sorted): equal digests mean equal findings, field for field, not only an equal score table.

For example, against main:

    git worktree add --detach /tmp/main main
    python benchmarks/ab_detection.py /tmp/main/src --rounds 4

``--time-seed 1 --seeds ""`` times bench_detection's enriched traffic of seed 1 instead, and
skips the findings and State calls (``--seeds ""``).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
THIS = str(HERE.parent / "src")


def _ingest_events(n: int) -> list[Any]:
    import bench_ingest

    from usermon.processor.otlp import decode_traces

    rng = random.Random(7)
    bodies = [
        bench_ingest.batch(512, rng, bench_ingest.T0 + b * 512 * 0.001, 20_000, 50_000)
        for b in range(max(1, n // 512))
    ]
    return [e for body in bodies for e in decode_traces(body).events]


def _run(events: list[Any], state: Any, detectors: bool, batch: int, enricher: Any = None) -> Any:
    from usermon.processor.detectors import default_detectors
    from usermon.processor.engine import Engine

    engine = Engine(state, default_detectors() if detectors else (), enricher=enricher)
    for i in range(0, len(events), batch):
        engine.process(events[i : i + batch])
    return engine


def worker_time(n: int, repeat: int, seed: int = 0) -> dict[str, float]:
    from usermon.processor.storage.state.memory import MemoryState

    enricher: Any = None
    if seed:  # bench_detection's traffic, enriched by its world (real attacks, real profiles)
        from usermon.processor.simulate import Scenario, generate

        traffic = generate(Scenario(seed=seed))
        events, enricher = traffic.events, traffic.world
    else:
        events = _ingest_events(n)
    gc.set_threshold(100_000, 50, 100)
    out = {}
    for label, detectors in (("with detectors", True), ("no detectors", False)):
        best = float("inf")
        for _ in range(repeat):
            gc.collect()
            started = time.thread_time()
            _run(events, MemoryState(), detectors, 512, enricher)
            best = min(best, time.thread_time() - started)
        out[label] = best / len(events) * 1e6
    return out


def worker_calls(n: int, seed: int) -> dict[str, Any]:
    import bench_scale
    from tests.support.state import CountingState

    from usermon.processor.simulate import Scenario, generate

    out: dict[str, Any] = {}
    traffic = generate(Scenario(seed=seed))
    for label, events, batch, enricher in (
        ("bench_ingest", _ingest_events(n), 512, None),
        ("bench_scale", bench_scale.traffic(1500), 100, None),
        (f"bench_detection seed {seed}", traffic.events, 512, traffic.world),
    ):
        state = CountingState()
        _run(events, state, True, batch, enricher)
        calls = {k: v / len(events) for k, v in state.calls.most_common()}
        out[label] = {"total": sum(calls.values()), "calls": calls}
    return out


def worker_findings(seed: int) -> dict[str, Any]:
    import bench_detection

    from usermon.processor.simulate import Scenario, generate

    findings = bench_detection.run_in_process(generate(Scenario(seed=seed)))
    rows = sorted(json.dumps(f.to_json(), sort_keys=True) for f in findings)
    digest = hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]
    return {"findings": len(rows), "digest": digest}


def _side(src: str, *args: str) -> dict[str, Any]:
    # The repository root too: the State counter is a test helper (tests/support/state.py).
    path = os.pathsep.join((src, str(HERE), str(HERE.parent)))
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, __file__, "--worker", *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("other", nargs="?", help="the other tree's src directory")
    parser.add_argument("--events", type=int, default=20480)
    parser.add_argument("--rounds", type=int, default=4, help="alternating timed runs per side")
    parser.add_argument("--repeat", type=int, default=3, help="runs per process (best kept)")
    parser.add_argument("--seeds", default="1,2", help="bench_detection seeds to compare")
    parser.add_argument(
        "--time-seed",
        type=int,
        default=0,
        help="time bench_detection's traffic of this seed (about 120 000 events, enriched) "
        "instead of bench_ingest's",
    )
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        mode, *rest = args.worker
        if mode == "time":
            result: Any = worker_time(int(rest[0]), int(rest[1]), int(rest[2]))
        elif mode == "calls":
            result = worker_calls(int(rest[0]), int(rest[1]))
        else:
            result = worker_findings(int(rest[0]))
        print(json.dumps(result))
        return
    if not args.other:
        parser.error("the other tree's src directory is required")
    trees = {"other": os.path.abspath(args.other), "this": THIS}
    seeds = [int(s) for s in args.seeds.split(",") if s]  # --seeds "": timing only

    for seed in seeds:
        found = {name: _side(src, "findings", str(seed)) for name, src in trees.items()}
        same = "identical" if found["other"] == found["this"] else "DIFFERENT"
        print(f"bench_detection seed {seed} findings: {same} " + json.dumps(found))
    calls = {
        name: _side(src, "calls", str(args.events), str(seeds[0]))
        for name, src in trees.items()
        if seeds
    }
    if calls:
        print("State calls per event (engine + default detectors):")
    for traffic in calls.get("this", ()):
        line = "  ".join(
            f"{name} {calls[name][traffic]['total']:.2f}" for name in ("other", "this")
        )
        print(f"  {traffic:26s} {line}")
        for name in ("other", "this"):
            ops = ", ".join(f"{k} {v:.2f}" for k, v in calls[name][traffic]["calls"].items())
            print(f"      {name}: {ops}")
    times: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for r in range(args.rounds):
        for name in ("other", "this") if r % 2 == 0 else ("this", "other"):
            times[name].append(
                _side(trees[name], "time", str(args.events), str(args.repeat), str(args.time_seed))
            )
    what = (
        f"bench_detection seed {args.time_seed}'s traffic"
        if args.time_seed
        else f"{args.events} events"
    )
    print(
        f"CPU µs per event, {what} in batches of 512, {args.rounds} alternating "
        f"processes per side, best of {args.repeat} in each:"
    )
    for label in ("with detectors", "no detectors"):
        for name in ("other", "this"):
            xs = sorted(t[label] for t in times[name])
            print(
                f"  {label:15s} {name}: best {xs[0]:.1f}, median {statistics.median(xs):.1f}, "
                f"all {', '.join(f'{x:.1f}' for x in xs)}"
            )


if __name__ == "__main__":
    main()
