"""What a million-address campaign costs the State: keys and bytes, within its caps.

The engine (aggregation and every default detector) on an in-process ``MemoryState`` at its
default key cap takes three days of ordinary life on one service (200 users logging in, a few
mistyped unknown accounts an hour), then credential stuffing through a residential proxy pool:
``--attempts`` attempts, each from a new address (a new /24 every 250, spread over 40 ASNs), on
a new unknown account, with one tool's User-Agent, ``--rate`` attempts a second of event time. At
each checkpoint it prints the keys held and evicted, by family, with their serialized size (the
``marshal`` rows the SQLite store snapshots; a fair proxy of what a key weighs, not Python's
object overhead), the campaign's own keys one by one, and the process's peak RSS. Run by hand
(figures in docs/detection.md, "What a campaign costs the State"):

    python benchmarks/bench_campaign_state.py --attempts 1000000
"""

from __future__ import annotations

import argparse
import marshal
import resource
import sys
import time
from collections import Counter
from collections.abc import Iterator

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


def ordinary_life() -> Iterator[Event]:
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


def campaign(attempts: int, rate: float) -> Iterator[Event]:
    start = T0 + 3 * DAY
    networks = [
        NetworkInfo(country="US", asn=64_600 + k, as_org=f"Residential {k}") for k in range(40)
    ]
    for i in range(attempts):
        block = i // 250
        yield Event(
            kind="login",
            time=start + i / rate,
            success=False,
            user_hash=f"combo{i:x}",
            client_ip=f"{10 + (block >> 16) % 100}.{block >> 8 & 255}.{block & 255}.{i % 250 + 1}",
            user_agent=TOOL,
            exists=False,
            service="shop",
            network=networks[block % 40],
        )


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
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\n== {done:,} campaign attempts ({seconds:.0f} s): {usage['keys']:,} keys held "
        f"(cap {usage['max_keys']:,}), {usage['evicted']:,} evicted, "
        f"{sum(weight.values()) / 1e6:.1f} MB serialized, peak RSS {rss:.0f} MB"
    )
    for prefix, name in FAMILIES:
        if held[prefix]:
            print(
                f"  {prefix or '(other)':<10} {name:<34} {held[prefix]:>8,} keys "
                f"{weight[prefix] / 1e6:>8.2f} MB"
            )
    print("  the campaign's own keys (service 'shop'):")
    for key, kind, size in sorted(campaign_keys):
        print(f"    {key:<42} {kind:<10} {size:>7,} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attempts", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=20.0, help="attempts per second")
    parser.add_argument("--max-keys", type=int, default=DEFAULT_MAX_KEYS)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    state = MemoryState(max_keys=args.max_keys)
    engine = Engine(state, default_detectors(Rules()))
    engine.process(list(ordinary_life()))
    checkpoints = {c for c in (1_000, 10_000, 100_000, args.attempts) if c <= args.attempts}
    started = time.monotonic()
    batch: list[Event] = []
    findings = 0
    for done, event in enumerate(campaign(args.attempts, args.rate), 1):
        batch.append(event)
        if len(batch) >= args.batch or done in checkpoints:
            outcome = engine.process(batch)
            findings += sum(1 for f in outcome.findings if f.subject.type == "service")
            batch = []
        if done in checkpoints:
            report(state, done, time.monotonic() - started)
    print(f"\nservice finding deltas: {findings}; python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
