"""Scale-out benchmark: events/s through the processor's engine and store, for

  * SQLite, one processor (the baseline: state in process memory),
  * shared Redis + PostgreSQL, one replica,
  * shared Redis + PostgreSQL, two replicas (two processes splitting the batches),

all on the same seeded login traffic, in one run. Each batch goes the way the processor service
takes it: durable intake, engine (aggregation + every default detector), findings and profiles
recorded, checkpoint. OTLP decoding and HTTP are left out (bench_ingest.py measures those), so
the figures isolate what the store costs.

Besides events/s, each configuration reports events per CPU-second of the whole machine (the
processes' own CPU: the processor or replicas, plus, when shared, the Redis server's
``used_cpu`` and the CPU of the PostgreSQL backends serving the replicas and of the server's
background processes), Redis' CPU per event from ``INFO commandstats`` and the State round trips
per event the replicas made. With ``--pin`` each replica is pinned to a core of its own
(``os.sched_setaffinity``, what ``taskset`` does). Redis and PostgreSQL are shared with whatever
else uses them: give the benchmark a Redis of its own for clean Redis figures.

    scripts/services start && eval "$(scripts/services env)"
    python benchmarks/bench_scale.py                 # 2000 events
    python benchmarks/bench_scale.py --events 5000 --batch 200 --pin

``--dump-findings`` prints each configuration's findings (kind, subject, id, event count, time
range from the traffic's start), to compare them: two replicas working at once differ from one
processor where an attack hovers at a threshold (docs/deploy.md).

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
from usermon.processor.model import Event, Finding
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


def run_batches(store: Store, batches: list[list[Event]], indexes: range) -> Engine:
    # On Redis the engine plans each event's steps (one script per event, a segment of events
    # per round trip), its claims in them, as the processor service runs it.
    engine = Engine(store.state, default_detectors())
    done = 0
    for i in indexes:
        receipt = store.intake(str(i).encode(), len(batches[i]))
        out = engine.process(batches[i])
        store.record_findings(out.findings)
        Profiles(store).record(out.users, out.ips, out.subjects)
        store.checkpoint(receipt.position, engine.snapshot())
        done += len(batches[i])
    return engine


def _open_shared(pg_url: str, redis_url: str, schema: str, prefix: str) -> Store:
    return open_store(pg_url, state_url=redis_url, schema=schema, state_prefix=prefix)


def _with_application_name(pg_url: str, name: str) -> str:
    """``pg_url`` with an ``application_name``, so that the backends serving it can be found."""
    return pg_url + ("&" if "?" in pg_url else "?") + f"application_name={name}"


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used; 0 when it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _backend_pids(pg_url: str, name: str) -> list[int]:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (name,)
        ).fetchall()
    return [int(r[0]) for r in rows]


def _postgres_background_cpu(pg_url: str) -> float:
    """CPU of the PostgreSQL server's own processes (WAL writer, checkpointer, ...): the
    postmaster's children that serve no client."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE backend_type <> 'client backend'"
        ).fetchall()
    return sum(_proc_cpu(int(r[0])) for r in rows)


def _replica(args: tuple[Any, ...]) -> None:
    pg_url, redis_url, schema, prefix, batches, k, n, ready, go, out, core = args
    if core is not None:
        os.sched_setaffinity(0, {core})
    store = _open_shared(pg_url, redis_url, schema, prefix)
    ready.wait()
    go.wait()
    started = time.process_time()
    engine = run_batches(store, batches, range(k, len(batches), n))
    out.put((time.process_time() - started, dict(getattr(engine, "plan_stats", {}))))
    ready.wait()  # the parent reads the PostgreSQL backends' CPU before they close
    store.close()


def _redis_info(redis_url: str) -> tuple[float, float, int]:
    """The Redis server's CPU seconds, the microseconds its commands took (commandstats) and
    how many commands it ran."""
    import redis

    client = redis.Redis.from_url(redis_url)
    info = client.info("cpu")
    stats = client.info("commandstats")
    usec = sum(float(v["usec"]) for v in stats.values())
    calls = sum(int(v["calls"]) for v in stats.values())
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"]), usec, calls


