"""The optional OTLP/gRPC receiver: same events, same rules as OTLP/HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from usermon import attributes as A
from usermon.processor.grpc_receiver import start_grpc
from usermon.processor.service import Processor
from usermon.processor.settings import resolve

from .payloads import login_attributes, logins, span, traces_request


@pytest.fixture
def grpc_target(make_processor: Any) -> Iterator[tuple[Any, str]]:
    processor = make_processor(token="s3cret")
    server = start_grpc(processor, "127.0.0.1", 0)
    yield processor, f"127.0.0.1:{server.usermon_port}"
    server.stop(grace=1).wait()


def export(target: str, body: bytes, token: str | None = "s3cret") -> Any:  # noqa: S107
    with grpc.insecure_channel(target) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        metadata = [("authorization", f"Bearer {token}")] if token else []
        return stub.Export(request, metadata=metadata, timeout=10)


def test_grpc_export_is_aggregated(grpc_target: tuple[Any, str]) -> None:
    processor, target = grpc_target
    response = export(target, logins(2))
    assert not response.HasField("partial_success")
    profile = processor.profiles.user("h-alice@example.com")
    assert profile["failures"]["1m"] == 2


def test_grpc_reports_rejected_events_in_partial_success(grpc_target: tuple[Any, str]) -> None:
    _, target = grpc_target
    bad = login_attributes()
    del bad[A.LOGIN_SUCCESS]
    response = export(target, traces_request([span(1, bad)]))
    assert response.partial_success.rejected_spans == 1


def test_grpc_without_the_token_is_unauthenticated(grpc_target: tuple[Any, str]) -> None:
    _, target = grpc_target
    with pytest.raises(grpc.RpcError) as caught:
        export(target, logins(1), token=None)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


class Holds:
    """A detector that holds the batch being processed until released."""

    name = "holds"

    def __init__(self) -> None:
        self.inside = threading.Event()
        self.release = threading.Event()

    def observe(self, event: Any, state: Any) -> tuple[()]:
        self.inside.set()
        self.release.wait(10)
        return ()


def test_grpc_rpcs_beyond_max_inflight_are_resource_exhausted() -> None:
    """As on HTTP (429), a request beyond --max-inflight is refused rather than queued."""
    holds = Holds()
    processor = Processor(
        resolve({"store": "memory://", "max_inflight": 1}, env={}), detectors=[holds]
    )
    server = start_grpc(processor, "127.0.0.1", 0)
    target = f"127.0.0.1:{server.usermon_port}"
    first = threading.Thread(target=export, args=(target, logins(1), None))
    try:
        first.start()
        assert holds.inside.wait(10)
        with pytest.raises(grpc.RpcError) as caught:
            export(target, logins(1), token=None)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        holds.release.set()
        first.join(10)
        server.stop(grace=1).wait()
        processor.close()
