"""User identifiers: normalization, the secret and suspicious key rules, and the primary key.

A tracking call hands over a flat mapping of identifiers; this module turns it into an
:class:`Identity`: keys trimmed and lower-cased, string values trimmed and NFC-normalized, e-mail
values lower-cased, integers (and UUIDs) as strings, and everything else dropped with a warning
once per key name. Secret-looking keys (``password``, ``token``, ...) are dropped in every mode,
so a secret never reaches a span; keys that look like other data (``reason``, ``status``, ...)
are kept, as the seed document says, but warned about once, because they split one account into
several identities. The identity is all identifiers together, in canonical (sorted) order; the
primary key is the first of :data:`usermon.attributes.PRIMARY_KEY_PREFERENCE` present, else the
first key in alphabetical order. Key classification is cached per key string: a login path uses
the same few keys over and over.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple

from usermon import attributes as attrs

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_VALUE_LENGTH",
    "SECRET_KEYS",
    "SECRET_KEY_FRAGMENTS",
    "SUSPICIOUS_KEYS",
    "Identity",
    "is_secret_key",
    "is_unicode_text",
    "normalize_identifiers",
    "normalize_key",
    "normalize_one",
    "normalize_plain",
]

_logger = logging.getLogger("usermon")

MAX_VALUE_LENGTH: Final = 256
"""Longest identifier value kept, in characters after normalization (longer ones are dropped:
an identifier that long is almost certainly not one, and attributes should stay small)."""

MAX_KEY_LENGTH: Final = 64
"""Longest identifier key kept, in characters after normalization."""

SECRET_KEYS: Final = frozenset(
    {"pin", "otp", "totp", "hotp", "mfa", "mfa_code", "otp_code", "code", "cvv", "cvc", "key"}
)
"""Words that make a key a secret when they are one of its words (``pin``, ``otp_code``,
``code_1``, ``confirm-pin``): words are the runs of letters of the lower-cased key."""

SECRET_KEY_FRAGMENTS: Final = (
    "password",
    "passwd",
    "passphrase",
    "passcode",
    "pwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "access_key",
    "private_key",
    "credential",
    "session",
    "cookie",
    "authorization",
    "bearer",
    "signature",
    "salt",
)
"""Substrings that make any key a secret (matched on the normalized key, ``-``/space as ``_``)."""

SUSPICIOUS_KEYS: Final = frozenset(
    {
        "reason",
        "error",
        "errors",
        "status",
        "message",
        "msg",
        "success",
        "successful",
        "result",
        "failure",
        "failure_reason",
        "fail",
        "failed",
        "exists",
        "ip",
        "ip_address",
        "client_ip",
        "user_agent",
        "useragent",
        "timestamp",
        "time",
        "date",
        "attempt",
        "attempts",
        "count",
        "context",
    }
)
"""Keys that look like event data rather than identifiers: kept, but warned about once."""

_WORDS: Final = re.compile(r"[a-z]+")

_EMAIL_KEYS: Final = frozenset({"email", "mail", "e-mail", "e_mail"})

# Key categories.
_IDENTIFIER: Final = 0
_SUSPICIOUS: Final = 1
_SECRET: Final = 2
_BAD_KEY: Final = 3


def normalize_key(key: str) -> str:
    """An identifier key as recorded: trimmed and lower-cased."""
    return key.strip().lower()


def is_secret_key(key: str) -> bool:
    """Whether ``key`` names a secret that must never be recorded."""
    folded = normalize_key(key).replace("-", "_").replace(" ", "_")
    if any(fragment in folded for fragment in SECRET_KEY_FRAGMENTS):
        return True
    return folded in SECRET_KEYS or any(word in SECRET_KEYS for word in _WORDS.findall(folded))


@dataclass(frozen=True)
class _KeyInfo:
    name: str
    category: int
    is_email: bool


_key_cache: dict[str, _KeyInfo] = {}
_KEY_CACHE_SIZE: Final = 2048


def _classify(key: str) -> _KeyInfo:
    info = _key_cache.get(key)
    if info is not None:
        return info
    name = normalize_key(key)
    if not name or len(name) > MAX_KEY_LENGTH or not is_unicode_text(name):
        category = _BAD_KEY
    elif is_secret_key(name):
        category = _SECRET
    elif name.replace("-", "_").replace(" ", "_") in SUSPICIOUS_KEYS:
        category = _SUSPICIOUS
    else:
        category = _IDENTIFIER
    folded = name.replace("-", "_")
    # E-mail addresses compare case-insensitively in practice: one account, one identity.
    is_email = name in _EMAIL_KEYS or "email" in folded or "e_mail" in folded
    info = _KeyInfo(name, category, is_email)
    if len(_key_cache) < _KEY_CACHE_SIZE:  # bounded: keys may come from untrusted input
        _key_cache[key] = info
    return info


_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()
_MAX_WARNINGS: Final = 1000


def warn_once(topic: str, detail: str, message: str, *args: object) -> None:
    """Log ``message`` at WARNING once per (topic, detail), with a bounded memory."""
    marker = (topic, detail)
    if marker in _warned:
        return
    with _warned_lock:
        if marker in _warned or len(_warned) >= _MAX_WARNINGS:
            return
        _warned.add(marker)
    _logger.warning(message, *args)


def reset_warnings() -> None:
    """Forget which warnings were already logged (tests use it to observe them again)."""
    with _warned_lock:
        _warned.clear()


class IdentifierError(ValueError):
    """Raised instead of a warning in strict mode: the call's identifiers are misused."""


