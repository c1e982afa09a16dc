"""A tiny OTLP/HTTP trace receiver for the integration tests (loopback, ephemeral port).

It decodes each ``ExportTraceServiceRequest`` posted to ``/v1/traces`` with opentelemetry-proto
and keeps every span event, with its span's name and attributes, so a test can wait for the
usermon events an application exported.
"""

from __future__ import annotations

import gzip
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue


@dataclass(frozen=True)
class ReceivedEvent:
    name: str
    attributes: dict[str, Any]
    span_name: str
    span_attributes: dict[str, Any]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)


def _attributes(items: Any) -> dict[str, Any]:
    return {item.key: _value(item.value) for item in items if isinstance(item, KeyValue)}


class OTLPReceiver:
    """``with OTLPReceiver() as receiver:`` serves on ``receiver.endpoint`` until the block ends."""

    def __init__(self) -> None:
        self.events: list[ReceivedEvent] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    receiver._take(ExportTraceServiceRequest.FromString(body))
                payload = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def _take(self, request: ExportTraceServiceRequest) -> None:
        found = [
            ReceivedEvent(
                event.name, _attributes(event.attributes), span.name, _attributes(span.attributes)
            )
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
            for event in span.events
        ]
        with self._lock:
            self.events.extend(found)

    def wait_for(
        self, count: int, name_prefix: str = "usermon.", timeout: float = 20.0
    ) -> list[ReceivedEvent]:
        """The received usermon events once there are ``count`` of them (or at the timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = [e for e in self.events if e.name.startswith(name_prefix)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def __enter__(self) -> OTLPReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
