"""What redis-py costs a replica per pipelined script call: client CPU per ``EVALSHA`` in a
pipeline of 70 (about a segment of planned events), four ways, alternated:

* through a registered ``Script`` (what the Redis state does: redis-py then also sends a
  ``SCRIPT EXISTS`` before every pipeline),
* through ``Pipeline.execute_command("EVALSHA", ...)``,
* packed with ``hiredis.pack_command`` and sent at once, each reply read with
  ``Connection.read_response``,
* packed with ``Connection.pack_commands`` (the connection's packer: hiredis' when installed)
  and read the same way, what ``RedisState.apply_many`` does.

The script returns its one argument (``--size`` bytes, as a plan's JSON is one argument), so
Redis' own work is nearly nil and the figures are the client's.

    redis-server --port 6393 --save "" --appendonly no --daemonize yes
    python benchmarks/bench_redis_client.py --redis-url redis://127.0.0.1:6393/0

Results: docs/performance.md, "Scale-out".
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default=os.environ.get("USERMON_TEST_REDIS_URL"))
    parser.add_argument("--pipeline", type=int, default=70, help="commands per pipeline")
    parser.add_argument("--size", type=int, default=300, help="bytes of the argument")
    parser.add_argument("--runs", type=int, default=200, help="pipelines per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not args.redis_url:
        parser.error("give --redis-url (or set USERMON_TEST_REDIS_URL)")
    import hiredis
    import redis

    client = redis.Redis.from_url(args.redis_url, decode_responses=True)
    script = client.register_script("return ARGV[1]")
    client.script_load("return ARGV[1]")
    payload = "x" * args.size
    n = args.pipeline
    pool = client.connection_pool
    print(f"redis-py {redis.__version__}, hiredis {hiredis.__version__}")

    def registered() -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for _ in range(n):
            script(keys=[], args=[payload], client=pipe)
        return pipe.execute()

    def execute_command() -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for _ in range(n):
            pipe.execute_command("EVALSHA", script.sha, 0, payload)
        return pipe.execute()

    def packed() -> list[Any]:
        conn = pool.get_connection()
        try:
            command = ("EVALSHA", script.sha, 0, payload)
            conn.send_packed_command([b"".join(hiredis.pack_command(command) for _ in range(n))])
            return [conn.read_response() for _ in range(n)]
        finally:
            pool.release(conn)

    def pack_commands() -> list[Any]:
        conn = pool.get_connection()
        try:
            command = ("EVALSHA", script.sha, 0, payload)
            conn.send_packed_command(conn.pack_commands([command] * n))
            return [conn.read_response() for _ in range(n)]
        finally:
            pool.release(conn)

    ways: list[tuple[str, Callable[[], list[Any]]]] = [
        ("Script in a pipeline", registered),
        ("execute_command in a pipeline", execute_command),
        ("hiredis.pack_command + read_response", packed),
        ("Connection.pack_commands + read_response", pack_commands),
    ]
    for _ in range(args.rounds):
        for name, run in ways:
            assert run() == [payload] * n
            started = time.process_time()
            for _ in range(args.runs):
                run()
            per = (time.process_time() - started) / (args.runs * n) * 1e6
            print(f"  {name}: {per:.2f} us of client CPU per command")
    client.close()


if __name__ == "__main__":
    main()
