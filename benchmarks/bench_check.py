"""What ``usermon.check`` costs a login, next to a bare dict lookup and django-axes's lockout check.

One process. usermon syncs a realistic decision set from a real local HTTP server speaking the
stream format (docs/protection.md) through its normal background sync: ``--ips`` single-address
decisions, networks at the prefix lengths a processor would use (IPv4 /8 /16 /24, IPv6 /32 /48
/64; ``--networks`` in all), ``--users`` user and user+IP decisions, a few campaign fingerprints
and a small allowlist. Then, in interleaved batches of ``--calls`` calls (machine noise hits every
variant alike), timed in CPU time of this thread (``time.thread_time_ns``), median over rounds:

- ``dict lookup``: ``table.get(ip)`` on a dict of the same addresses: the floor of any answer;
- ``check, warm user (blocked)``: ``check(ip=, identifiers=, user_agent=)`` for a user with a
  decision, identifiers seen before (their ``user.hash`` memoized): a dict hit, early return;
- ``check, ip under a network``: ``check(ip=)`` for an address inside a /16 decision;
- ``check, miss (warm)``: every argument given, nothing applies (every legitimate login): all
  lookups done, the address and user already seen;
- ``check, miss, new ip and user``: the same with an address and a user never seen (an attack
  rotating both): the address parsed and the identity normalized and hashed in the call;
- ``axes is_locked (database)``: ``AxesProxyHandler.is_locked(request, credentials)`` with axes's
  default database handler (SQLite in memory, empty attempt table) and default settings, a fresh
  ``HttpRequest`` per call as each login has (building it is not timed);
- ``axes is_locked (cache)``: the same with ``AxesCacheHandler`` on Django's local-memory cache.

Each call is made through a zero-argument callable in the same loop, so the loop's own cost is in
every row alike. Ratios: each row divided by the dict lookup, and each axes handler's check divided
by the row (how many times cheaper the row is).

Run:  python benchmarks/bench_check.py [--rounds 30] [--calls 2000]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import usermon
from usermon.decisions import user_agent_hash
from usermon.pseudonymize import identity_hash

AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari"


def _when(seconds: float) -> str:
    moment = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _decision(n: int, scope: str, value: str, action: str = "block") -> dict[str, str]:
    return {
        "id": f"{scope}-{n}",
        "action": action,
        "scope": scope,
        "value": value,
        "until": _when(86400),
        "reason": "benchmark",
        "origin": "bench_check",
        "created": _when(0),
    }


def _user_hash(email: str) -> str:
    return identity_hash((("email", email),), None)


def _stream_body(ips: int, networks: int, users: int) -> bytes:
    items = [_decision(n, "ip", f"203.0.{n >> 8 & 255}.{n & 255}") for n in range(ips)]
    shapes = [
        lambda n: f"{n % 200 + 20}.0.0.0/8",
        lambda n: f"100.{n & 255}.0.0/16",
        lambda n: f"198.{n >> 8 & 255}.{n & 255}.0/24",
        lambda n: f"2001:db8:{n & 0xFFFF:x}::/48",
        lambda n: f"2001:{n & 0xFFFF:x}::/32",
        lambda n: f"2001:db9:{n & 0xFFFF:x}:1::/64",
    ]
    seen: set[str] = set()
    n = 0
    while len(seen) < networks:
        value = shapes[n % len(shapes)](n // len(shapes))
        if value not in seen:
            seen.add(value)
            items.append(_decision(len(seen), "network", value, "challenge"))
        n += 1
    for n in range(users):
        items.append(_decision(n, "user", _user_hash(f"victim{n}@example.com")))
        items.append(
            _decision(n, "user_ip", f"{_user_hash(f'pair{n}@example.com')}|192.0.2.{n % 250}")
        )
    for n in range(5):
        ua = hashlib.sha256(f"CampaignBot/{n}".encode()).hexdigest()
        items.append(_decision(n, "service_campaign", f"asn=64500;ua={ua};net=192.0.{n}.0/24"))
    items.append(_decision(99, "service_campaign", f"ua={user_agent_hash('EvilBot/1.0')}"))
    answer = {
        "cursor": "1",
        "full": True,
        "new": items,
        "deleted": [],
        "allow": {
            "networks": ["10.0.0.0/8", "2001:db8:ffff::/48"],
            "users": [_user_hash("ops@example.com")],
        },
    }
    return json.dumps(answer).encode()


def _serve(body: bytes) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _configure_django() -> None:
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="benchmark-only",  # noqa: S106 - never serves real traffic
        ALLOWED_HOSTS=["testserver"],
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "axes"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        LOGGING_CONFIG=None,
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def _axes_variant(handler_path: str, calls: int) -> Callable[[], Callable[[], object]]:
    """A factory of one batch: fresh requests built untimed, then a callable timing them."""
    from axes.handlers.proxy import AxesProxyHandler
    from django.test import RequestFactory
    from django.utils.module_loading import import_string

    handler = import_string(handler_path)()
    factory = RequestFactory()
    credentials = {"username": "ada"}

    def prepare() -> Callable[[], object]:
        requests = [
            factory.post("/login/", REMOTE_ADDR=f"10.{n >> 8 & 255}.{n & 255}.7")
            for n in range(calls)
        ]
        iterator = iter(requests)
        AxesProxyHandler.implementation = handler

        def call() -> object:
            return AxesProxyHandler.is_locked(next(iterator), credentials)

        return call

    return prepare


def _check_variants(calls: int) -> dict[str, Callable[[], Callable[[], object]]]:
    check = usermon.check
    table = {f"203.0.{n >> 8 & 255}.{n & 255}": n for n in range(1000)}
    blocked_user = {"email": "victim3@example.com"}
    legit_user = {"email": "ada@example.com"}
    fresh = iter(range(10**9))

    def fixed(fn: Callable[[], object]) -> Callable[[], Callable[[], object]]:
        return lambda: fn

    def rotating() -> Callable[[], object]:
        # New addresses and users, built untimed; each is seen once.
        args = []
        for _ in range(calls):
            n = next(fresh)
            args.append(
                (
                    f"172.{n >> 16 & 15 | 16}.{n >> 8 & 255}.{n & 255}",
                    {"email": f"u{n}@example.org"},
                )
            )
        iterator = iter(args)

        def call() -> object:
            ip, identifiers = next(iterator)
            return check(ip=ip, identifiers=identifiers, user_agent=AGENT)

        return call

    return {
        "dict lookup": fixed(lambda: table.get("203.0.1.7")),
        "check, warm user (blocked)": fixed(
            lambda: check(ip="192.0.2.77", identifiers=blocked_user, user_agent=AGENT)
        ),
        "check, ip under a network": fixed(lambda: check(ip="100.7.12.34")),
        "check, miss (warm)": fixed(
            lambda: check(ip="192.0.2.77", identifiers=legit_user, user_agent=AGENT)
        ),
        "check, miss, new ip and user": rotating,
    }


def _time(call: Callable[[], object], calls: int) -> float:
    start = time.thread_time_ns()
    for _ in range(calls):
        call()
    return (time.thread_time_ns() - start) / calls / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=2000, help="calls per batch")
    parser.add_argument("--ips", type=int, default=1000)
    parser.add_argument("--networks", type=int, default=600)
    parser.add_argument("--users", type=int, default=1000)
    args = parser.parse_args()

    server = _serve(_stream_body(args.ips, args.networks, args.users))
    host, port = server.server_address[:2]
    usermon.configure(protect=True, decisions_url=f"http://{host}:{port}", decisions_interval=60)
    deadline = time.monotonic() + 30
    while usermon.protection_status().syncs < 1:
        if time.monotonic() > deadline:
            raise SystemExit(f"no sync: {usermon.protection_status()}")
        time.sleep(0.01)
    status = usermon.protection_status()
    # The answers the benchmark relies on, so a broken setup cannot pass for a fast one.
    assert usermon.check(identifiers={"email": "victim3@example.com"}) is not None
    assert usermon.check(ip="100.7.12.34") is not None
    assert (
        usermon.check(ip="192.0.2.77", identifiers={"email": "ada@example.com"}, user_agent=AGENT)
        is None
    )

    _configure_django()
    variants = _check_variants(args.calls)
    variants["axes is_locked (database)"] = _axes_variant(
        "axes.handlers.database.AxesDatabaseHandler", args.calls
    )
    variants["axes is_locked (cache)"] = _axes_variant(
        "axes.handlers.cache.AxesCacheHandler", args.calls
    )
    results: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for name in names:  # warm-up
        _time(variants[name](), min(args.calls, 200))
    gc.disable()  # a collection landing in one batch is noise, not the cost of a call
    try:
        for round_number in range(args.rounds):
            random.shuffle(names)
            for name in names:
                call = variants[name]()
                results[name].append(_time(call, args.calls))
            print(f"round {round_number + 1}/{args.rounds}", file=sys.stderr)
    finally:
        gc.enable()
    usermon.protection.stop()
    server.shutdown()

    print(
        f"usermon.check vs a dict lookup vs django-axes is_locked: {args.rounds} rounds of "
        f"{args.calls} calls, CPU µs per call (median over rounds); {status.decisions} decisions, "
        f"{status.allowlist_entries} allowlist entries"
    )
    base = statistics.median(results["dict lookup"])
    axes_db = statistics.median(results["axes is_locked (database)"])
    axes_cache = statistics.median(results["axes is_locked (cache)"])
    print(
        f"{'variant':<32} {'µs/call':>9} {'÷ dict':>8} {'axes db ÷ it':>13} {'axes cache ÷ it':>16}"
    )
    for name in variants:
        value = statistics.median(results[name])
        print(
            f"{name:<32} {value:>9.3f} {value / base:>7.1f}x {axes_db / value:>12.1f}x "
            f"{axes_cache / value:>15.1f}x"
        )


if __name__ == "__main__":
    main()
