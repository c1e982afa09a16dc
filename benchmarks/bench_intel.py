"""Threat-intel lookups and detector cost, each against a baseline in the same run.

    python benchmarks/bench_intel.py            # about a minute on a quiet machine
    python benchmarks/bench_intel.py --quick    # smaller tables and streams

1. IP-ranges lookups per second: the sorted-interval table (bisect) against a naive scan of the
   same CIDR blocks (the baseline), on the same probe addresses.
2. Enricher lookups per second over a MaxMind City + ASN database written by the benchmark, a
   Tor exit list and the ranges table: each address new (cold) and a login stream's repeats
   (warm, memoized).
3. Detectors: microseconds per event for all default detectors on a MemoryState, over a seeded
   stream of logins (benign users with typos, phones and offices, plus a brute force, a
   credential-stuffing run and a spray), against one bare ``MemoryState.add`` per event (the
   baseline), and the State operations each event costs.

Times are CPU time of the benchmark thread. Results go to docs/performance.md, section
"Detection and intel".
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The State counter is a test helper (tests/support/state.py), not part of the wheel.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.state import CountingState

from usermon.processor.detectors import default_detectors
from usermon.processor.intel import Enricher, IpRanges
from usermon.processor.intel.geoip import Database
from usermon.processor.intel.ranges import address_key
from usermon.processor.intel.tor import TorExitList
from usermon.processor.model import Event, NetworkInfo
from usermon.processor.rules import Rules
from usermon.processor.storage.state.memory import MemoryState

CATEGORIES = ("hosting", "vpn", "proxy", "tor")


def timed(fn: Any, *args: Any) -> float:
    # CPU time of this thread: on a shared, loaded machine wall time measures the neighbours.
    start = time.thread_time()
    fn(*args)
    return time.thread_time() - start


def random_blocks(rng: random.Random, n: int) -> list[tuple[str, str, str]]:
    rows = []
    for i in range(n):
        if i % 10 == 9:
            net = ipaddress.ip_network((rng.getrandbits(128), rng.randint(32, 64)), strict=False)
        else:
            net = ipaddress.ip_network((rng.getrandbits(32), rng.randint(12, 28)), strict=False)
        rows.append((str(net), rng.choice(CATEGORIES), f"provider{i % 500}"))
    return rows


def probes(rng: random.Random, rows: list[tuple[str, str, str]], n: int) -> list[str]:
    out = []
    for i in range(n):
        if i % 2:  # inside a known block
            net = ipaddress.ip_network(rng.choice(rows)[0])
            out.append(str(net[rng.randrange(min(net.num_addresses, 2**20))]))
        else:
            out.append(str(ipaddress.ip_address(rng.getrandbits(32))))
    return out


class NaiveRanges:
    """The baseline: every block as integers, scanned in full, longest prefix kept (the last
    of equal blocks, as the table does)."""

    def __init__(self, rows: list[tuple[str, str, str]]) -> None:
        self.blocks = []
        for cidr, category, name in rows:
            net = ipaddress.ip_network(cidr)
            self.blocks.append(
                (
                    net.version,
                    int(net.network_address),
                    int(net.broadcast_address),
                    net.prefixlen,
                    (category, name),
                )
            )

    def lookup(self, ip: str) -> tuple[str, str] | None:
        key = address_key(ip)
        if key is None:
            return None
        family, value = key
        best = None
        best_len = -1
        for version, start, end, length, found in self.blocks:
            if version == family and start <= value <= end and length >= best_len:
                best, best_len = found, length
        return best


def bench_ranges(rng: random.Random, blocks: int, lookups: int) -> None:
    rows = random_blocks(rng, blocks)
    built = time.perf_counter()
    table = IpRanges(rows)
    built = time.perf_counter() - built
    naive = NaiveRanges(rows)
    addresses = probes(rng, rows, lookups)
    few = addresses[: max(200, lookups // 500)]

    def run(fn: Any, items: list[str]) -> None:
        for ip in items:
            fn(ip)

    # Same answers first: the speed of a wrong table is worth nothing.
    for ip in few[:200]:
        found = table.lookup(ip)
        assert (None if found is None else (found.category, found.name)) == naive.lookup(ip), ip
    fast = lookups / timed(run, table.lookup, addresses)
    slow = len(few) / timed(run, naive.lookup, few)
    print(
        f"IP ranges: {blocks} CIDR blocks ({table.intervals} intervals), built in "
        f"{built * 1000:.0f} ms"
    )
    print(f"  bisect table   {fast:12,.0f} lookups/s")
    print(f"  naive scan     {slow:12,.0f} lookups/s   (baseline)")
    print(f"  ratio          {fast / slow:12,.0f} x")


def write_mmdb(path: Path, kind: str, networks: list[str], rng: random.Random) -> None:
    from mmdb_writer import MmdbF64, MmdbU32, MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type=kind,
        languages=["en"],
        description="bench",
    )
    for i, cidr in enumerate(networks):
        if kind.endswith("ASN"):
            record: dict[str, Any] = {
                "autonomous_system_number": MmdbU32(64512 + i % 1000),
                "autonomous_system_organization": f"AS org {i % 1000}",
            }
        else:
            record = {
                "country": {"iso_code": rng.choice(["FR", "US", "DE", "BR", "JP", "IN"])},
                "location": {
                    "latitude": MmdbF64(rng.uniform(-60, 60)),
                    "longitude": MmdbF64(rng.uniform(-180, 180)),
                },
            }
        writer.insert_network(IPSet([cidr]), record)
    writer.to_db_file(str(path))


def bench_enricher(rng: random.Random, networks: int, lookups: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        nets = sorted(
            {
                str(ipaddress.ip_network((rng.getrandbits(32), 20), strict=False))
                for _ in range(networks)
            }
        )
        city, asn = Path(tmp, "city.mmdb"), Path(tmp, "asn.mmdb")
        write_mmdb(city, "GeoLite2-City", nets, rng)
        write_mmdb(asn, "GeoLite2-ASN", nets, rng)
        exits_path = Path(tmp, "tor.txt")
        exits_path.write_text(
            "\n".join(str(ipaddress.ip_address(rng.getrandbits(32))) for _ in range(1500))
        )
        tor = TorExitList(str(exits_path))
        tor.refresh()
        ranges = IpRanges(random_blocks(rng, 20000))
        enricher = Enricher(Database(city), Database(asn), tor, ranges)
        addresses = [
            str(ipaddress.ip_network(rng.choice(nets))[rng.randrange(4096)]) for _ in range(lookups)
        ]

        def cold() -> None:
            for ip in addresses:
                enricher._cache.clear()
                enricher.lookup(ip)

        repeated = [rng.choice(addresses[:2000]) for _ in range(lookups)]

        def warm() -> None:
            for ip in repeated:
                enricher.lookup(ip)

        cold_rate = lookups / timed(cold)
        warm_rate = lookups / timed(warm)
        enricher.close()
    print(f"Enricher (City + ASN DBs of {len(nets)} networks, 1500 Tor exits, 20000 ranges):")
    print(f"  cold, every address new   {cold_rate:12,.0f} lookups/s")
    print(f"  warm, a stream's repeats  {warm_rate:12,.0f} lookups/s")


AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
)


def login_stream(rng: random.Random, users: int, events: int) -> list[Event]:
    """Benign logins (home, phone, office; 8% typos) with three attacks mixed in."""
    homes = {u: f"10.{u // 65536 % 256}.{u // 256 % 256}.{u % 256}" for u in range(users)}
    places = [
        NetworkInfo(country=c, latitude=lat, longitude=lon, asn=asn, as_org=f"AS{asn}")
        for c, lat, lon, asn in (
            ("FR", 48.8, 2.3, 3215),
            ("US", 40.7, -74.0, 7922),
            ("DE", 52.5, 13.4, 3320),
            ("BR", -23.5, -46.6, 28573),
        )
    ]
    home_place = {u: places[u % len(places)] for u in range(users)}
    out: list[Event] = []
    t = 1_767_571_200.0
    attack_at = {events // 4: "brute", events // 2: "stuff", 3 * events // 4: "spray"}
    i = 0
    while len(out) < events:
        t += rng.expovariate(50.0)  # 50 logins a second of event time
        if i in attack_at:
            kind = attack_at[i]
            for k in range(200):
                user = "victim" if kind == "brute" else f"target{k}"
                out.append(
                    Event(
                        "login",
                        t + k * (150 if kind == "spray" else 2),
                        False,
                        user,
                        user,
                        "email",
                        (),
                        f"198.51.100.{len(out) % 3}",
                        "python-requests/2.32.3",
                        trace_id=f"{len(out):032x}",
                        network=places[1],
                    )
                )
        i += 1
        u = rng.randrange(users)
        ip = homes[u] if rng.random() < 0.7 else f"100.64.{rng.randrange(256)}.{u % 256}"
        agent = AGENTS[u % 2] if ip == homes[u] else AGENTS[2]
        if rng.random() < 0.08:
            for _ in range(rng.randint(1, 3)):
                out.append(
                    Event(
                        "login",
                        t,
                        False,
                        f"u{u}",
                        f"u{u}",
                        "email",
                        (),
                        ip,
                        agent,
                        trace_id=f"{len(out):032x}",
                        network=home_place[u],
                    )
                )
                t += 0.01
        out.append(
            Event(
                "login",
                t,
                True,
                f"u{u}",
                f"u{u}",
                "email",
                (),
                ip,
                agent,
                trace_id=f"{len(out):032x}",
                network=home_place[u],
            )
        )
    out.sort(key=lambda e: e.time)
    return out[:events]


def bench_detectors(rng: random.Random, users: int, events: int) -> None:
    stream = login_stream(rng, users, events)
    failures = sum(1 for e in stream if not e.success)

    def baseline() -> None:
        state = MemoryState()
        for e in stream:
            state.add(f"ip:{e.client_ip}", e.time, 600.0)

    signals = 0

    def detect() -> None:
        nonlocal signals
        state = MemoryState()
        detectors = default_detectors(Rules())
        for e in stream:
            for d in detectors:
                signals += len(list(d.observe(e, state)))

    base = timed(baseline) / len(stream) * 1e6
    full = timed(detect) / len(stream) * 1e6

    counting = CountingState()
    detectors = default_detectors(Rules())
    ops_fail = ops_ok = 0
    for e in stream[:5000]:
        before = sum(counting.calls.values())
        for d in detectors:
            list(d.observe(e, counting))
        spent = sum(counting.calls.values()) - before
        if e.success:
            ops_ok += spent
        else:
            ops_fail += spent
    sample_fail = sum(1 for e in stream[:5000] if not e.success) or 1
    sample_ok = sum(1 for e in stream[:5000] if e.success) or 1
    print(
        f"Detectors: {len(stream)} events ({failures} failed logins), {users} users, "
        f"{signals} signals"
    )
    print(f"  all detectors          {full:8.1f} us/event  ({1e6 / full:,.0f} events/s)")
    print(f"  one MemoryState.add    {base:8.1f} us/event  (baseline)")
    print(f"  ratio                  {full / base:8.1f} x one state operation")
    print(
        f"  State operations: {ops_fail / sample_fail:.1f} per failed login, "
        f"{ops_ok / sample_ok:.1f} per successful login"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller tables and streams")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    scale = 0.2 if args.quick else 1.0
    print(f"python {sys.version.split()[0]}")
    bench_ranges(rng, int(50000 * scale), int(200000 * scale))
    bench_enricher(rng, int(3000 * scale), int(100000 * scale))
    bench_detectors(rng, int(20000 * scale), int(100000 * scale))
    return 0


if __name__ == "__main__":
    sys.exit(main())
