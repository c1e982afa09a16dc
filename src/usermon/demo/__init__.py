"""``usermon demo``: the whole pipeline on one machine in about fifteen seconds, nothing to set up.

This package owns the demo. It starts a usermon processor (``usermon serve``, a subprocess) on a
SQLite store in a temporary directory, on a free loopback port, with a Tor exit list, an
IP-ranges CSV and GeoIP / ASN databases it writes itself; starts an example Flask + Flask-Login shop
(:mod:`usermon.demo.shop`) instrumented with usermon and exporting OTLP/HTTP to that processor;
drives normal customers and a few attacks through the shop over real HTTP
(:mod:`usermon.demo.script`) behind a progress display; then prints the users at risk and the
attacking sources from the processor's API, the attempts the shop refused, and where to look next.
The shop runs with protection on: it syncs the processor's decisions every half second with an
application token, so an attacker who keeps going after its finding is refused. Everything binds
127.0.0.1; everything it started is stopped and its directory removed on exit (``--keep`` leaves the
processor up until Ctrl-C). Needs ``pip install 'usermon[demo]'``.

Exit status: 0 when every attack in the script was detected, 1 when one was not, 2 when the
processor or the shop could not start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    import httpx
    from rich.console import Console

    from usermon.demo.script import Script

__all__ = ["demo"]

SEVERITY_STYLE = {"low": "cyan", "medium": "yellow", "high": "red", "critical": "bold red"}
_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}


class DemoError(click.ClickException):
    exit_code = 2


class Tokens:
    """The demo processor's tokens, fresh for each run: the admin token (the demo's API calls,
    the dashboard's sign-in, the CLI) and the shop's application token (events, decisions)."""

    def __init__(self) -> None:
        self.admin = secrets.token_urlsafe(24)
        self.app = secrets.token_urlsafe(24)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_up(
    client: httpx.Client, path: str, process: subprocess.Popen[bytes] | None, timeout: float
) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise DemoError(f"the processor exited with status {process.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if client.get(path).status_code == 200:
                return
        time.sleep(0.1)
    raise DemoError(f"{client.base_url}{path} did not answer within {timeout:g} s")


@contextlib.contextmanager
def _processor(
    workdir: Path, intel: dict[str, Path], tokens: Tokens, console: Console
) -> Iterator[str]:
    """A ``usermon serve`` subprocess on SQLite with ``tokens``; yields its base URL."""
    import httpx

    port = _free_port()
    log = (workdir / "processor.log").open("wb")
    command = [
        sys.executable,
        "-m",
        "usermon.cli",
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--store",
        f"sqlite:///{workdir / 'usermon.db'}",
        "--tor-exits",
        str(intel["tor_exits"]),
        "--ip-ranges",
        str(intel["ip_ranges"]),
        "--log-level",
        "warning",
    ]
    command += ["--geoip-db", str(intel["geoip_db"]), "--asn-db", str(intel["asn_db"])]
    # The demo's own settings must not be overridden by a USERMON_* variable left in the shell.
    env = {k: v for k, v in os.environ.items() if not k.startswith("USERMON_")}
    env.update(USERMON_TOKEN=tokens.admin, USERMON_APP_TOKEN=tokens.app)  # not in argv (ps)
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        command, stdout=log, stderr=subprocess.STDOUT, env=env
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=5) as client:
            try:
                _wait_until_up(client, "/healthz", process, timeout=30)
            except DemoError:
                log.flush()
                console.print((workdir / "processor.log").read_text(errors="replace")[-2000:])
                raise
        yield base
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@contextlib.contextmanager
def _shop(
    processor_url: str,
    app_token: str,
    refusals: Counter[tuple[str, str]],
    challenges: Counter[tuple[str, str]],
) -> Iterator[tuple[str, Any]]:
    """The example shop on a free loopback port, exporting to the processor and enforcing its
    decisions with ``app_token``; yields its URL and the tracer provider (to flush)."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from werkzeug.serving import make_server

    import usermon
    from usermon import protection
    from usermon.demo.shop import challenge_counter, create_app
    from usermon.instrumentation.flask_login import FlaskLoginInstrumentor

    provider = TracerProvider(resource=Resource.create({"service.name": "usermon-demo-shop"}))
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(
                endpoint=f"{processor_url}/v1/traces",
                headers={"Authorization": f"Bearer {app_token}"},
            ),
            schedule_delay_millis=500,
        )
    )
    trace.set_tracer_provider(provider)
    # The demo is the shop's reverse proxy: X-Forwarded-For from loopback names the client.
    usermon.configure(
        mode="identification",
        auto_mode="identification",
        trusted_proxies="127.0.0.1/32",
        protect=True,
        decisions_url=processor_url,
        decisions_token=app_token,
        decisions_interval=0.5,  # a demo minute is short: refusals must show within it
    )
    usermon.set_challenge_handler(challenge_counter(challenges))
    instrumentor = FlaskLoginInstrumentor()
    instrumentor.instrument()
    # Werkzeug logs every request at INFO; the progress display says more, in one line.
    werkzeug_log = logging.getLogger("werkzeug")
    previous_level = werkzeug_log.level
    werkzeug_log.setLevel(logging.WARNING)
    server = make_server("127.0.0.1", 0, create_app(refusals), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="usermon-demo-shop", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", provider
    finally:
        server.shutdown()
        thread.join(5)
        instrumentor.uninstrument()
        usermon.set_challenge_handler(None)
        protection.stop()  # the decisions' sync thread
        provider.shutdown()
        werkzeug_log.setLevel(previous_level)


def _drive(shop_url: str, script: Script, duration: float, console: Console) -> Counter[str]:
    """Play the script against the shop in real time, with a progress display."""
    import httpx
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    counts: Counter[str] = Counter()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[stats]}"),
    )
    with (
        httpx.Client(base_url=shop_url, timeout=10) as client,
        Progress(*columns, console=console, transient=False) as progress,
    ):
        task = progress.add_task("traffic", total=duration, stats="")
        started = time.monotonic()
        for step in script.steps:
            wait = step.at - (time.monotonic() - started)
            while wait > 0:
                time.sleep(min(wait, 0.2))
                progress.update(task, completed=min(duration, time.monotonic() - started))
                wait = step.at - (time.monotonic() - started)
            if step.note:
                progress.console.print(f"[magenta]attack[/] {step.at:5.1f} s  {step.note}")
            for r in step.requests:
                response = client.post(
                    r.path,
                    data={"email": r.email, "password": r.password},
                    headers={"X-Forwarded-For": r.ip, "User-Agent": r.user_agent},
                )
                client.cookies.clear()  # every request is its own visitor
                counts["requests"] += 1
                if r.path == "/signup":
                    counts["signups"] += response.status_code == 201
                else:
                    counts["logins ok" if response.status_code == 200 else "logins failed"] += 1
            progress.update(
                task,
                completed=min(duration, time.monotonic() - started),
                stats=" · ".join(f"{k} {v}" for k, v in counts.items()),
            )
        progress.update(task, completed=duration)
    return counts


