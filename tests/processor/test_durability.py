"""Acknowledged means durable: kill -9 the processor mid-stream, restart it, nothing is lost."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tests.support.servers import Subprocess, clean_environment, free_port, start_processor

from .payloads import T0, logins

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PB = {"Content-Type": "application/x-protobuf"}


def serve(store: str, port: int, log: Path) -> Subprocess:
    return start_processor(store, "--checkpoint-interval", "1", port=port, log=log)


def test_kill_9_mid_stream_loses_nothing_acknowledged(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/usermon.db"
    log = tmp_path / "processor.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    processor = serve(store, port, log)
    acknowledged = 0
    try:
        started = time.monotonic()
        batch = 0
        # Stream long enough for a checkpoint or two, then kill while batches are in the journal.
        while time.monotonic() - started < 3.5:
            body = logins(20, t0=T0 + batch * 20, user="victim@example.com")
            response = httpx.post(url + "/v1/traces", content=body, headers=PB, timeout=10)
            assert response.status_code == 200
            acknowledged += 20
            batch += 1
    finally:
        processor.stop(signal.SIGKILL)
    assert acknowledged > 0

    restarted = serve(store, port, log)
    try:
        profile = httpx.get(url + "/api/users/h-victim@example.com", timeout=10).json()
        assert profile["failures"]["24h"] == acknowledged
        assert profile["first_seen"] == T0
        # The state resumes: the next event continues the same counters.
        more = logins(1, t0=T0 + batch * 20, user="victim@example.com")
        assert (
            httpx.post(url + "/v1/traces", content=more, headers=PB, timeout=10).status_code == 200
        )
        profile = httpx.get(url + "/api/users/h-victim@example.com", timeout=10).json()
        assert profile["failures"]["24h"] == acknowledged + 1
    finally:
        restarted.stop()
    assert "replayed" in log.read_text()


def test_a_clean_stop_checkpoints_so_the_restart_replays_nothing(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/usermon.db"
    log = tmp_path / "processor.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    processor = serve(store, port, log)
    try:
        httpx.post(url + "/v1/traces", content=logins(5, user="a@example.com"), headers=PB)
    finally:
        assert processor.stop() == 0
    log.write_text("")
    restarted = serve(store, port, log)
    try:
        profile = httpx.get(url + "/api/users/h-a@example.com", timeout=10).json()
        assert profile["failures"]["24h"] == 5
    finally:
        restarted.stop()
    assert "replayed" not in log.read_text()


def test_serving_off_loopback_without_a_token_fails_at_startup(tmp_path: Path) -> None:
    env = clean_environment()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "usermon.cli",
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--store",
            "memory://",
        ],
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert result.returncode != 0
    assert b"bearer token" in result.stderr
