"""The ``usermon`` command: run the processor and query it.

This module owns the command-line surface. ``main`` is a click group; other parts of usermon add
their commands with ``main.add_command(...)``. Importing it stays light: the processor, Rich and
httpx are imported inside the commands that use them.

    usermon serve --listen 127.0.0.1:4400 --store sqlite:///usermon.db
    usermon findings --severity high
    usermon users
    usermon user alice@example.com
    usermon block ip 192.0.2.7 --for 4h --reason "scanner"
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from typing import Any

import click

from usermon import __version__
from usermon import environment_variables as V

__all__ = ["main"]

DEFAULT_URL = "http://127.0.0.1:4400"


class LazyGroup(click.Group):
    """A click group whose commands may live in modules imported only when that command runs
    (``add_lazy_command``), so ``import usermon.cli`` stays light. ``add_command`` works too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, str] = {}

    def add_lazy_command(self, name: str, target: str) -> None:
        """Register ``name`` as the click command at ``target`` (``"package.module:attribute"``)."""
        self.lazy[name] = target

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            import importlib

            module_name, _, attribute = self.lazy[cmd_name].partition(":")
            command = getattr(importlib.import_module(module_name), attribute)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="usermon")
def main() -> None:
    """usermon: user monitoring on OpenTelemetry (processor and queries)."""


# -- serve -----------------------------------------------------------------------------------------


