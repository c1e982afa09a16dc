"""Processor ingest: end-to-end OTLP/HTTP protobuf throughput against the bare decode-and-walk.

Run by hand (see docs/performance.md, "Processor ingest"):

    python benchmarks/bench_ingest.py                 # everything, a few minutes
    python benchmarks/bench_ingest.py --events 100000 --flood 200000   # quicker

What it measures, in one run on this machine:

1. **bare**: ``ExportTraceServiceRequest.ParseFromString`` plus a walk touching every span
   event's name, time and attributes (key and typed value): the ceiling for any Python receiver.
2. **end to end**: a real ``usermon serve`` process (pinned to one core when the OS allows),
   fed 512-event protobuf batches over HTTP by client threads pinned to another core; events/s
   from the first request to the last acknowledgment. Memory store and SQLite store (journal).
3. **stages**, in process: decode only (upb's parse and the Python walk to events, measured
   alternately with the bare walk), engine (aggregation, no detectors), engine with the default
   detectors.
4. **memory per active key**: state bytes (tracemalloc) per active user and per active IP.
5. **flood**: a million logins each from a new IP (default cap), peak RSS and keys held;
   ``--flood-addresses N`` rotates them among N addresses instead (few keys, many events: what
   bounds deduplication's fields is then their own cap, not the key cap).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

# The port and processor helpers are shared with the tests (tests/support/servers.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from tests.support.servers import free_port, wait_healthy

from usermon import attributes as A

T0 = 1_750_000_000.0


def _kv(key: str, value: Any) -> common_pb2.KeyValue:
    if isinstance(value, bool):
        return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(bool_value=value))
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=value))


def batch(n: int, rng: random.Random, t0: float, users: int, ips: int) -> bytes:
    """``n`` login span events (one per span, as an app emits them): 80 % successes."""
    spans = []
    for i in range(n):
        u = rng.randrange(users)
        ip = rng.randrange(ips)
        t = int((t0 + i * 0.001) * 1e9)
        event = trace_pb2.Span.Event(
            name=A.LOGIN_EVENT,
            time_unix_nano=t,
            attributes=[
                _kv(A.LOGIN_SUCCESS, rng.random() < 0.8),
                _kv(A.PRIMARY_KEY, "email"),
                _kv(A.IDENTIFIER_PREFIX + "email", f"user{u}@example.com"),
                _kv(A.USER_ID, f"user{u}@example.com"),
                _kv(A.USER_HASH, f"{u:064x}"),
                _kv(A.CLIENT_ADDRESS, f"10.{ip >> 16 & 255}.{ip >> 8 & 255}.{ip & 255}"),
                _kv(A.USER_AGENT, "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Firefox/128.0"),
                _kv(A.SOURCE, "django"),
            ],
        )
        spans.append(
            trace_pb2.Span(
                trace_id=rng.randbytes(16),
                span_id=rng.randbytes(8),
                name="POST /login",
                start_time_unix_nano=t,
                end_time_unix_nano=t + 2_000_000,
                attributes=[_kv(A.TRACKED, True)],
                events=[event],
            )
        )
    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource_pb2.Resource(attributes=[_kv(A.SERVICE_NAME, "shop")]),
                scope_spans=[trace_pb2.ScopeSpans(spans=spans)],
            )
        ]
    )
    return request.SerializeToString()


def bare_walk(body: bytes) -> int:
    request = trace_service_pb2.ExportTraceServiceRequest()
    request.ParseFromString(body)
    n = 0
    for rs in request.resource_spans:
        for kv in rs.resource.attributes:
            _ = kv.key, kv.value.string_value
        for ss in rs.scope_spans:
            for span in ss.spans:
                _ = span.trace_id, span.span_id
                for event in span.events:
                    _ = event.name, event.time_unix_nano
                    for kv in event.attributes:
                        value = kv.value
                        which = value.WhichOneof("value")
                        _ = kv.key, getattr(value, which) if which else None
                    n += 1
    return n


def best(fn: Any, repeat: int = 3) -> float:
    """Least CPU time of this thread over ``repeat`` runs: on a shared, loaded machine, CPU time
    is what one core spends, where wall time also counts other jobs."""
    times = []
    for _ in range(repeat):
        started = time.thread_time()
        fn()
        times.append(time.thread_time() - started)
    return min(times)


def best_alternating(fns: dict[str, Any], repeat: int = 3) -> dict[str, float]:
    """:func:`best` of each function, their runs alternated, so that a change in the machine's
    load during the measurement weighs on all of them alike."""
    times: dict[str, list[float]] = {label: [] for label in fns}
    for _ in range(repeat):
        for label, fn in fns.items():
            started = time.thread_time()
            fn()
            times[label].append(time.thread_time() - started)
    return {label: min(t) for label, t in times.items()}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pin(cpu: int) -> bool:
    try:
        os.sched_setaffinity(0, {cpu % (os.cpu_count() or 1)})
    except (AttributeError, OSError):
        return False
    return True


SERVER = """
import os, sys
try:
    os.sched_setaffinity(0, {0})
