"""The rules of the processor's queries that the API and the CLI share.

Three rules live here so that ``GET /api/...`` and ``usermon ...`` answer alike: how a time bound is
written (``since``: a duration back from now such as ``15m`` or ``1h``, seconds since the epoch, or
an ISO 8601 time), how a duration is written (``15m``, ``4h``, ``7d``: the same units, for decisions
and the rules file's responses), and how a user is named (its ``user.hash``, or its label, the
``user.id`` the application sent in identification mode). The CLI passes its arguments through to
the API, so both are applied in one place, by the processor.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any, Final

from usermon.processor.profiles import Profiles

__all__ = [
    "DURATION_FORMS",
    "LABEL_SCAN_LIMIT",
    "SINCE_FORMS",
    "find_user",
    "parse_duration",
    "parse_since",
]

SINCE_FORMS: Final = (
    "a duration back from now (30s, 15m, 1h, 7d, 2w), seconds since the epoch, or an ISO 8601 time"
)

LABEL_SCAN_LIMIT: Final = 10_000
"""How many of the most recently seen users a lookup by label reads (the stores index users by
hash only): a label seen longer ago than that many other users is found by its hash."""

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
    for profile in profiles.users(limit=LABEL_SCAN_LIMIT):
        if profile.get("label") == key:
            return profiles.user(profile["user_hash"])
    return None