def _collect(
    processor_url: str, admin_token: str, expected: list[str], timeout: float
) -> list[dict[str, Any]]:
    """The processor's findings, waiting up to ``timeout`` for every expected kind."""
    import httpx

    deadline = time.monotonic() + timeout
    auth = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=processor_url, timeout=5, headers=auth) as client:
        while True:
            findings: list[dict[str, Any]] = client.get(
                "/api/findings", params={"limit": 1000}
            ).json()["findings"]
            if {f["kind"] for f in findings} >= set(expected) or time.monotonic() > deadline:
                return findings
            time.sleep(0.25)


def _report(findings: list[dict[str, Any]], console: Console) -> None:
    from rich.table import Table

    def severity(value: str) -> str:
        return f"[{SEVERITY_STYLE.get(value, '')}]{value}[/]"

    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for f in findings:
        groups.setdefault((f["subject"]["type"], f["subject"]["id"]), []).append(f)

    def rows(types: tuple[str, ...]) -> list[tuple[tuple[str, str], list[dict[str, Any]]]]:
        picked = [(k, v) for k, v in groups.items() if k[0] in types]
        return sorted(picked, key=lambda kv: -max(_RANK[f["severity"]] for f in kv[1]))

    # Readable at 80 columns and piped: names, addresses and severities never wrap (an address
    # is never cut); the kinds and the story wrap at spaces, never mid-word.
    users = Table(title="Users at risk", title_justify="left", expand=True)
    users.add_column("user", no_wrap=True, overflow="ellipsis", max_width=32)
    users.add_column("worst", no_wrap=True, min_width=8)
    users.add_column("findings", min_width=17, overflow="ellipsis")
    # Below 110 columns the story would be squeezed into a sliver: the dashboard tells it.
    story = console.width >= 110
    if story:
        users.add_column("what happened", ratio=1, min_width=30, overflow="ellipsis")
    for (_, subject_id), fs in rows(("user",)):
        worst = max(fs, key=lambda f: _RANK[f["severity"]])
        users.add_row(
            fs[0]["subject"].get("label") or subject_id,
            severity(worst["severity"]),
            ", ".join(sorted({f["kind"] for f in fs})),
            *([worst["summary"]] if story else []),
        )
    sources = Table(title="Attacking sources", title_justify="left", expand=True)
    sources.add_column("source", no_wrap=True)
    sources.add_column("worst", no_wrap=True, min_width=8)
    sources.add_column("findings", min_width=17, overflow="ellipsis")
    sources.add_column("accounts", no_wrap=True, justify="right")
    if story:
        sources.add_column("what happened", ratio=1, min_width=30, overflow="ellipsis")
    for (kind, subject_id), fs in rows(("ip", "network")):
        worst = max(fs, key=lambda f: _RANK[f["severity"]])
        sources.add_row(
            subject_id if kind == "ip" else f"{subject_id} (network)",
            severity(worst["severity"]),
            ", ".join(sorted({f["kind"] for f in fs})),
            str(_accounts(fs)),
            *([worst["summary"]] if story else []),
        )
    console.print(users)
    console.print(sources)


