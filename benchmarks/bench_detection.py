"""Detection quality: precision and recall per finding kind, and the share of benign users flagged.

Generates seeded synthetic traffic (``usermon.processor.simulate``: a benign population with
realistic noise plus labelled campaigns of every kind), runs it through the engine with the default
rules, and scores the findings against the ground truth. Targets (issue 5): precision and recall
of at least 0.95 for every kind, at most 0.1 % of benign users flagged.

    python benchmarks/bench_detection.py                 # in-process, seed 1, 5000 users, 14 days
    python benchmarks/bench_detection.py --seed 7 --campaigns 40
    python benchmarks/bench_detection.py --otlp          # through a real `usermon serve` over OTLP
    python benchmarks/bench_detection.py --explain       # list every false positive and miss
    python benchmarks/bench_detection.py --classes 3 --seeds 1 2 3   # + the distributed classes

``--classes N`` adds N campaigns of every distributed attack class of issue 15 (residential-proxy
stuffing, a combo list right at its first attempt, a signup farm, a brute force rotating
addresses, low-and-slow spraying from one provider) and the benign look-alikes (a password-reset
day, a university NAT, a browser update, a marketing e-mail, travellers), and prints per class:
recall, precision, findings per campaign, takeovers reported, benign users flagged.

``--otlp`` starts ``usermon serve`` on a free loopback port with an in-memory store and the
generated world's intelligence files (Tor list, IP ranges, and GeoIP/ASN databases written with
``mmdb-writer`` from the test extra), posts the traffic as OTLP/HTTP protobuf, then reads
``GET /api/findings``. The exit status is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The processor helpers are shared with the tests (tests/support/servers.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.servers import start_processor

from usermon.processor.detectors import default_detectors
from usermon.processor.engine import Engine
from usermon.processor.findings import merge_finding
from usermon.processor.model import Finding
from usermon.processor.simulate import Report, Scenario, Traffic, generate, score
from usermon.processor.storage.state.base import State
from usermon.processor.storage.state.memory import MemoryState


def run_in_process(
    traffic: Traffic, batch: int = 512, state: State | None = None, planned: bool | None = None
) -> list[Finding]:
    """The engine as the processor hosts it: batches in event-time order, deltas merged by id
    (what every store does). On ``state`` (a fresh MemoryState by default), planned or call by
    call as :class:`Engine` chooses unless ``planned`` says."""
    options: dict[str, Any] = {} if planned is None else {"planned": planned}
    engine = Engine(
        MemoryState() if state is None else state,
        default_detectors(),
        enricher=traffic.world,
        **options,  # an older tree's engine (ab_detection.py) has no such choice
    )
    findings: dict[str, Finding] = {}
    events = traffic.events
    for i in range(0, len(events), batch):
        for delta in engine.process(events[i : i + batch]).findings:
            findings[delta.id] = merge_finding(findings.get(delta.id), delta)
    return list(findings.values())


def run_over_otlp(traffic: Traffic, batch: int = 512) -> list[dict[str, Any]]:
    """The same traffic through a real processor: OTLP/HTTP in, ``/api/findings`` out."""
    import httpx

    from usermon.processor.simulate import batches

    with tempfile.TemporaryDirectory() as tmp:
        intel = traffic.world.write_intel(Path(tmp))
        args = ["--tor-exits", str(intel["tor_exits"]), "--ip-ranges", str(intel["ip_ranges"])]
        args += ["--log-level", "warning"]
        if "geoip_db" in intel:
            args += ["--geoip-db", str(intel["geoip_db"]), "--asn-db", str(intel["asn_db"])]
        server = start_processor("memory://", *args)
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                for request in batches(traffic.events, batch):
                    response = client.post(
                        "/v1/traces",
                        content=request.SerializeToString(),
                        headers={"Content-Type": "application/x-protobuf"},
                    )
                    response.raise_for_status()
                found = client.get("/api/findings", params={"limit": 10_000}).json()
                return list(found["findings"] if isinstance(found, dict) else found)
        finally:
            server.stop(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="*", help="several seeds, one after another")
    parser.add_argument(
        "--classes", type=int, default=0, help="campaigns per distributed attack class (issue 15)"
    )
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--campaigns", type=int, default=20, help="campaigns per finding kind")
    parser.add_argument("--otlp", action="store_true", help="through `usermon serve` over OTLP")
    parser.add_argument("--explain", action="store_true", help="list false positives and misses")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.add_argument(
        "--redis-url", help="run the engine on this Redis (a key prefix of its own, removed)"
    )
    parser.add_argument(
        "--call-by-call", action="store_true", help="on Redis, without planned steps"
    )
    args = parser.parse_args()
    status = 0
    for seed in args.seeds or [args.seed]:
        args.seed = seed
        status |= _run(args)
    return status


def _run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    traffic = generate(
        Scenario(
            seed=args.seed,
            users=args.users,
            days=args.days,
            campaigns_per_kind=args.campaigns,
            campaign_classes=args.classes,
        )
    )
    generated = time.perf_counter()
    if args.otlp:
        findings: list[Any] = run_over_otlp(traffic)
    elif args.redis_url:
        from usermon.processor.storage.state.redis import RedisState

        state = RedisState.from_url(args.redis_url, prefix=f"usermon_bench_{os.getpid()}:")
        try:
            findings = run_in_process(traffic, state=state, planned=not args.call_by_call)
        finally:
            state.clear()
        rows = sorted(json.dumps(f.to_json(), sort_keys=True) for f in findings)
        digest = hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]
        print(f"{len(rows)} findings, digest {digest} (ab_detection.py's)", file=sys.stderr)
    else:
        findings = run_in_process(traffic)
    processed = time.perf_counter()
    report = score(traffic, findings)
    if args.json:
        print(
            json.dumps(
                {
                    k: {
                        "precision": s.precision,
                        "recall": s.recall,
                        "findings": s.findings,
                        "campaigns": s.campaigns,
                    }
                    for k, s in report.kinds.items()
                }
                | {"benign_flagged_share": report.benign_flagged_share},
                indent=2,
            )
        )
    else:
        print(
            f"seed {args.seed}: {len(traffic.events)} events, {len(traffic.campaigns)} campaigns, "
            f"{report.benign_users} benign users; generated in {generated - started:.1f} s, "
            f"{'OTLP processor' if args.otlp else 'engine'} {processed - generated:.1f} s "
            f"({len(traffic.events) / (processed - generated):,.0f} events/s)\n"
        )
        print(report.table())
        if report.classes:
            print()
            print(report.class_table())
    if args.explain:
        _explain(traffic, report)
    failures = report.failures()
    for line in failures:
        print(f"MISSED TARGET  {line}")
    return 1 if failures else 0


def _explain(traffic: Traffic, report: Report) -> None:
    for kind, found in report.unexpected.items():
        for f in found[:10]:
            print(f"false positive {kind}: {f['subject']} {f['summary']}")
        if len(found) > 10:
            print(f"  ... and {len(found) - 10} more {kind}")
    for s in report.kinds.values():
        for cid in s.missed_campaigns:
            c = traffic.campaigns[cid]
            print(f"missed {cid}: {c.description}, ips {sorted(c.attacker_ips)[:3]}")


if __name__ == "__main__":
    sys.exit(main())
