"""What a credential-stuffing campaign through a million residential proxies costs the State.

A service learns two days of ordinary traffic, then takes ``--attempts`` failed logins on unknown
accounts (``usermon.user.exists = false``), each from another address of a pool (``--addresses``,
default one per attempt) spread over ``--asns`` networks, sent by a tool cycling through six
browser strings, with one success in a thousand on an account with a history (a takeover to
find). The engine runs every default detector on a :class:`MemoryState` with its default caps.
Printed per run (in its own process, so peak RSS is its own): keys held, what the caps evicted,
the keys the service-wide campaign keeps (``det:svc:``), peak RSS, CPU per attempt, findings.

    python benchmarks/bench_campaign_memory.py                      # a million addresses
    python benchmarks/bench_campaign_memory.py --addresses 1000     # 1000 addresses, same attempts
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

T0 = 1_767_571_200.0
DAY = 86400.0
AGENTS = tuple(
    f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    f"Chrome/13{i}.0.0.0 Safari/537.36"
    for i in range(6)
)


def _address(i: int) -> str:
    return f"{10 + (i >> 24) % 100}.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(attempts: int, addresses: int, asns: int) -> dict[str, Any]:
    from usermon.processor.detectors import default_detectors
    from usermon.processor.engine import Engine
    from usermon.processor.model import Event, NetworkInfo
    from usermon.processor.storage.state.memory import MemoryState

    home = NetworkInfo(country="FR", asn=3215, as_org="Orange")
    pool = [NetworkInfo(country="US", asn=64000 + n, as_org=f"ISP {n}") for n in range(asns)]
    state = MemoryState()
    engine = Engine(state, default_detectors())
    findings: dict[str, str] = {}

    def process(events: list[Event]) -> None:
        for f in engine.process(events).findings:
            findings[f.id] = f.kind

    # Two days of ordinary life: 200 users logging in from home, a few mistyped e-mails an hour.
    ordinary = []
    for hour in range(48):
        t = T0 + hour * 3600
        for u in range(200):
            if (u + hour) % 12 == 0:
                ordinary.append(
                    Event(
                        kind="login",
                        time=t + u,
                        success=True,
                        user_hash=f"user{u}",
                        client_ip=f"192.0.2.{u}",
                        user_agent=AGENTS[0],
                        service="shop",
                        network=home,
                    )
                )
        for i in range(3):
            ordinary.append(
                Event(
                    kind="login",
                    time=t + 600 * i,
                    success=False,
                    user_hash=f"typo{hour}-{i}",
                    client_ip=f"198.51.100.{i}",
                    user_agent=AGENTS[1],
                    exists=False,
                    service="shop",
                    network=home,
                )
            )
    ordinary.sort(key=lambda e: e.time)
    process(ordinary)
    rss_before = _rss_mb("VmRSS")
    start, chunk = T0 + 2 * DAY, 10_000
    cpu = time.process_time()
    for base in range(0, attempts, chunk):
        batch = []
        for i in range(base, min(attempts, base + chunk)):
            # Right once in a thousand, once the pool's networks have all been seen failing.
            right = i % 1000 == 500 and i > 2 * asns
            batch.append(
                Event(
                    kind="login",
                    time=start + i * 0.01,
                    success=right,
                    user_hash=f"user{i // 1000 % 200}" if right else f"combo{i}",
                    client_ip=_address(i % addresses if addresses else i),
                    user_agent=AGENTS[i % len(AGENTS)],
                    exists=None if right else False,
                    service="shop",
                    # A success from a network the pool keeps failing from: with 2000 ASNs,
                    # pool[i % asns] would be one that only ever sees the successes.
                    network=pool[(i + right) % asns],
                    trace_id=f"{i:032x}",
                )
            )
        process(batch)
    cpu = time.process_time() - cpu
    kinds: dict[str, int] = {}
    for kind in findings.values():
        kinds[kind] = kinds.get(kind, 0) + 1
    return {
        "attempts": attempts,
        "addresses": addresses or attempts,
        "asns": asns,
        "state_keys": len(state),
        "max_keys": state.max_keys,
        "evicted": state.evicted,
        "campaign_keys": len(state.keys("det:svc:")),
        "peak_rss_mb": round(_rss_mb("VmHWM"), 1),
        "rss_before_mb": round(rss_before, 1),
        "cpu_us_per_event": round(cpu / attempts * 1e6, 1),
        "findings": kinds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attempts", type=int, default=1_000_000)
    parser.add_argument("--addresses", type=int, default=0, help="0: a new address per attempt")
    parser.add_argument("--asns", type=int, default=2000, help="networks the pool spans")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run(args.attempts, args.addresses, args.asns)))
        return
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--one",
            "--attempts",
            str(args.attempts),
            "--addresses",
            str(args.addresses),
            "--asns",
            str(args.asns),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    print(json.dumps(json.loads(out.stdout.strip().splitlines()[-1]), indent=2))


if __name__ == "__main__":
    main()
