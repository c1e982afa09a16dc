"""The OTLP/HTTP receiver and the JSON API, against a running processor on loopback."""

from __future__ import annotations

import gzip
import threading
import time
from typing import Any

import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from tests.support.servers import ServedInThread

from usermon import attributes as A

from .conftest import Running
from .payloads import (
    T0,
    json_traces,
    log_record,
    login_attributes,
    logins,
    logs_request,
    span,
    traces_request,
)

PB = {"Content-Type": "application/x-protobuf"}


def post(running: Running, body: bytes, path: str = "/v1/traces", **headers: str) -> httpx.Response:
    return httpx.post(running.url + path, content=body, headers={**PB, **headers}, timeout=10)


def failures(running: Running, user_hash: str = "h-alice@example.com") -> int:
    response = httpx.get(f"{running.url}/api/users/{user_hash}", timeout=10)
    if response.status_code == 404:
        return 0
    return int(response.json()["failures"]["24h"])


def test_the_opentelemetry_sdk_exporter_delivers_login_events(running: Running) -> None:
    provider = TracerProvider(resource=Resource.create({A.SERVICE_NAME: "shop"}))
    exporter = OTLPSpanExporter(endpoint=running.url + "/v1/traces")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for i in range(4):
        with tracer.start_as_current_span("POST /login") as current:
            current.set_attribute(A.TRACKED, True)
            current.add_event(A.LOGIN_EVENT, {**login_attributes(), A.LOGIN_SUCCESS: i == 3})
    provider.shutdown()
    profile = httpx.get(running.url + "/api/users/h-alice@example.com", timeout=10).json()
    assert profile["failures"]["1m"] == 3
    assert profile["successes"]["1m"] == 1
    assert profile["services"] == ["shop"]
    assert profile["last_success"]["ip"] == "203.0.113.7"


def test_a_finding_is_served_by_the_api_right_after_its_event(running: Running) -> None:
    assert post(running, logins(3)).status_code == 200
    (finding,) = httpx.get(running.url + "/api/findings", timeout=10).json()["findings"]
    assert set(finding) == {
        "id",
        "kind",
        "severity",
        "subject",
        "first_seen",
        "last_seen",
        "event_count",
        "summary",
        "evidence",
        "decisions",  # the ids of the protection decisions it produced (docs/protection.md)
    }
    assert finding["kind"] == "brute_force"
    assert finding["subject"] == {
        "type": "user",
        "id": "h-alice@example.com",
        "label": "alice@example.com",
    }
    assert set(finding["evidence"]) >= {"trace_ids", "ips", "users"}
    one = httpx.get(f"{running.url}/api/findings/{finding['id']}", timeout=10).json()
    assert one == finding


def test_findings_filter_by_kind_severity_since_and_subject(running: Running) -> None:
    post(running, logins(3))
    url = running.url + "/api/findings"

    def count(**params: Any) -> int:
        return len(httpx.get(url, params=params, timeout=10).json()["findings"])

    assert count(kind="brute_force") == 1
    assert count(kind="tor_login") == 0
    assert count(severity="medium") == 1
    assert count(severity="high") == 0
    assert count(since=str(T0 + 100)) == 0
    assert count(since="2020-01-01T00:00:00Z") == 1
    assert count(subject="alice@example.com") == 1
    assert count(subject="someone-else") == 0
    assert httpx.get(url, params={"kind": "nope"}, timeout=10).status_code == 400


def test_protobuf_ingest_answers_an_empty_export_response(running: Running) -> None:
    response = post(running, logins(1))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    parsed = trace_service_pb2.ExportTraceServiceResponse.FromString(response.content)
    assert not parsed.HasField("partial_success")


def test_rejected_events_are_reported_in_partial_success(running: Running) -> None:
    bad = login_attributes()
    del bad[A.LOGIN_SUCCESS]
    body = traces_request([span(1, bad), span(2, login_attributes())])
    response = post(running, body)
    assert response.status_code == 200
    parsed = trace_service_pb2.ExportTraceServiceResponse.FromString(response.content)
    assert parsed.partial_success.rejected_spans == 1
    assert A.LOGIN_SUCCESS in parsed.partial_success.error_message
    assert failures(running) == 1


def test_otlp_json_is_accepted_and_answered_in_json(running: Running) -> None:
    response = post(
        running, json_traces(5, login_attributes()), **{"Content-Type": "application/json"}
    )
    assert response.status_code == 200
    assert response.json() == {}
    assert failures(running) == 1


