"""What a million-address credential-stuffing campaign costs the State: keys, bytes, CPU, findings.

The engine (aggregation and every default detector) on an in-process ``MemoryState`` at its
default key cap takes days of ordinary life on one service (200 users logging in, a few mistyped
unknown accounts an hour), then ``--attempts`` failed logins on new unknown accounts
(``usermon.user.exists = false``) through a residential proxy pool, ``--rate`` attempts a second
of event time: each from a new address (or rotating through ``--addresses``), over ``--asns``
networks, with one tool's User-Agent (``--agents 1``) or that many rotating browser strings, and
with ``--takeovers`` one success in a thousand on an account with a history (a takeover to
find). Two scenarios set the defaults (each option overrides its own):

- ``tool`` (the default): three days of life (each user logs in once a day), a new /24 every 250
  addresses, each /24 in one of 40 ASNs, one tool's User-Agent, 20 attempts a second, batches of
  1000.
- ``pool``: two days of life (each user every 12 hours, in the browser the tool also sends),
  consecutive addresses, each attempt from the next of 2000 ASNs, six rotating browser strings,
  one takeover in a thousand (once every network has been seen failing), 100 attempts a second,
  batches of 10 000.

At each checkpoint (1000, 10 000, 100 000 attempts and the end, at the first batch boundary past
it) it prints the keys held and evicted, by family, with their serialized size (the ``marshal``
rows the SQLite store snapshots; a fair proxy of what a key weighs, not Python's object
overhead), the campaign's own keys (``det:svc:``) one by one, and the process's peak RSS; at the
end the CPU per attempt (checkpoint reports excluded) and the findings by kind (takeovers found).
One run per process, so the peak RSS is the run's own. Figures in docs/detection.md ("A campaign
through a million residential proxies", "What a campaign costs the State"):

    python benchmarks/bench_campaign_state.py --attempts 1000000
    python benchmarks/bench_campaign_state.py --scenario pool --attempts 1000000
    python benchmarks/bench_campaign_state.py --scenario pool --attempts 1000000 --addresses 1000
"""

from __future__ import annotations

import argparse
import marshal
import resource
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from usermon.processor.detectors import default_detectors
from usermon.processor.engine import Engine
from usermon.processor.model import Event, NetworkInfo
from usermon.processor.rules import Rules
from usermon.processor.storage.state import memory_rows
from usermon.processor.storage.state.memory import DEFAULT_MAX_KEYS, MemoryState

T0 = 1_767_571_200.0
DAY = 86400.0
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
TOOL = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120"
HOME = NetworkInfo(country="FR", asn=3215, as_org="Orange")
SCENARIOS: dict[str, dict[str, object]] = {
    "tool": {"asns": 40, "agents": 1, "takeovers": False, "rate": 20.0, "batch": 1000},
    "pool": {"asns": 2000, "agents": 6, "takeovers": True, "rate": 100.0, "batch": 10_000},
}
FAMILIES = (
    ("det:svc:", "campaigns and service baselines"),
    ("det:ip:", "per-address detector counts"),
    ("det:net:", "per-/24 detector counts"),
    ("det:u:", "per-account detector counts"),
    ("det:p:", "account+address pairs"),
    ("det:risk:", "risk profiles and population"),
    ("det:ato:", "takeover marks"),
    ("det:", "other detector keys"),
    ("ip:", "address aggregates"),
    ("u:", "user aggregates"),
    ("f:", "open finding episodes"),
    ("", "other"),
)


def chrome(n: int) -> str:
    return (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/13{n}.0.0.0 Safari/537.36"
    )


def agents(count: int) -> list[str]:
    return [TOOL] if count == 1 else [chrome(n) for n in range(count)]


def tool_life() -> Iterator[Event]:
    """Three days: a few mistyped accounts an hour, every user once a day from their own address."""
    for hour in range(72):
        t = T0 + hour * 3600
        for i in range(3):
            yield Event(
                kind="login",
                time=t + i * 600,
                success=False,
                user_hash=f"typo{hour}-{i}",
                client_ip=f"198.51.{hour % 200}.{i + 1}",
                user_agent=BROWSER,
                exists=False,
                service="shop",
                network=HOME,
            )
        if hour % 24 == 9:
            for u in range(200):
                yield Event(
                    kind="login",
                    time=t + 60 + u,
                    success=True,
                    user_hash=f"user{u}",
                    client_ip=f"198.18.{u // 250}.{u % 250 + 1}",
                    user_agent=BROWSER,
                    exists=True,
                    service="shop",
                    network=HOME,
                )


