"""Protection in the application: the background decision sync and ``usermon.check``.

With USERMON_PROTECT on (or ``usermon.configure(protect=True, ...)``), a daemon thread polls the
processor's decision stream (:mod:`usermon.decisions` owns the format) every
USERMON_DECISIONS_INTERVAL seconds, with jittered exponential backoff on errors, and publishes an
immutable :class:`~usermon.decisions.DecisionIndex`; :func:`check` answers from that snapshot
only, so the request path never waits on the network. It fails open: while the processor is down
or slow the last synced decisions apply until each expires, then nothing is refused; each kind of
trouble is logged at most once a minute and counted in :func:`protection_status`. The sync starts
on ``configure()`` or at the first ``check()``, stops with :func:`stop` (and at exit), and restarts
in a forked child at the child's first ``check()``, from the parent's copy.
"""

from __future__ import annotations

import atexit
import io
import logging
import os
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from usermon import settings as _settings
from usermon.decisions import (
    Allowlist,
    Decision,
    DecisionIndex,
    MalformedAnswer,
    apply_answer,
    ip_key,
    parse_answer,
    user_agent_hash,
)
from usermon.identifiers import normalize_identifiers, normalize_plain
from usermon.pseudonymize import identity_hash
from usermon.settings import Settings, get_settings

__all__ = [
    "CONNECT_TIMEOUT",
    "MAX_BACKOFF",
    "MAX_BODY_BYTES",
    "READ_TIMEOUT",
    "STREAM_PATH",
    "TOTAL_TIMEOUT",
    "ProtectionStatus",
    "check",
    "protection_status",
    "stop",
]

_logger = logging.getLogger("usermon")

STREAM_PATH: Final = "/api/decisions/stream"
"""Path of the decision stream under USERMON_DECISIONS_URL."""

MAX_BODY_BYTES: Final = 16 * 1024 * 1024
"""Largest answer read; a longer one is rejected (and counted) and the last good set kept."""

CONNECT_TIMEOUT: Final = 5.0
"""Seconds to connect to the processor."""

READ_TIMEOUT: Final = 10.0
"""Seconds any single read of the answer may wait."""

TOTAL_TIMEOUT: Final = 30.0
"""Seconds one answer may take in all, headers included (a server dripping bytes is cut off)."""

MAX_BACKOFF: Final = 60.0
"""Longest wait between two attempts while the processor fails (or the interval, if longer)."""

LOG_EVERY: Final = 60.0
"""Seconds between two log lines about the same kind of sync trouble."""

_CACHE_SIZE: Final = 4096


@dataclass(frozen=True)
class ProtectionStatus:
    """What the decision sync has done so far: for an application's health check."""

    enabled: bool
    """Whether protection is on (a sync is configured)."""
    running: bool
    """Whether the sync thread is alive in this process."""
    last_sync: float | None
    """POSIX time of the last answer applied, ``None`` before the first."""
    last_attempt: float | None
    """POSIX time of the last request to the processor."""
    syncs: int
    """Answers applied."""
    failures: int
    """Attempts that failed (unreachable, slow, an HTTP error, a rejected answer)."""
    consecutive_failures: int
    """Failures since the last answer applied (0 when healthy)."""
    rejected_answers: int
    """Answers rejected as a whole (malformed or larger than :data:`MAX_BODY_BYTES`)."""
    skipped_decisions: int
    """Decisions left out: unknown scope or action, or a value the SDK cannot use."""
    dropped_decisions: int
    """Decisions dropped over :data:`usermon.decisions.MAX_DECISIONS`."""
    decisions: int
    """Decisions held that have not expired."""
    allowlist_entries: int
    """Allowlisted networks and users held."""
    last_error: str | None
    """The last failure, in words; ``None`` after a success."""


class _SyncFailure(Exception):
    """One attempt failed; the message says why."""


class _Rejected(_SyncFailure):
    """The answer arrived and cannot be used."""


