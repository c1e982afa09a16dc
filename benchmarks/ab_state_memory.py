"""A/B of ``MemoryState.fold_subject``: another source tree's memory state against this one's.

Each side runs in its own process (``PYTHONPATH`` = that tree's ``src``, so the whole memory state
of each tree is measured, whichever modules it is split into), in alternating rounds; reported:
thread CPU nanoseconds per fold (best and median) in two scenarios, *again* (20 000 users folded
again and again: the hot path, no new keys) and *flood* (300 000 new addresses, one fold each, at
a cap of 100 000 keys: creation, eviction, the amortized expiry). Trees from before the state
moved under ``storage/state/`` load too. Then, for this tree only, what an aggregate costs
active and once idle (``MemoryState.sweep`` after the watermark moved three days on), by
tracemalloc: an account under a rotating attack (3 000 failures) and a user with three logins
from two addresses (with its addresses). For example, against main:

    git worktree add --detach /tmp/main main
    python benchmarks/ab_state_memory.py /tmp/main/src --rounds 9
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from usermon.processor.aggregation import PROFILE_TTL, WINDOWS

try:
    from usermon.processor.storage.state.base import FAIL, OK
    from usermon.processor.storage.state.memory import MemoryState
except ModuleNotFoundError:  # a tree from before the move under storage/state/
    from usermon.processor.state import FAIL, OK  # type: ignore[no-redef]
    from usermon.processor.state_memory import MemoryState  # type: ignore[no-redef]

THIS = str(Path(__file__).resolve().parent.parent / "src")
T0 = 1_750_000_000.0
DAY = 86400.0


def again() -> float:
    state = MemoryState()
    users = [f"u:{i:064x}" for i in range(20_000)]
    members = ("192.0.2.1", None, "Firefox")
    for key in users:
        state.fold_subject(key, T0, WINDOWS, PROFILE_TTL, OK, members, label="a", service="shop")
    started = time.thread_time_ns()
    for r in range(15):
        for i, key in enumerate(users):
            t = T0 + 1 + r * 60 + i * 0.001
            state.fold_subject(key, t, WINDOWS, PROFILE_TTL, r % 2, members, label="a")
    return (time.thread_time_ns() - started) / (15 * len(users))


def flood() -> float:
    state = MemoryState(max_keys=100_000)
    keys = [f"ip:10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(300_000)]
    started = time.thread_time_ns()
    for i, key in enumerate(keys):
        state.fold_subject(key, T0 + i * 0.001, WINDOWS, PROFILE_TTL, FAIL, ("h",))
    return (time.thread_time_ns() - started) / len(keys)


def idle_bytes(fold: Callable[[Any, int], None], count: int, keys_each: int) -> tuple[float, float]:
    """Bytes per subject active and once idle, ``count`` subjects folded by ``fold``."""
    tracemalloc.start()
    state = MemoryState()
    state.add("clock", 0.0, 60.0)
    start = tracemalloc.get_traced_memory()[0]
    for n in range(count):
        fold(state, n)
    active = tracemalloc.get_traced_memory()[0]
    state.add("clock", T0 + 3 * DAY, 60.0)
    state.sweep()
    idle = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert state.pruned == count * keys_each
    return (active - start) / count, (idle - start) / count


def attacked(state: Any, n: int) -> None:
    key = f"u:{n:064x}"
    for i in range(3000):
        members = (f"198.51.{i // 256}.{i % 256}", f"AS{i % 50}", f"agent {i % 40}")
        state.fold_subject(key, T0 + i, WINDOWS, PROFILE_TTL, FAIL, members, label="v@x.org")
    success = ("192.0.2.1", "Firefox")
    members = ("192.0.2.1", None, "Firefox")
    state.fold_subject(key, T0 + 3000, WINDOWS, PROFILE_TTL, OK, members, success=success)


def ordinary(state: Any, n: int) -> None:
    agent = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Firefox/128.0"
    for k in range(3):
        t, ip = T0 + n * 0.01 + k, f"10.{n >> 8 & 255}.{n & 255}.{k % 2}"
        outcome = FAIL if k == 0 else OK
        state.fold_subject(
            f"u:{n:064x}",
            t,
            WINDOWS,
            PROFILE_TTL,
            outcome,
            (ip, None, agent),
            label=f"user{n}@example.com",
            service="shop",
            success=(ip, agent) if outcome == OK else None,
        )
        state.fold_subject("ip:" + ip, t, WINDOWS, PROFILE_TTL, outcome, (f"{n:064x}",))


SCENARIOS: dict[str, Callable[[], float]] = {"again": again, "flood": flood}


def _side(src: str, scenario: str) -> float:
    env = {**os.environ, "PYTHONPATH": src}
    done = subprocess.run(
        [sys.executable, __file__, "--worker", scenario],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return float(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("other", nargs="?", help="the other tree's src directory")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--worker", choices=sorted(SCENARIOS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(SCENARIOS[args.worker]())
        return
    if not args.other:
        parser.error("the other tree's src directory is required")
    trees = {"other": os.path.abspath(args.other), "this": THIS}
    for scenario in SCENARIOS:
        times: dict[str, list[float]] = {name: [] for name in trees}
        for r in range(args.rounds):
            for name in ("other", "this") if r % 2 == 0 else ("this", "other"):
                times[name].append(_side(trees[name], scenario))
        print(f"{scenario}: ns per fold_subject, {args.rounds} alternating processes per side")
        for name, xs in times.items():
            xs.sort()
            print(f"  {name}: best {xs[0]:.0f}, median {xs[len(xs) // 2]:.0f}")
    active, idle = idle_bytes(attacked, 100, 1)
    print(f"attacked account (this): {active:.0f} bytes active, {idle:.0f} once idle")
    active, idle = idle_bytes(ordinary, 10_000, 3)
    print(f"user with its 2 addresses (this): {active:.0f} bytes active, {idle:.0f} once idle")


if __name__ == "__main__":
    main()
