"""The receiver stays up under hostile transports: bodies that inflate from many gzip members,
bodies and headers that trickle in, and more body bytes at once than the budget allows."""

from __future__ import annotations

import contextlib
import gzip
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.servers import ServedInThread, start_processor

from usermon.processor.server import ByteBudget, _Held, _Stopped, gunzip

from .payloads import logins

PB = {"Content-Type": "application/x-protobuf"}
EMPTY_MEMBER = gzip.compress(b"")


def open_request(url: str, length: int, sent: bytes = b"") -> socket.socket:
    """A raw connection that sent an ingest request head announcing ``length`` body bytes,
    and ``sent`` of them."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    head = (
        f"POST /v1/traces HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-protobuf\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )
    sock.sendall(head.encode() + sent)
    return sock


def answer(sock: socket.socket, timeout: float) -> bytes:
    """What the server sent on ``sock`` until it closed it (or ``timeout`` passed)."""
    sock.settimeout(timeout)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except TimeoutError:
        pass
    return got


def closed(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes ``sock`` within ``timeout`` without answering."""
    sock.settimeout(timeout)
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_multi_member_gzip_is_inflated_whole_and_bounded() -> None:
    """Many tiny members in a row are one body: every member counts, the limit too."""
    body = gzip.compress(b"ab") * 10_000
    assert gunzip(body, 20_000) == b"ab" * 10_000
    assert gunzip(EMPTY_MEMBER * 200_000, 1024) == b""
    with pytest.raises(Exception, match="limit"):
        gunzip(body, 19_999)
    # Members larger than the largest window, and ones inflating far past an output chunk.
    large = os.urandom(300_000)
    body = gzip.compress(large) + gzip.compress(b"\x00" * 5_000_000) + gzip.compress(b"x")
    assert gunzip(body, 6_000_000) == large + b"\x00" * 5_000_000 + b"x"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=3000), min_size=1, max_size=12),
    st.integers(min_value=0, max_value=9),
)
def test_gunzip_reads_any_members_as_gzip_decompress_does(parts: list[bytes], level: int) -> None:
    """The windowed reading gives exactly what the standard library gives, member after
    member, whatever their sizes and compression levels."""
    body = b"".join(gzip.compress(p * (i % 3 + 1), level) for i, p in enumerate(parts))
    assert gunzip(body, 1 << 20) == gzip.decompress(body)


def test_a_request_given_up_takes_nothing_more_of_the_budget() -> None:
    """A worker thread still inflating for a request that was abandoned cannot keep bytes
    of the budget once the request released what it held."""
    budget = ByteBudget(100)
    held = _Held(budget)
    held.take(40)
    held.release()
    assert budget.used == 0
    with pytest.raises(_Stopped):
        held.take(10)
    assert budget.used == 0


