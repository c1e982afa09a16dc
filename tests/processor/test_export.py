"""OTLP out: findings as usermon.finding log records, counters as metrics without per-user data."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from tests.support.example_rule import ExampleRule

from usermon import attributes as A
from usermon.processor.service import Processor
from usermon.processor.settings import resolve

from .payloads import logins


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP endpoint on loopback that keeps what it is sent."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[bytes]] = {"/v1/logs": [], "/v1/metrics": []}
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server calls it by this name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.setdefault(self.path, []).append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_findings_and_counters_go_out_over_otlp(receiver: Receiver) -> None:
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}"
    settings = resolve({"store": "memory://", "otlp_endpoint": endpoint}, env={})
    processor = Processor(settings, detectors=[ExampleRule(threshold=3)])
    processor.ingest("traces", logins(4), json_format=False)
    processor.close()  # flushes both exporters

    records = [
        record
        for body in receiver.bodies["/v1/logs"]
        for rl in logs_service_pb2.ExportLogsServiceRequest.FromString(body).resource_logs
        for sl in rl.scope_logs
        for record in sl.log_records
    ]
    assert records
    assert {r.event_name for r in records} == {A.FINDING_EVENT}
    attributes = {kv.key: kv.value for kv in records[-1].attributes}
    assert attributes["usermon.finding.kind"].string_value == "brute_force"
    assert attributes["usermon.finding.subject.id"].string_value == "h-alice@example.com"

    points: dict[str, list[dict[str, str]]] = {}
    for body in receiver.bodies["/v1/metrics"]:
        request = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for point in metric.sum.data_points:
                        labels = {kv.key: kv.value.string_value for kv in point.attributes}
                        points.setdefault(metric.name, []).append(labels)
    assert {"outcome": "failure"} in points["usermon.logins"]
    assert {"kind": "brute_force"} in points["usermon.findings"]
    every_label = {v for labels in points.values() for d in labels for v in d.values()}
    assert not any("alice" in v or "203.0.113" in v for v in every_label)
