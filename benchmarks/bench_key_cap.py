"""What the memory state's key cap costs a flood: State calls at the cap, this tree against another.

A flood attempt from a new address on a new account name leaves the keys credential stuffing
leaves (the address's and the account's aggregates, their counters and distinct sets, the
pair's counter: seven new keys), each one evicting another once the state is at its cap. The
state is first filled to ``--keys`` (its cap) with ``--kept`` users who logged in (each its
aggregate and risk profile, kept by the key cap) and flood keys, then ``--attempts`` more
attempts are timed: thread CPU time per attempt, best and median of ``--rounds`` alternated
runs, each side in its own process (``PYTHONPATH`` = that tree's ``src``). No engine and no
detector: only the State calls and the eviction they cause. ``--instructions`` counts instead
the instructions per attempt under valgrind's callgrind (a run with ``--attempts`` less one
without, so the filling is taken off), repeatable where the time is not. Figures in
docs/performance.md (*State memory and floods*):

    python benchmarks/bench_key_cap.py <other tree's src> --rounds 5
    python benchmarks/bench_key_cap.py <other src> --instructions --keys 100000 --attempts 20000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

THIS = str(Path(__file__).resolve().parent.parent / "src")
WINDOWS = (60.0, 600.0, 3600.0, 86400.0)
DAY = 86400.0


def _attempt(s: Any, i: int, t: float) -> None:
    ip = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
    user = f"combo{i:x}"
    s.fold_subject("u:" + user, t, WINDOWS, 30 * DAY, 1, (ip, None, "tool"), label=user)
    s.fold_subject("ip:" + ip, t, WINDOWS, 30 * DAY, 1, (user,))
    s.add_windows(f"det:ip:{ip}:f", t, WINDOWS)
    s.add_distinct(f"det:ip:{ip}:fa", user, t, 3600.0)
    s.add(f"det:p:{user}|{ip}:f", t, 3600.0)
    s.add_windows(f"det:u:{user}:f", t, WINDOWS)
    s.add_distinct(f"det:u:{user}:fs", ip, t, 3600.0)


def side(keys: int, kept: int, attempts: int) -> dict[str, float]:
    """One run in this process: fill the state, then time the flood at its cap."""
    from usermon.processor.storage.state.memory import MemoryState

    gc.set_threshold(100_000, 50, 100)  # as usermon serve sets it
    state = MemoryState(max_keys=keys)
    t = 1_767_571_200.0
    for u in range(kept):
        h = f"user{u}"
        state.fold_subject("u:" + h, t, WINDOWS, 30 * DAY, 0, ("198.51.100.1",), success=("a", "b"))
        state.incr_fields(f"det:risk:u:{h}", {"net|FR|3215|198.51.100.1": 1}, t, 90 * DAY)
    i = 0
    while len(state) < keys:
        _attempt(state, i, t + i * 0.05)
        i += 1
    started = time.thread_time()
    for k in range(i, i + attempts):
        _attempt(state, k, t + k * 0.05)
    cpu = time.thread_time() - started
    held = sum(1 for u in range(kept) if state.fields(f"det:risk:u:user{u}"))
    return {
        "us_per_attempt": cpu / max(attempts, 1) * 1e6,
        "evicted": state.evicted,
        "kept_held": held,
    }


def _side_command(args: argparse.Namespace, attempts: int) -> list[str]:
    sizes = ["--keys", str(args.keys), "--kept", str(args.kept), "--attempts", str(attempts)]
    return [sys.executable, __file__, "--side", *sizes]


def _callgrind(src: str, args: argparse.Namespace, attempts: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={tmp}/cg.out",
                *_side_command(args, attempts),
            ],
            env={**os.environ, "PYTHONPATH": src},
            check=True,
            capture_output=True,
            text=True,
        ).stderr
    found = re.search(r"Collected : (\d+)", out)
    if found is None:
        raise SystemExit(f"no instruction count in callgrind's output:\n{out}")
    return int(found.group(1))


def instructions(trees: dict[str, str], args: argparse.Namespace) -> None:
    print(
        f"cap {args.keys:,} keys, {args.kept:,} users who logged in, {args.attempts:,} attempts "
        f"at the cap (7 new keys each): instructions per attempt (callgrind)"
    )
    counts = {}
    for name, src in trees.items():
        counts[name] = (_callgrind(src, args, args.attempts) - _callgrind(src, args, 0)) / (
            args.attempts
        )
        print(f"  {name:<6} {counts[name]:,.0f}")
    if args.other:
        print(f"  this / other: {counts['this'] / counts['other']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("other", nargs="?", help="another tree's src (A/B); none: this tree only")
    parser.add_argument("--keys", type=int, default=200_000, help="the key cap")
    parser.add_argument("--kept", type=int, default=2_000, help="users who logged in")
    parser.add_argument("--attempts", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--instructions", action="store_true", help="count under callgrind")
    parser.add_argument("--side", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(side(args.keys, args.kept, args.attempts)))
        return
    trees = {"this": THIS} | ({"other": args.other} if args.other else {})
    if args.instructions:
        instructions(trees, args)
        return
    results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, src in trees.items():
            out = subprocess.run(
                _side_command(args, args.attempts),
                env={**os.environ, "PYTHONPATH": src},
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            results[name].append(json.loads(out))
    print(
        f"cap {args.keys:,} keys, {args.kept:,} users who logged in, {args.attempts:,} attempts "
        f"at the cap (7 new keys each), {args.rounds} alternated rounds"
    )
    for name, runs in results.items():
        times = [r["us_per_attempt"] for r in runs]
        print(
            f"  {name:<6} best {min(times):.2f} µs/attempt, median {statistics.median(times):.2f}"
            f"; risk profiles held {runs[-1]['kept_held']:,.0f} of {args.kept:,}"
        )
    if args.other:
        this = min(r["us_per_attempt"] for r in results["this"])
        other = min(r["us_per_attempt"] for r in results["other"])
        print(f"  this / other (best): {this / other:.3f}")


if __name__ == "__main__":
    main()