def _accounts(findings: list[dict[str, Any]]) -> int:
    """How many accounts a source's findings involve: the count a detector reports
    (``evidence.accounts`` for credential stuffing and spraying, ``evidence.signups`` for signup
    abuse) when it has one, else the distinct users named in the evidence (a bounded list, so
    never the count when a detector gives one)."""
    named = {u for f in findings for u in f["evidence"].get("users", [])}
    counted = [
        int(f["evidence"][field])
        for f in findings
        for field in ("accounts", "signups")
        if isinstance(f["evidence"].get(field), int)
    ]
    return max([len(named), *counted])


def _refusals(
    refusals: Counter[tuple[str, str]], challenges: Counter[tuple[str, str]], console: Console
) -> None:
    """One line per refused source: how many attempts the shop refused, after which finding;
    then one per challenged account (the shop has no second factor: those logins went on)."""
    if not refusals:
        console.print("protection: no login attempt was refused")
    for (ip, origin), count in sorted(refusals.items(), key=lambda kv: -kv[1]):
        attempts = "attempt" if count == 1 else "attempts"
        console.print(
            f"protection: {count} login {attempts} from {ip} refused after {_after(origin)}"
        )
    by_origin: dict[str, list[tuple[str, int]]] = {}
    for (email, origin), count in sorted(challenges.items(), key=lambda kv: (-kv[1], kv[0])):
        by_origin.setdefault(origin, []).append((email, count))
    for origin, accounts in by_origin.items():
        total = sum(count for _, count in accounts)
        attempts = "attempt" if total == 1 else "attempts"
        on = ", ".join(f"{email} {count}" for email, count in accounts)
        console.print(
            f"protection: {total} login {attempts} challenged after {_after(origin)} ({on});"
            " the shop has no second factor to ask for, so they went on"
        )


def _after(origin: str) -> str:
    """The finding kind a decision answered (``response:<kind>``), else who made it."""
    return origin.partition(":")[2] if origin.startswith("response:") else origin


