"""What automatic login tracking costs a Django login request, next to django-axes.

One process, one Django site, three variants served in interleaved batches so that machine
noise (this runs on shared CPUs) hits all three alike:

- ``baseline``: Django with OpenTelemetry tracing already on (SDK TracerProvider, batch span
  processor, opentelemetry-instrumentation-django), no usermon, no axes: the application usermon
  is meant to join;
- ``usermon``: the baseline plus usermon's DjangoInstrumentor with default settings
  (identification mode, span events), switched on with ``instrument()`` for its batches and off
  with ``uninstrument()`` after them;
- ``protected``: ``usermon`` plus protection on (``usermon.configure(protect=True, ...)``),
  synced before its batches from a real local HTTP server serving bench_check.py's realistic
  decision set (``--ips``/``--networks``/``--users``), none of which applies to these logins: the
  cost every legitimate login pays for enforcement. Also served by it, as a third kind of login,
  ``refused``: the same POST from an address under a ``block`` decision, refused with a 429 before
  any backend runs (compared with the baseline's failed login);
- ``axes``: the baseline plus django-axes in its documented default configuration (its
  middleware, ``AxesStandaloneBackend`` first, every ``AXES_*`` setting at its default, database
  handler). Django can be configured only once per process, so ``axes`` is always in
  ``INSTALLED_APPS``; outside its batches its middleware and backend are removed with
  ``override_settings`` and ``AXES_ENABLED=False`` turns its signal handlers into no-ops.

Each batch serves successful or failed logins: a POST to a hand-written view calling
``authenticate()`` and ``login()``, through Django's test client, with a new client IP per
request (so axes's default per-IP lockout never turns an attempt into a cheap refusal). The
figure is CPU time per request (``time.process_time``, all threads, so the span exporter thread
counts), median per batch; the change against the baseline is the median over rounds of each
round's batch against that same round's baseline batch, with the middle half of those rounds.
Passwords use the MD5 hasher on purpose: Django's default PBKDF2 costs hundreds of
milliseconds and would hide any overhead, so this is the strict case. Spans go to an exporter
that drops them.

The sync interval of the ``protected`` variant is an hour, so that no background sync lands
inside a timed request: what is measured is enforcement, the sync is measured by bench_check.py.

Run:  python benchmarks/bench_django.py [--rounds 30] [--requests 60]
"""

from __future__ import annotations

import argparse
import itertools
import logging
import random
import statistics
import sys
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

VARIANTS = ("baseline", "usermon", "protected", "axes")
KINDS = ("success", "failure")
REFUSED = ("protected", "refused")  # a login under a block: served by the protected variant only
PASSWORD = "bench-password"  # noqa: S105 - a throw-away benchmark account
URLCONF = "bench_django_urls"

BASE_MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
BASE_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
# django-axes's documented installation: its middleware last, its backend first.
AXES_MIDDLEWARE = [*BASE_MIDDLEWARE, "axes.middleware.AxesMiddleware"]
AXES_BACKENDS = ["axes.backends.AxesStandaloneBackend", *BASE_BACKENDS]


def _configure() -> None:
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="benchmark-only",  # noqa: S106 - never serves real traffic
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=URLCONF,
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "axes",
        ],
        MIDDLEWARE=BASE_MIDDLEWARE,
        AUTHENTICATION_BACKENDS=BASE_BACKENDS,
        AXES_ENABLED=False,
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        LOGGING_CONFIG=None,
    )
    django.setup()


def _login_view(request: Any) -> Any:
    from django.contrib.auth import authenticate, login
    from django.http import HttpResponse

    user = authenticate(
        request, username=request.POST.get("username"), password=request.POST.get("password")
    )
    if user is None:
        return HttpResponse("invalid credentials", status=401)
    login(request, user)
    return HttpResponse("welcome")


def _install_urlconf() -> None:
    # A module of its own: this file may run as __main__ under a profiler, where __name__ lies.
    from django.urls import path
    from django.views.decorators.csrf import csrf_exempt

    module = types.ModuleType(URLCONF)
    module.urlpatterns = [path("login/", csrf_exempt(_login_view))]  # type: ignore[attr-defined]
    sys.modules[URLCONF] = module


def _setup_tracing() -> Any:
    from opentelemetry import trace
    from opentelemetry.instrumentation.django import DjangoInstrumentor as OtelDjango
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    trace.set_tracer_provider(provider)
    OtelDjango().instrument()
    return provider