def shared(
    pg_url: str, redis_url: str, batches: list[list[Event]], replicas: int, pin: bool
) -> tuple[float, float]:
    """Seconds for ``replicas`` processes on one fresh schema and prefix to take every batch,
    and the machine's CPU seconds for it (replicas + Redis + PostgreSQL); prints the parts."""
    schema = f"usermon_bench_{uuid.uuid4().hex[:8]}"
    prefix = f"usermon_bench_{uuid.uuid4().hex[:8]}:"
    name = f"usermon_bench_{uuid.uuid4().hex[:8]}"
    replica_url = _with_application_name(pg_url, name)
    setup = _open_shared(pg_url, redis_url, schema, prefix)  # migrations, once
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(replicas + 1)
    go = ctx.Barrier(replicas + 1)
    out = ctx.Queue()
    cores = sorted(os.sched_getaffinity(0))
    procs = [
        ctx.Process(
            target=_replica,
            args=(
                (
                    replica_url,
                    redis_url,
                    schema,
                    prefix,
                    batches,
                    k,
                    replicas,
                    ready,
                    go,
                    out,
                    cores[k % len(cores)] if pin else None,
                ),
            ),
        )
        for k in range(replicas)
    ]
    for p in procs:
        p.start()
    ready.wait()  # every replica connected and migrated
    backends = _backend_pids(pg_url, name)
    pg_cpu = -sum(_proc_cpu(pid) for pid in backends) - _postgres_background_cpu(pg_url)
    redis_cpu, redis_usec, redis_calls = _redis_info(redis_url)
    t0 = time.perf_counter()
    go.wait()
    results = [out.get() for _ in procs]
    elapsed = time.perf_counter() - t0
    r_cpu, r_usec, r_calls = _redis_info(redis_url)
    backends = sorted(set(backends) | set(_backend_pids(pg_url, name)))
    pg_cpu += sum(_proc_cpu(pid) for pid in backends) + _postgres_background_cpu(pg_url)
    ready.wait()
    for p in procs:
        p.join()
    redis_cpu, redis_usec, redis_calls = (
        r_cpu - redis_cpu,
        r_usec - redis_usec,
        r_calls - redis_calls,
    )
    replica_cpu = sum(cpu for cpu, _ in results)
    events = sum(len(b) for b in batches)
    trips = sum(stats.get("round_trips", 0) for _, stats in results)
    machine = replica_cpu + redis_cpu + pg_cpu
    print(
        f"    (CPU per event: replicas {replica_cpu / events * 1e3:.3f} ms, Redis server "
        f"{redis_cpu / events * 1e3:.3f} ms, PostgreSQL {pg_cpu / events * 1e3:.3f} ms; "
        f"Redis commandstats {redis_usec / events:.1f} us and {redis_calls / events:.2f} "
        f"commands per event; {trips / events:.3f} State round trips per event)",
        file=sys.stderr,
    )
    if any(p.exitcode for p in procs):
        raise SystemExit("a replica failed")
    findings = setup.findings(limit=10_000)
    _cleanup(setup, pg_url, schema, prefix, redis_url)
    print(f"    ({len(findings)} findings)", file=sys.stderr)
    _dump(findings)
    return elapsed, machine


DUMP = False


def _dump(findings: list[Finding]) -> None:
    """With --dump-findings: each finding (kind, subject, id, events, time range), sorted, so
    that two configurations' findings can be compared line by line."""
    if not DUMP:
        return
    for f in sorted(findings, key=lambda f: (f.kind, f.subject.type, f.subject.id, f.first_seen)):
        print(
            f"      {f.kind} {f.subject.type}:{f.subject.id} {f.id} events={f.event_count} "
            f"{f.first_seen - START:.1f}..{f.last_seen - START:.1f}",
            file=sys.stderr,
        )


def _cleanup(store: Store, pg_url: str, schema: str, prefix: str, redis_url: str) -> None:
    import psycopg
    from psycopg import sql

    from usermon.processor.storage.state.redis import RedisState

    store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    RedisState.from_url(redis_url, prefix=prefix).clear()


