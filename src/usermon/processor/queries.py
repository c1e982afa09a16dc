"""The rules of the processor's queries that the API and the CLI share.

The rules live here so that ``GET /api/...`` and ``usermon ...`` answer alike: how a time bound is
written (``since``: a duration back from now such as ``15m`` or ``1h``, seconds since the epoch,
or an ISO 8601 time), how a duration is written (``15m``, ``4h``, ``7d``: the same units, for
decisions and the rules file's responses), how a user is named (its ``user.hash``, or its label,
the ``user.id`` the application sent in identification mode), how a page's cursor is written, and
which sources count as attacking (those that findings are about, most events first). The CLI
passes its arguments through to the API, so both are applied in one place, by the processor.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterable
from typing import Any, Final

from usermon.processor.model import SEVERITIES, Finding
from usermon.processor.profiles import Profiles
from usermon.processor.recency import Cursor
from usermon.processor.storage.base import Store

__all__ = [
    "DURATION_FORMS",
    "LABEL_SCAN_LIMIT",
    "SINCE_FORMS",
    "attacking_sources",
    "decode_cursor",
    "encode_cursor",
    "find_user",
    "findings_page",
    "parse_duration",
    "parse_since",
]

SINCE_FORMS: Final = (
    "a duration back from now (30s, 15m, 1h, 7d, 2w), seconds since the epoch, or an ISO 8601 time"
)

LABEL_SCAN_LIMIT: Final = 10_000
"""How many of the most recently seen users a lookup by label reads on the Redis store, where
users are indexed by hash only (a label seen longer ago than that many other users is found by
its hash there). PostgreSQL indexes profiles by label, and a state in the processor's memory
(memory, SQLite) indexes labels too: no scan."""

DURATION_FORMS: Final = "a number with a unit (30s, 15m, 4h, 7d, 2w) or a number of seconds"

_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")


def parse_since(value: str | None, now: float | None = None) -> float | None:
    """Seconds since the epoch for a ``since`` bound; ``None`` for no bound.

    Raises ``ValueError`` (with :data:`SINCE_FORMS` in the message) for anything else.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if (match := _DURATION.fullmatch(text.lower())) is not None:
        amount, unit = match.groups()
        return (time.time() if now is None else now) - float(amount) * _UNITS[unit]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"since is {SINCE_FORMS}; got {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.timestamp()


def parse_duration(value: str | float, *, maximum: float | None = None) -> float:
    """Seconds for a duration written as :data:`DURATION_FORMS` says; more than 0 and at most
    ``maximum``. Raises ``ValueError`` with a message saying what is accepted."""
    if isinstance(value, bool):
        raise ValueError(f"a duration is {DURATION_FORMS}; got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip().lower()
        match = _DURATION.fullmatch(text)
        if match is not None:
            amount, unit = match.groups()
            seconds = float(amount) * _UNITS[unit]
        else:
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(f"a duration is {DURATION_FORMS}; got {value!r}") from None
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"a duration must be finite and more than 0 seconds; got {value!r}")
    if maximum is not None and seconds > maximum:
        raise ValueError(f"a duration must be at most {maximum:g} seconds; got {value!r}")
    return seconds


def find_user(profiles: Profiles, key: str) -> dict[str, Any] | None:
    """The profile of the user whose hash is ``key``, else of the most recently seen user whose
    label is ``key``; ``None`` when neither is known."""
    found = profiles.user(key)
    if found is not None:
        return found
    if profiles.labels_indexed:
        return profiles.user_by_label(key)
    for profile in profiles.users(limit=LABEL_SCAN_LIMIT):
        if profile.get("label") == key:
            return profiles.user(profile["user_hash"])
    return None


def encode_cursor(cursor: Cursor | None) -> str | None:
    """A page's cursor as text for a URL: ``<last seen>:<key>``."""
    return None if cursor is None else f"{cursor[0]!r}:{cursor[1]}"


def decode_cursor(text: str | None) -> Cursor | None:
    """The cursor :func:`encode_cursor` wrote; raises ``ValueError`` for anything else."""
    if text is None or not text.strip():
        return None
    when, sep, key = text.strip().partition(":")
    if not sep:
        raise ValueError(f"not a cursor of this API: {text!r}")
    try:
        return float(when), key
    except ValueError:
        raise ValueError(f"not a cursor of this API: {text!r}") from None


FINDINGS_PAGE_MAX: Final = 10_000
"""Findings below a cursor are read from the newest this many (the stores' query has no
lower bound on ``last_seen``)."""


def findings_page(
    store: Store, *, limit: int, after: Cursor | None, **filters: Any
) -> tuple[list[Finding], Cursor | None]:
    """A page of findings, newest ``last_seen`` first, below the cursor ``after``
    (``(last_seen, id)`` of the previous page's last row)."""

    def key(f: Finding) -> tuple[float, str]:
        return f.last_seen, f.id

    if after is None:
        # Rows tied on last_seen at the page's edge are all read, so the order by (last_seen,
        # id) below is the whole order there: the next page's cursor skips none of them.
        n = limit + 1
        found = store.findings(limit=n, **filters)
        while (
            len(found) == n
            and n < FINDINGS_PAGE_MAX
            and found[-1].last_seen == found[min(limit, len(found)) - 1].last_seen
        ):
            n *= 2
            found = store.findings(limit=n, **filters)
    else:
        found = [f for f in store.findings(limit=FINDINGS_PAGE_MAX, **filters) if key(f) < after]
    found = sorted(found, key=key, reverse=True)[: limit + 1]
    more = len(found) > limit
    found = found[:limit]
    return found, (key(found[-1]) if more and found else None)


_RANK: Final = {s: i for i, s in enumerate(SEVERITIES)}


def attacking_sources(findings: Iterable[Finding]) -> list[dict[str, Any]]:
    """The addresses and networks that ``findings`` are about, most events first: each with its
    ``id``, ``type`` (``ip`` / ``network``), ``label``, ``events``, ``kinds``, ``worst``
    severity, ``last_seen`` and ``findings`` (how many)."""
    by: dict[str, dict[str, Any]] = {}
    for f in findings:
        if f.subject.type not in ("ip", "network"):
            continue
        row = by.get(f.subject.id)
        if row is None:
            row = by[f.subject.id] = {
                "id": f.subject.id,
                "type": f.subject.type,
                "label": f.subject.label,
                "events": 0,
                "kinds": [],
                "worst": f.severity,
                "last_seen": f.last_seen,
                "findings": 0,
            }
        row["events"] += f.event_count
        row["findings"] += 1
        if f.kind not in row["kinds"]:
            row["kinds"].append(f.kind)
        row["last_seen"] = max(row["last_seen"], f.last_seen)
        if _RANK[f.severity] > _RANK[row["worst"]]:
            row["worst"] = f.severity
    for row in by.values():
        row["kinds"].sort()
    return sorted(by.values(), key=lambda r: (-r["events"], r["id"]))
