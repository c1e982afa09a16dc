"""What keeping each event's findings with its claim costs a replica on Redis: the engine as the
processor service runs it on a shared state (each event claimed alone), on bench_scale.py's
traffic, with ``keep_findings`` off and on, alternated in one run on fresh key prefixes.

    scripts/services start && eval "$(scripts/services env)"
    python benchmarks/bench_keep.py                  # 1500 events, batches of 100, 3 rounds

Prints, per run, the State calls per event (each one Redis round trip), the events per
CPU-second of this process, and of this process and the Redis server together (``INFO cpu``:
the whole server, so other clients of a shared server add noise), and the ratios on/off. Needs
the Redis scripts/services starts (or --redis-url). Results: docs/performance.md, "Scale-out".
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from typing import Any, cast

import redis

from usermon.processor.detectors import default_detectors
from usermon.processor.engine import Engine, Outcome
from usermon.processor.findings import kept_key
from usermon.processor.storage.state.base import State
from usermon.processor.storage.state.redis import RedisState


def _redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class Counted:
    """A state that counts the calls made to it (each one round trip on Redis)."""

    def __init__(self, state: RedisState) -> None:
        self.state, self.calls = state, 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.state, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return method(*args, **kwargs)

        return call


def run(redis_url: str, events: int, batch: int, keep: bool) -> tuple[float, float, float]:
    """State calls per event, events per CPU-second of this process, and of this process and
    Redis, for one pass over the traffic."""
    state = RedisState.from_url(redis_url, prefix=f"usermon_bench_{uuid.uuid4().hex[:8]}:")
    import bench_scale  # beside this file: run as a script, its folder is on the path

    counted = Counted(state)
    engine = Engine(
        cast("State", counted), default_detectors(), claim_ahead=False, keep_findings=keep
    )
    stream = bench_scale.traffic(events)
    batches = [stream[i : i + batch] for i in range(0, len(stream), batch)]
    server = _redis_cpu(state.client)
    mine = time.process_time()
    for position, events_of_batch in enumerate(batches, start=1):
        out = engine.process(events_of_batch, outcome=Outcome(batch=position))
        if keep and out.findings:
            counted.drop(kept_key(position))  # what the service does once the batch is recorded
    mine = time.process_time() - mine
    both = mine + _redis_cpu(state.client) - server
    state.clear()
    state.client.close()
    n = len(stream)
    return counted.calls / n, n / mine, n / both


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default=os.environ.get("USERMON_TEST_REDIS_URL"))
    parser.add_argument("--events", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not args.redis_url:
        parser.error("--redis-url (or USERMON_TEST_REDIS_URL) is needed")
    for k in range(args.rounds):
        off = run(args.redis_url, args.events, args.batch, keep=False)
        on = run(args.redis_url, args.events, args.batch, keep=True)
        print(
            f"round {k + 1}: State calls/event off {off[0]:.2f} on {on[0]:.2f};"
            f" events/CPU-s (replica) off {off[1]:.0f} on {on[1]:.0f} ({on[1] / off[1]:.2f});"
            f" (replica + Redis) off {off[2]:.0f} on {on[2]:.0f} ({on[2] / off[2]:.2f})"
        )


if __name__ == "__main__":
    main()
