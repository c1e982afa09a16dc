"""The protection commands of ``usermon``: block, unblock, list decisions, allowlist.

Each command calls a running processor's API (``/api/decisions``, ``/api/allowlist``) with the
admin token (``--token`` or ``USERMON_TOKEN``), so the processor validates and audits every change
in one place (docs/protection.md, "CLI"). Durations are written as for ``--since``: ``15m``,
``4h``, ``7d``.

    usermon block ip 192.0.2.7 --for 4h --reason "credential stuffing from a scanner"
    usermon block network 198.51.100.0/24 --for 1d
    usermon unblock 192.0.2.7          # every active decision on that value, or one id
    usermon decisions
    usermon allow 10.0.0.0/8           # the office NAT; --remove takes it off
"""

from __future__ import annotations

import getpass
import os
from typing import Any
from urllib.parse import quote

import click

from usermon import environment_variables as V
from usermon.cli import (
    _console,
    _json_option,
    _print_json,
    _short_when,
    _token_option,
    _url_option,
    _when,
)

__all__ = ["allow", "block", "decisions", "unblock"]


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no such user in a container: still say it was the CLI
        return "cli"


def _call(
    method: str,
    url: str,
    path: str,
    token: str | None,
    *,
    body: Any = None,
    params: dict[str, Any] | None = None,
) -> tuple[int, Any]:
    import httpx

    token = token or os.environ.get(V.USERMON_TOKEN)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.request(
            method,
            url.rstrip("/") + path,
            json=body,
            params={k: v for k, v in (params or {}).items() if v is not None},
            headers=headers,
            timeout=10,
        )
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the processor at {url}: {exc}") from None
    try:
        data = response.json()
    except ValueError:
        data = {"error": response.text}
    if response.status_code >= 400 and response.status_code != 404:
        message = data.get("error", response.text) if isinstance(data, dict) else response.text
        raise click.ClickException(f"{response.status_code} from the processor: {message}")
    return response.status_code, data


@click.command()
@_url_option
@_token_option
@click.argument("scope", type=click.Choice(["ip", "network", "user"]))
@click.argument("value")
@click.option("--for", "duration", required=True, help="How long: 15m, 4h, 7d (at most a year).")
@click.option("--reason", default="manual decision", show_default=True, help="Why, for the record.")
@click.option(
    "--challenge", is_flag=True, help="Challenge (CAPTCHA, second factor) instead of block."
)
@_json_option
def block(
    url: str,
    token: str | None,
    scope: str,
    value: str,
    duration: str,
    reason: str,
    challenge: bool,
    as_json: bool,
) -> None:
    """Block (or challenge) logins from an address, a network, or to a user (its user.hash)."""
    body = {
        "action": "challenge" if challenge else "block",
        "scope": scope,
        "value": value,
        "duration": duration,
        "reason": reason,
        "by": _who(),
    }
    _, made = _call("POST", url, "/api/decisions", token, body=body)
    if as_json:
        _print_json(made)
        return
    click.echo(
        f"{made['id']}: {made['action']} {made['scope']} {made['value']} until {made['until']}"
    )


@click.command()
@_url_option
@_token_option
@click.argument("key", metavar="ID|VALUE")
@_json_option
def unblock(url: str, token: str | None, key: str, as_json: bool) -> None:
    """Remove a decision by its id, or every active decision on a value."""
    status, data = _call(
        "DELETE", url, f"/api/decisions/{quote(key, safe='')}", token, params={"by": _who()}
    )
    if status == 404:
        raise click.ClickException(data.get("error", f"nothing to unblock for {key!r}"))
    if as_json:
        _print_json(data["removed"])
        return
    for d in data["removed"]:
        click.echo(f"removed {d['id']}: {d['action']} {d['scope']} {d['value']}")


@click.command()
@_url_option
@_token_option
@click.option("--all", "show_all", is_flag=True, help="Also expired and removed decisions.")
@click.option(
    "--scope", type=click.Choice(["ip", "network", "user", "user_ip", "service_campaign"])
)
@click.option("--value", help="Only decisions on this value.")
@click.option("--limit", type=int, default=1000, show_default=True)
@_json_option
def decisions(
    url: str,
    token: str | None,
    show_all: bool,
    scope: str | None,
    value: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List the decisions in force (newest first)."""
    params = {
        "state": "all" if show_all else "active",
        "scope": scope,
        "value": value,
        "limit": limit,
    }
    _, data = _call("GET", url, "/api/decisions", token, params=params)
    rows = data["decisions"]
    if as_json:
        _print_json(rows)
        return
    from rich.padding import Padding
    from rich.text import Text

    # As `usermon findings` on a narrow terminal, at any width: a line of facts (the value whole,
    # wrapped at spaces only) and the reason beneath, so nothing is cut at 80 columns.
    console = _console()
    console.print(f"{len(rows)} decision(s) (times UTC)", style="bold")
    for d in rows:
        line = Text(no_wrap=False, overflow="ellipsis")
        line.append(f"until {_short_when(_epoch(d['until']))}  ")
        line.append(f"{d['action']:<9} ", style="bold red" if d["action"] == "block" else "yellow")
        line.append(f"{d['scope']} {d['value']}  ")
        line.append(d["id"], style="dim")
        console.print(line)
        console.print(Padding(Text(f"{d['reason']} ({d['origin']})", style="dim"), (0, 0, 0, 4)))


def _epoch(rfc3339: str) -> float:
    """Seconds since the epoch of an RFC 3339 UTC time of the API."""
    import datetime as dt

    return dt.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


@click.command()
@_url_option
@_token_option
@click.argument("value", metavar="CIDR|USER", required=False)
@click.option("--remove", is_flag=True, help="Take VALUE off the allowlist.")
@_json_option
def allow(url: str, token: str | None, value: str | None, remove: bool, as_json: bool) -> None:
    """Allowlist a network (CIDR or address) or a user (its user.hash): no automatic decision
    applies to it. Without VALUE, list the allowlist."""
    if value is None:
        _, data = _call("GET", url, "/api/allowlist", token)
        if as_json:
            _print_json(data["allowlist"])
            return
        for e in data["allowlist"]:
            click.echo(f"{e['kind']}\t{e['value']}\tby {e['by']} at {_when(e['created'])}")
        return
    if remove:
        status, data = _call(
            "DELETE", url, f"/api/allowlist/{quote(value, safe='')}", token, params={"by": _who()}
        )
        if status == 404:
            raise click.ClickException(data.get("error", f"{value!r} is not on the allowlist"))
    else:
        _, data = _call("POST", url, "/api/allowlist", token, body={"value": value, "by": _who()})
    if as_json:
        _print_json(data)
    else:
        click.echo(f"{'removed' if remove else 'allowed'} {data['kind']} {data['value']}")
