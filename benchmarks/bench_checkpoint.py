"""SQLite checkpoints: the pause a checkpoint puts on ingest, whole snapshot against rows.

Run by hand (see docs/performance.md, "Checkpoints"):

    python benchmarks/bench_checkpoint.py                  # 400 000 users, a few minutes
    python benchmarks/bench_checkpoint.py --users 100000   # quicker

It builds a state through the engine (each user logs in once from an address of its own: two
keys per user) and takes a first checkpoint (a whole snapshot). Then, for each count of users
touched again since, one incremental checkpoint (only their rows), against a whole snapshot of
the same state right after it (what every checkpoint wrote before rows). Then the restart:
loading the snapshot and its rows. Last, the cost of tracking changes on the engine's hot path:
the engine with and without it, alternated. Times are wall seconds of this process (a
checkpoint holds the processor's lock throughout).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

from usermon.processor.engine import Engine
from usermon.processor.model import Event
from usermon.processor.storage.sqlite import SQLiteStore
from usermon.processor.storage.state.memory import MemoryState

T0 = 1_750_000_000.0


def logins(users: range, t0: float) -> list[Event]:
    return [
        Event(
            kind="login",
            time=t0 + i * 0.001,
            success=True,
            user_hash=f"{u:064x}",
            user_id=f"user{u}@example.com",
            primary_key="email",
            client_ip=f"10.{u >> 16 & 255}.{u >> 8 & 255}.{u & 255}",
            user_agent="Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Firefox/128.0",
            service="shop",
            trace_id=f"{u:032x}",
            span_id=f"{i:016x}",
        )
        for i, u in enumerate(users)
    ]


def timed(fn: object) -> float:
    started = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=400_000)
    parser.add_argument("--touched", default="0,1000,10000,50000", help="users touched again")
    args = parser.parse_args()
    touched = [int(n) for n in args.touched.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'c.db'}?max_keys={4 * args.users}"
        store = SQLiteStore(url)
        engine = Engine(store.state)
        t = T0
        for start in range(0, args.users, 10_000):
            engine.process(logins(range(start, min(start + 10_000, args.users)), t))
            t += 10
        keys = len(store.state)
        position = 1
        first = timed(lambda: store.checkpoint(position, engine.snapshot()))
        print(
            f"{args.users:,} users, {keys:,} keys; first checkpoint (whole snapshot) {first:.2f} s"
        )
        for n in touched:
            engine.process(logins(range(n), t))
            t += 10
            position += 1
            rows = timed(partial(store.checkpoint, position, engine.snapshot()))
            # The same state written whole, as every checkpoint did before rows (the next round's
            # rows then go on top of this snapshot).
            store._schedule.base_missing = True
            whole = timed(partial(store.checkpoint, position, engine.snapshot()))
            print(
                f"  {n:>7,} users touched again: checkpoint {rows:.3f} s, "
                f"a whole snapshot of the same state {whole:.3f} s ({rows / whole:.1%} of it)"
            )
        store.close()
        load = timed(lambda: SQLiteStore(url).close())
        print(f"restart: loading the snapshot and its rows {load:.2f} s")

    events = logins(range(50_000), T0)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(15):
        for track in (False, True):
            state = MemoryState()
            if track:
                state.track_changes()
            e = Engine(state)
            started = time.thread_time()
            e.process(events)
            times[track].append((time.thread_time() - started) / len(events) * 1e6)
    off, on = sorted(times[False]), sorted(times[True])
    print(
        f"hot path, engine over {len(events):,} new users, 15 alternated runs: untracked "
        f"{off[0]:.2f} us/event best, {off[7]:.2f} median; tracked {on[0]:.2f} best, "
        f"{on[7]:.2f} median ({on[7] / off[7]:.3f} x)"
    )


if __name__ == "__main__":
    main()