class _RateLimitedLog:
    """At most one log line per kind of trouble every :data:`LOG_EVERY` seconds."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def warning(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < LOG_EVERY:
            return
        self._last[kind] = now
        _logger.warning(message, *args)


_Params = tuple[str, str | None, float]


class _Sync(threading.Thread):
    """The background poller of one configuration: owns the cursor and the decision set."""

    def __init__(self, params: _Params, seed: _Sync | None) -> None:
        super().__init__(name="usermon-decisions", daemon=True)
        self.url, self.token, self.interval = params
        self.pid = os.getpid()
        self.halt = threading.Event()
        self.connection: Any = None
        self.log = _RateLimitedLog()
        self.cursor: str | None = None
        self.decisions: dict[str, Decision] = {}
        self.allow = Allowlist()
        self.last_sync: float | None = None
        self.last_attempt: float | None = None
        self.syncs = self.failures = self.consecutive = 0
        self.rejected = self.skipped = self.dropped = 0
        self.last_error: str | None = None
        if seed is not None:  # a forked child goes on from its parent's copy
            self.cursor, self.decisions, self.allow = seed.cursor, seed.decisions, seed.allow
            self.last_sync, self.syncs = seed.last_sync, seed.syncs

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                self.sync_once()
                delay = self.interval * random.uniform(0.9, 1.1)  # instances drift apart
            except Exception as error:  # never let the thread die: the next attempt may work
                if self.halt.is_set():
                    break  # interrupted by stop(): not a failure of the processor
                delay = self._failed(error)
            self.halt.wait(delay)

    def _failed(self, error: Exception) -> float:
        self.failures += 1
        self.consecutive += 1
        ours = isinstance(error, _SyncFailure)
        self.last_error = str(error) if ours else f"{type(error).__name__}: {error}"
        if isinstance(error, _Rejected):
            self.rejected += 1
            self.log.warning(
                "rejected",
                "usermon: rejected a decision stream answer from %s (%s); keeping the last good "
                "decisions (counted in usermon.protection_status())",
                self.url,
                error,
            )
        else:
            now = _clock()
            held = sum(1 for d in self.decisions.values() if d.expires > now)
            self.log.warning(
                "unreachable",
                "usermon: cannot sync decisions from %s (%s); failing open: the %d decisions "
                "already synced apply until they expire, then nothing is refused (counted in "
                "usermon.protection_status())",
                self.url,
                self.last_error,
                held,
            )
        # Exponential backoff with jitter: many instances must not retry in step.
        ceiling = max(MAX_BACKOFF, self.interval)
        backoff: float = min(ceiling, self.interval * 2.0 ** min(self.consecutive, 16))
        return backoff * random.uniform(0.5, 1.0)

    def sync_once(self) -> None:
        self.last_attempt = _clock()
        body = self._fetch()
        if self.halt.is_set():
            return
        try:
            answer = parse_answer(body)
        except MalformedAnswer as error:
            raise _Rejected(f"malformed answer: {error}") from None
        now = _clock()
        decisions, dropped = apply_answer(self.decisions, answer, now)
        changed = (
            answer.full
            or answer.new
            or answer.deleted
            or answer.allow != self.allow
            or len(decisions) != len(self.decisions)
        )
        self.decisions, self.allow, self.cursor = decisions, answer.allow, answer.cursor
        if changed:
            _publish(self, DecisionIndex(decisions, answer.allow))
        self.syncs += 1
        self.consecutive = 0
        self.last_sync = now
        self.last_error = None
        if answer.skipped:
            self.skipped += answer.skipped
            self.log.warning(
                "skipped",
                "usermon: skipped %d decisions from %s with an unknown scope or action or an "
                "unusable value (is the processor newer than this SDK?)",
                answer.skipped,
                self.url,
            )
        if dropped:
            self.dropped += dropped
            self.log.warning(
                "dropped",
                "usermon: more than %d decisions from %s; the %d expiring soonest were dropped",
                len(decisions),
                self.url,
                dropped,
            )

    def _fetch(self) -> bytes:
        # Imported here: `import usermon` stays light, and only a protecting process pays.
        import http.client
        from urllib.parse import quote, urlsplit

        parts = urlsplit(self.url)
        path = parts.path.rstrip("/") + STREAM_PATH
        if self.cursor is not None:
            path += "?cursor=" + quote(self.cursor, safe="")
        headers = {"Accept": "application/json", "User-Agent": "usermon-sdk"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        host = parts.hostname or ""
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                host, parts.port or 443, timeout=CONNECT_TIMEOUT
            )
        else:
            connection = http.client.HTTPConnection(host, parts.port or 80, timeout=CONNECT_TIMEOUT)
        self.connection = connection
        try:
            try:
                connection.connect()
                if connection.sock is not None:
                    connection.sock.settimeout(READ_TIMEOUT)
                connection.request("GET", path, headers=headers)
                # The whole answer, status line and headers included, within TOTAL_TIMEOUT:
                # http.client reads through this file, which shortens each read's timeout to
                # what is left, so a server dripping bytes cannot hold the sync.
                deadline = time.monotonic() + TOTAL_TIMEOUT

                def respond(sock: Any, **options: Any) -> http.client.HTTPResponse:
                    wrapped: Any = _DeadlineSocket(sock, deadline)
                    return http.client.HTTPResponse(wrapped, **options)

                connection.response_class = respond  # type: ignore[assignment]
                response = connection.getresponse()
            except TimeoutError as error:
                raise _SyncFailure(f"no answer in time ({error})") from None
            except OSError as error:
                _close_lost_sockets(error)
                raise _SyncFailure(f"{type(error).__name__}: {error}") from None
            except http.client.HTTPException as error:
                raise _SyncFailure(f"{type(error).__name__}: {error}") from None
            if response.status != 200:
                hint = " (check USERMON_DECISIONS_TOKEN)" if response.status in (401, 403) else ""
                raise _SyncFailure(f"HTTP {response.status} {response.reason}{hint}")
            declared = response.getheader("Content-Length")
            too_long = declared is not None and declared.strip().isdigit()
            if too_long and int(declared or 0) > MAX_BODY_BYTES:
                raise _Rejected(f"answer of {declared} bytes, over {MAX_BODY_BYTES}")
            return self._read_body(response)
        finally:
            self.connection = None
            connection.close()

    def _read_body(self, response: Any) -> bytes:
        import http.client

        body = bytearray()
        try:
            while True:
                chunk = response.read1(65536)
                if not chunk:
                    return bytes(body)
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    raise _Rejected(f"answer over {MAX_BODY_BYTES} bytes")
                if self.halt.is_set():
                    raise _SyncFailure("stopped")
        except TimeoutError as error:
            raise _SyncFailure(f"no answer in time ({error})") from None
        except (OSError, http.client.HTTPException) as error:
            raise _SyncFailure(f"{type(error).__name__}: {error}") from None

    def request_stop(self) -> None:
        """Ask the thread to stop, interrupting a request in flight."""
        self.halt.set()
        connection = self.connection
        sock = getattr(connection, "sock", None)
        if sock is not None:
            try:
                import socket

                sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked read at once
            except OSError:
                pass


def _close_lost_sockets(error: OSError) -> None:
    """Close the sockets left open in the frames ``error`` went through.

    When the peer resets a connection before the TLS handshake, ``SSLContext.wrap_socket`` of the
    Pythons we support can raise without closing the TLS socket it had just made (CPython issue
    gh-113280); ``http.client`` never saw that socket, so nothing else closes it and the
    descriptor stays open until the garbage collector finds it.
    """
    import socket

    trace = error.__traceback__
    while trace is not None:
        lost = trace.tb_frame.f_locals.get("self")
        if isinstance(lost, socket.socket) and lost.fileno() != -1:
            lost.close()
        trace = trace.tb_next


class _DeadlineReader(io.RawIOBase):
    """A socket's reads, each with the timeout left before ``deadline`` (at most READ_TIMEOUT)."""

    def __init__(self, sock: Any, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        self._raw = sock.makefile("rb", buffering=0)
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the answer took more than {TOTAL_TIMEOUT:g} s")
        self._sock.settimeout(min(READ_TIMEOUT, left))
        return self._raw.readinto(buffer)  # type: ignore[no-any-return]

    def close(self) -> None:
        self._raw.close()
        super().close()


class _DeadlineSocket:
    """What ``http.client.HTTPResponse`` needs of a socket: ``makefile("rb")``, with a deadline."""

    def __init__(self, sock: Any, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))