def pool_life() -> list[Event]:
    """Two days: every user every 12 hours in the browser the tool also sends, typos hourly."""
    events = []
    for hour in range(48):
        t = T0 + hour * 3600
        for u in range(200):
            if (u + hour) % 12 == 0:
                events.append(
                    Event(
                        kind="login",
                        time=t + u,
                        success=True,
                        user_hash=f"user{u}",
                        client_ip=f"192.0.2.{u}",
                        user_agent=chrome(0),
                        service="shop",
                        network=HOME,
                    )
                )
        for i in range(3):
            events.append(
                Event(
                    kind="login",
                    time=t + 600 * i,
                    success=False,
                    user_hash=f"typo{hour}-{i}",
                    client_ip=f"198.51.100.{i}",
                    user_agent=chrome(1),
                    exists=False,
                    service="shop",
                    network=HOME,
                )
            )
    events.sort(key=lambda e: e.time)
    return events


def tool_campaign(args: argparse.Namespace) -> Iterator[Event]:
    """A new /24 every 250 addresses, each /24 in one ASN of the pool."""
    start = T0 + 3 * DAY
    networks = [
        NetworkInfo(country="US", asn=64_600 + k, as_org=f"Residential {k}")
        for k in range(args.asns)
    ]
    strings = agents(args.agents)
    for i in range(args.attempts):
        a = i % args.addresses if args.addresses else i
        block = a // 250
        # Right once in a thousand, once every network of the pool has been seen failing.
        right = args.takeovers and i % 1000 == 500 and i > 250 * args.asns
        yield Event(
            kind="login",
            time=start + i / args.rate,
            success=right,
            user_hash=f"user{i // 1000 % 200}" if right else f"combo{i:x}",
            client_ip=f"{10 + (block >> 16) % 100}.{block >> 8 & 255}.{block & 255}.{a % 250 + 1}",
            user_agent=strings[i % len(strings)],
            exists=None if right else False,
            service="shop",
            network=networks[block % args.asns],
        )


