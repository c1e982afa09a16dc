"""Text that cannot be encoded, made servable: lone surrogates become U+FFFD.

A Python string may hold a lone UTF-16 surrogate (``"\\ud800"``, from a JSON escape or an
older decoder) that no UTF-8 encoder accepts: served as JSON it made every API response that
touched it fail, and PostgreSQL and Redis refuse to store it. This module owns the repair, used
where stored data is read back (the API's rendering, the stores when they load a state or a
finding) and before text goes into a database that would refuse it. :func:`scrub_text` fixes a
string, :func:`scrub` every string in a nested value, and :func:`scrub_marshal` a
:mod:`marshal` blob of the state, paying for a walk in Python only when the blob holds one;
:func:`storable_text` and :func:`storable_json` make text and JSON that PostgreSQL takes (which
also refuses NUL, and NaN in JSON), serializing once and walking only text that needs it.
"""

from __future__ import annotations

import json
import marshal
import math
import re
from typing import Any

__all__ = [
    "has_lone_surrogate",
    "scrub",
    "scrub_marshal",
    "scrub_text",
    "storable_json",
    "storable_text",
]

REPLACEMENT = "\ufffd"

# marshal writes strings as UTF-8 with surrogates passed through: ED A0..BF 80..BF is a
# surrogate, a sequence valid UTF-8 never has. A float's bytes match by chance in a large blob,
# so a match counts only where it lies inside a string: after a string's type code (non-ASCII
# "u" or interned "t", with or without marshal's reference flag) and 4-byte length, within that
# length, with what the string holds decoding as UTF-8. A string whose surrogate lies further
# than _REACH bytes from its start is not seen (the API still serves it, as U+FFFD).
_SURROGATE_BYTES = re.compile(rb"\xed[\xa0-\xbf][\x80-\xbf]")
_STRING_CODES = re.compile(rb"[tu\xf4\xf5]")
_REACH = 8192


def has_lone_surrogate(text: str) -> bool:
    """Whether ``text`` cannot be encoded as UTF-8."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def scrub_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD (a surrogate pair held as two code
    points becomes the character it encodes); ``text`` itself when there is none."""
    if not has_lone_surrogate(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def storable_text(text: str) -> str:
    """:func:`scrub_text` of ``text``, NUL characters also replaced by U+FFFD: text PostgreSQL
    takes (it refuses NUL in ``text`` and ``jsonb``); ``text`` itself when it is."""
    text = scrub_text(text)
    return text.replace("\x00", REPLACEMENT) if "\x00" in text else text


def scrub(value: Any, *, finite: bool = False, nul: bool = False) -> Any:
    """``value`` with :func:`scrub_text` applied to every string in it (dict keys too), the
    containers rebuilt only where something changed. ``finite=True`` also turns NaN and the
    infinities into None and anything JSON has no type for into its ``str`` (for rendering);
    ``nul=True`` applies :func:`storable_text` instead (for PostgreSQL)."""
    if isinstance(value, str):
        return storable_text(value) if nul else scrub_text(value)
    if isinstance(value, bool | int | bytes | None):
        return value
    if isinstance(value, float):
        return None if finite and not math.isfinite(value) else value
    if isinstance(value, dict):
        out = {
            scrub(k, finite=finite, nul=nul): scrub(v, finite=finite, nul=nul)
            for k, v in value.items()
        }
        same = len(out) == len(value) and _same(out.items(), value.items())
        return value if same else out
    if isinstance(value, list | tuple | set | frozenset):
        items = [scrub(v, finite=finite, nul=nul) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return type(value)(items)
    if finite:
        text = str(value)
        return storable_text(text) if nul else scrub_text(text)
    return value


# Non-ASCII text as it is, so that a lone surrogate stays one that the UTF-8 check finds
# (escaped, it reads like half of an escaped pair); NaN raises instead of being written.
_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def storable_json(value: Any) -> str:
    """``value`` as JSON text that PostgreSQL's ``jsonb`` takes: lone surrogates and NUL in its
    strings replaced by U+FFFD (:func:`storable_text`), NaN and the infinities by null. The C
    encoder serializes it once; the value is walked and serialized again only when that text
    would be refused (it holds a NaN, a ``\\u0000`` escape, or a lone surrogate: what no
    UTF-8 encoder takes)."""
    try:
        text = _ENCODE(value)
    except ValueError:  # NaN or an infinity
        pass
    else:
        if "\\u0000" not in text and not has_lone_surrogate(text):
            return text
    return _ENCODE(scrub(value, finite=True, nul=True))


def _same(a: Any, b: Any) -> bool:
    return all(x[0] is y[0] and x[1] is y[1] for x, y in zip(a, b, strict=True))


def scrub_marshal(blob: bytes) -> tuple[bytes, bool]:
    """A :mod:`marshal` blob with the lone surrogates of its strings replaced, and whether any
    was; ``blob`` itself when none is there (found by a scan of its bytes: the blob is loaded
    and walked only when a string holds one)."""
    if not any(_in_a_string(blob, m.start()) for m in _SURROGATE_BYTES.finditer(blob)):
        return blob, False
    loaded = marshal.loads(blob)  # noqa: S302 - the store's own data
    cleaned = scrub(loaded)
    if cleaned is loaded:
        return blob, False
    return marshal.dumps(cleaned), True


def _in_a_string(blob: bytes, at: int) -> bool:
    """Whether the surrogate bytes at ``at`` may lie inside one of marshal's strings."""
    low = max(0, at - _REACH)
    for code in _STRING_CODES.finditer(blob, low, at):
        begin = code.start() + 5
        if begin > at:
            continue
        end = begin + int.from_bytes(blob[code.start() + 1 : begin], "little")
        if at + 3 <= end <= len(blob):
            try:
                blob[begin:end].decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                continue
            return True
    return False
