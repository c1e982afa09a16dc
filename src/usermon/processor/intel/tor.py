"""The Tor exit list: which addresses are Tor exit relays, from a file or a URL, kept fresh.

The source is the Tor Project's bulk exit list (``https://check.torproject.org/torbulkexitlist``:
one address per line); ``ExitAddress <ip> <date>`` lines of the ``exit-addresses`` format are
read too, blank lines and ``#`` comments skipped. A URL is fetched with httpx and refreshed on a
schedule (:class:`Refresher`); a file is re-read when it changes. When a refresh fails (network
down, HTTP error, a body with no address in it), the last good list stays in force and the
failure is recorded for ``usermon intel`` to report. With ``cache``, the last good download is
also written to disk and read back at start, so a restart without network still knows the exits.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_REFRESH_INTERVAL", "Refresher", "TorExitList", "TorListStatus", "parse"]

logger = logging.getLogger(__name__)

DEFAULT_REFRESH_INTERVAL = 3600.0
"""Seconds between refreshes of a URL source (the Tor Project regenerates the list hourly-ish)."""

FETCH_TIMEOUT = 20.0


def parse(text: str) -> tuple[frozenset[str], int]:
    """The exit addresses in ``text`` (normalized) and how many non-empty lines were unusable."""
    exits: set[str] = set()
    bad = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("ExitAddress "):
            parts = line.split()
            line = parts[1] if len(parts) > 1 else ""
        elif " " in line:
            if line.split(" ", 1)[0] in {"ExitNode", "Published", "LastStatus"}:
                continue  # the other lines of the exit-addresses format
            bad += 1
            continue
        try:
            exits.add(str(ipaddress.ip_address(line)))
        except ValueError:
            bad += 1
    return frozenset(exits), bad


@dataclass(frozen=True, slots=True)
class TorListStatus:
    source: str
    count: int
    loaded_at: float | None  # when the list in force was fetched or read (epoch seconds)
    source_time: float | None  # the file's modification time, or the server's Last-Modified
    last_attempt: float | None
    last_error: str | None
    skipped_lines: int


class TorExitList:
    """The exit addresses in force, with their provenance. Safe to read from any thread."""

    def __init__(
        self,
        source: str,
        cache: str | os.PathLike[str] | None = None,
        timeout: float = FETCH_TIMEOUT,
    ) -> None:
        self.source = source
        self.cache = Path(cache) if cache is not None else None
        self.timeout = timeout
        self.is_url = source.startswith(("http://", "https://"))
        self._exits: frozenset[str] = frozenset()
        self._loaded_at: float | None = None
        self._source_time: float | None = None
        self._last_attempt: float | None = None
        self._last_error: str | None = None
        self._skipped = 0
        self._lock = threading.Lock()
        if self.is_url and self.cache is not None and self.cache.is_file():
            try:
                self._install(self.cache.read_text("utf-8"), self.cache.stat().st_mtime)
            except (OSError, ValueError) as exc:
                logger.warning(
                    "usermon: ignoring unreadable Tor list cache %s: %s", self.cache, exc
                )

    def __contains__(self, ip: object) -> bool:
        return ip in self._exits

    def __len__(self) -> int:
        return len(self._exits)

    @property
    def exits(self) -> frozenset[str]:
        return self._exits

    def status(self) -> TorListStatus:
        return TorListStatus(
            self.source,
            len(self._exits),
            self._loaded_at,
            self._source_time,
            self._last_attempt,
            self._last_error,
            self._skipped,
        )

    def _install(self, text: str, source_time: float | None) -> None:
        exits, bad = parse(text)
        if not exits:
            raise ValueError("no exit address in it")
        with self._lock:
            self._exits = exits
            self._skipped = bad
            self._loaded_at = time.time()
            self._source_time = source_time

    def refresh(self) -> bool:
        """Fetch or re-read the source. True when a new list is in force; on failure the last
        good list stays and the error is kept in :meth:`status` (never raised)."""
        self._last_attempt = time.time()
        try:
            if self.is_url:
                text, source_time = self._fetch()
            else:
                path = Path(self.source)
                mtime = path.stat().st_mtime
                if self._loaded_at is not None and mtime == self._source_time:
                    self._last_error = None
                    return False  # unchanged since the last read
                text, source_time = path.read_text("utf-8"), mtime
            self._install(text, source_time)
        except Exception as exc:  # any failure at all keeps the last good list
            self._last_error = f"{type(exc).__name__}: {exc}"
            logger.warning(
                "usermon: Tor exit list refresh from %s failed (%s); keeping %d known exits",
                self.source,
                self._last_error,
                len(self._exits),
            )
            return False
        self._last_error = None
        if self.is_url and self.cache is not None:
            self._write_cache(text)
        return True

    def _fetch(self) -> tuple[str, float | None]:
        import httpx  # the processor extra; imported when a URL is actually used

        response = httpx.get(self.source, timeout=self.timeout, follow_redirects=True)
        response.raise_for_status()
        modified = response.headers.get("last-modified")
        source_time = None
        if modified:
            from email.utils import parsedate_to_datetime

            try:
                source_time = parsedate_to_datetime(modified).timestamp()
            except (TypeError, ValueError):
                source_time = None
        return response.text, source_time

    def _write_cache(self, text: str) -> None:
        assert self.cache is not None
        try:
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            partial = self.cache.with_name(self.cache.name + ".partial")
            partial.write_text(text, "utf-8")
            partial.replace(self.cache)  # atomic: a reader never sees half a list
        except OSError as exc:
            logger.warning("usermon: cannot write Tor list cache %s: %s", self.cache, exc)


class Refresher:
    """Refreshes a :class:`TorExitList` every ``interval`` seconds on a daemon thread."""

    def __init__(self, exits: TorExitList, interval: float = DEFAULT_REFRESH_INTERVAL) -> None:
        if interval <= 0:
            raise ValueError("the refresh interval must be positive")
        self.exits = exits
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="usermon-tor-refresh", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.exits.refresh()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