def test_a_gzip_body_is_accepted(running: Running) -> None:
    response = post(running, gzip.compress(logins(2)), **{"Content-Encoding": "gzip"})
    assert response.status_code == 200
    assert failures(running) == 2


def test_every_member_of_a_multi_member_gzip_body_is_ingested(running: Running) -> None:
    """Two gzip members in a row are one valid body (RFC 1952): the second is not dropped."""
    first = gzip.compress(logins(1))
    second = gzip.compress(logins(2, t0=T0 + 10, user="bob@example.com"))
    response = post(running, first + second, **{"Content-Encoding": "gzip"})
    assert response.status_code == 200
    assert failures(running) == 1
    assert failures(running, "h-bob@example.com") == 2


def test_bytes_after_the_last_gzip_member_are_400(running: Running) -> None:
    response = post(running, gzip.compress(logins(1)) + b"trailing", **{"Content-Encoding": "gzip"})
    assert response.status_code == 400
    assert failures(running) == 0


def test_many_small_gzip_members_over_the_limit_in_all_are_413(running: Running) -> None:
    limit = running.settings.max_body_bytes
    member = gzip.compress(b"\x00" * (limit // 4))
    response = post(running, member * 5, **{"Content-Encoding": "gzip"})
    assert response.status_code == 413


def test_log_records_are_ingested_on_v1_logs(running: Running) -> None:
    response = post(running, logs_request([log_record(9, login_attributes())]), "/v1/logs")
    assert response.status_code == 200
    assert failures(running) == 1


def test_an_event_sent_as_span_and_log_record_counts_once(running: Running) -> None:
    attrs = login_attributes()
    post(running, traces_request([span(9, attrs)]))
    post(running, logs_request([log_record(9, attrs)]), "/v1/logs")
    assert failures(running) == 1


def test_out_of_order_batches_are_all_counted(running: Running) -> None:
    post(running, logins(2, t0=T0 + 30))
    post(running, logins(2, t0=T0))
    assert failures(running) == 4


def _status(response: httpx.Response) -> str:
    return str(status_pb2.Status.FromString(response.content).message)


def test_a_malformed_body_is_400_and_changes_nothing(running: Running) -> None:
    post(running, logins(1))
    response = post(running, b"\x0a\xff\xff\xff\xff\x0f garbage")
    assert response.status_code == 400
    assert "ExportTraceServiceRequest" in _status(response)
    assert failures(running) == 1


def test_a_truncated_body_is_400_and_changes_nothing(running: Running) -> None:
    body = logins(3, t0=T0 + 100)
    assert post(running, body[: len(body) - 7]).status_code == 400
    assert failures(running) == 0
    assert post(running, body).status_code == 200
    assert failures(running) == 3


def test_an_oversized_body_is_413(running: Running) -> None:
    limit = running.settings.max_body_bytes
    assert post(running, b"\x00" * (limit + 1)).status_code == 413


def test_a_gzip_bomb_is_413_after_decompression(running: Running) -> None:
    bomb = gzip.compress(b"\x00" * (running.settings.max_body_bytes * 20))
    assert len(bomb) < running.settings.max_body_bytes
    response = post(running, bomb, **{"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert "decompressed" in _status(response)


def test_a_corrupt_gzip_body_is_400(running: Running) -> None:
    body = gzip.compress(logins(1))
    assert post(running, body[:-12], **{"Content-Encoding": "gzip"}).status_code == 400
    assert post(running, b"nope", **{"Content-Encoding": "gzip"}).status_code == 400
    assert failures(running) == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", ""])
def test_an_unknown_content_type_is_415(running: Running, content_type: str) -> None:
    assert post(running, logins(1), **{"Content-Type": content_type}).status_code == 415
    assert failures(running) == 0


def test_an_unknown_content_encoding_is_415(running: Running) -> None:
    assert post(running, logins(1), **{"Content-Encoding": "br"}).status_code == 415


def test_too_many_requests_at_once_is_429_with_retry_after(make_processor: Any) -> None:
    processor = make_processor(max_inflight=2)
    served = ServedInThread(processor)
    url = served.url
    results: list[httpx.Response] = []

    def send() -> None:
        results.append(httpx.post(url + "/v1/traces", content=logins(1), headers=PB, timeout=10))

    try:
        with processor.lock:  # the engine is busy: requests wait for it, in flight
            threads = [threading.Thread(target=send) for _ in range(2)]
            for t in threads:
                t.start()
            time.sleep(0.5)
            send()  # the third is one too many
            assert results[0].status_code == 429
            assert results[0].headers["retry-after"] == "1"
        for t in threads:
            t.join(10)
        assert sorted(r.status_code for r in results) == [200, 200, 429]
    finally:
        served.stop()


def test_a_store_that_cannot_take_the_batch_is_503_and_healthz_says_so(
    tmp_path: Any, make_processor: Any
) -> None:
    processor = make_processor(store=f"sqlite:///{tmp_path}/u.db")
    served = ServedInThread(processor)
    url = served.url
    try:
        processor.store.close()  # the database goes away under the processor
        response = httpx.post(url + "/v1/traces", content=logins(1), headers=PB, timeout=10)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        health = httpx.get(url + "/healthz", timeout=10)
        assert health.status_code == 503
        assert health.json()["down"] == ["store"]
    finally:
        served.stop()


def test_users_list_and_ip_api_shapes(running: Running) -> None:
    post(running, logins(2, ip="192.0.2.44"))
    users = httpx.get(running.url + "/api/users", timeout=10).json()["users"]
    assert [u["user_hash"] for u in users] == ["h-alice@example.com"]
    assert set(users[0]) >= {
        "user_hash",
        "label",
        "first_seen",
        "last_seen",
        "successes",
        "failures",
        "signups",
        "last_success",
        "ips",
        "networks",
        "user_agents",
        "services",
    }
    ip = httpx.get(running.url + "/api/ips/192.0.2.44", timeout=10).json()
    assert ip["failures"]["1m"] == 2
    assert ip["distinct_users"]["24h"] == 1
    assert httpx.get(running.url + "/api/ips/not-an-ip", timeout=10).status_code == 400
    assert httpx.get(running.url + "/api/ips/192.0.2.45", timeout=10).status_code == 404
    assert httpx.get(running.url + "/api/users/unknown", timeout=10).status_code == 404


def test_healthz_says_what_is_up(running: Running) -> None:
    body = httpx.get(running.url + "/healthz", timeout=10).json()
    assert body["status"] == "ok"
    assert body["down"] == []
    assert body["components"]["store"] == "ok"
    before = body["state"]
    assert before["max_keys"] == running.settings.max_keys
    assert before["evicted"] == before["maps_evicted"] == 0
    assert httpx.post(running.url + "/v1/traces", content=logins(2), headers=PB).status_code == 200
    after = httpx.get(running.url + "/healthz", timeout=10).json()["state"]
    assert after["keys"] > before["keys"]  # the user, the address and the dedupe map at least


def test_with_a_token_ingest_and_api_need_the_bearer(make_processor: Any) -> None:
    processor = make_processor(token="s3cret")
    served = ServedInThread(processor)
    url = served.url
    try:
        body = logins(1)
        assert httpx.post(url + "/v1/traces", content=body, headers=PB).status_code == 401
        wrong = {**PB, "Authorization": "Bearer nope"}
        assert httpx.post(url + "/v1/traces", content=body, headers=wrong).status_code == 401
        good = {**PB, "Authorization": "Bearer s3cret"}
        assert httpx.post(url + "/v1/traces", content=body, headers=good).status_code == 200
        assert httpx.get(url + "/api/findings").status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        assert httpx.get(url + "/api/findings", headers=auth).status_code == 200
        assert httpx.get(url + "/healthz").status_code == 200
        assert "state" not in httpx.get(url + "/healthz").json()  # how many users: bearers only
        assert "state" in httpx.get(url + "/healthz", headers=good).json()
    finally:
        served.stop()


def test_the_processor_logs_no_identifier_or_address(
    make_processor: Any, caplog: pytest.LogCaptureFixture, tmp_path: Any
) -> None:
    caplog.set_level("DEBUG")
    processor = make_processor(store=f"sqlite:///{tmp_path}/u.db", checkpoint_interval=0.1)
    served = ServedInThread(processor)
    url = served.url
    try:
        for i in range(3):
            httpx.post(url + "/v1/traces", content=logins(3, t0=T0 + i * 10), headers=PB)
            time.sleep(0.15)
        httpx.get(url + "/api/users/h-alice@example.com")
        httpx.get(url + "/api/ips/203.0.113.7")
        httpx.post(url + "/v1/traces", content=b"garbage", headers=PB)
    finally:
        served.stop()
    processor.close()
    ours = [r.getMessage() for r in caplog.records if r.name.startswith(("usermon", "uvicorn"))]
    assert any("checkpoint" in line for line in ours)
    assert not [line for line in ours if "alice" in line or "203.0.113.7" in line]