except (AttributeError, OSError):
    pass
from usermon.processor.runner import run
from usermon.processor.service import Processor
from usermon.processor.settings import resolve
settings = resolve({"listen": sys.argv[1], "store": sys.argv[2], "log_level": "warning",
                    "max_body_bytes": 64 * 1024 * 1024}, env={})
detectors = None if sys.argv[3] == "default" else []
run(settings, Processor(settings, detectors=detectors))
"""


def end_to_end(
    bodies: list[bytes], store: str, detectors: str, connections: int
) -> tuple[float, float]:
    """Wall seconds from the first request to the last acknowledgment, and the processor's CPU
    seconds over the same span."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("USERMON_")}
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, f"127.0.0.1:{port}", store, detectors], env=env
    )
    try:
        wait_healthy(url, server)
        headers = {"Content-Type": "application/x-protobuf"}
        queue = list(reversed(bodies))
        lock = threading.Lock()
        errors: list[int] = []

        def client() -> None:
            with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
                while True:
                    with lock:
                        if not queue:
                            return
                        body = queue.pop()
                    response = http.post("/v1/traces", content=body)
                    if response.status_code != 200:
                        errors.append(response.status_code)

        threads = [threading.Thread(target=client) for _ in range(connections)]
        cpu_before = cpu_seconds(server.pid)
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(server.pid) - cpu_before
        if errors:
            raise RuntimeError(f"{len(errors)} batches failed: {sorted(set(errors))}")
        return elapsed, cpu
    finally:
        server.terminate()
        server.wait(60)


def memory_per_key(users: int) -> dict[str, float]:
    """State bytes per active user and IP: each user logs in 3 times from its own 2 addresses."""
    from usermon.processor.engine import Engine
    from usermon.processor.model import Event
    from usermon.processor.storage.state.memory import MemoryState

    events = []
    for u in range(users):
        for k in range(3):
            events.append(
                Event(
                    kind="login",
                    time=T0 + u * 0.01 + k,
                    success=k != 0,
                    user_hash=f"{u:064x}",
                    user_id=f"user{u}@example.com",
                    client_ip=f"10.{u >> 8 & 255}.{u & 255}.{k % 2}",
                    user_agent="Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Firefox/128.0",
                    service="shop",
                    trace_id=f"{u * 3 + k:032x}",
                    span_id=f"{u * 3 + k:016x}",
                )
            )
    tracemalloc.start()
    state = MemoryState(max_keys=10_000_000)
    before = tracemalloc.get_traced_memory()[0]
    engine = Engine(state)
    engine.process(events)
    # The dedupe maps (d:<bucket>, one field per event) are not per-key state.
    for key in state.keys("d:"):
        del state._entries[key]
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    keys = users + 2 * users  # active users + active IPs
    return {
        "bytes_per_active_key": (after - before) / keys,
        "bytes_per_user_with_its_2_ips": (after - before) / users,
        "state_keys": len(state),
    }


