"""A/B end to end: the same protobuf batches posted to a processor started from another source
tree and from this one, in alternation (bench_ingest.py's end-to-end stage, events per CPU-second
of the processor). For example, against a checkout of an older commit:

    git worktree add /tmp/before de3eabd
    python benchmarks/ab_end_to_end.py /tmp/before/src --events 51200 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
from pathlib import Path

import bench_ingest

THIS = str(Path(__file__).resolve().parent.parent / "src")
CONFIGS = {
    "memory://, no detectors": ("memory", "none"),
    "sqlite (journal), no detectors": ("sqlite", "none"),
    "sqlite (journal), default detectors": ("sqlite", "default"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("other", help="the other tree's src directory")
    parser.add_argument("--events", type=int, default=51200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    trees = {"other": os.path.abspath(args.other), "this": THIS}
    rng = random.Random(7)
    bodies = [
        bench_ingest.batch(512, rng, bench_ingest.T0 + b * 512 * 0.001, 20_000, 50_000)
        for b in range(max(1, args.events // 512))
    ]
    total = len(bodies) * 512
    bench_ingest.pin(1)
    rates: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        run = 0
        for r in range(args.rounds):
            for label, (store, detectors) in CONFIGS.items():
                for tree in ("other", "this") if r % 2 == 0 else ("this", "other"):
                    os.environ["PYTHONPATH"] = trees[tree]  # the processor's subprocess
                    run += 1
                    url = "memory://" if store == "memory" else f"sqlite:///{tmp}/{run}.db"
                    _, cpu = bench_ingest.end_to_end(bodies, url, detectors, args.connections)
                    rates.setdefault((label, tree), []).append(total / cpu)
    print(f"{total} events, {args.rounds} alternating rounds, events per CPU-second (median, best)")
    for label in CONFIGS:
        other = sorted(rates[(label, "other")])
        this = sorted(rates[(label, "this")])
        mid = len(this) // 2
        print(
            f"  {label:38s} other {other[mid]:>8,.0f} ({other[-1]:,.0f})  this {this[mid]:>8,.0f} "
            f"({this[-1]:,.0f})  ratio of medians {this[mid] / other[mid]:.2f}"
        )


if __name__ == "__main__":
    main()
