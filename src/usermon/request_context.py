"""Where a tracking call finds its client: the request it runs in, and the trusted-proxy rule.

This module owns :class:`RequestInfo` (the few request facts usermon needs, taken from an ASGI
scope or, header by header as they are asked for, from a WSGI environ), the context variable
through which instrumentors hand the current request to manual ``auth_track`` calls
(:func:`use_request`, :func:`current_request`), the fallbacks when no request was handed over
(Flask's request if Flask is already imported and a request is active, then the current span's
attributes), and :func:`resolve_client_ip`, which applies USERMON_TRUSTED_PROXIES to
X-Forwarded-For / Forwarded: the right-most untrusted address is the client, because every hop
left of the first trusted proxy may be forged.
"""

from __future__ import annotations

import contextlib
import ipaddress
import sys
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Final

from usermon import attributes as attrs
from usermon.settings import TrustedProxies, parse_trusted_proxies

__all__ = [
    "RequestInfo",
    "WsgiHeaders",
    "current_request",
    "request_from_flask",
    "resolve_client_ip",
    "use_request",
]

_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})
# Forwarding chains longer than this are cut from the left (the forgeable side): a header of
# thousands of entries must not cost thousands of parses inside a login.
_MAX_HOPS: Final = 32


@dataclass(frozen=True)
class RequestInfo:
    """The request facts usermon reads: the TCP peer address and the request headers.

    ``headers`` maps lower-case header names (``"x-forwarded-for"``, ``"user-agent"``) to values;
    repeated headers are joined with ``", "`` in arrival order.
    """

    peer_ip: str | None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def user_agent(self) -> str | None:
        """The User-Agent header, or ``None``."""
        return self.headers.get("user-agent") or None

    @classmethod
    def from_wsgi_environ(cls, environ: Mapping[str, Any]) -> RequestInfo:
        """``REMOTE_ADDR`` and the ``HTTP_*`` headers of a WSGI environ.

        The headers are a read-only view of the environ (:class:`WsgiHeaders`), not a copy: a
        tracking call reads two or three headers, while an environ may hold hundreds of keys
        (under Django's runserver it includes the whole process environment). Each header is
        read from the environ when it is looked up, normally within the tracking call.
        """
        peer = environ.get("REMOTE_ADDR")
        return cls(
            peer_ip=peer if isinstance(peer, str) and peer else None,
            headers=WsgiHeaders(environ),
        )

    @classmethod
    def from_asgi_scope(cls, scope: Mapping[str, Any]) -> RequestInfo:
        """Capture ``scope["client"]`` and the headers of an ASGI HTTP or WebSocket scope."""
        headers: dict[str, str] = {}
        for item in scope.get("headers") or ():
            try:
                raw_name, raw_value = item
                name = bytes(raw_name).decode("latin-1").lower()
                value = bytes(raw_value).decode("latin-1")
            except (TypeError, ValueError):
                continue
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        client = scope.get("client")
        peer: str | None = None
        if isinstance(client, (list, tuple)) and client and isinstance(client[0], str):
            peer = client[0] or None
        return cls(peer_ip=peer, headers=headers)


class WsgiHeaders(Mapping[str, str]):
    """The request headers of a WSGI environ, by lower-case header name, read on lookup.

    ``headers["x-forwarded-for"]`` reads ``environ["HTTP_X_FORWARDED_FOR"]``; only ``str``
    values of ``HTTP_*`` keys are headers. Iterating (rare: a lookup never does) walks the
    environ. Names are exactly those a copy would have: ``HTTP_X_FOO`` is ``"x-foo"``, so a
    lookup of ``"X-Foo"`` or ``"x_foo"`` finds nothing, as with a dict of the same headers.
    """

    __slots__ = ("_environ",)

    def __init__(self, environ: Mapping[str, Any]) -> None:
        self._environ = environ

    def __getitem__(self, name: str) -> str:
        if type(name) is str:
            key = "HTTP_" + name.upper().replace("-", "_")
            # Only the names a copy would hold: lower-case, "-" for "_", nothing upper-cased
            # by str.upper() into a different name (e.g. "ß" -> "SS").
            if key[5:].lower().replace("_", "-") == name:
                value = self._environ.get(key)
                if isinstance(value, str):
                    return value
        raise KeyError(name)

    def get(self, name: str, default: Any = None) -> Any:
        # Mapping.get goes through __getitem__ and a KeyError; this is the hot lookup.
        try:
            return self[name]
        except KeyError:
            return default

    def _copy(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for key, value in list(self._environ.items()):
            if isinstance(key, str) and key.startswith("HTTP_") and isinstance(value, str):
                headers[key[5:].lower().replace("_", "-")] = value
        return headers

    def __iter__(self) -> Iterator[str]:
        return iter(self._copy())

    def __len__(self) -> int:
        return len(self._copy())

    def __repr__(self) -> str:
        return f"WsgiHeaders({self._copy()!r})"


_current: ContextVar[RequestInfo | None] = ContextVar("usermon_request", default=None)


def current_request() -> RequestInfo | None:
    """The request an instrumentor declared with :func:`use_request`, if any."""
    return _current.get()


@contextlib.contextmanager
def use_request(info: RequestInfo) -> Iterator[RequestInfo]:
    """Make ``info`` the current request for tracking calls made inside the ``with`` block."""
    token = _current.set(info)
    try:
        yield info
    finally:
        _current.reset(token)


def request_from_flask() -> RequestInfo | None:
    """Flask's current request, only if the application already imported Flask.

    usermon never imports Flask itself: ``import usermon`` must stay light, and an application
    without Flask must not pay for looking.
    """
    flask = sys.modules.get("flask")
    if flask is None:
        return None
    try:
        if not flask.has_request_context():
            return None
        return RequestInfo.from_wsgi_environ(flask.request.environ)
    except Exception:  # a half-imported or unusual Flask must not break a login
        return None


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=4096)
def _parse_ip(token: str) -> IPAddress | None:
    """One hop of a forwarding header: an address, maybe quoted, bracketed or with a port."""
    text = token.strip().strip('"').strip()
    if not text:
        return None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]  # IPv4 with a port
    text = text.split("%", 1)[0]  # an IPv6 zone id is local to the proxy
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def normalize_ip(value: str | None) -> str | None:
    """``value`` as a canonical IP address string, or ``None`` if it is not one."""
    if not value or not isinstance(value, str):
        return None
    return _canonical_ip(value)