_EMPTY: Final = DecisionIndex({}, Allowlist())

_clock = time.time
_lock = threading.Lock()
_index: DecisionIndex = _EMPTY
_sync: _Sync | None = None
_params: _Params | None = None
_watched: Settings | None = None
_hashes: dict[Any, str | None] = {}
_ip_keys: dict[Any, int | None] = {}
_ua_hashes: dict[str, str] = {}
_failure_log = _RateLimitedLog()
_at_exit_registered = False


def _publish(sync: _Sync, index: DecisionIndex) -> None:
    global _index
    with _lock:
        if sync is _sync and not sync.halt.is_set():
            _index = index  # one reference swap: check() reads whole snapshots only


def _params_of(settings: Settings) -> _Params | None:
    if not settings.protect or settings.config_error is not None or not settings.decisions_url:
        return None
    return settings.decisions_url, settings.decisions_token, settings.decisions_interval


def _follow(settings: Settings | None) -> None:
    """Make the sync match ``settings``: start, restart or stop it. Never raises."""
    global _index, _sync, _params, _watched, _at_exit_registered
    try:
        with _lock:
            params = _params_of(settings) if settings is not None else None
            old = _sync
            restart = params != _params or (
                params is not None and (old is None or old.pid != os.getpid())
            )
            if restart:
                if old is not None and old.pid == os.getpid():
                    # (A parent's sync, seen in a forked child, runs nowhere: its event's lock
                    # may even have been held at the fork, so it is left alone.)
                    old.request_stop()
                seed = old if old is not None and params == _params else None
                if seed is None:
                    _index = _EMPTY
                _sync = None
                if params is not None:
                    _sync = _Sync(params, seed)
                    _sync.start()
                    if not _at_exit_registered:
                        atexit.register(stop)
                        _at_exit_registered = True
                _params = params
            _hashes.clear()  # user hashes depend on the settings (the hash key)
            _watched = settings
    except Exception as error:
        _failure_log.warning("follow", "usermon: could not start the decision sync (%s)", error)


