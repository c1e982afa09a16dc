"""What a first run of ``usermon serve`` shows: the real error when its port is taken, a quiet
``/v1/metrics`` for applications exporting straight to it, and one log line per critical finding.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from tests.support.servers import ServedInThread

from usermon import attributes as A
from usermon.processor.grpc_receiver import start_grpc
from usermon.processor.service import Processor
from usermon.processor.settings import resolve

from .conftest import Running
from .payloads import T0, login_attributes, span, traces_request

PB = {"Content-Type": "application/x-protobuf"}


def test_a_taken_port_is_the_first_and_only_thing_serve_says(tmp_path: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "usermon.cli", "serve", "--listen", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
    assert not (tmp_path / "usermon.db").exists()  # nothing was opened either


def test_the_sdk_metric_exporter_pointed_at_the_processor_exports_without_error(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT=<processor> sends metrics too (opentelemetry-instrument turns
    them on): they are taken and dropped, so the application logs no failed export."""
    exporter = OTLPMetricExporter(endpoint=running.url + "/v1/metrics")
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=60_000)
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("app").create_counter("requests").add(3)

    with caplog.at_level(logging.DEBUG):
        provider.shutdown()  # exports once more, synchronously

    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert failures == []
    assert any("metrics dropped" in r.getMessage() for r in caplog.records)


def test_v1_metrics_answers_an_empty_export_response(running: Running) -> None:
    body = metrics_service_pb2.ExportMetricsServiceRequest().SerializeToString()
    response = httpx.post(running.url + "/v1/metrics", content=body, headers=PB, timeout=10)
    as_json = httpx.post(
        running.url + "/v1/metrics",
        content=b"{}",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    parsed = metrics_service_pb2.ExportMetricsServiceResponse.FromString(response.content)
    assert not parsed.HasField("partial_success")
    assert (as_json.status_code, as_json.json()) == (200, {})


def test_v1_metrics_wants_the_token_like_every_route(make_processor: Any) -> None:
    running = ServedInThread(make_processor(token="s3cret-token-for-tests"))
    url = running.url
    try:
        bare = httpx.post(url + "/v1/metrics", content=b"", headers=PB, timeout=10)
        bearer = {**PB, "Authorization": "Bearer s3cret-token-for-tests"}
        good = httpx.post(url + "/v1/metrics", content=b"", headers=bearer, timeout=10)
    finally:
        running.stop()
    assert (bare.status_code, good.status_code) == (401, 200)


def test_grpc_metrics_are_taken_and_dropped_too(make_processor: Any) -> None:
    """With --grpc-listen, an application exporting OTLP/gRPC straight to the processor."""
    server = start_grpc(make_processor(token="s3cret-token-for-tests"), "127.0.0.1", 0)
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.usermon_port}") as channel:
            stub = metrics_service_pb2_grpc.MetricsServiceStub(channel)
            good = [("authorization", "Bearer s3cret-token-for-tests")]
            response = stub.Export(request, metadata=good, timeout=10)
            with pytest.raises(grpc.RpcError) as bare:
                stub.Export(request, timeout=10)
    finally:
        server.stop(grace=1).wait()
    assert not response.HasField("partial_success")
    assert bare.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _takeover(user: str, *, anonymized: bool) -> bytes:
    """The owner logs in from home; 15 guesses from elsewhere; then a success from there."""

    def attributes(success: bool, ip: str) -> dict[str, Any]:
        attrs = login_attributes(user, success=success, ip=ip)
        if anonymized:  # what the SDK sends in anonymization mode: keyed hashes, no user.id
            del attrs[A.USER_ID]
            attrs[A.IDENTIFIER_PREFIX + "email"] = "3f1c9a0e-hmac-of-the-address"
            attrs[A.USER_HASH] = "9b2e7d41-hmac-of-the-identity"
        return attrs

    spans = [span(1, attributes(True, "198.51.100.1"), T0 - 5 * 3600)]
    spans += [span(10 + i, attributes(False, "203.0.113.9"), T0 + i) for i in range(15)]
    spans.append(span(99, attributes(True, "203.0.113.9"), T0 + 100))
    return traces_request(spans)


def _critical_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("usermon") and "critical finding" in r.getMessage()
    ]


@pytest.mark.parametrize("anonymized", [False, True], ids=["identification", "anonymization"])
def test_an_account_takeover_logs_one_warning_line_with_its_summary(
    anonymized: bool, caplog: pytest.LogCaptureFixture
) -> None:
    processor = Processor(resolve({"store": "memory://"}, env={}))  # the default detectors
    try:
        with caplog.at_level(logging.INFO):
            processor.ingest(
                "traces", _takeover("alice@example.com", anonymized=anonymized), json_format=False
            )
            # More of the same: the finding grows, the log does not.
            processor.ingest(
                "traces", _takeover("alice@example.com", anonymized=anonymized), json_format=False
            )
        [finding] = processor.store.findings(kind="account_takeover")
    finally:
        processor.close()

    [line] = _critical_lines(caplog)
    [record] = [r for r in caplog.records if "critical finding" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert finding.id in line
    assert finding.summary in line
    if anonymized:
        assert "alice" not in line
    else:
        assert "alice@example.com" in line