def pool_campaign(args: argparse.Namespace) -> Iterator[Event]:
    """Consecutive addresses, each attempt from the next ASN of the pool."""
    start = T0 + 2 * DAY
    pool = [NetworkInfo(country="US", asn=64_000 + n, as_org=f"ISP {n}") for n in range(args.asns)]
    strings = agents(args.agents)
    for i in range(args.attempts):
        a = i % args.addresses if args.addresses else i
        # Right once in a thousand, once the pool's networks have all been seen failing.
        right = args.takeovers and i % 1000 == 500 and i > 2 * args.asns
        yield Event(
            kind="login",
            time=start + i / args.rate,
            success=right,
            user_hash=f"user{i // 1000 % 200}" if right else f"combo{i}",
            client_ip=f"{10 + (a >> 24) % 100}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}",
            user_agent=strings[i % len(strings)],
            exists=None if right else False,
            service="shop",
            # A success from a network the pool keeps failing from: with 2000 ASNs,
            # pool[i % asns] would be one that only ever sees the successes.
            network=pool[(i + right) % args.asns],
            trace_id=f"{i:032x}",
        )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def report(state: MemoryState, done: int, seconds: float) -> None:
    held: Counter[str] = Counter()
    weight: Counter[str] = Counter()
    campaign_keys = []
    for key, entry in state._entries.items():  # a benchmark looks inside
        size = len(marshal.dumps(memory_rows.row(key, entry)))
        family = next(prefix for prefix, _ in FAMILIES if key.startswith(prefix))
        held[family] += 1
        weight[family] += size
        if key.startswith("det:svc:"):
            campaign_keys.append((key, type(entry).__name__, size))
    usage = state.usage()
    print(
        f"\n== {done:,} campaign attempts ({seconds:.0f} s): {usage['keys']:,} keys held "
        f"(cap {usage['max_keys']:,}), {usage['evicted']:,} evicted, "
        f"{sum(weight.values()) / 1e6:.1f} MB serialized, peak RSS {peak_rss_mb():.0f} MB"
    )
    for prefix, name in FAMILIES:
        if held[prefix]:
            print(
                f"  {prefix or '(other)':<10} {name:<34} {held[prefix]:>8,} keys "
                f"{weight[prefix] / 1e6:>8.2f} MB"
            )
    per_asn = [c for c in campaign_keys if ":uf:asn:" in c[0]]
    print(f"  the campaign's own keys (service 'shop'): {len(campaign_keys)}")
    for key, kind, size in sorted(campaign_keys):
        if ":uf:asn:" not in key:
            print(f"    {key:<42} {kind:<10} {size:>7,} bytes")
    if per_asn:  # one counter per network: a pool of 2000 is one line, not 2000
        sizes = [size for _, _, size in per_asn]
        print(
            f"    {'det:svc:shop:uf:asn:<asn>':<42} {per_asn[0][1]:<10} {sum(sizes):>7,} bytes "
            f"({len(per_asn):,} keys, {min(sizes)}-{max(sizes)} bytes each)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="tool")
    parser.add_argument("--attempts", type=int, default=1_000_000)
    parser.add_argument("--addresses", type=int, default=0, help="0: a new address per attempt")
    parser.add_argument("--asns", type=int, help="networks the pool spans (tool 40, pool 2000)")
    parser.add_argument("--agents", type=int, help="1: one tool's User-Agent; more: rotating")
    parser.add_argument(
        "--takeovers",
        action=argparse.BooleanOptionalAction,
        help="one success in a thousand on a known account (pool: on)",
    )
    parser.add_argument("--rate", type=float, help="attempts per second (tool 20, pool 100)")
    parser.add_argument("--batch", type=int, help="events per engine call (tool 1000, pool 10000)")
    parser.add_argument("--max-keys", type=int, default=DEFAULT_MAX_KEYS)
    args = parser.parse_args()
    for name, value in SCENARIOS[args.scenario].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    print(
        f"scenario {args.scenario}: {args.attempts:,} attempts, "
        f"{args.addresses or args.attempts:,} addresses, {args.asns} ASNs, {args.agents} "
        f"User-Agent(s), takeovers {'on' if args.takeovers else 'off'}, {args.rate:g}/s, "
        f"batches of {args.batch:,}, cap {args.max_keys:,} keys; python {sys.version.split()[0]}"
    )
    state = MemoryState(max_keys=args.max_keys)
    engine = Engine(state, default_detectors(Rules()))
    life = engine.process(list(tool_life() if args.scenario == "tool" else pool_life()))
    before = Counter({f.id: f.kind for f in life.findings}.values())
    print(
        f"after ordinary life: RSS {rss_mb():.1f} MB, {len(state):,} keys, "
        f"findings by kind {dict(sorted(before.items())) or 'none'}"
    )
    events = tool_campaign(args) if args.scenario == "tool" else pool_campaign(args)
    checkpoints = sorted({c for c in (1_000, 10_000, 100_000) if c < args.attempts})
    started = time.monotonic()
    reporting = 0.0
    cpu = time.process_time()
    batch: list[Event] = []
    kinds: Counter[str] = Counter()
    findings: dict[str, str] = {}
    service_deltas = 0
    for done, event in enumerate(events, 1):
        batch.append(event)
        if len(batch) < args.batch and done < args.attempts:
            continue
        outcome = engine.process(batch)
        batch = []
        for f in outcome.findings:
            findings[f.id] = f.kind
            service_deltas += f.subject.type == "service"
        if done == args.attempts or (checkpoints and done >= checkpoints[0]):
            while checkpoints and done >= checkpoints[0]:
                checkpoints.pop(0)
            paused = time.process_time()
            report(state, done, time.monotonic() - started)
            reporting += time.process_time() - paused
    cpu = time.process_time() - cpu - reporting
    kinds.update(findings.values())
    print(
        f"\nCPU per attempt (checkpoint reports excluded): {cpu / args.attempts * 1e6:.1f} µs; "
        f"service finding deltas: {service_deltas}"
    )
    print(
        f"campaign findings by kind: {dict(sorted(kinds.items())) or 'none'}; "
        f"takeovers found: {kinds['account_takeover']}"
    )


if __name__ == "__main__":
    main()
