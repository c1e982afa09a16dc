"""A/B of what answering findings with decisions costs ingest, in one process, under an attack.

The same attack traffic (failed logins from ``--ips`` addresses on ``--users`` accounts, so that
nearly every batch grows credential-stuffing and brute-force findings) goes through
``Processor.ingest`` (decode, engine with the default detectors, findings, responses) with the
shipped ``[responses]`` and with responses off, alternating, each run on a fresh ``memory://`` or
``sqlite://`` processor. Reported: CPU microseconds per event (thread time; best and median of the
runs) for each side, and the ratio. Decisions made are printed too, so a run that made none (and
measured nothing) shows.

    python benchmarks/ab_responses.py --rounds 5
    python benchmarks/ab_responses.py --store sqlite --rounds 3
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.processor.payloads import login_attributes, span, traces_request

from usermon.processor.responses import Responses, load_responses
from usermon.processor.service import Processor
from usermon.processor.settings import resolve
from usermon.processor.storage.base import DecisionStore


def traffic(events: int, batch: int, users: int, ips: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    t0 = time.time() - events / 1000
    bodies = []
    for start in range(0, events, batch):
        spans = []
        for i in range(start, min(start + batch, events)):
            user = f"user{rng.randrange(users)}@example.com"
            ip = f"198.51.{rng.randrange(ips) // 256}.{rng.randrange(ips) % 256}"
            spans.append(span(10_000 + i, login_attributes(user, ip=ip), t0 + i / 1000))
        bodies.append(traces_request(spans))
    return bodies


def run(bodies: list[bytes], responses: Responses, store: str) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        url = "memory://" if store == "memory" else f"sqlite:///{tmp}/usermon.db"
        settings = resolve({"store": url, "checkpoint_interval": "3600"}, env={})
        processor = Processor(settings, responses=responses)
        started = time.thread_time()
        for body in bodies:
            processor.ingest("traces", body, json_format=False)
        spent = time.thread_time() - started
        book = processor.store
        made = len(book.decisions(now=0.0, limit=10**9)) if isinstance(book, DecisionStore) else 0
        processor.close()
    return spent, made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--ips", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--store", choices=("memory", "sqlite"), default="memory")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.getLogger("usermon.processor").setLevel(logging.ERROR)  # one line per decision
    bodies = traffic(args.events, args.batch, args.users, args.ips, args.seed)
    sides = {"responses on": load_responses(environ={}), "responses off": Responses(enabled=False)}
    times: dict[str, list[float]] = {name: [] for name in sides}
    made: dict[str, int] = {}
    for _ in range(args.rounds):
        for name, responses in sides.items():
            spent, made[name] = run(bodies, responses, args.store)
            times[name].append(spent / args.events * 1e6)
    for name, values in times.items():
        print(
            f"{name:14} best {min(values):6.1f} us/event, median {statistics.median(values):6.1f}"
            f" us/event, decisions made {made[name]}"
        )
    on, off = times["responses on"], times["responses off"]
    print(
        f"ratio on/off: best {min(on) / min(off):.3f}, median "
        f"{statistics.median(on) / statistics.median(off):.3f}"
    )


if __name__ == "__main__":
    main()
