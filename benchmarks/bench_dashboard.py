"""Listing users on a big in-process state: a page by the recency index against a scan.

Fills a ``MemoryStore``'s state directly with ``--users`` users (one login each, one event time
apart, through ``aggregation.aggregate``: the state the engine would build, without detectors),
then times, in the same run:

* ``scan``: what ``Profiles.users`` did before the index: rank every ``u:`` key by its last
  seen, then build the profiles of the first page;
* ``index build``: the one scan that builds the recency indexes when the processor starts (its
  time is inflated by ``tracemalloc``, which measures the memory the indexes hold);
* ``first page`` / ``deep page`` (by cursor, half-way down) / ``label lookup`` through
  ``Profiles`` with the index, and ``index upkeep``: ``Profiles.saw`` per event of a batch.

    python benchmarks/bench_dashboard.py --users 100000
    python benchmarks/bench_dashboard.py --users 1000000 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from usermon.processor.aggregation import aggregate, last_seen, user_profile
from usermon.processor.model import Event
from usermon.processor.profiles import Profiles
from usermon.processor.queries import find_user
from usermon.processor.storage.memory import MemoryStore

START = 1_767_571_200.0


def event(i: int) -> Event:
    return Event(
        kind="login",
        time=START + i,
        success=True,
        user_hash=f"{i:032x}",
        user_id=f"user{i}@example.com",
        primary_key="email",
        client_ip=f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
        user_agent="Mozilla/5.0",
        service="shop",
    )


def scan_page(store: MemoryStore, limit: int) -> list[dict[str, Any]]:
    """The listing before the index (profiles.py at cf9024a^)."""
    state = store.state
    ranked: list[tuple[float, str]] = []
    for key in state.keys("u:"):
        seen = last_seen(state, key)
        if seen is not None:
            ranked.append((seen, key[2:]))
    ranked.sort(reverse=True)
    profiles = (user_profile(state, h, state.watermark) for _, h in ranked[:limit])
    return [p for p in profiles if p is not None]


def timed(call: Callable[[], Any], rounds: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    store = MemoryStore("memory://", max_keys=3 * args.users + 1000)
    started = time.perf_counter()
    for i in range(args.users):
        aggregate(event(i), store.state)
    print(f"filled {args.users:,} users in {time.perf_counter() - started:.1f} s")

    scan, expected = timed(lambda: scan_page(store, args.limit), args.rounds)
    profiles = Profiles(store, max_keys=3 * args.users + 1000)
    tracemalloc.start()
    started = time.perf_counter()
    profiles.index()
    build = time.perf_counter() - started
    index_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    first, (rows, _) = timed(lambda: profiles.users_page(limit=args.limit), args.rounds)
    assert [r["user_hash"] for r in rows] == [r["user_hash"] for r in expected]
    middle = (START + args.users / 2, f"{args.users // 2:032x}")
    deep, (rows, _) = timed(
        lambda: profiles.users_page(limit=args.limit, after=middle), args.rounds
    )
    assert rows[0]["user_hash"] == f"{args.users // 2 - 1:032x}"
    label, found = timed(lambda: find_user(profiles, "user0@example.com"), args.rounds)
    assert found is not None
    upkeeps = []
    for r in range(20):  # 20 batches of 512 new users, the median per event
        batch = [event(args.users + r * 512 + i) for i in range(512)]
        started = time.perf_counter()
        profiles.saw(batch)
        upkeeps.append((time.perf_counter() - started) / len(batch))
    upkeep = statistics.median(upkeeps)

    print(f"page of {args.limit} by scan (before)    {scan * 1000:10.1f} ms")
    print(f"index build (once, at startup)    {build * 1000:10.1f} ms (under tracemalloc)")
    print(f"index memory, users and addresses {index_bytes / args.users:10.0f} bytes per user")
    print(f"first page by index               {first * 1000:10.2f} ms   ({scan / first:,.0f}x)")
    print(f"page half-way down by cursor      {deep * 1000:10.2f} ms")
    print(f"user by label (oldest)            {label * 1000:10.3f} ms")
    print(f"index upkeep per event            {upkeep * 1e6:10.2f} us")


if __name__ == "__main__":
    main()
