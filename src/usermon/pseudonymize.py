"""Pseudonyms: the keyed hash of an identifier value and ``user.hash`` of a whole identity.

``user.hash`` is the aggregation key downstream, so every reporter (manual calls and every
instrumentor) must derive it the same way: SHA-256 over the canonical encoding of the identity
(all identifiers sorted by key, each key and value length-prefixed so no two identities share an
encoding), keyed as HMAC-SHA256 with USERMON_HASH_KEY when one is set. In anonymization mode each
identifier value is replaced by its HMAC-SHA256 under the same key. Digests are lower-case hex.
The keyed HMAC state is built once per settings (:attr:`usermon.settings.Settings.keyed_hash`)
and copied per value, which is much cheaper than keying a new one.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

__all__ = ["canonical_identity", "hash_value", "identity_hash", "keyed_hash_object"]


def keyed_hash_object(key: bytes) -> Any:
    """A keyed HMAC-SHA256 object to ``.copy()`` per value.

    CPython's ``hmac.HMAC`` wraps a C HMAC object (OpenSSL's, in ``_hmac``); copying the C object
    directly skips building a Python wrapper per value, about 0.7 µs of a 2.4 µs keyed digest.
    The inner object is private, so it is used only when it exists and is checked here to give
    the same digest as the wrapper; otherwise the wrapper is returned.
    """
    wrapper = hmac.new(key, digestmod=hashlib.sha256)
    inner = getattr(wrapper, "_hmac", None)
    return inner if inner is not None and _same_digests(inner, wrapper) else wrapper


def _same_digests(candidate: Any, reference: Any) -> bool:
    try:
        probe = candidate.copy()
        probe.update(b"usermon")
        expected = reference.copy()
        expected.update(b"usermon")
        return bool(probe.hexdigest() == expected.hexdigest())
    except Exception:  # an unexpected implementation: the caller keeps the public wrapper
        return False


def canonical_identity(items: tuple[tuple[str, str], ...]) -> bytes:
    """The canonical encoding of an identity: ``<len>:<key><len>:<value>`` per pair, in the
    order given, which must be sorted by key (an :class:`usermon.identifiers.Identity` is).

    Lengths count characters, so ``{"a": "b:c"}`` and ``{"a:b": "c"}`` never collide.
    """
    if len(items) == 1:  # the usual identity: no list, no join
        [(k, v)] = items
        return f"{len(k)}:{k}{len(v)}:{v}".encode()
    return "".join([f"{len(k)}:{k}{len(v)}:{v}" for k, v in items]).encode()


def hash_value(keyed: Any, value: str) -> str:
    """The HMAC-SHA256 of one identifier value under the prepared key object ``keyed``."""
    digest = keyed.copy()
    digest.update(value.encode("utf-8"))
    return digest.hexdigest()  # type: ignore[no-any-return]


def identity_hash(items: tuple[tuple[str, str], ...], keyed: Any = None) -> str:
    """``user.hash`` of an identity: HMAC-SHA256 with the key object if given, else SHA-256."""
    payload = canonical_identity(items)
    if keyed is None:
        return hashlib.sha256(payload).hexdigest()
    digest = keyed.copy()
    digest.update(payload)
    return digest.hexdigest()  # type: ignore[no-any-return]
