"""Ports and processors for tests and benchmarks: one way to get a free loopback port, to run
``usermon serve`` in a subprocess until it answers ``/healthz``, and to serve a
:class:`~usermon.processor.service.Processor` from a thread of the test process."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "ServedInThread",
    "Subprocess",
    "clean_environment",
    "free_port",
    "serve_command",
    "start_processor",
    "wait_healthy",
]


_LISTEN_PORTS = range(20_000, 32_768)
"""Where tests' servers listen: below Linux's ephemeral range (32768 and up), from which the OS
picks the local port of every outgoing connection, so that a Collector connecting somewhere
cannot take the port a server of the same test is about to bind."""


def free_port() -> int:
    """A port of :data:`_LISTEN_PORTS` that was free a moment ago on 127.0.0.1."""
    for _ in range(100):
        port = random.choice(_LISTEN_PORTS)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found for a test server")


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports of :data:`_LISTEN_PORTS` that were free a moment ago on 127.0.0.1."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any ``USERMON_*`` variable, plus ``extra``: a processor
    started with it has only the options it is given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("USERMON_")}
    env.update(extra)
    return env


def serve_command(port: int, store: str, *args: str) -> list[str]:
    """The command line of ``usermon serve`` on 127.0.0.1:``port`` with ``store``."""
    return [
        sys.executable,
        "-m",
        "usermon.cli",
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--store",
        store,
        *args,
    ]


def _tail(log: Path | None, lines: int = 40) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return "\n--- processor output ---\n" + "\n".join(text)


def wait_healthy(
    url: str,
    process: subprocess.Popen[bytes] | None = None,
    *,
    timeout: float = 30.0,
    log: Path | None = None,
) -> None:
    """Poll ``url``/healthz until it answers 200; fail (with the log's tail) when ``process``
    exits first or ``timeout`` seconds pass."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the processor exited with {process.returncode}{_tail(log)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the processor did not answer within {timeout:g} s{_tail(log)}")
        time.sleep(0.1)


class Subprocess:
    """A ``usermon serve`` process (see :func:`start_processor`)."""

    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``sig`` and wait for the exit (killing it after ``timeout``); its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        return self.process.returncode

    def __enter__(self) -> Subprocess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_processor(
    store: str,
    *args: str,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    cwd: Path | None = None,
    timeout: float = 30.0,
) -> Subprocess:
    """Start ``usermon serve`` on 127.0.0.1 (a free port unless ``port``) with ``store`` and
    ``args``, and return once ``/healthz`` answers. ``env`` defaults to
    :func:`clean_environment`; output goes to ``log`` (appended) or is discarded. A free port
    is only free a moment ago: when the process exits before it answers, it is started again on
    another, twice at most."""
    attempts = 1 if port else 3
    for attempt in range(attempts):
        running = _spawn(port or free_port(), store, args, env, log, cwd)
        try:
            wait_healthy(running.url, running.process, timeout=timeout, log=log)
        except BaseException:
            running.stop(signal.SIGKILL)
            exited = running.process.returncode not in (None, -signal.SIGKILL)
            if not exited or attempt == attempts - 1:
                raise
            continue
        return running
    raise AssertionError("unreachable")


def _spawn(
    port: int,
    store: str,
    args: tuple[str, ...],
    env: Mapping[str, str] | None,
    log: Path | None,
    cwd: Path | None,
) -> Subprocess:
    command = serve_command(port, store, *args)
    environment = dict(env) if env is not None else clean_environment()
    if log is None:
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment, cwd=cwd
        )
    else:
        with log.open("ab") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=environment, cwd=cwd
            )
    return Subprocess(process, port)


class ServedInThread:
    """A :class:`~usermon.processor.service.Processor` served over HTTP by uvicorn from a thread
    of this process, on an ephemeral loopback port: ``url`` once started, :meth:`stop` to end
    (the processor itself stays open: its owner closes it)."""

    def __init__(self, processor: Any, log_level: str = "warning", timeout: float = 10.0) -> None:
        import uvicorn

        from usermon.processor.server import create_app

        config = uvicorn.Config(
            create_app(processor), host="127.0.0.1", port=0, log_level=log_level, access_log=False
        )
        self.processor = processor
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the processor did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> ServedInThread:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