_decisions_url = ""
_blocked_addresses = 1  # 203.0.0.0 up to this many: each under an ip block of the decision set


def _serve_decisions(ips: int, networks: int, users: int) -> None:
    global _decisions_url, _blocked_addresses
    if ips < 1:
        raise SystemExit("--ips must be at least 1: refused logins come from a blocked address")
    _blocked_addresses = min(ips, 256)
    from bench_check import _serve, _stream_body  # the same realistic decision set

    server = _serve(_stream_body(ips, networks, users))
    host, port = server.server_address[:2]
    _decisions_url = f"http://{host!s}:{port}"


def _protect(on: bool) -> None:
    import usermon

    if not on:
        usermon.configure(protect=None, decisions_url=None, decisions_interval=None)
        return
    usermon.configure(protect=True, decisions_url=_decisions_url, decisions_interval=3600)
    deadline = time.monotonic() + 60
    while usermon.protection_status().syncs == 0:  # synced before anything is timed
        if time.monotonic() > deadline:
            raise SystemExit(f"no decisions synced: {usermon.protection_status()}")
        time.sleep(0.01)
    for address in ("11.0.0.1", "11.255.255.254"):  # the legitimate logins' addresses
        found = usermon.check(ip=address, identifiers={"username": "ada"})
        if found is not None:
            raise SystemExit(f"a decision applies to the legitimate logins: {found}")


@contextmanager
def _variant(name: str) -> Iterator[None]:
    from django.test import override_settings

    from usermon.instrumentation.django import DjangoInstrumentor

    if name == "baseline":
        yield
    elif name in ("usermon", "protected"):
        DjangoInstrumentor().instrument()
        _protect(name == "protected")
        try:
            yield
        finally:
            _protect(False)
            DjangoInstrumentor().uninstrument()
    else:
        with override_settings(
            AXES_ENABLED=True, MIDDLEWARE=AXES_MIDDLEWARE, AUTHENTICATION_BACKENDS=AXES_BACKENDS
        ):
            yield


_addresses = itertools.count(1)


def _batch(kind: str, requests: int) -> float:
    """Median CPU seconds of ``requests`` login requests of one kind."""
    from django.test import Client

    password = PASSWORD if kind == "success" else "wrong"
    expected = {"success": 200, "failure": 401, "refused": 429}[kind]
    timings = []
    for _ in range(requests):
        n = next(_addresses)
        # A new client per request: a fresh session, the middleware stack of the variant. The
        # addresses are under no decision, except for refused logins (each under an ip block).
        address = f"11.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        if kind == "refused":
            address = f"203.0.0.{n % _blocked_addresses}"
        client = Client(REMOTE_ADDR=address)
        start = time.process_time()
        response = client.post("/login/", {"username": "ada", "password": password})
        timings.append(time.process_time() - start)
        if response.status_code != expected:
            raise SystemExit(f"unexpected status {response.status_code} for a {kind} login")
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--requests", type=int, default=60, help="per batch")
    parser.add_argument("--ips", type=int, default=10_000, help="ip decisions (protected)")
    parser.add_argument("--networks", type=int, default=2_000, help="network decisions")
    parser.add_argument("--users", type=int, default=2_000, help="user and user_ip decisions")
    args = parser.parse_args()

    # Log records are still made (axes and Django log every failure), just not printed.
    logging.getLogger().addHandler(logging.NullHandler())
    _configure()
    _install_urlconf()
    provider = _setup_tracing()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    get_user_model().objects.create_user("ada", password=PASSWORD)
    _serve_decisions(args.ips, args.networks, args.users)

    plan = [(v, k) for v in VARIANTS for k in KINDS] + [REFUSED]
    for variant, kind in plan:  # warm-up: imports, caches, first queries of every path
        with _variant(variant):
            _batch(kind, 30)
    results: dict[tuple[str, str], list[float]] = {key: [] for key in plan}
    for round_number in range(args.rounds):
        random.shuffle(plan)  # no variant always runs first (or last) in a round
        for variant, kind in plan:
            with _variant(variant):
                results[variant, kind].append(_batch(kind, args.requests))
        print(f"round {round_number + 1}/{args.rounds} done", file=sys.stderr)
    direct = _receiver_cost(provider)
    enforcement = _enforcement_cost()
    provider.shutdown()

    print(
        f"Django login request, CPU time per request: {args.rounds} rounds of interleaved "
        f"batches of {args.requests}"
    )
    print(
        f"{'login':<9} {'variant':<9} {'µs/request':>11} {'vs baseline':>12} "
        f"{'middle half of rounds':>24}"
    )
    rows = [(kind, variant, kind) for kind in KINDS for variant in VARIANTS]
    rows.insert(rows.index(("failure", "axes", "failure")) + 1, ("failure", *REFUSED))
    for base_kind, variant, kind in rows:
        base = results["baseline", base_kind]
        value = statistics.median(results[variant, kind])
        # Each round's batch against the same round's baseline batch: neighbours in time,
        # so slow drifts of the machine's load cancel out.
        ratios = [(v / b - 1) * 100 for v, b in zip(results[variant, kind], base, strict=True)]
        q1, median, q3 = statistics.quantiles(ratios, n=4)
        label = kind if kind == base_kind else f"{kind}*"
        print(
            f"{label:<9} {variant:<9} {value * 1e6:>11.1f} {median:>+11.1f}% "
            f"{f'[{q1:+.1f}%, {q3:+.1f}%]':>24}"
        )
    print("* a login refused by a block decision (429), against the baseline's failed login")
    for kind in KINDS:
        # Protection on against off, both with the instrumentor: what enforcement itself adds.
        pairs = zip(results["protected", kind], results["usermon", kind], strict=True)
        ratios = [(on / off - 1) * 100 for on, off in pairs]
        q1, median, q3 = statistics.quantiles(ratios, n=4)
        print(
            f"protection on vs off, {kind} logins: {median:+.1f}% "
            f"(middle half of rounds [{q1:+.1f}%, {q3:+.1f}%])"
        )

    print(
        "usermon's own receivers, called directly on an open request span (CPU µs per call): "
        + ", ".join(f"{name} {value:.1f}" for name, value in direct.items())
    )
    print(
        "usermon's check inside authenticate(), called directly (CPU µs per call): "
        + ", ".join(f"{name} {value:.2f}" for name, value in enforcement.items())
    )


