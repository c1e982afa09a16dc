"""The ``usermon`` command: run the processor and query it.

This module owns the command-line surface. ``main`` is a click group; other parts of usermon add
their commands with ``main.add_command(...)``. Importing it stays light: the processor, Rich and
httpx are imported inside the commands that use them.

    usermon serve --listen 127.0.0.1:4400 --store sqlite:///usermon.db
    usermon findings --severity high
    usermon users
    usermon user alice@example.com
    usermon ips
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


def _short_when(seconds: float | None) -> str:
    """A time in 11 columns (``MM-DD HH:MM``, UTC), for tables."""
    if seconds is None:
        return "-"
    return dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc).strftime("%m-%d %H:%M")


def _table(title: str, columns: list[tuple[str, dict[str, Any]]]) -> Any:
    """A Rich table that stays readable at 80 columns and when piped: identifying columns never
    wrap (``no_wrap``: an address or a kind is never cut in the middle), the rest wrap at word
    boundaries or end with an ellipsis, never mid-word (Rich's ``fold`` would)."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=f"{title} (times UTC)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        expand=False,
    )
    for name, options in columns:
        table.add_column(name, **{"overflow": "ellipsis", **options})
    return table


def _console() -> Any:
    from rich.console import Console

    # Piped output has no terminal width: keep 80 columns unless COLUMNS says otherwise.
    return Console(width=int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS") else None)


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
    console = _console()
    if console.width < WIDE:
        # Too narrow for the summary beside the rest: each finding is a line of its facts and
        # its summary beneath, both wrapped at spaces only.
        from rich.padding import Padding
        from rich.text import Text

        console.print(f"{len(rows)} finding(s) (times UTC)", style="bold")
        for f in rows:
            line = Text(no_wrap=False, overflow="ellipsis")
            line.append(f"{_short_when(f['last_seen'])}  ")
            line.append(f"{f['severity']:<8} ", style=SEVERITY_STYLE.get(f["severity"], ""))
            line.append(f"{f['kind']}  {_subject_text(f['subject'])}  ")
            count = f["event_count"]
            line.append(f"{count} event{'s' if count != 1 else ''}", style="dim")
            console.print(line)
            console.print(Padding(Text(f["summary"], style="dim"), (0, 0, 0, 4)))
        return
    table = _table(
        f"{len(rows)} finding(s)",
        [
            ("last seen", {"no_wrap": True}),
            ("severity", {"no_wrap": True}),
            ("kind", {"no_wrap": True}),
            ("subject", {"no_wrap": True, "max_width": 40}),
            ("events", {"no_wrap": True, "justify": "right"}),
            ("summary", {"min_width": 30, "ratio": 1}),
        ],
    )
    for f in rows:
        table.add_row(
            _short_when(f["last_seen"]),
            f["severity"],
            f["kind"],
            _subject_text(f["subject"]),
            str(f["event_count"]),
            f["summary"],
        )
    console.print(table)


WIDE = 130
"""From this many columns, ``usermon findings`` prints a table with the summary beside the rest."""

SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": ""}


def _subject_text(subject: dict[str, Any]) -> str:
    """A finding's subject for a person: an address whole (never its network's name instead),
    a user by its label, anything else by its label and id."""
    if subject["type"] in ("ip", "user"):
        return str(subject["id"] if subject["type"] == "ip" else subject["label"] or subject["id"])
    label = subject.get("label")
    return f"{label} ({subject['id']})" if label else str(subject["id"])


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
    table = _table(
        f"{len(rows)} user(s)",
        [
            ("user", {"no_wrap": True, "max_width": 40}),
            ("last seen", {"no_wrap": True, "min_width": 11}),
            ("ok 24h", {"no_wrap": True, "justify": "right", "min_width": 6}),
            ("fail 1h", {"no_wrap": True, "justify": "right", "min_width": 7}),
            ("fail 24h", {"no_wrap": True, "justify": "right", "min_width": 8}),
            ("IPs", {"no_wrap": True, "justify": "right"}),
        ],
    )
    for u in rows:
        table.add_row(
            u["label"] or u["user_hash"][:16],
            _short_when(u["last_seen"]),
            str(u["successes"]["24h"]),
            str(u["failures"]["1h"]),
            str(u["failures"]["24h"]),
            str(u["distinct_ips"]),
        )
    _console().print(table)


@main.command()
@_url_option
@_token_option
@click.option(
    "--sort",
    type=click.Choice(["attacking", "recent"]),
    default="attacking",
    show_default=True,
    help="attacking: the sources of findings, most events first; recent: addresses most "
    "recently seen.",
)
@click.option("--limit", type=int, default=50, show_default=True)
@_json_option
def ips(url: str, token: str | None, sort: str, limit: int, as_json: bool) -> None:
    """List client addresses and networks: the most attacking, or the most recently seen."""
    data = _get(url, "/api/ips", token, {"sort": sort, "limit": limit})
    rows = data["ips"]
    if as_json:
        _print_json(rows)
        return
    if not rows:
        click.echo("no source" if sort == "attacking" else "no address")
        return
    if sort == "attacking":
        table = _table(
            f"{len(rows)} attacking source(s)",
            [
                ("source", {"no_wrap": True, "min_width": max(len(r["id"]) for r in rows)}),
                ("worst", {"no_wrap": True, "min_width": 8}),
                ("events", {"no_wrap": True, "justify": "right", "min_width": 6}),
                ("kinds", {"min_width": 23, "ratio": 1}),  # distributed_brute_force
                ("network", {"no_wrap": True, "max_width": 16}),
            ],
        )
        for r in rows:
            table.add_row(
                r["id"], r["worst"], str(r["events"]), ", ".join(r["kinds"]), r["label"] or ""
            )
    else:
        table = _table(
            f"{len(rows)} address(es)",
            [
                ("address", {"no_wrap": True, "min_width": max(len(r["ip"]) for r in rows)}),
                ("last seen", {"no_wrap": True}),
                ("ok 24h", {"no_wrap": True, "justify": "right"}),
                ("failed 24h", {"no_wrap": True, "justify": "right"}),
                ("users 24h", {"no_wrap": True, "justify": "right"}),
            ],
        )
        for r in rows:
            table.add_row(
                r["ip"],
                _short_when(r["last_seen"]),
                str(r["successes"]["24h"]),
                str(r["failures"]["24h"]),
                str(r["distinct_users"]["24h"]),
            )
    _console().print(table)


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
    from rich.table import Table

    console = _console()
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
main.add_lazy_command("serve", "usermon.processor.serve:serve")
main.add_lazy_command("intel", "usermon.processor.intel.cli:intel")
for _name in ("block", "unblock", "decisions", "allow"):
    main.add_lazy_command(_name, f"usermon.processor.protection_cli:{_name}")

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
