"""A real HTTP server on 127.0.0.1 that serves the decision stream format (docs/protection.md).

It keeps an active set and a change log: a request without a cursor (or with one it never gave)
gets the whole set with ``full: true``; a request with a known cursor gets the additions and
removals since. Tests switch it into misbehaving modes: an HTTP status, a raw body, a body that
never ends, an answer that never comes, headers dripping a byte at a time, or down altogether.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def decision(
    id: str,
    scope: str,
    value: str,
    *,
    action: str = "block",
    ttl: float = 3600.0,
    now: datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A decision as the processor sends it, expiring ``ttl`` seconds after ``now``."""
    start = now or datetime.now(timezone.utc)
    item = {
        "id": id,
        "action": action,
        "scope": scope,
        "value": value,
        "until": rfc3339(start + timedelta(seconds=ttl)),
        "reason": f"test decision {id}",
        "origin": "tests",
        "created": rfc3339(start),
    }
    item.update(extra)
    return item


class DecisionServer:
    """The stream endpoint, its state and its modes. Use as a context manager."""

    def __init__(self) -> None:
        self.active: dict[str, dict[str, Any]] = {}
        self.log: list[tuple[int, str, str]] = []  # (version, "new" | "deleted", id)
        self.version = 0
        self.allow: dict[str, list[str]] = {"networks": [], "users": []}
        self.mode = "ok"
        self.status = 200
        self.raw_body = b""
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.hanging = threading.Event()  # set while a request is held in "hang" mode
        self.release = threading.Event()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        # A short poll: shutdown() waits for it when no request comes to wake the server.
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> DecisionServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.down()

    def down(self) -> None:
        """Stop listening: connections are refused from now on."""
        if self.thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()

    # -- the set -----------------------------------------------------------------------------

    def add(self, *items: dict[str, Any]) -> None:
        with self.lock:
            for item in items:
                self.version += 1
                self.active[item["id"]] = item
                self.log.append((self.version, "new", item["id"]))

    def delete(self, *ids: str) -> None:
        with self.lock:
            for decision_id in ids:
                self.version += 1
                self.active.pop(decision_id, None)
                self.log.append((self.version, "deleted", decision_id))

    def answer(self, cursor: str | None) -> dict[str, Any]:
        with self.lock:
            known = cursor is not None and cursor.isdigit() and int(cursor) <= self.version
            if not known:
                new = list(self.active.values())
                deleted: list[str] = []
            else:
                since = int(cursor or 0)
                changed = {i for v, op, i in self.log if v > since}
                new = [self.active[i] for i in sorted(changed) if i in self.active]
                deleted = sorted(i for i in changed if i not in self.active)
            return {
                "cursor": str(self.version),
                "full": not known,
                "new": new,
                "deleted": deleted,
                "allow": self.allow,
                "server": "tests",  # an unknown field: ignored by the client
            }

    # -- serving -----------------------------------------------------------------------------

    def cursors(self) -> Iterator[str | None]:
        for path, _ in list(self.requests):
            yield parse_qs(urlsplit(path).query).get("cursor", [None])[0]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        self.requests.append((handler.path, dict(handler.headers.items())))
        parts = urlsplit(handler.path)
        if parts.path != "/api/decisions/stream":
            handler.send_error(404)
            return
        mode = self.mode
        if mode == "hang":
            self.hanging.set()
            self.release.wait(60)
            return
        if mode == "drip":  # a status line, then one header byte at a time, never done
            handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
            handler.wfile.flush()
            self.hanging.set()
            try:
                while not self.release.wait(0.05):
                    handler.wfile.write(b"X")
                    handler.wfile.flush()
            except OSError:
                pass
            return
        if mode == "status":
            handler.send_error(self.status)
            return
        if mode == "endless":  # a body with no declared length that never stops
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.end_headers()
            chunk = b" " * 65536
            try:
                for _ in range(1024):  # 64 MiB at most, well past the client's cap
                    handler.wfile.write(chunk)
            except OSError:
                pass
            return
        if mode == "raw":
            body = self.raw_body
        else:
            cursor = parse_qs(parts.query).get("cursor", [None])[0]
            body = json.dumps(self.answer(cursor)).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