@lru_cache(maxsize=4096)
def _canonical_ip(token: str) -> str | None:
    # Cached as a string too: formatting an ip_address object costs more than parsing a cached
    # one, and every tracking call formats the client's address.
    address = _parse_ip(token)
    return None if address is None else str(address)


def _forwarded_for(header: str) -> list[str]:
    """The ``for=`` value of each element of an RFC 7239 Forwarded header, in order."""
    hops: list[str] = []
    for element in header.split(","):
        value = ""
        for pair in element.split(";"):
            name, _, raw = pair.partition("=")
            if name.strip().lower() == "for":
                value = raw
                break
        hops.append(value)
    return hops


def _chain(info: RequestInfo) -> list[str]:
    # X-Forwarded-For wins when both are present: it is what almost every proxy writes, and a
    # client-supplied header of the other kind must not be read instead of the proxy's own.
    xff = info.headers.get("x-forwarded-for")
    if xff:
        hops = xff.split(",")
    else:
        forwarded = info.headers.get("forwarded")
        hops = _forwarded_for(forwarded) if forwarded else []
    return hops[-_MAX_HOPS:]


def resolve_client_ip(
    info: RequestInfo, trusted_proxies: TrustedProxies | str | int | None
) -> str | None:
    """The client's IP address for ``info``, applying the trusted-proxy rule.

    - No trusted proxies: forwarding headers are ignored, the TCP peer is the client.
    - CIDRs: if the peer is not trusted it is the client. Otherwise walk the forwarding chain from
      the right and return the first address outside the trusted networks (the left-most entries
      are whatever the client chose to send). If every hop is trusted, the left-most is returned.
    - A hop count ``n``: ``n`` proxies sit in front; the client is the ``n``-th entry from the
      right of the chain (the left-most one when the chain is shorter).

    Returns ``None`` when the address at that position is missing or not an IP address (e.g. an
    RFC 7239 obfuscated identifier).
    """
    proxies = (
        trusted_proxies
        if isinstance(trusted_proxies, TrustedProxies)
        else parse_trusted_proxies(trusted_proxies)
    )
    peer = normalize_ip(info.peer_ip)
    if not proxies.enabled:
        return peer
    chain = _chain(info)
    if proxies.hops:
        if not chain:
            return peer
        index = max(len(chain) - proxies.hops, 0)
        return normalize_ip(chain[index])
    if peer is None:
        return None
    peer_address = _parse_ip(peer)
    if peer_address is None or not proxies.trusts(peer_address):
        return peer
    for hop in reversed(chain):
        address = _parse_ip(hop)
        if address is None:
            return None
        if not proxies.trusts(address):
            return _canonical_ip(hop)
    return normalize_ip(chain[0]) if chain else peer


_SPAN_UA_ATTRIBUTES: Final = (attrs.USER_AGENT, "http.user_agent")


def client_from_span_attributes(span_attributes: Mapping[str, Any] | None) -> str | None:
    """The client address an HTTP instrumentation recorded on the span, if any."""
    if not span_attributes:
        return None
    for name in attrs.CLIENT_ADDRESS_ATTRIBUTES:
        value = span_attributes.get(name)
        if value:
            return normalize_ip(str(value))
    return None


def client_and_agent_from_span_attributes(
    span_attributes: Mapping[str, Any] | None,
) -> tuple[str | None, str | None]:
    """Both of :func:`client_from_span_attributes` and :func:`user_agent_from_span_attributes`.

    The first tracking call on every span (every login request) reads them, so the usual case,
    ``client.address`` and ``user_agent.original`` present, takes two lookups and no more.
    """
    if span_attributes is None:
        return None, None
    address = span_attributes.get(attrs.CLIENT_ADDRESS)
    agent = span_attributes.get(attrs.USER_AGENT)
    ip = normalize_ip(str(address)) if address else client_from_span_attributes(span_attributes)
    if agent:
        return ip, str(agent)
    return ip, user_agent_from_span_attributes(span_attributes)


def user_agent_from_span_attributes(span_attributes: Mapping[str, Any] | None) -> str | None:
    """The User-Agent an HTTP instrumentation recorded on the span, if any."""
    if not span_attributes:
        return None
    for name in _SPAN_UA_ATTRIBUTES:
        value = span_attributes.get(name)
        if value:
            return str(value)
    return None
