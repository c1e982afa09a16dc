"""The optional OTLP/gRPC receiver (``--grpc-listen``; needs the ``usermon[grpc]`` extra).

This module owns the gRPC adapter over :meth:`~usermon.processor.service.Processor.ingest`:
the trace and logs ``Export`` services (and a metrics one that drops what it is sent, as
``POST /v1/metrics`` does: an application exporting straight here sends its metrics too), the
bearer token from the ``authorization`` metadata,
and the OTLP/gRPC status codes (``INVALID_ARGUMENT`` for a bad request, ``UNAVAILABLE`` when the
store cannot take the batch, ``RESOURCE_EXHAUSTED`` over the size limit, ``UNAUTHENTICATED``).
"""

from __future__ import annotations

import logging
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from usermon.processor.access import APP, Access
from usermon.processor.otlp import MalformedRequest
from usermon.processor.service import Processor
from usermon.processor.storage.errors import StoreError

__all__ = ["start_grpc"]

logger = logging.getLogger("usermon.processor")


def _authorize(processor: Processor, context: Any) -> None:
    settings = processor.settings
    access = Access(settings.token, settings.app_tokens)  # an application token may ingest
    given = dict(context.invocation_metadata()).get("authorization", "")
    if access.check(given, APP) is not None:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")


def _export(processor: Processor, signal: str, request: Any, context: Any) -> tuple[int, str]:
    _authorize(processor, context)
    body = request.SerializeToString()
    try:
        result = processor.ingest(signal, body, json_format=False)
    except MalformedRequest as exc:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    except StoreError:
        context.abort(grpc.StatusCode.UNAVAILABLE, "the store cannot take data now")
    return result.rejected_items, result.message


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, processor: Processor) -> None:
        self.processor = processor

    def Export(self, request: Any, context: Any) -> Any:  # the gRPC method name
        rejected, message = _export(self.processor, "traces", request, context)
        response = trace_service_pb2.ExportTraceServiceResponse()
        if rejected or message:
            response.partial_success.rejected_spans = rejected
            response.partial_success.error_message = message
        return response


class _Logs(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, processor: Processor) -> None:
        self.processor = processor

    def Export(self, request: Any, context: Any) -> Any:  # the gRPC method name
        rejected, message = _export(self.processor, "logs", request, context)
        response = logs_service_pb2.ExportLogsServiceResponse()
        if rejected or message:
            response.partial_success.rejected_log_records = rejected
            response.partial_success.error_message = message
        return response


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, processor: Processor) -> None:
        self.processor = processor

    def Export(self, request: Any, context: Any) -> Any:  # the gRPC method name
        _authorize(self.processor, context)
        logger.debug("OTLP metrics dropped: the processor reads only traces and logs")
        return metrics_service_pb2.ExportMetricsServiceResponse()


def start_grpc(processor: Processor, host: str, port: int) -> Any:
    """Start the gRPC server on ``host:port``; return it (``.stop(grace)`` to stop). The bound
    port is in ``server.usermon_port`` (useful with port 0)."""
    settings = processor.settings
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="usermon-grpc"),
        # Bounded as the HTTP side is: a message over --max-body-bytes once decompressed is
        # RESOURCE_EXHAUSTED, and so is an RPC beyond --max-inflight under way or waiting.
        options=[("grpc.max_receive_message_length", settings.max_body_bytes)],
        maximum_concurrent_rpcs=settings.max_inflight,
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
        _Traces(processor), server
    )
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(  # type: ignore[no-untyped-call]
        _Logs(processor), server
    )
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(  # type: ignore[no-untyped-call]
        _Metrics(processor), server
    )
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot listen for OTLP/gRPC on {address}")
    server.usermon_port = bound
    server.start()
    return server
