"""The rules of the processor's queries that the API and the CLI share.

Two rules live here so that ``GET /api/...`` and ``usermon ...`` answer alike: how a time bound is
written (``since``: a duration back from now such as ``15m`` or ``1h``, seconds since the epoch,
or an ISO 8601 time), and how a user is named (its ``user.hash``, or its label, the ``user.id``
the application sent in identification mode). The CLI passes its arguments through to the API, so
both are applied in one place, by the processor.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any, Final

from usermon.processor.profiles import Profiles

__all__ = ["LABEL_SCAN_LIMIT", "SINCE_FORMS", "find_user", "parse_since"]

SINCE_FORMS: Final = (
    "a duration back from now (30s, 15m, 1h, 7d, 2w), seconds since the epoch, or an ISO 8601 time"
)

LABEL_SCAN_LIMIT: Final = 10_000
"""How many of the most recently seen users a lookup by label reads (the stores index users by
hash only): a label seen longer ago than that many other users is found by its hash."""

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
