"""Peak memory of ``usermon serve`` under concurrent gzip bodies that inflate to many messages.

Starts the processor (memory store) in a subprocess, sends ``--senders`` concurrent requests whose
16 KB gzip body inflates to 16 MiB of empty ``ResourceSpans`` (about 8 million messages for the
protobuf parser), and reports their status codes and the process's peak RSS (``VmHWM``, Linux).
Extra arguments go to ``usermon serve``; for example, the default budget against a larger one:

    python benchmarks/bench_inflight_memory.py --senders 8
    python benchmarks/bench_inflight_memory.py --senders 8 -- --max-inflight-bytes 67108864
"""

from __future__ import annotations

import argparse
import gzip
import sys
import threading
import time
from pathlib import Path

import httpx

# The shared helper that starts a processor lives with the tests (tests/support/servers.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.servers import start_processor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("serve_args", nargs="*", help="arguments for usermon serve (after --)")
    args = parser.parse_args()
    running = start_processor("memory://", "--log-level", "warning", *args.serve_args)
    process, url = running.process, running.url
    try:
        inflated = b"\x0a\x00" * (16 * 1024 * 1024 // 2 - 8)  # empty ResourceSpans, field 1
        body = gzip.compress(inflated, 9)
        print(f"gzip body {len(body)} bytes, inflates to {len(inflated)}")
        codes: list[str] = []
        headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}

        def send() -> None:
            try:
                response = httpx.post(
                    url + "/v1/traces", content=body, headers=headers, timeout=300
                )
                codes.append(str(response.status_code))
            except httpx.HTTPError as exc:
                codes.append(type(exc).__name__)

        threads = [threading.Thread(target=send) for _ in range(args.senders)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with open(f"/proc/{process.pid}/status") as status:
            peak = next(line for line in status if line.startswith("VmHWM")).split()[1]
        print(
            f"statuses {sorted(codes)} in {time.monotonic() - started:.1f} s; "
            f"peak RSS {int(peak) // 1024} MB"
        )
    finally:
        running.stop()


if __name__ == "__main__":
    main()
