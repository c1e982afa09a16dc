"""What the Collector tests run: the real Collector, the real processor, an instrumented app, a
real Jaeger as a tracing backend, and recording OTLP sinks that stand in for tracing, metrics and
logs backends.

Every process binds 127.0.0.1 on a free port and is stopped by the test that started it. The
sinks decode what they receive with opentelemetry-proto, exactly as a backend would, and keep the
raw request bodies too, so a test can also search the bytes (the privacy test does).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from tests.support.servers import Subprocess, free_port, free_ports, start_processor

from usermon import attributes as A

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "collector-config"
APP = Path(__file__).with_name("instrumented_app.py")


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``check`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback test URL
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def get_json(url: str, token: str | None = None) -> Any:
    request = urllib.request.Request(url)  # noqa: S310 - loopback test URL
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback test URL
        return json.load(response)


# -- decoded OTLP, flattened for assertions -------------------------------------------------------


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return attributes_of(value.kvlist_value.values)
    return None if kind is None else getattr(value, kind)


def attributes_of(pairs: Any) -> dict[str, Any]:
    return {pair.key: value_of(pair.value) for pair in pairs}


@dataclass(frozen=True)
class SpanRecord:
    """One span as a backend stored it."""

    name: str
    trace_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class PointRecord:
    """One number data point of a Sum metric."""

    metric: str
    value: int
    attributes: dict[str, Any]
    resource: dict[str, Any]


@dataclass(frozen=True)
class LogRecord:
    event_name: str
    body: Any
    attributes: dict[str, Any]
    resource: dict[str, Any]


def spans_of(request: trace_service_pb2.ExportTraceServiceRequest) -> list[SpanRecord]:
    return [
        SpanRecord(
            name=span.name,
            trace_id=span.trace_id.hex(),
            attributes=attributes_of(span.attributes),
            resource=attributes_of(rs.resource.attributes),
            events=[(event.name, attributes_of(event.attributes)) for event in span.events],
        )
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]


def points_of(request: metrics_service_pb2.ExportMetricsServiceRequest) -> list[PointRecord]:
    return [
        PointRecord(
            metric=metric.name,
            value=point.as_int,
            attributes=attributes_of(point.attributes),
            resource=attributes_of(rm.resource.attributes),
        )
        for rm in request.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.WhichOneof("data") == "sum"
        for point in metric.sum.data_points
    ]


def logs_of(request: logs_service_pb2.ExportLogsServiceRequest) -> list[LogRecord]:
    return [
        LogRecord(
            event_name=record.event_name,
            body=value_of(record.body),
            attributes=attributes_of(record.attributes),
            resource=attributes_of(rl.resource.attributes),
        )
        for rl in request.resource_logs
        for sl in rl.scope_logs
        for record in sl.log_records
    ]


# -- sinks: recording backends --------------------------------------------------------------

_HTTP_REQUESTS: dict[str, type[Message]] = {
    "/v1/traces": trace_service_pb2.ExportTraceServiceRequest,
    "/v1/metrics": metrics_service_pb2.ExportMetricsServiceRequest,
    "/v1/logs": logs_service_pb2.ExportLogsServiceRequest,
}
_HTTP_RESPONSES: dict[str, type[Message]] = {
    "/v1/traces": trace_service_pb2.ExportTraceServiceResponse,
    "/v1/metrics": metrics_service_pb2.ExportMetricsServiceResponse,
    "/v1/logs": logs_service_pb2.ExportLogsServiceResponse,
}


@dataclass
class Recording:
    """Everything a sink received, thread-safe."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    raw: list[bytes] = field(default_factory=list)
    traces: list[trace_service_pb2.ExportTraceServiceRequest] = field(default_factory=list)
    metrics: list[metrics_service_pb2.ExportMetricsServiceRequest] = field(default_factory=list)
    logs: list[logs_service_pb2.ExportLogsServiceRequest] = field(default_factory=list)

    def add(self, raw: bytes, request: Message) -> None:
        with self.lock:
            self.raw.append(raw)
            if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
                self.traces.append(request)
            elif isinstance(request, metrics_service_pb2.ExportMetricsServiceRequest):
                self.metrics.append(request)
            else:
                assert isinstance(request, logs_service_pb2.ExportLogsServiceRequest)
                self.logs.append(request)

    def spans(self) -> list[SpanRecord]:
        with self.lock:
            return [span for request in self.traces for span in spans_of(request)]

    def points(self) -> list[PointRecord]:
        with self.lock:
            return [point for request in self.metrics for point in points_of(request)]

    def log_records(self) -> list[LogRecord]:
        with self.lock:
            return [record for request in self.logs for record in logs_of(request)]

    def raw_bytes(self) -> bytes:
        with self.lock:
            return b"".join(self.raw)