def _enforcement_cost(calls: int = 20000) -> dict[str, float]:
    """CPU time of the wrapper authenticate() calls before any backend, protection off and on,
    for a login no decision applies to (the wrapped generator itself is a no-op here)."""
    from django.test import RequestFactory

    from usermon.instrumentation import django as instrumentation

    def no_backends(*args: Any, **kwargs: Any) -> Iterator[Any]:
        return iter(())

    requests = [
        RequestFactory(REMOTE_ADDR=f"11.31.{n >> 8 & 255}.{n & 255}").post("/login/")
        for n in range(256)
    ]
    costs = {}
    for name, on in (("protection off", False), ("protection on", True)):
        _protect(on)
        spent = 0
        for n in range(calls):
            request = requests[n & 255]
            start = time.thread_time_ns()
            instrumentation._compatible_backends(
                no_backends, None, (request,), {"username": "ada", "password": PASSWORD}
            )
            spent += time.thread_time_ns() - start
        costs[name] = spent / calls / 1000
    _protect(False)
    return costs


def _receiver_cost(provider: Any, calls: int = 2000) -> dict[str, float]:
    """CPU time of the usermon receivers themselves: the part of the overhead free of noise."""
    from django.contrib.auth import get_user_model
    from django.test import RequestFactory

    from usermon.instrumentation import django as instrumentation

    tracer = provider.get_tracer("bench")
    user = get_user_model().objects.get(username="ada")
    costs = {}
    for name, call in (
        ("success", lambda r: instrumentation._on_logged_in(None, request=r, user=user)),
        (
            "failure",
            lambda r: instrumentation._on_login_failed(
                None, credentials={"username": "ada"}, request=r
            ),
        ),
    ):
        requests = [
            RequestFactory(REMOTE_ADDR=f"10.9.{n >> 8 & 255}.{n & 255}").post("/login/")
            for n in range(calls)
        ]
        spent = 0
        for request in requests:
            with tracer.start_as_current_span("POST login/"):
                start = time.thread_time_ns()
                call(request)
                spent += time.thread_time_ns() - start
        costs[name] = spent / calls / 1000
    return costs


if __name__ == "__main__":
    main()
