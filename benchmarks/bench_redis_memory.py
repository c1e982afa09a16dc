"""Redis memory per active user or address: the plans bench_redis_steps.py captured
(``--steps FILE``: bench_scale.py's traffic, the records put and every event's steps) applied
once through ``RedisState.apply_many`` on a fresh key prefix, then every key's ``MEMORY USAGE``
summed and divided by the users and addresses the traffic touched (their packed subjects).
Run it with another tree's ``src`` on ``PYTHONPATH`` to compare layouts on the same plans::

    python benchmarks/bench_redis_steps.py --redis-url redis://127.0.0.1:6392/0 \\
        --steps /tmp/steps.pkl
    python benchmarks/bench_redis_memory.py --redis-url redis://127.0.0.1:6392/0 \\
        --steps /tmp/steps.pkl
    PYTHONPATH=/tmp/main/src python benchmarks/bench_redis_memory.py --redis-url ... --steps ...
"""

from __future__ import annotations

import argparse
import collections
import pickle
import uuid

import redis

from usermon.processor.storage.state.redis import RedisState


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--steps", required=True, help="plans captured by bench_redis_steps.py")
    args = parser.parse_args()
    with open(args.steps, "rb") as f:
        _events, calls = pickle.load(f)  # noqa: S301 - written by bench_redis_steps.py
    client = redis.Redis.from_url(args.redis_url, decode_responses=True)
    prefix = f"usermon_mem_{uuid.uuid4().hex[:8]}:"
    state = RedisState(client, prefix=prefix)
    try:
        for plans, records in calls:
            state.apply_many([p for p in plans if p], records)
        total, keys, subjects = 0, 0, 0
        by_kind: collections.Counter[str] = collections.Counter()
        for name in client.scan_iter(match=f"{prefix}*", count=1000):
            size = int(client.memory_usage(name, samples=0) or 0)
            rest = name[len(prefix) :]
            kind = rest.rsplit("}:", 1)[1][:1]
            total += size
            keys += 1
            by_kind[kind] += size
            if kind == "p" and rest.startswith(("{u:", "{ip:")):
                subjects += 1
        print(f"{subjects} users and addresses, {keys} keys, {total} bytes")
        print(f"per user or address: {total / subjects:.0f} bytes, {keys / subjects:.2f} keys")
        print(
            "by key kind (bytes per user or address): "
            + ", ".join(f"{k} {v / subjects:.0f}" for k, v in by_kind.most_common())
        )
    finally:
        state.clear()


if __name__ == "__main__":
    main()