@main.command()
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help=f"Address of the OTLP/HTTP receiver and the API [env {V.USERMON_LISTEN}; default "
    "127.0.0.1:4400]. Any non-loopback address requires --token.",
)
@click.option(
    "--store",
    metavar="URL",
    help=f"Where state and findings live [env {V.USERMON_STORE}; default sqlite:///usermon.db]: "
    "sqlite:///path (journaled, survives crashes), memory:// (tests), redis://, postgresql://.",
)
@click.option(
    "--state-url",
    metavar="URL",
    help=f"Shared windowed state (redis://) next to a postgresql:// store [env "
    f"{V.USERMON_STATE_URL}].",
)
@click.option(
    "--token",
    help=f"Bearer token required for ingest and API [env {V.USERMON_TOKEN}]; mandatory off "
    "loopback. Prefer the environment variable: flags show in process lists.",
)
@click.option(
    "--app-token",
    "app_tokens",
    multiple=True,
    help=f"An application token: may send events and read the decision stream, nothing else "
    f"[env {V.USERMON_APP_TOKEN}, comma-separated]; repeatable.",
)
@click.option(
    "--max-body-bytes",
    type=int,
    help=f"Largest request body, before and after gzip [env {V.USERMON_MAX_BODY_BYTES}; "
    "default 16 MiB]; larger gets 413.",
)
@click.option(
    "--grpc-listen",
    metavar="HOST:PORT",
    help=f"Also receive OTLP/gRPC here (needs usermon[grpc]) [env {V.USERMON_GRPC_LISTEN}; "
    "default off].",
)
@click.option(
    "--otlp-endpoint",
    metavar="URL",
    help=f"OTLP/HTTP base URL to send findings (logs) and counters (metrics) to, e.g. "
    f"http://localhost:4318 [env {V.USERMON_OTLP_ENDPOINT}; default off].",
)
@click.option(
    "--rules",
    type=click.Path(dir_okay=False),
    help=f"Rules file overriding the detectors' thresholds [env {V.USERMON_RULES}].",
)
@click.option(
    "--geoip-db",
    type=click.Path(dir_okay=False),
    help=f"MaxMind-format City/Country database [env {V.USERMON_GEOIP_DB}].",
)
@click.option(
    "--asn-db",
    type=click.Path(dir_okay=False),
    help=f"MaxMind-format ASN database [env {V.USERMON_ASN_DB}].",
)
@click.option(
    "--tor-exits",
    metavar="PATH|URL",
    help=f"Tor bulk exit list, file or URL [env {V.USERMON_TOR_EXITS}].",
)
@click.option(
    "--tor-refresh",
    type=float,
    metavar="SECONDS",
    help=f"Seconds between refreshes of the Tor exit list; 0 reads it once at startup [env "
    f"{V.USERMON_TOR_REFRESH}; default 3600].",
)
@click.option(
    "--ip-ranges",
    type=click.Path(dir_okay=False),
    help=f"IP-ranges CSV (cidr,category,name) [env {V.USERMON_IP_RANGES}].",
)
@click.option(
    "--lateness",
    type=float,
    help=f"Seconds an event may arrive behind the newest and still count [env "
    f"{V.USERMON_LATENESS}; default 3600].",
)
@click.option(
    "--max-keys",
    type=int,
    help="Cap on in-memory state keys, least recently used go first; counting-map fields "
    f"(deduplication) are capped at twice it [env {V.USERMON_MAX_KEYS}; default 500000].",
)
@click.option(
    "--checkpoint-interval",
    type=float,
    help=f"Seconds between checkpoints of the state (SQLite store) [env "
    f"{V.USERMON_CHECKPOINT_INTERVAL}; default 30].",
)
@click.option(
    "--max-inflight",
    type=int,
    help=f"Ingest requests handled at once, once their bodies are in, before 429 [env "
    f"{V.USERMON_MAX_INFLIGHT}; default 64].",
)
@click.option(
    "--max-inflight-bytes",
    type=int,
    help="Bytes of request bodies held at once across ingest requests, as received and as "
    f"decompressed, before 429 [env {V.USERMON_MAX_INFLIGHT_BYTES}; default and minimum: twice "
    "--max-body-bytes, 32 MiB].",
)
@click.option(
    "--header-timeout",
    type=float,
    metavar="SECONDS",
    help=f"Time to send a request's line and headers before the connection is closed [env "
    f"{V.USERMON_HEADER_TIMEOUT}; default 10].",
)
@click.option(
    "--body-timeout",
    type=float,
    metavar="SECONDS",
    help=f"Time to send a whole ingest body once the headers are in, else 408 [env "
    f"{V.USERMON_BODY_TIMEOUT}; default 30].",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    help=f"The processor's own log level [env {V.USERMON_LOG_LEVEL}; default info].",
)
def serve(**flags: Any) -> None:
    """Run the usermon processor: OTLP in, aggregation and detection, findings out."""
    import logging

    from usermon.processor.settings import SettingsError, resolve

    flags["app_tokens"] = ",".join(flags.get("app_tokens") or ()) or None
    try:
        settings = resolve(flags)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from usermon.processor.runner import run

    try:
        run(settings)
    except Exception as exc:  # startup problems: a clear message, not a traceback
        from usermon.processor.storage.errors import StoreError

        if isinstance(exc, StoreError | OSError | ValueError):
            raise click.ClickException(str(exc)) from None
        raise


# -- queries ---------------------------------------------------------------------------------------

