"""A/B of what sending the plans costs a replica: ``RedisState.apply_many`` of another source tree
against this one, on the same plans, in alternating processes (``PYTHONPATH`` = that tree's
``src``).

The plans are those the engine sends on bench_scale.py's traffic (captured once in this tree, as
bench_redis_steps.py captures them: every ``apply_many``, records included); each process
replays all of them through its tree's ``apply_many`` under a fresh key prefix, ``--repeat``
times, and reports its best client CPU per event (``time.process_time``: encoding, sending,
reading and decoding, not the waiting on Redis). The replies are checked to be the same on both
sides. For example, against main:

    git -C <main's tree> archive HEAD src | tar -x -C /tmp/main
    redis-server --port 6395 --save "" --appendonly no --daemonize yes
    python benchmarks/ab_apply_many.py /tmp/main/src --redis-url redis://127.0.0.1:6395/0
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
THIS = str(HERE.parent / "src")


def worker(redis_url: str, plans_file: str, events: int, repeat: int) -> tuple[float, str]:
    from usermon.processor.storage.state.redis import RedisState

    with open(plans_file, "rb") as f:
        calls = pickle.load(f)  # noqa: S301 - written by this script, just now
    best, digest = float("inf"), ""
    for _ in range(repeat):
        state = RedisState.from_url(redis_url, prefix=f"usermon_ab_{uuid.uuid4().hex[:8]}:")
        replies = []
        try:
            started = time.process_time()
            for plans, records in calls:
                replies.append(state.apply_many(plans, records))
            best = min(best, time.process_time() - started)
        finally:
            state.clear()
        digest = hashlib.sha256(repr(replies).encode()).hexdigest()[:16]
    return best / events * 1e6, digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("other", nargs="?", help="the other tree's src directory")
    parser.add_argument("--redis-url", default=os.environ.get("USERMON_TEST_REDIS_URL"))
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4, help="alternating processes per side")
    parser.add_argument("--repeat", type=int, default=3, help="replays per process (best kept)")
    parser.add_argument("--worker", metavar="PLANS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.redis_url:
        parser.error("--redis-url (or USERMON_TEST_REDIS_URL) is required")
    if args.worker:
        print(json.dumps(worker(args.redis_url, args.worker, args.events, args.repeat)))
        return
    if not args.other:
        parser.error("the other tree's src directory is required")
    sys.path.insert(0, str(HERE))
    from bench_redis_steps import capture

    calls = capture(args.redis_url, args.events, args.batch)
    with tempfile.NamedTemporaryFile(suffix=".pickle", delete=False) as f:
        pickle.dump(calls, f)
    trees = {"other": os.path.abspath(args.other), "this": THIS}
    results: dict[str, list[tuple[float, str]]] = {name: [] for name in trees}
    try:
        for r in range(args.rounds):
            for name in ("other", "this") if r % 2 == 0 else ("this", "other"):
                env = {**os.environ, "PYTHONPATH": os.pathsep.join((trees[name], str(HERE)))}
                command = [sys.executable, __file__, "--worker", f.name]
                command += ["--redis-url", args.redis_url, "--events", str(args.events)]
                command += ["--repeat", str(args.repeat)]
                done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
                cpu, digest = json.loads(done.stdout)
                results[name].append((cpu, digest))
    finally:
        os.unlink(f.name)
    print(
        f"apply_many replayed: bench_scale's {args.events} events in batches of {args.batch}, "
        f"{len(calls)} calls, {args.rounds} alternating processes per side (best of "
        f"{args.repeat} replays in each):"
    )
    for name in ("other", "this"):
        cpu = sorted(x[0] for x in results[name])
        print(
            f"  {name}: client CPU µs per event median {statistics.median(cpu):.1f} "
            f"(all {', '.join(f'{x:.1f}' for x in cpu)})"
        )
    ratios = sorted(t[0] / o[0] for t, o in zip(results["this"], results["other"], strict=True))
    print(
        f"  this / other, per round: median {statistics.median(ratios):.3f} "
        f"(all {', '.join(f'{x:.3f}' for x in ratios)})"
    )
    same = {d for _, d in results["this"] + results["other"]}
    print(f"  replies: {'identical' if len(same) == 1 else 'DIFFERENT'} on both sides")


if __name__ == "__main__":
    main()