class OtlpHttpSink:
    """An OTLP/HTTP protobuf endpoint (``/v1/traces``, ``/v1/metrics``, ``/v1/logs``) that records
    what it is sent: the test double of a metrics or logs backend."""

    def __init__(self) -> None:
        self.received = Recording()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if self.headers.get("Content-Encoding", "") == "gzip":
                    body = gzip.decompress(body)
                request_type = _HTTP_REQUESTS.get(self.path)
                if request_type is None:
                    self.send_error(404)
                    return
                received.add(body, request_type.FromString(body))
                answer = _HTTP_RESPONSES[self.path]().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep pytest's output for failures

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> OtlpHttpSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class OtlpGrpcTraceSink(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace endpoint that records what it is sent: the test double of a tracing
    backend (Jaeger and Tempo both take OTLP gRPC)."""

    def __init__(self) -> None:
        self.received = Recording()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    def Export(  # the gRPC method name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.received.add(request.SerializeToString(), request)
        return trace_service_pb2.ExportTraceServiceResponse()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> OtlpGrpcTraceSink:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None).wait()


# -- processes -------------------------------------------------------------------------------


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


@dataclass
class Collector:
    """A running ``otelcol-usermon`` with one of the collector-config files."""

    process: subprocess.Popen[bytes]
    grpc_endpoint: str
    http_url: str
    log: Path
    metrics_url: str  # the Collector's own metrics, Prometheus text

    def stop(self) -> None:
        _stop(self.process)


PORT_ATTEMPTS = 3
"""Starts of a Collector or Jaeger on freshly picked ports before a test gives up: a port free
when picked can be taken by another program before the binary binds it."""


def _port_taken(process: subprocess.Popen[bytes], log: Path) -> bool:
    """Whether ``process`` exited because one of its ports was taken meanwhile."""
    return process.poll() is not None and b"address already in use" in log.read_bytes()


@contextlib.contextmanager
def run_collector(
    binary: str, config: str, env: Mapping[str, str], workdir: Path
) -> Iterator[Collector]:
    """Start the Collector on ``collector-config/<config>`` with free loopback ports, wait until
    its health check answers, and stop it afterwards."""
    for attempt in range(PORT_ATTEMPTS):
        grpc_port, http_port, health_port, metrics_port = free_ports(4)
        full_env = {
            **os.environ,
            "USERMON_COLLECTOR_GRPC_ENDPOINT": f"127.0.0.1:{grpc_port}",
            "USERMON_COLLECTOR_HTTP_ENDPOINT": f"127.0.0.1:{http_port}",
            "USERMON_COLLECTOR_HEALTH_ENDPOINT": f"127.0.0.1:{health_port}",
            # The Collector's own metrics default to localhost:8888, as Jaeger's do: tests run
            # side by side, so each Collector gets a port of its own.
            "USERMON_COLLECTOR_METRICS_HOST": "127.0.0.1",
            "USERMON_COLLECTOR_METRICS_PORT": str(metrics_port),
            **env,
        }
        log = workdir / f"otelcol-{health_port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [binary, f"--config={CONFIG_DIR / config}"],
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            try:
                wait_until(
                    lambda: (
                        process.poll() is not None or http_ok(f"http://127.0.0.1:{health_port}/")  # noqa: B023
                    ),
                    timeout=30,
                    what=f"the Collector ({config}) to report healthy",
                )
            except AssertionError as error:
                raise AssertionError(f"{error}\n--- Collector output ---\n{_tail(log)}") from None
            if _port_taken(process, log) and attempt + 1 < PORT_ATTEMPTS:
                continue
            if process.poll() is not None:
                raise AssertionError(
                    f"the Collector ({config}) exited with {process.returncode}\n"
                    f"--- Collector output ---\n{_tail(log)}"
                )
            yield Collector(
                process,
                f"127.0.0.1:{grpc_port}",
                f"http://127.0.0.1:{http_port}",
                log,
                f"http://127.0.0.1:{metrics_port}/metrics",
            )
            return
        finally:
            _stop(process)


JAEGER_CONFIG = Path(__file__).with_name("jaeger.yaml")


def _port_open(endpoint: str) -> bool:
    host, port = endpoint.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Jaeger:
    """A running Jaeger v2 (``tests/collector/jaeger.yaml``: in-memory storage) and the parts of
    its HTTP query API (the one its UI uses) the tests read."""

    process: subprocess.Popen[bytes]
    otlp_grpc_endpoint: str
    query_url: str
    metrics_url: str
    log: Path

    def find_traces(self, service: str, tags: Mapping[str, str], limit: int = 100) -> Any:
        """``GET /api/traces``: the traces of ``service`` with a span matching every tag (the
        Search form's Tags field), as Jaeger's JSON traces."""
        query = urllib.parse.urlencode(
            {"service": service, "tags": json.dumps(dict(tags)), "lookback": "1h", "limit": limit}
        )
        return get_json(f"{self.query_url}/api/traces?{query}")["data"]

    def trace(self, trace_id: str) -> Any | None:
        """``GET /api/traces/{trace_id}``: one trace, or None when Jaeger has no such trace."""
        try:
            [found] = get_json(f"{self.query_url}/api/traces/{trace_id}")["data"]
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise
        return found

    def services(self) -> list[str]:
        return list(get_json(f"{self.query_url}/api/services")["data"] or [])


@contextlib.contextmanager
def run_jaeger(binary: str, workdir: Path) -> Iterator[Jaeger]:
    """Start Jaeger on free loopback ports, wait until it takes OTLP and answers queries, and
    stop it afterwards."""
    for attempt in range(PORT_ATTEMPTS):
        ports = free_ports(4)
        otlp, query_http, query_grpc = (f"127.0.0.1:{port}" for port in ports[:3])
        metrics_port = ports[3]
        env = {
            **os.environ,
            "JAEGER_OTLP_GRPC_ENDPOINT": otlp,
            "JAEGER_QUERY_HTTP_ENDPOINT": query_http,
            "JAEGER_QUERY_GRPC_ENDPOINT": query_grpc,
            "JAEGER_METRICS_PORT": str(metrics_port),
        }
        log = workdir / f"jaeger-{metrics_port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [binary, f"--config={JAEGER_CONFIG}"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        jaeger = Jaeger(
            process, otlp, f"http://{query_http}", f"http://127.0.0.1:{metrics_port}/metrics", log
        )
        try:
            try:
                wait_until(
                    lambda: (
                        process.poll() is not None  # noqa: B023
                        or (
                            http_ok(f"{jaeger.query_url}/api/services")  # noqa: B023
                            and _port_open(otlp)  # noqa: B023
                        )
                    ),
                    timeout=60,
                    what="Jaeger to answer queries and take OTLP",
                )
            except AssertionError as error:
                raise AssertionError(f"{error}\n--- Jaeger output ---\n{_tail(log)}") from None
            if _port_taken(process, log) and attempt + 1 < PORT_ATTEMPTS:
                continue
            if process.poll() is not None:
                raise AssertionError(
                    f"Jaeger exited with {process.returncode}\n--- Jaeger output ---\n{_tail(log)}"
                )
            yield jaeger
            return
        finally:
            _stop(process)


@dataclass
class Processor:
    """A running ``usermon serve`` on a SQLite store."""

    url: str
    port: int
    store: str
    workdir: Path
    extra_args: tuple[str, ...] = ()
    token: str | None = None
    running: Subprocess | None = None

    def start(self) -> None:
        self.running = start_processor(
            self.store,
            *self.extra_args,
            port=self.port,
            log=self.workdir / f"usermon-{self.port}.log",
            cwd=self.workdir,
            # Findings leave within a fraction of a second instead of the SDK's 1 s default.
            env={
                **os.environ,
                "OTEL_BLRP_SCHEDULE_DELAY": "100",
                **({"USERMON_TOKEN": self.token} if self.token else {}),
            },
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.running is not None:
            self.running.stop(sig, timeout=15)

    def users(self) -> dict[str, dict[str, Any]]:
        """User profiles by label (the primary key's value in identification mode)."""
        profiles = get_json(f"{self.url}/api/users?limit=1000", self.token)["users"]
        return {profile["label"]: profile for profile in profiles}

    def user(self, user_hash: str) -> dict[str, Any]:
        return dict(get_json(f"{self.url}/api/users/{user_hash}", self.token))


@contextlib.contextmanager
def run_processor(
    workdir: Path, *extra_args: str, port: int | None = None, token: str | None = None
) -> Iterator[Processor]:
    """Start ``usermon serve`` on a SQLite store in ``workdir``; stop it afterwards."""
    port = port or free_port()
    processor = Processor(
        url=f"http://127.0.0.1:{port}",
        port=port,
        store=f"sqlite:///{workdir / 'usermon.db'}",
        workdir=workdir,
        extra_args=extra_args,
        token=token,
    )
    processor.start()
    try:
        yield processor
    finally:
        processor.stop()


def run_app(
    collector: Collector,
    actions: list[dict[str, Any]],
    *,
    service: str = "shop",
    pace: float = 0.0,
    signal_: str = "span",
    timeout: float = 60,
) -> None:
    """Run the instrumented app (a separate process, as in production) through ``actions``; it
    exports OTLP/HTTP to ``collector`` and flushes before it exits."""
    result = subprocess.run(
        [sys.executable, str(APP), service, str(pace), signal_],
        input=json.dumps(actions).encode(),
        env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_url},
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")


def login(email: str, success: bool, ip: str = "203.0.113.7", **extra: Any) -> dict[str, Any]:
    return {"kind": "login", "email": email, "success": success, "ip": ip, **extra}


def signup(email: str, ip: str = "203.0.113.7") -> dict[str, Any]:
    return {"kind": "signup", "email": email, "ip": ip}


def plain_request(route: str = "GET /products") -> dict[str, Any]:
    """A request span that carries no usermon event."""
    return {"kind": "plain", "route": route}


def login_events(spans: list[SpanRecord]) -> list[dict[str, Any]]:
    return [attrs for span in spans for name, attrs in span.events if name == A.LOGIN_EVENT]