def sqlite(batches: list[list[Event]]) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/bench.db")
        t0 = time.perf_counter()
        c0 = time.process_time()
        run_batches(store, batches, range(len(batches)))
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - c0
        per_event = cpu / sum(len(b) for b in batches) * 1e3
        print(f"    (CPU per event: {per_event:.3f} ms)", file=sys.stderr)
        findings = store.findings(limit=10_000)
        print(f"    ({len(findings)} findings)", file=sys.stderr)
        _dump(findings)
        store.close()
    return elapsed, cpu


def engine_alone(redis_url: str, batches: list[list[Event]]) -> None:
    """The engine alone on Redis (no intake, findings, profiles or checkpoints), planned and
    call by call, alternated: where a replica's and Redis' CPU per event go."""
    import redis

    from usermon.processor.storage.state.redis import RedisState

    admin = redis.Redis.from_url(redis_url)
    events = sum(len(b) for b in batches)
    for planned in (True, False, True, False):
        state = RedisState.from_url(redis_url, prefix=f"usermon_bench_{uuid.uuid4().hex[:8]}:")
        engine = Engine(state, default_detectors(), planned=planned)
        info = admin.info("cpu")
        r0 = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        c0 = time.process_time()
        for batch in batches:
            engine.process(batch)
        cpu = time.process_time() - c0
        info = admin.info("cpu")
        redis_cpu = float(info["used_cpu_user"]) + float(info["used_cpu_sys"]) - r0
        trips = engine.plan_stats["round_trips"] / events if planned else float("nan")
        print(
            f"  engine alone, {'planned' if planned else 'call by call'}: "
            f"{cpu / events * 1e3:.3f} ms CPU per event, Redis {redis_cpu / events * 1e3:.3f} ms"
            + (f", {trips:.3f} round trips per event" if planned else ""),
            file=sys.stderr,
        )
        state.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--redis-url", default=os.environ.get("USERMON_TEST_REDIS_URL"))
    parser.add_argument("--postgresql-url", default=os.environ.get("USERMON_TEST_POSTGRESQL_URL"))
    parser.add_argument(
        "--pin", action="store_true", help="pin each replica to a core of its own (taskset)"
    )
    parser.add_argument(
        "--engine-alone", action="store_true", help="also time the engine alone on Redis"
    )
    parser.add_argument(
        "--dump-findings", action="store_true", help="print every configuration's findings"
    )
    args = parser.parse_args()
    global DUMP
    DUMP = args.dump_findings
    if not args.redis_url or not args.postgresql_url:
        parser.error(
            'start the services first: scripts/services start && eval "$(scripts/services env)"'
        )
    events = traffic(args.events)
    batches = [events[i : i + args.batch] for i in range(0, len(events), args.batch)]
    print(f"{len(events)} events in batches of {args.batch}, {os.cpu_count()} CPUs")
    results: list[tuple[str, float, float]] = []
    pinned = ", pinned" if args.pin else ""
    for name, run in (
        ("SQLite, 1 processor", lambda: sqlite(batches)),
        (
            "Redis + PostgreSQL, 1 replica",
            lambda: shared(args.postgresql_url, args.redis_url, batches, 1, args.pin),
        ),
        (
            f"Redis + PostgreSQL, 2 replicas{pinned}",
            lambda: shared(args.postgresql_url, args.redis_url, batches, 2, args.pin),
        ),
    ):
        print(f"  {name} ...", file=sys.stderr)
        elapsed, cpu = run()
        results.append((name, len(events) / elapsed, len(events) / cpu))
    if args.engine_alone:
        engine_alone(args.redis_url, batches)
    base, base_cpu = results[0][1], results[0][2]
    one = results[1][1]
    print(
        f"{'configuration':<40} {'events/s':>9} {'vs SQLite':>10} {'vs 1 replica':>13} "
        f"{'events/CPU-s':>13} {'vs SQLite':>10}"
    )
    for name, rate, per_cpu in results:
        print(
            f"{name:<40} {rate:>9.0f} {rate / base:>9.2f}x {rate / one:>12.2f}x "
            f"{per_cpu:>13.0f} {per_cpu / base_cpu:>9.2f}x"
        )


if __name__ == "__main__":
    main()
