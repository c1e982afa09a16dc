"""What actually leaves the process: OTLP protobuf bytes, and one trip through the real exporter."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import usermon
from usermon import attributes as attrs
from usermon.request_context import RequestInfo, use_request
from usermon.testing import CapturedEvents

RAW_VALUES = ["Ada.Lovelace@Example.com", "ada.lovelace@example.com", "ada-l", "shop-4711"]


def _login_and_signup() -> None:
    with use_request(RequestInfo("192.0.2.1", {"user-agent": "pytest"})):
        usermon.signup_track(
            {"email": "Ada.Lovelace@Example.com", "username": "ada-l", "platform_id": "shop-4711"}
        )
        usermon.auth_track(
            False, email="Ada.Lovelace@Example.com", username="ada-l", platform_id="shop-4711"
        )
        usermon.auth_track(
            True, email="ada.lovelace@example.com", username="ada-l", platform_id="shop-4711"
        )


def test_anonymized_otlp_bytes_contain_no_raw_identifier(
    events: CapturedEvents, hash_key: str
) -> None:
    usermon.configure(mode="anonymization", hash_key=hash_key)
    _login_and_signup()
    assert len(events) == 3
    payload = encode_spans(events.spans).SerializeToString()
    assert attrs.LOGIN_EVENT.encode() in payload  # the events are really in there
    for value in [*RAW_VALUES, hash_key]:
        assert value.encode() not in payload, value


def test_identification_otlp_bytes_do_carry_the_identifiers(events: CapturedEvents) -> None:
    """The counterpart of the anonymization test, so that test cannot pass vacuously."""
    _login_and_signup()
    payload = encode_spans(events.spans).SerializeToString()
    assert b"ada.lovelace@example.com" in payload
    assert b"shop-4711" in payload


class _Receiver(BaseHTTPRequestHandler):
    bodies: list[tuple[str, bytes]]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.bodies.append((self.path, self.rfile.read(length)))
        response = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(response)))
        self.end_headers()
        self.wfile.write(response)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    """A tiny OTLP/HTTP receiver on an ephemeral loopback port, stopped after the test."""
    bodies: list[tuple[str, bytes]] = []
    handler = type("Receiver", (_Receiver,), {"bodies": bodies})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", bodies
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_through_the_real_otlp_http_exporter(
    receiver: tuple[str, list[tuple[str, bytes]]], hash_key: str
) -> None:
    endpoint, bodies = receiver
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    usermon.configure(mode="anonymization", hash_key=hash_key)
    try:
        with provider.get_tracer("app").start_as_current_span("POST /login") as span:
            span.set_attribute(attrs.CLIENT_ADDRESS, "192.0.2.8")
            usermon.auth_track(True, {"email": "Ada.Lovelace@Example.com"})
    finally:
        provider.shutdown()

    [(path, body)] = bodies
    assert path == "/v1/traces"
    request = ExportTraceServiceRequest.FromString(body)
    [exported] = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    span_attributes = {a.key: a.value for a in exported.attributes}
    assert span_attributes[attrs.TRACKED].bool_value is True
    [event] = exported.events
    assert event.name == attrs.LOGIN_EVENT
    values = {a.key: a.value for a in event.attributes}
    assert values[attrs.LOGIN_SUCCESS].bool_value is True
    assert values[attrs.PRIMARY_KEY].string_value == "email"
    assert values[attrs.CLIENT_ADDRESS].string_value == "192.0.2.8"
    assert len(values[attrs.USER_HASH].string_value) == 64
    assert span_attributes[attrs.USER_HASH] == values[attrs.USER_HASH]
    assert attrs.USER_ID not in values
    for raw in ("Ada.Lovelace@Example.com", "ada.lovelace@example.com"):
        assert raw.encode() not in body