def test_healthz_answers_while_a_many_member_gzip_body_is_inflated(make_processor: Any) -> None:
    """16 MiB of empty gzip members (about 800 000) are inflated off the event loop: the
    processor keeps answering while they are, and the request completes."""
    processor = make_processor()
    running = ServedInThread(processor)
    url = running.url
    body = EMPTY_MEMBER * (processor.settings.max_body_bytes // len(EMPTY_MEMBER))
    done: list[httpx.Response | Exception] = []

    def send() -> None:
        try:
            headers = {**PB, "Content-Encoding": "gzip"}
            done.append(httpx.post(url + "/v1/traces", content=body, headers=headers, timeout=60))
        except httpx.HTTPError as exc:  # reported by the assertion below
            done.append(exc)

    sender = threading.Thread(target=send)
    try:
        sender.start()
        answered_meanwhile = 0
        while sender.is_alive():
            health = httpx.get(url + "/healthz", timeout=2)
            assert health.status_code == 200
            answered_meanwhile += sender.is_alive()
            time.sleep(0.05)
        sender.join()
        assert answered_meanwhile >= 1
        (response,) = done
        assert isinstance(response, httpx.Response), response
        assert response.status_code == 200
    finally:
        running.stop()


def test_slow_bodies_hold_no_ingest_slot_and_time_out_with_408(make_processor: Any) -> None:
    """Four connections trickling their bodies do not lock out a real sender with
    --max-inflight 2, and are answered 408 (connection closed) once the body deadline passes."""
    processor = make_processor(max_inflight=2, body_timeout=2.0)
    running = ServedInThread(processor)
    url = running.url
    slow = [open_request(url, 1000, b"\x0a") for _ in range(4)]
    try:
        for _ in range(3):
            time.sleep(0.2)
            for sock in slow:
                sock.sendall(b"\x00")
        response = httpx.post(url + "/v1/traces", content=logins(2), headers=PB, timeout=5)
        assert response.status_code == 200
        got = answer(slow[0], timeout=6)
        assert got.startswith(b"HTTP/1.1 408")
        assert b"connection: close" in got.lower()
    finally:
        for sock in slow:
            sock.close()
        running.stop()


def test_bodies_over_the_byte_budget_are_429_with_retry_after(make_processor: Any) -> None:
    """Bodies held at once count against --max-inflight-bytes, as received: the request that
    would go over it is 429 with Retry-After, and one that fits is still taken."""
    processor = make_processor(max_body_bytes=64 * 1024, max_inflight_bytes=128 * 1024)
    running = ServedInThread(processor)
    url = running.url
    held = [open_request(url, 60_000, b"\x00" * 50_000) for _ in range(2)]
    try:
        time.sleep(0.3)  # the two are read up to what they sent: 100 000 bytes held
        third = open_request(url, 60_000, b"\x00" * 50_000)
        held.append(third)
        got = answer(third, timeout=5)
        assert got.startswith(b"HTTP/1.1 429")
        assert b"retry-after: 1" in got.lower()
        small = httpx.post(url + "/v1/traces", content=logins(1), headers=PB, timeout=5)
        assert small.status_code == 200
    finally:
        for sock in held:
            sock.close()
        running.stop()


def test_what_a_gzip_body_inflates_to_counts_against_the_byte_budget(
    make_processor: Any,
) -> None:
    processor = make_processor(max_body_bytes=64 * 1024, max_inflight_bytes=128 * 1024)
    running = ServedInThread(processor)
    url = running.url
    held = [open_request(url, 60_000, b"\x00" * 50_000) for _ in range(2)]
    try:
        time.sleep(0.3)
        bomb = gzip.compress(b"\x00" * 60_000)  # small on the wire, 60 000 bytes inflated
        headers = {**PB, "Content-Encoding": "gzip"}
        response = httpx.post(url + "/v1/traces", content=bomb, headers=headers, timeout=5)
        assert response.status_code == 429
        assert response.headers["retry-after"] == "1"
        for sock in held:
            sock.close()
        deadline = time.monotonic() + 5
        while running.server.config.app.state.budget.used and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (
            running.server.config.app.state.budget.used == 0
        )  # every request gave back what it held
    finally:
        for sock in held:
            sock.close()
        running.stop()


# -- the server process ----------------------------------------------------------------------------


def serve(tmp_path: Path, *flags: str) -> tuple[subprocess.Popen[bytes], str]:
    running = start_processor("memory://", *flags, log=tmp_path / "processor.log")
    return running.process, running.url


def test_a_connection_that_trickles_its_headers_is_closed(tmp_path: Path) -> None:
    """uvicorn has no deadline for a request head; --header-timeout is one, on a new
    connection and on a kept-alive one waiting for its next request."""
    process, url = serve(tmp_path, "--header-timeout", "1")
    host, port = url.removeprefix("http://").split(":")
    fresh = socket.create_connection((host, int(port)), timeout=10)
    kept = socket.create_connection((host, int(port)), timeout=10)
    try:
        fresh.sendall(b"POST /v1/traces HTTP/1.1\r\n")
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        assert kept.recv(65536).startswith(b"HTTP/1.1 200")
        kept.sendall(b"GET /hea")
        for _ in range(4):  # a byte every half second: the keep-alive timer never fires
            time.sleep(0.5)
            for sock, byte in ((fresh, b"X"), (kept, b"l")):
                with contextlib.suppress(OSError):  # closed by the server already
                    sock.sendall(byte)
        assert closed(fresh, timeout=3)
        assert closed(kept, timeout=3)
    finally:
        for sock in (fresh, kept):
            sock.close()
        process.terminate()
        process.wait(10)


def test_sigterm_while_a_gzip_body_is_inflated_ends_the_process_promptly(tmp_path: Path) -> None:
    process, url = serve(tmp_path)
    body = EMPTY_MEMBER * (16 * 1024 * 1024 // len(EMPTY_MEMBER))
    outcome: list[object] = []

    def send() -> None:
        try:
            headers = {**PB, "Content-Encoding": "gzip"}
            response = httpx.post(url + "/v1/traces", content=body, headers=headers, timeout=30)
            outcome.append(response)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        time.sleep(0.4)  # sent, and being inflated
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=8) == 0
    finally:
        if process.poll() is None:
            process.kill()
        sender.join(30)
    (result,) = outcome
    if isinstance(result, httpx.Response):  # inflated before the signal, or stopped by it
        assert result.status_code in (200, 503)