def stop(timeout: float = 2.0) -> None:
    """Stop the decision sync and forget the decisions (``check()`` answers ``None`` until a
    ``configure()`` starts it again). Waits up to ``timeout`` seconds for the thread."""
    global _watched
    current = get_settings()
    _halt(timeout)
    with _lock:
        _watched = current  # stays stopped: the next check() does not restart it


def _halt(timeout: float) -> None:
    global _index, _sync, _params
    with _lock:
        sync = _sync
        _sync = None
        _params = None
        _index = _EMPTY
    if sync is not None and sync.pid == os.getpid():
        sync.request_stop()
        if timeout > 0 and sync.is_alive() and sync is not threading.current_thread():
            sync.join(timeout)


def _on_configure(settings: Settings | None) -> None:
    global _watched
    if settings is None:  # settings.reset(): forget everything, re-read on the next check
        _halt(0)
        with _lock:
            _watched = None
        return
    _follow(settings)


_settings.add_listener(_on_configure)


def _after_fork_in_child() -> None:
    global _lock, _watched
    _lock = threading.Lock()  # another thread may have held it at the fork
    _watched = None  # the next check() restarts the sync, seeded with the parent's copy


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _user_hash(identifiers: object, settings: Settings) -> str | None:
    """``user.hash`` of ``identifiers``, computed exactly as ``auth_track`` computes it."""
    cache_key: Any = None
    if type(identifiers) is dict:
        try:
            cache_key = _memo_key(identifiers)
            cached = _hashes.get(cache_key, _MISSING)
        except TypeError:  # an unhashable value
            cache_key, cached = None, _MISSING
        if cached is not _MISSING:
            return cached  # type: ignore[no-any-return]
        identity = normalize_plain(identifiers)
        if identity is None:
            if not all(type(k) is str and type(v) is str for k, v in identifiers.items()):
                cache_key = None  # only str-to-str dicts memoize (True == 1 would alias)
            identity = normalize_identifiers(identifiers, strict=settings.strict)
    elif isinstance(identifiers, Mapping):
        identity = normalize_identifiers(identifiers, strict=settings.strict)
    else:
        return None
    result: str | None = None
    if identity.primary_key is not None and settings.config_error is None:
        result = identity_hash(identity.items, settings.keyed_hash)
    if cache_key is not None:
        if len(_hashes) >= _CACHE_SIZE:
            _hashes.clear()  # cheaper than LRU bookkeeping; identities come back warm
        _hashes[cache_key] = result
    return result


_MISSING: Final[Any] = object()