def rss_mb(field: str) -> float:
    """This process's resident memory (``VmRSS``) or its peak (``VmHWM``), in MB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _address(i: int) -> str:
    return f"{10 + (i >> 24) & 255}.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"


def flood(n: int, addresses: int = 0) -> dict[str, float]:
    """A million logins, each from a new address (or from ``addresses`` rotating ones), against
    1000 accounts: bounded by the caps."""
    from usermon.processor.engine import Engine
    from usermon.processor.model import Event
    from usermon.processor.storage.state.memory import MemoryState

    state = MemoryState()
    engine = Engine(state)
    rss_start = rss_mb("VmRSS")
    started = time.perf_counter()
    chunk = 10_000
    for base in range(0, n, chunk):
        engine.process(
            [
                Event(
                    kind="login",
                    time=T0 + i * 0.001,
                    success=False,
                    user_hash=f"{i % 1000:064x}",
                    client_ip=_address(i % addresses if addresses else i),
                    trace_id=f"{i:032x}",
                    span_id=f"{i:016x}",
                )
                for i in range(base, min(n, base + chunk))
            ]
        )
    return {
        "events": n,
        "seconds": time.perf_counter() - started,
        "state_keys": len(state),
        "max_keys": state.max_keys,
        "evicted": state.evicted,
        "dedupe_fields": sum(len(state.fields(k)) for k in state.keys("d:")),
        "peak_rss_mb": rss_mb("VmHWM"),
        "rss_before_mb": rss_start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events end to end")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--ips", type=int, default=50_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--flood", type=int, default=1_000_000, help="0 to skip")
    parser.add_argument(
        "--flood-addresses",
        type=int,
        default=0,
        help="the flood's addresses rotate among this many (default: each login a new one)",
    )
    parser.add_argument("--flood-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood_only:
        print(json.dumps(flood(args.flood, args.flood_addresses)))
        return

    rng = random.Random(7)
    n_batches = max(1, args.events // args.batch)
    bodies = [
        batch(args.batch, rng, T0 + b * args.batch * 0.001, args.users, args.ips)
        for b in range(n_batches)
    ]
    total = n_batches * args.batch
    print(f"{n_batches} batches of {args.batch} login events ({total} events)")
    pinned = pin(1)

    from usermon.processor.otlp import decode_traces

    stages: dict[str, Any] = {
        "bare decode-and-walk": lambda: [bare_walk(b) for b in bodies],
        "decode to events": lambda: [decode_traces(b) for b in bodies],
    }
    decode_times = best_alternating(stages)
    events = [e for b in bodies for e in decode_traces(b).events]

    from usermon.processor.detectors import default_detectors
    from usermon.processor.engine import Engine
    from usermon.processor.storage.state.memory import MemoryState

    engine_s = best(lambda: Engine(MemoryState()).process(events), repeat=2)
    detect_s = best(lambda: Engine(MemoryState(), default_detectors()).process(events), repeat=2)

    results: dict[str, Any] = {
        **{label: total / seconds for label, seconds in decode_times.items()},
        "engine, no detectors": total / engine_s,
        "engine + default detectors": total / detect_s,
    }
    wall: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, store, detectors in [
            ("end to end, memory://, no detectors", "memory://", "none"),
            ("end to end, sqlite (journal), no detectors", f"sqlite:///{tmp}/a.db", "none"),
            ("end to end, sqlite (journal), default detectors", f"sqlite:///{tmp}/b.db", "default"),
        ]:
            elapsed, cpu = end_to_end(bodies, store, detectors, args.connections)
            results[label] = total / cpu
            wall[label] = total / elapsed
    print(f"(client pinned to a core: {pinned}; processor pinned to another)")
    print("events per CPU-second of one core (wall-clock rate in brackets for end to end):")
    for label, rate in results.items():
        ratio = rate / results["bare decode-and-walk"]
        extra = f"  [{wall[label]:,.0f}/s wall]" if label in wall else ""
        print(f"  {label:50s} {rate:>10,.0f} events/s  {ratio:6.1%} of bare{extra}")

    per_key = memory_per_key(20_000)
    print(
        f"memory: {per_key['bytes_per_active_key']:.0f} bytes per active key (user or IP); "
        f"{per_key['bytes_per_user_with_its_2_ips']:.0f} bytes per user with its 2 IPs"
    )
    if args.flood:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--flood-only",
                "--flood",
                str(args.flood),
                "--flood-addresses",
                str(args.flood_addresses),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        f = json.loads(out.stdout)
        print(
            f"flood: {f['events']:,} logins from "
            f"{f'{args.flood_addresses:,} rotating' if args.flood_addresses else 'distinct'} IPs "
            f"in {f['seconds']:.0f} s: {f['state_keys']:,} keys held (cap {f['max_keys']:,}), "
            f"{f['evicted']:,} evicted, {f['dedupe_fields']:,} dedupe fields, "
            f"peak RSS {f['peak_rss_mb']:.0f} MB (at start {f['rss_before_mb']:.0f} MB)"
        )


if __name__ == "__main__":
    main()
