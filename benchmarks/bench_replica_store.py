"""A replica's store writes alone, A/B: another source tree's PostgreSQL store against this one's.

A replica on Redis + PostgreSQL writes, for each batch, its intake, the batch's finding deltas,
the profiles of the users and addresses it touched, and a checkpoint. This benchmark runs the
engine once (this tree, on Redis) over bench_scale.py's traffic to capture what those calls are
given, then replays only the calls, batch after batch, on a fresh schema, in one process per
side (``PYTHONPATH`` = that tree's ``src``), alternating the sides. Reported per event: the CPU
of the replaying process and of the PostgreSQL backend serving it (``/proc``). The engine and
the Redis state are out of it (bench_scale.py measures the whole replica).

    scripts/services start && eval "$(scripts/services env)"
    git worktree add --detach /tmp/main main
    python benchmarks/bench_replica_store.py /tmp/main/src --rounds 3

Results: docs/performance.md, "Scale-out".
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
THIS = str(HERE.parent / "src")


def capture(pg_url: str, redis_url: str, events: int, batch: int) -> list[tuple[Any, ...]]:
    """Per batch: its size, its finding deltas, the user and address profiles recorded, and
    the engine's snapshot, from one run of this tree's engine and store."""
    sys.path.insert(0, str(HERE))
    import bench_scale

    from usermon.processor.detectors import default_detectors
    from usermon.processor.engine import Engine
    from usermon.processor.profiles import Profiles

    traffic = bench_scale.traffic(events)
    batches = [traffic[i : i + batch] for i in range(0, len(traffic), batch)]
    schema = f"usermon_bench_{uuid.uuid4().hex[:8]}"
    prefix = f"usermon_bench_{uuid.uuid4().hex[:8]}:"
    store: Any = bench_scale._open_shared(pg_url, redis_url, schema, prefix)
    saved: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []
    save = store.save_profiles

    def keep(users: Any, ips: Any) -> None:
        saved.append(([dict(u) for u in users], [dict(i) for i in ips]))
        save(users, ips)

    store.save_profiles = keep
    engine = Engine(store.state, default_detectors())
    out = []
    for events_of in batches:
        result = engine.process(events_of)
        saved.clear()
        Profiles(store).record(result.users, result.ips, result.subjects)
        users, ips = saved[0] if saved else ([], [])
        out.append((len(events_of), list(result.findings), users, ips, engine.snapshot()))
    bench_scale._cleanup(store, pg_url, schema, prefix, redis_url)
    return out


def _describe(captured: list[tuple[Any, ...]]) -> None:
    from usermon.processor.storage.repair import storable_json

    events = sum(c[0] for c in captured)
    for name, at in (("user", 2), ("address", 3)):
        sizes = [len(storable_json(p).encode()) for c in captured for p in c[at]]
        print(
            f"{len(sizes) / events:.2f} {name} profiles per event, "
            f"{sum(sizes) / max(1, len(sizes)):.0f} bytes of JSON each"
        )
    print(f"{sum(len(c[1]) for c in captured) / len(captured):.1f} finding deltas per batch")


def _proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def replay(path: str, pg_url: str, redis_url: str, repeat: int) -> None:
    """Replay the captured calls ``repeat`` times on a fresh schema; print the two CPUs."""
    import psycopg
    from psycopg import sql

    from usermon.processor.storage.base import open_store

    with open(path, "rb") as f:
        captured = pickle.load(f)  # noqa: S301 - written by this script
    name = f"usermon_bench_{uuid.uuid4().hex[:8]}"
    schema = f"usermon_bench_{uuid.uuid4().hex[:8]}"
    prefix = f"usermon_bench_{uuid.uuid4().hex[:8]}:"
    url = pg_url + ("&" if "?" in pg_url else "?") + f"application_name={name}"
    store: Any = open_store(url, state_url=redis_url, schema=schema, state_prefix=prefix)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        pids = [
            int(r[0])
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (name,)
            )
        ]
    backend = -sum(_proc_cpu(pid) for pid in pids)
    started = time.process_time()
    blob = b"x" * 2000  # about a batch's size in the journal
    for _ in range(repeat):
        for count, findings, users, ips, snapshot in captured:
            receipt = store.intake(blob, count)
            store.record_findings(findings)
            store.save_profiles(users, ips)
            store.checkpoint(receipt.position, snapshot)
    client = time.process_time() - started
    backend += sum(_proc_cpu(pid) for pid in pids)
    store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    events = repeat * sum(c[0] for c in captured)
    print(f"{client / events * 1e6:.2f} {backend / events * 1e6:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("other", help="the other tree's src directory")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="replays of the capture per run")
    parser.add_argument("--redis-url", default=os.environ.get("USERMON_TEST_REDIS_URL"))
    parser.add_argument("--postgresql-url", default=os.environ.get("USERMON_TEST_POSTGRESQL_URL"))
    parser.add_argument("--replay", help=argparse.SUPPRESS)  # a side's process
    args = parser.parse_args()
    if not args.redis_url or not args.postgresql_url:
        parser.error(
            'start the services first: scripts/services start && eval "$(scripts/services env)"'
        )
    if args.replay:
        replay(args.replay, args.postgresql_url, args.redis_url, args.repeat)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "captured.pickle")
        captured = capture(args.postgresql_url, args.redis_url, args.events, args.batch)
        with open(path, "wb") as f:
            pickle.dump(captured, f)
        _describe(captured)
        sides = {"other": os.path.abspath(args.other), "this": THIS}
        got: dict[str, list[tuple[float, float]]] = {side: [] for side in sides}
        for k in range(args.rounds):
            for side in sides if k % 2 == 0 else reversed(list(sides)):
                env = dict(os.environ, PYTHONPATH=sides[side])
                command = [sys.executable, __file__, args.other, "--replay", path]
                command += ["--repeat", str(args.repeat), "--redis-url", args.redis_url]
                command += ["--postgresql-url", args.postgresql_url]
                line = subprocess.run(
                    command,
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout.split()
                got[side].append((float(line[0]), float(line[1])))
                print(f"  {side}: replica {line[0]} us, PostgreSQL {line[1]} us per event")
    for i, what in enumerate(("replica", "PostgreSQL backend")):
        other = statistics.median(r[i] for r in got["other"])
        this = statistics.median(r[i] for r in got["this"])
        print(
            f"{what} (medians): other {other:.1f} us per event, this {this:.1f} us "
            f"({this / other:.2f} x)"
        )


if __name__ == "__main__":
    main()
