"""A/B of the engine alone on Redis, planned as a replica runs it: another source tree against
this one, in alternating processes (``PYTHONPATH`` = that tree's ``src``).

Each process runs ``Engine(RedisState(...), default_detectors())`` over bench_scale.py's traffic
(``--events`` logins in batches of ``--batch``, no intake, findings, profiles or checkpoints)
twice, each time under a key prefix of its own (removed afterwards), and reports its best run:
the process's CPU per event (``time.process_time``: the replica's Python, not its waiting on
Redis), the Redis server's CPU per event (``INFO cpu``) and the State round trips per event. Give
it a Redis of its own for clean Redis figures. For example, against main:

    git worktree add --detach /tmp/main main
    redis-server --port 6395 --save "" --appendonly no --daemonize yes
    python benchmarks/ab_engine_redis.py /tmp/main/src --redis-url redis://127.0.0.1:6395/0
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
THIS = str(HERE.parent / "src")


def worker(redis_url: str, events: int, batch: int) -> tuple[float, float, float]:
    import gc

    import bench_scale
    import redis

    from usermon.processor.detectors import default_detectors
    from usermon.processor.engine import Engine
    from usermon.processor.storage.state.redis import RedisState

    traffic = bench_scale.traffic(events)
    batches = [traffic[i : i + batch] for i in range(0, len(traffic), batch)]
    gc.set_threshold(100_000, 50, 100)  # as `usermon serve` sets it
    admin = redis.Redis.from_url(redis_url)

    def redis_cpu() -> float:
        info = admin.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    runs = []
    for _ in range(2):
        state = RedisState.from_url(redis_url, prefix=f"usermon_ab_{uuid.uuid4().hex[:8]}:")
        try:
            engine = Engine(state, default_detectors())
            r0, c0 = redis_cpu(), time.process_time()
            for b in batches:
                engine.process(b)
            cpu, server = time.process_time() - c0, redis_cpu() - r0
        finally:
            state.clear()
        n = len(traffic)
        runs.append((cpu / n * 1e6, server / n * 1e6, engine.plan_stats["round_trips"] / n))
    return min(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("other", nargs="?", help="the other tree's src directory")
    parser.add_argument("--redis-url", default=os.environ.get("USERMON_TEST_REDIS_URL"))
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=6, help="alternating processes per side")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.redis_url:
        parser.error("--redis-url (or USERMON_TEST_REDIS_URL) is required")
    if args.worker:
        print(json.dumps(worker(args.redis_url, args.events, args.batch)))
        return
    if not args.other:
        parser.error("the other tree's src directory is required")
    trees = {"other": os.path.abspath(args.other), "this": THIS}
    results: dict[str, list[Any]] = {name: [] for name in trees}
    for r in range(args.rounds):
        for name in ("other", "this") if r % 2 == 0 else ("this", "other"):
            env = {**os.environ, "PYTHONPATH": os.pathsep.join((trees[name], str(HERE)))}
            command = [sys.executable, __file__, "--worker", "--redis-url", args.redis_url]
            command += ["--events", str(args.events), "--batch", str(args.batch)]
            done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
            results[name].append(json.loads(done.stdout))
    print(
        f"engine alone on Redis, bench_scale's {args.events} events in batches of {args.batch}, "
        f"{args.rounds} alternating processes per side (best of 2 runs in each):"
    )
    for name in ("other", "this"):
        cpu = sorted(x[0] for x in results[name])
        server = sorted(x[1] for x in results[name])
        print(
            f"  {name}: replica CPU µs per event median {statistics.median(cpu):.1f} "
            f"(all {', '.join(f'{x:.1f}' for x in cpu)}), Redis CPU µs per event median "
            f"{statistics.median(server):.1f}, round trips per event {results[name][0][2]:.3f}"
        )
    ratios = sorted(t[0] / o[0] for t, o in zip(results["this"], results["other"], strict=True))
    print(
        f"  this / other replica CPU, per round: median {statistics.median(ratios):.3f} "
        f"(all {', '.join(f'{x:.3f}' for x in ratios)})"
    )


if __name__ == "__main__":
    main()