_url_option = click.option(
    "--url",
    default=DEFAULT_URL,
    show_default=True,
    help="Base URL of a running processor.",
)
_token_option = click.option(
    "--token",
    default=None,
    help=f"Bearer token of the processor [env {V.USERMON_TOKEN}].",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")


def _get(url: str, path: str, token: str | None, params: dict[str, Any] | None = None) -> Any:
    import httpx

    token = token or os.environ.get(V.USERMON_TOKEN)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    clean = {k: v for k, v in (params or {}).items() if v is not None}
    try:
        response = httpx.get(url.rstrip("/") + path, params=clean, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the processor at {url}: {exc}") from None
    if response.status_code == 404:
        return None
    if response.status_code >= 400:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        raise click.ClickException(f"{response.status_code} from the processor: {message}")
    return response.json()


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    moment = dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@main.command()
@_url_option
@_token_option
@click.option("--kind", help="Only this kind (brute_force, credential_stuffing, ...).")
@click.option(
    "--severity",
    type=click.Choice(["low", "medium", "high", "critical"]),
    help="At least this severity.",
)
@click.option(
    "--since", help="Last seen after this time: 15m, 1h, 7d ago, epoch seconds or ISO 8601."
)
@click.option("--subject", help="Only findings about this user hash, label, IP or network.")
@click.option("--limit", type=int, default=100, show_default=True)
@_json_option
def findings(
    url: str,
    token: str | None,
    kind: str | None,
    severity: str | None,
    since: str | None,
    subject: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List findings, newest first."""
    params = {"kind": kind, "severity": severity, "since": since, "subject": subject}
    data = _get(url, "/api/findings", token, {**params, "limit": limit})
    rows = data["findings"]
    if as_json:
        _print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} finding(s)")
    for column in ("last seen", "severity", "kind", "subject", "events", "summary"):
        table.add_column(column)
    for f in rows:
        subject_text = f["subject"]["label"] or f["subject"]["id"]
        table.add_row(
            _when(f["last_seen"]),
            f["severity"],
            f["kind"],
            f"{f['subject']['type']}: {subject_text}",
            str(f["event_count"]),
            f["summary"],
        )
    Console().print(table)


@main.command()
@_url_option
@_token_option
@click.option("--since", help="Seen after this time: 15m, 1h, 7d ago, epoch seconds or ISO 8601.")
@click.option("--limit", type=int, default=100, show_default=True)
@_json_option
def users(url: str, token: str | None, since: str | None, limit: int, as_json: bool) -> None:
    """List users, most recently seen first."""
    data = _get(url, "/api/users", token, {"since": since, "limit": limit})
    rows = data["users"]
    if as_json:
        _print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} user(s)")
    for column in ("user", "last seen", "ok 24h", "failed 1h", "failed 24h", "IPs 24h"):
        table.add_column(column)
    for u in rows:
        table.add_row(
            u["label"] or u["user_hash"][:16],
            _when(u["last_seen"]),
            str(u["successes"]["24h"]),
            str(u["failures"]["1h"]),
            str(u["failures"]["24h"]),
            str(u["distinct_ips"]),
        )
    Console().print(table)


@main.command()
@_url_option
@_token_option
@click.argument("user_id")
@_json_option
def user(url: str, token: str | None, user_id: str, as_json: bool) -> None:
    """Show one user: USER_ID is its user hash or its label (user.id), as in the API."""
    from urllib.parse import quote

    profile = _get(url, f"/api/users/{quote(user_id, safe='')}", token)
    if profile is None:
        raise click.ClickException(f"no user {user_id!r} known to the processor")
    if as_json:
        _print_json(profile)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]{profile['label'] or profile['user_hash']}[/bold]  ({profile['user_hash']})"
    )
    console.print(
        f"first seen {_when(profile['first_seen'])}, last seen {_when(profile['last_seen'])}, "
        f"services: {', '.join(profile['services']) or '-'}"
    )
    last = profile.get("last_success")
    if last:
        console.print(
            f"last successful login {_when(last['time'])} from {last['ip'] or '-'} "
            f"({last['user_agent'] or 'no user agent'})"
        )
    table = Table(title="activity")
    table.add_column("")
    for name in ("1m", "10m", "1h", "24h"):
        table.add_column(name, justify="right")
    for label, key in (
        ("successes", "successes"),
        ("failures", "failures"),
        ("signups", "signups"),
    ):
        table.add_row(label, *(str(profile[key][w]) for w in ("1m", "10m", "1h", "24h")))
    console.print(table)
    console.print(f"IPs (24h): {', '.join(profile['ips']) or '-'}")
    console.print(f"networks (24h): {', '.join(profile['networks']) or '-'}")
    for f in profile.get("findings", []):
        console.print(f"[red]{f['severity']}[/red] {f['kind']}: {f['summary']}")


# Commands owned elsewhere, imported only when run (or listed by --help).
assert isinstance(main, LazyGroup)
main.add_lazy_command("demo", "usermon.demo:demo")
main.add_lazy_command("intel", "usermon.processor.intel.cli:intel")
for _name in ("block", "unblock", "decisions", "allow"):
    main.add_lazy_command(_name, f"usermon.processor.protection_cli:{_name}")

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
