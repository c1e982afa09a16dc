"""What the Redis state and the Redis store share: their Lua scripts and Redis' errors.

The server-side scripts are ``.lua`` files beside the backend that runs them
(``storage/state/lua/`` for :class:`~usermon.processor.storage.state.redis.RedisState`,
``storage/lua/`` for :class:`~usermon.processor.storage.redis.RedisStore`). :func:`lua_script`
reads a script once per process, prefixed with the helper files it uses and with its constants
filled in; each backend registers it once per client (``redis.Redis.register_script``), which
calls it by SHA (``EVALSHA``) and loads it again only when the server answers that it does not
know it (after a restart or ``SCRIPT FLUSH``). :func:`unavailable_as_store_error` turns a Redis
that does not answer into :class:`~usermon.processor.storage.errors.StateUnavailable`.
:func:`redis_client` opens the client both use, on one server or through Redis Sentinel.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib import resources
from typing import Any, Final, TypeVar, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
import redis.exceptions
import redis.sentinel

from usermon.processor.storage.errors import StateUnavailable

__all__ = ["SENTINEL_SCHEME", "lua_script", "redis_client", "unavailable_as_store_error"]

_F = TypeVar("_F", bound=Callable[..., Any])


@functools.cache
def lua_script(
    package: str,
    name: str,
    helpers: tuple[str, ...] = (),
    constants: tuple[tuple[str, Any], ...] = (),
) -> str:
    """The script ``name`` of the ``lua`` folder of ``package``, after the ``helpers`` files of
    the same folder (the Lua functions it calls), with each ``__NAME__`` of ``constants``
    replaced by its value (a Lua identifier until then, so every file parses on its own)."""
    folder = resources.files(package).joinpath("lua")
    parts = [folder.joinpath(part).read_text(encoding="utf-8") for part in (*helpers, name)]
    text = "\n".join(parts)
    for constant, value in constants:
        text = text.replace(f"__{constant}__", str(value))
    return text


def unavailable_as_store_error(method: _F) -> _F:
    """``method`` with Redis down, unreachable or timing out raised as
    :class:`~usermon.processor.storage.errors.StateUnavailable` (the receiver answers 503)."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except redis.sentinel.MasterNotFoundError as exc:  # its text holds a whole client's repr
            raise StateUnavailable(
                "redis unavailable: no Sentinel named a primary for the service (the Sentinels "
                "are down or unreachable, or watch no service of that name)"
            ) from exc
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise StateUnavailable(f"redis unavailable: {exc}") from exc

    return cast("_F", wrapper)


SENTINEL_SCHEME: Final = "redis+sentinel"
"""The URL scheme of a Redis reached through Sentinel (:func:`redis_client`)."""

SENTINEL_PORT: Final = 26379


def redis_client(url: str, **options: Any) -> redis.Redis:
    """A client of the Redis at ``url``: ``redis://``, ``rediss://`` (TLS) or ``unix://`` as
    redis-py reads them, or ``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/
    <service>[/<db>][?sentinel_password=...]``: the primary that those Sentinels name
    ``<service>``, asked again whenever a connection fails or lands on a replica, so a failover
    costs the requests in flight (a 503 the sender retries), not the deployment. The user and
    password are the data nodes'; ``sentinel_password`` is the Sentinels' own, when they have
    one. ``options`` are connection options (timeouts, decoding) for the data nodes, and the
    timeouts for the Sentinels too. Raises ``ValueError`` for a malformed Sentinel URL."""
    parts = urlsplit(url)
    if parts.scheme.lower() != SENTINEL_SCHEME:
        return redis.Redis.from_url(url, **options)
    sentinels = [_host_port(item) for item in parts.netloc.rpartition("@")[2].split(",")]
    path = [unquote(p) for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ValueError(f"a Sentinel URL names its service: {SENTINEL_SCHEME}://host/<service>")
    service = path[0]
    try:
        db = int(path[1]) if len(path) == 2 else 0
    except ValueError:
        raise ValueError(f"the database of a Sentinel URL is a number, not {path[1]!r}") from None
    query = dict(parse_qsl(parts.query))
    unknown = sorted(set(query) - {"sentinel_password"})
    if unknown:
        raise ValueError(f"unknown Sentinel URL options: {', '.join(unknown)}")
    timeouts = {k: v for k, v in options.items() if k.startswith("socket_")}
    if "sentinel_password" in query:
        timeouts["password"] = query["sentinel_password"]
    if parts.username:
        options["username"] = unquote(parts.username)
    if parts.password:
        options["password"] = unquote(parts.password)
    watched = redis.sentinel.Sentinel(sentinels, sentinel_kwargs=timeouts)
    primary = watched.master_for(service, redis_class=redis.Redis, db=db, **options)
    return cast("redis.Redis", primary)


def _host_port(item: str) -> tuple[str, int]:
    host, _, port = item.strip().rpartition(":")
    if not host:  # no port given
        host, port = port, ""
    if not host or not (port.isdigit() or port == ""):
        raise ValueError(f"not host[:port] in the Sentinel URL: {item!r}")
    return host.strip("[]"), int(port) if port else SENTINEL_PORT
