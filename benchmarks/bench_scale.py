"""Scale-out benchmark: events/s through the processor's engine and store, for

  * SQLite, one processor (the baseline: state in process memory),
  * shared Redis + PostgreSQL, one replica,
  * shared Redis + PostgreSQL, two replicas (two processes splitting the batches),

all on the same seeded login traffic, in one run. Each batch goes the way the processor service
takes it: durable intake, engine (aggregation + every default detector), findings and profiles
recorded, checkpoint. OTLP decoding and HTTP are left out (bench_ingest.py measures those), so
the figures isolate what the store costs.

    scripts/services start && eval "$(scripts/services env)"
    python benchmarks/bench_scale.py                 # 2000 events
    python benchmarks/bench_scale.py --events 5000 --batch 200

Needs the Redis and PostgreSQL that scripts/services starts (or --redis-url / --postgresql-url).
Each run uses its own PostgreSQL schema and Redis key prefix, and removes them afterwards.
Results and their explanation: docs/performance.md, "Scale-out".
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sys
import tempfile
import time
import uuid
from typing import Any

from usermon.processor.detectors import default_detectors
from usermon.processor.engine import Engine
from usermon.processor.model import Event
from usermon.processor.profiles import Profiles
from usermon.processor.storage.base import Store, open_store

START = 1_767_571_200.0


def traffic(n: int, seed: int = 1) -> list[Event]:
    """``n`` login events over two hours: a benign population (one in ten logins after a typo)
    and, in one event out of five, attacks (brute force, credential stuffing, spraying)."""
    rng = random.Random(seed)
    users = max(50, n // 4)
    rows: list[tuple[float, str, str, bool]] = []
    for k in range(n):
        t = START + 7200 * k / n
        roll = rng.random()
        if roll < 0.8:
            u = rng.randrange(users)
            rows.append((t, f"user{u}", f"10.{u // 250 % 250}.{u % 250}.1", rng.random() > 0.1))
        elif roll < 0.87:
            rows.append((t, f"user{rng.randrange(20)}", "203.0.113.5", False))
        elif roll < 0.94:
            rows.append((t, f"leaked{k}", "198.51.100.9", False))
        else:
            rows.append((t, f"user{rng.randrange(users)}", f"192.0.2.{rng.randrange(250)}", False))
    return [
        Event(
            kind="login",
            time=t,
            success=ok,
            user_hash=user,
            user_id=f"{user}@example.com",
            primary_key="email",
            client_ip=ip,
            user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
            source="sdk",
            trace_id=f"{i:032x}",
            span_id=f"{i:016x}",
        )
        for i, (t, user, ip, ok) in enumerate(rows, start=1)
    ]


def run_batches(store: Store, batches: list[list[Event]], indexes: range) -> int:
    engine = Engine(store.state, default_detectors())
    done = 0
    for i in indexes:
        receipt = store.intake(str(i).encode(), len(batches[i]))
        out = engine.process(batches[i])
        store.record_findings(out.findings)
        Profiles(store).record(out.users, out.ips)
        store.checkpoint(receipt.position, engine.snapshot())
        done += len(batches[i])
    return done


def _open_shared(pg_url: str, redis_url: str, schema: str, prefix: str) -> Store:
    return open_store(pg_url, state_url=redis_url, schema=schema, state_prefix=prefix)


def _replica(args: tuple[str, str, str, str, list[list[Event]], int, int, Any, Any, Any]) -> None:
    pg_url, redis_url, schema, prefix, batches, k, n, ready, go, cpu = args
    store = _open_shared(pg_url, redis_url, schema, prefix)
    ready.wait()
    go.wait()
    started = time.process_time()
    run_batches(store, batches, range(k, len(batches), n))
    cpu.put(time.process_time() - started)
    store.close()


def _redis_cpu(redis_url: str) -> float:
    import redis

    info = redis.Redis.from_url(redis_url).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def shared(pg_url: str, redis_url: str, batches: list[list[Event]], replicas: int) -> float:
    """Seconds for ``replicas`` processes on one fresh schema and prefix to take every batch;
    prints the CPU that the replicas and the Redis server spent per event."""
    schema = f"usermon_bench_{uuid.uuid4().hex[:8]}"
    prefix = f"usermon_bench_{uuid.uuid4().hex[:8]}:"
    setup = _open_shared(pg_url, redis_url, schema, prefix)  # migrations, once
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(replicas + 1)
    go = ctx.Barrier(replicas + 1)
    cpu = ctx.Queue()
    procs = [
        ctx.Process(
            target=_replica,
            args=((pg_url, redis_url, schema, prefix, batches, k, replicas, ready, go, cpu),),
        )
        for k in range(replicas)
    ]
    for p in procs:
        p.start()
    ready.wait()  # every replica connected and migrated
    redis_cpu = _redis_cpu(redis_url)
    t0 = time.perf_counter()
    go.wait()
    replica_cpu = sum(cpu.get() for _ in procs)
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - t0
    redis_cpu = _redis_cpu(redis_url) - redis_cpu
    events = sum(len(b) for b in batches)
    print(
        f"    (CPU per event: replicas {replica_cpu / events * 1e3:.2f} ms, "
        f"Redis server {redis_cpu / events * 1e3:.2f} ms)",
        file=sys.stderr,
    )
    if any(p.exitcode for p in procs):
        raise SystemExit("a replica failed")
    findings = len(setup.findings(limit=10_000))
    _cleanup(setup, pg_url, schema, prefix, redis_url)
    print(f"    ({findings} findings)", file=sys.stderr)
    return elapsed


def _cleanup(store: Store, pg_url: str, schema: str, prefix: str, redis_url: str) -> None:
    import psycopg
    from psycopg import sql

    from usermon.processor.storage.state.redis import RedisState

    store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    RedisState.from_url(redis_url, prefix=prefix).clear()


def sqlite(batches: list[list[Event]]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/bench.db")
        t0 = time.perf_counter()
        c0 = time.process_time()
        run_batches(store, batches, range(len(batches)))
        elapsed = time.perf_counter() - t0
        per_event = (time.process_time() - c0) / sum(len(b) for b in batches) * 1e3
        print(f"    (CPU per event: {per_event:.2f} ms)", file=sys.stderr)
        print(f"    ({len(store.findings(limit=10_000))} findings)", file=sys.stderr)
        store.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--redis-url", default=os.environ.get("USERMON_TEST_REDIS_URL"))
    parser.add_argument("--postgresql-url", default=os.environ.get("USERMON_TEST_POSTGRESQL_URL"))
    args = parser.parse_args()
    if not args.redis_url or not args.postgresql_url:
        parser.error(
            'start the services first: scripts/services start && eval "$(scripts/services env)"'
        )
    events = traffic(args.events)
    batches = [events[i : i + args.batch] for i in range(0, len(events), args.batch)]
    print(f"{len(events)} events in batches of {args.batch}, {os.cpu_count()} CPUs")
    results: list[tuple[str, float]] = []
    for name, run in (
        ("SQLite, 1 processor", lambda: sqlite(batches)),
        (
            "Redis + PostgreSQL, 1 replica",
            lambda: shared(args.postgresql_url, args.redis_url, batches, 1),
        ),
        (
            "Redis + PostgreSQL, 2 replicas",
            lambda: shared(args.postgresql_url, args.redis_url, batches, 2),
        ),
    ):
        print(f"  {name} ...", file=sys.stderr)
        results.append((name, len(events) / run()))
    base = results[0][1]
    one = results[1][1]
    print(f"{'configuration':<32} {'events/s':>10} {'vs SQLite':>10} {'vs 1 replica':>13}")
    for name, rate in results:
        print(f"{name:<32} {rate:>10.0f} {rate / base:>9.2f}x {rate / one:>12.2f}x")


if __name__ == "__main__":
    main()