def _memo_key(identifiers: dict[Any, Any]) -> Any:
    # The usual login has one identifier: its (key, value) pair is the key, no tuple built. A
    # pair never equals a longer identity's tuple of pairs, whose first item is not a str.
    if len(identifiers) == 1:
        for pair in identifiers.items():
            return pair
    return tuple(identifiers.items())


def check(
    ip: str | None = None,
    identifiers: Mapping[str, object] | None = None,
    user_agent: str | None = None,
) -> Decision | None:
    """The decision that applies to a login attempt, or ``None`` to let it go on.

    ``ip`` is the client address (resolved as for ``auth_track``, e.g. with the trusted-proxy
    rule), ``identifiers`` the identifiers the login will report (the same mapping you pass to
    ``auth_track``: they are normalized and hashed into ``user.hash`` the same way),
    ``user_agent`` the client's User-Agent (for ``service_campaign`` decisions). Any may be
    omitted. Answers from memory, never over the network: the allowlist first (an allowlisted
    address or user is never refused), then the strongest action (``block`` over ``challenge``),
    between equals ``user_ip``, ``user``, ``ip``/``network`` (longest prefix), ``service_campaign``.
    With protection off, or nothing synced yet, or the processor down past every decision's
    ``until``, it returns ``None``: protection fails open. Never raises (unless strict mode).
    """
    try:
        settings = get_settings()
        if settings is not _watched:
            _follow(settings)
        index = _index
        if not index.count:
            return None
        key: int | None = None
        if ip is not None:
            key = _ip_keys.get(ip, _MISSING)
            if key is _MISSING:
                key = ip_key(ip.strip()) if isinstance(ip, str) else None
                if len(_ip_keys) >= _CACHE_SIZE:
                    _ip_keys.clear()
                _ip_keys[ip] = key
        user_hash = None
        if identifiers is not None and index.needs_user:
            user_hash = _MISSING
            if type(identifiers) is dict and len(identifiers) == 1:
                # The memo hit inlined (see _user_hash): the warm path is one dict lookup.
                for pair in identifiers.items():
                    try:
                        user_hash = _hashes.get(pair, _MISSING)
                    except TypeError:  # an unhashable value: the general path
                        user_hash = _MISSING
            if user_hash is _MISSING:
                user_hash = _user_hash(identifiers, settings)
        ua_hash = None
        if user_agent is not None and index.campaigns_by_ua:
            ua_hash = _ua_hashes.get(user_agent)
            if ua_hash is None and isinstance(user_agent, str):
                ua_hash = user_agent_hash(user_agent)
                if len(_ua_hashes) >= _CACHE_SIZE:
                    _ua_hashes.clear()
                _ua_hashes[user_agent] = ua_hash
        return index.match(key, user_hash, ua_hash, _clock())
    except Exception as error:
        if _strict():
            raise
        _failure_log.warning(
            "check",
            "usermon: check() failed (%s: %s); the attempt is let through",
            type(error).__name__,
            error,
        )
        return None


def _strict() -> bool:
    try:
        return get_settings().strict
    except Exception:
        return False


def protection_status() -> ProtectionStatus:
    """Counters of the decision sync in this process (all zero when protection is off)."""
    with _lock:
        sync = _sync
        index = _index
    now = _clock()
    if sync is None:
        return ProtectionStatus(
            enabled=False,
            running=False,
            last_sync=None,
            last_attempt=None,
            syncs=0,
            failures=0,
            consecutive_failures=0,
            rejected_answers=0,
            skipped_decisions=0,
            dropped_decisions=0,
            decisions=0,
            allowlist_entries=0,
            last_error=None,
        )
    return ProtectionStatus(
        enabled=True,
        running=sync.is_alive() and sync.pid == os.getpid(),
        last_sync=sync.last_sync,
        last_attempt=sync.last_attempt,
        syncs=sync.syncs,
        failures=sync.failures,
        consecutive_failures=sync.consecutive,
        rejected_answers=sync.rejected,
        skipped_decisions=sync.skipped,
        dropped_decisions=sync.dropped,
        decisions=sum(1 for d in index.decisions.values() if d.expires > now),
        allowlist_entries=len(sync.allow.networks) + len(sync.allow.users),
        last_error=sync.last_error,
    )