class Identity(NamedTuple):
    """Normalized identifiers of one user, in canonical (sorted by key) order.

    A named tuple rather than a frozen dataclass: one is built on every tracking call that
    misses the memo, and a tuple is the cheapest immutable record Python has.
    """

    items: tuple[tuple[str, str], ...]
    """``(key, value)`` pairs sorted by key."""
    primary_key: str | None
    """The primary key's name, ``None`` when there is no usable identifier."""

    @property
    def primary_value(self) -> str | None:
        """The primary key's normalized value."""
        for key, value in self.items:
            if key == self.primary_key:
                return value
        return None

    def as_dict(self) -> dict[str, str]:
        """The identifiers as a plain mapping."""
        return dict(self.items)


def _problem(strict: bool, topic: str, detail: str, message: str, *args: object) -> None:
    if strict:
        raise IdentifierError(message % args)
    warn_once(topic, detail, message, *args)


def is_unicode_text(text: str) -> bool:
    """Whether ``text`` is valid Unicode text: a lone surrogate (``"\\ud800"``, which a broken
    decoder or a JSON ``\\ud800`` escape can produce) has no UTF-8 encoding, so no attribute or
    hash can carry it."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _normalize_value(value: object, is_email: bool) -> str | None:
    """The recorded form of ``value``, or ``None`` when it cannot be an identifier."""
    kind = type(value)
    if kind is str:
        text: str = value.strip()  # type: ignore[attr-defined]
        if not text.isascii():
            text = unicodedata.normalize("NFC", text)
            if not is_unicode_text(text):
                return None
    elif kind is int or (isinstance(value, int) and not isinstance(value, bool)):
        text = str(int(value))  # type: ignore[call-overload]
    elif isinstance(value, uuid.UUID):
        text = str(value)
    elif isinstance(value, str):  # a str subclass (e.g. a lazy or marked-safe string)
        text = unicodedata.normalize("NFC", str.strip(value))
        if not is_unicode_text(text):
            return None
    else:
        return None
    if not text or len(text) > MAX_VALUE_LENGTH:
        return None
    return text.lower() if is_email else text


def _describe(value: object) -> str:
    if isinstance(value, str):
        if not value.strip():
            return "an empty string"
        if not is_unicode_text(value):
            return "not valid Unicode text (a lone surrogate)"
        return f"longer than {MAX_VALUE_LENGTH}"
    if value is None:
        return "None"
    return f"a {type(value).__name__}"


def normalize_identifiers(raw: Mapping[object, object], *, strict: bool = False) -> Identity:
    """Normalize a caller's identifier mapping into an :class:`Identity`.

    Never raises unless ``strict``: anything unusable is dropped with a warning logged once per
    key name. With ``strict``, the first problem raises :class:`IdentifierError`.
    """
    found: dict[str, str] = {}
    for key, value in raw.items():
        if type(key) is not str and not isinstance(key, str):
            _problem(
                strict,
                "key-type",
                type(key).__name__,
                "usermon: dropped an identifier whose key is a %s, not a string",
                type(key).__name__,
            )
            continue
        info = _classify(key)
        category = info.category
        if category == _SECRET:
            # Never the value, never recorded, in any mode: only the key name is logged.
            _problem(
                strict,
                "secret",
                info.name,
                "usermon: %r looks like a secret and is never recorded; pass only identifiers",
                info.name,
            )
            continue
        if category == _BAD_KEY:
            _problem(
                strict,
                "bad-key",
                info.name[:MAX_KEY_LENGTH],
                "usermon: dropped an identifier whose key is empty, longer than %d or not "
                "valid Unicode text",
                MAX_KEY_LENGTH,
            )
            continue
        if category == _SUSPICIOUS:
            # Kept (the seed says extra keys become part of the identity) but it splits one
            # account into several identities downstream, so say so, once.
            warn_once(
                "suspicious",
                info.name,
                "usermon: identifier key %r does not look like an identifier; it is kept as part "
                "of the user's identity, so the same account must always send it with the same "
                "value. Pass only identifiers (email, username, ids).",
                info.name,
            )
        normalized = _normalize_value(value, info.is_email)
        if normalized is None:
            _problem(
                strict,
                "value",
                info.name,
                "usermon: dropped identifier %r: its value is %s (identifiers are non-empty "
                "strings up to %d characters, integers or UUIDs)",
                info.name,
                _describe(value),
                MAX_VALUE_LENGTH,
            )
            continue
        if info.name in found:
            _problem(
                strict,
                "duplicate",
                info.name,
                "usermon: identifier %r given twice (keys differ only by case or spaces); the "
                "first is kept",
                info.name,
            )
            continue
        found[info.name] = normalized
    if not found:
        return Identity((), None)
    items = tuple(sorted(found.items()))
    return Identity(items, primary_key_of(found))


def normalize_plain(raw: dict[str, str]) -> Identity | None:
    """:func:`normalize_identifiers` for the common case, or ``None`` when it does not apply.

    The common case is a dict of ``str`` keys and values whose keys are all plain identifiers
    (already classified) and whose values all survive normalization, with no two keys that
    normalize alike: nothing to drop, warn about or raise, so the loop can skip every check the
    general path needs. Any other input returns ``None`` and the caller runs the general path,
    which warns exactly as before. The result is the same :class:`Identity` as
    :func:`normalize_identifiers` gives (``tests/sdk/test_properties.py`` holds them equal).
    """
    found: dict[str, str] = {}
    cache = _key_cache
    for key, value in raw.items():
        if type(key) is not str or type(value) is not str:
            return None
        info = cache.get(key)
        if info is None or info.category != _IDENTIFIER:
            return None  # first sight of the key, or one the general path warns about
        text = _plain_value(info, value)
        if text is None or info.name in found:
            return None
        found[info.name] = text
    if len(found) == 1:
        # One identifier, the usual login: no sort, and it is its own primary key.
        [(name, text)] = found.items()
        return Identity(((name, text),), name)
    if not found:
        return None
    return Identity(tuple(sorted(found.items())), primary_key_of(found))


def normalize_one(key: str, value: str) -> tuple[str, str] | None:
    """:func:`normalize_plain` of a one-item dict of ``str``, as its one ``(key, value)`` pair
    (which is also the primary key), or ``None`` when the general path must run: the usual
    login, without building a dict or an :class:`Identity` on the way."""
    info = _key_cache.get(key)
    if info is None or info.category != _IDENTIFIER:
        return None
    text = _plain_value(info, value)
    return None if text is None else (info.name, text)


def _plain_value(info: _KeyInfo, value: str) -> str | None:
    """A plain identifier's value normalized (stripped, NFC, an e-mail lower-cased), or ``None``
    when the general path must decide (empty, too long, not Unicode text): the one rule of both
    fast paths."""
    text = value.strip()
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
        if not is_unicode_text(text):
            return None
    if not text or len(text) > MAX_VALUE_LENGTH:
        return None
    return text.lower() if info.is_email else text


def primary_key_of(keys: Mapping[str, object] | tuple[str, ...]) -> str | None:
    """The primary key among normalized ``keys``: the first preferred name, else alphabetical."""
    for candidate in attrs.PRIMARY_KEY_PREFERENCE:
        if candidate in keys:
            return candidate
    return min(keys) if keys else None
