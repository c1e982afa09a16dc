"""What the Redis state and the Redis store share: their Lua scripts and Redis' errors.

The server-side scripts are ``.lua`` files beside the backend that runs them
(``storage/state/lua/`` for :class:`~usermon.processor.storage.state.redis.RedisState`,
``storage/lua/`` for :class:`~usermon.processor.storage.redis.RedisStore`). :func:`lua_script`
reads a script once per process, prefixed with the helper files it uses and with its constants
filled in; each backend registers it once per client (``redis.Redis.register_script``), which
calls it by SHA (``EVALSHA``) and loads it again only when the server answers that it does not
know it (after a restart or ``SCRIPT FLUSH``). :func:`unavailable_as_store_error` turns a Redis
that does not answer into :class:`~usermon.processor.storage.errors.StateUnavailable`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib import resources
from typing import Any, TypeVar, cast

import redis.exceptions

from usermon.processor.storage.errors import StateUnavailable

__all__ = ["lua_script", "unavailable_as_store_error"]

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
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise StateUnavailable(f"redis unavailable: {exc}") from exc

    return cast("_F", wrapper)