def _next_steps(processor_url: str, admin_token: str, kept: bool, console: Console) -> None:
    from rich.panel import Panel

    alive = (
        "The processor is still running (Ctrl-C to stop it):"
        if kept
        else "These worked while the demo ran; `usermon demo --keep` leaves the processor up:"
    )
    console.print(
        Panel.fit(
            f"{alive}\n"
            f"  Dashboard {processor_url}/\n"
            f"  API       {processor_url}/api/findings  ·  {processor_url}/api/users"
            f"  ·  {processor_url}/api/ips/<ip>\n"
            f"  CLI       usermon findings --url {processor_url}   ·   usermon decisions --url "
            f"{processor_url}\n"
            f"  Token     USERMON_TOKEN={admin_token}  (API, CLI, dashboard sign-in)\n"
            "In your own app: pip install 'usermon\\[sdk,flask]' (or django, drf) and see "
            "docs/instrumentation.md.\n"
            "Spans carry usermon.login / usermon.signup events: send them through the "
            "OpenTelemetry Collector\n"
            "(collector-config/, docs/backends.md) to your tracing backend (Jaeger, Tempo, ...) "
            "and to `usermon serve`.\n"
            "What the demo did: docs/demo.md. How well detection does on a larger synthetic "
            "population: docs/detection.md (Evaluation).",
            title="Where to look next",
        )
    )


def _wait_for_interrupt() -> None:
    """Block until Ctrl-C or SIGTERM; then ignore further Ctrl-C so that a second press cannot
    cut the clean shutdown (the processor's checkpoint, the temporary directory's removal)."""
    import signal

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.SIG_IGN)


DEFAULT_DURATION = 10.0
"""Seconds of traffic in a run. A longer run plays the same script, stretched: it shows nothing
more (slow attacks need hours, see docs/demo.md), so the default is the short one."""


@click.command()
@click.option(
    "--duration",
    type=click.FloatRange(min=5),
    default=DEFAULT_DURATION,
    show_default=True,
    help="Seconds of traffic to play through the shop (the same script, stretched: to watch it).",
)
# Kept so that scripts written for the former one-minute default still run; it is the default now.
@click.option("--quick", is_flag=True, hidden=True)
@click.option(
    "--keep", is_flag=True, help="Leave the processor running after the demo, until Ctrl-C."
)
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the traffic.")
def demo(duration: float, quick: bool, keep: bool, seed: int) -> None:
    """Run the whole pipeline locally: a processor, an instrumented shop, customers and attacks."""
    try:
        import flask  # noqa: F401
        import flask_login  # noqa: F401
        import mmdb_writer  # noqa: F401  # writes the demo's GeoIP database
        import opentelemetry.sdk  # noqa: F401
        from rich.console import Console
    except ImportError as exc:
        raise DemoError(f"the demo needs {exc.name}: pip install 'usermon[demo]'") from None
    import random

    from usermon.demo.script import build_script
    from usermon.processor.simulate.world import World

    console = Console()
    world = World.build(random.Random(seed))
    script = build_script(world, duration, seed)
    with tempfile.TemporaryDirectory(prefix="usermon-demo-") as tmp:
        workdir = Path(tmp)
        intel = world.write_intel(workdir / "intel")
        console.print(f"[bold]usermon demo[/]: {duration:g} s of traffic through an example shop")
        tokens = Tokens()
        refusals: Counter[tuple[str, str]] = Counter()
        challenges: Counter[tuple[str, str]] = Counter()
        with _processor(workdir, intel, tokens, console) as processor_url:
            console.print(f"processor  {processor_url}  (SQLite store in {workdir})")
            with _shop(processor_url, tokens.app, refusals, challenges) as (shop_url, provider):
                console.print(
                    f"shop       {shop_url}  (Flask + Flask-Login, instrumented, protection on)\n"
                )
                counts = _drive(shop_url, script, duration, console)
                provider.force_flush()
            findings = _collect(processor_url, tokens.admin, script.expected_kinds, timeout=20)
            console.print()
            _report(findings, console)
            seen = {f["kind"] for f in findings}
            missing = [k for k in script.expected_kinds if k not in seen]
            console.print(
                f"\n{counts['requests']} requests; {len(findings)} findings of "
                f"{len(seen)} kinds: {', '.join(sorted(seen)) or 'none'}"
            )
            _refusals(refusals, challenges, console)
            _next_steps(processor_url, tokens.admin, keep, console)
            console.print(
                f"Dashboard: {processor_url}/"
                + ("  (Ctrl-C to stop)" if keep else "  (usermon demo --keep leaves it open)")
            )
            if keep:
                _wait_for_interrupt()
    if missing:
        raise click.ClickException(f"not detected: {', '.join(missing)}")
