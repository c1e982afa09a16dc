"""Running the processor as a server: uvicorn for HTTP, optionally gRPC, checkpoints when idle.

This module owns the process around the :class:`~usermon.processor.service.Processor`: it
starts the receivers on the configured addresses, checkpoints in the background when ingest
goes quiet (so the journal does not wait for the next request), and on SIGINT/SIGTERM stops
accepting, abandons decompressions under way, checkpoints and closes the store. uvicorn's access
log stays off: request paths carry user hashes and addresses, which the processor's own logs
never show. uvicorn has no deadline for a request's headers (its keep-alive timer is reset by
every byte), so the HTTP protocol here adds one: a connection that has not sent a whole request
head within ``--header-timeout`` is closed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import threading
import time
from typing import Any

from usermon.processor.service import Processor
from usermon.processor.settings import Settings

__all__ = ["run"]

logger = logging.getLogger("usermon.processor")


class _IdleCheckpointer(threading.Thread):
    def __init__(self, processor: Processor) -> None:
        super().__init__(name="usermon-checkpoint", daemon=True)
        self.processor = processor
        self.stopping = threading.Event()

    def run(self) -> None:
        interval = self.processor.settings.checkpoint_interval
        while not self.stopping.wait(min(interval, 1.0)):
            p = self.processor
            due = time.monotonic() - p._last_checkpoint >= interval
            if p._unsaved and due and p.lock.acquire(blocking=False):
                try:
                    p.checkpoint()
                except Exception:  # retried at the next interval
                    logger.exception("background checkpoint failed")
                finally:
                    p.lock.release()


def header_deadline_protocol(timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with a deadline for each request's line and headers: armed when
    the connection opens and again when a response completes (waiting for the next request on
    a kept-alive connection), disarmed when a request head has been parsed; on expiry the
    connection is closed."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadlineProtocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _waiting_after: Any = None  # the cycle of the last request (None: none yet)

        def _arm(self) -> None:
            self._disarm()
            self._waiting_after = self.cycle
            self._deadline = self.loop.call_later(timeout, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            if self.cycle is self._waiting_after and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def handle_events(self) -> None:
            super().handle_events()
            if self._deadline is not None and self.cycle is not self._waiting_after:
                self._disarm()  # a request head arrived: the body has its own deadline

        def on_response_complete(self) -> None:
            super().on_response_complete()
            cycle = self.cycle
            waiting = cycle is not None and cycle.response_complete and self._deadline is None
            if waiting and not self.transport.is_closing():
                self._arm()

    return HeaderDeadlineProtocol


def _tune_gc() -> None:
    """Keep the cyclic garbage collector off the hot path.

    The engine allocates a few short-lived objects per event and keeps a large, long-lived state;
    with the default thresholds the collector runs every 700 allocations and walks that state
    again and again (20-35 % of the engine's time in benchmarks/bench_ingest.py). The restored
    state is moved out of the collector's sight and collections are made rarer; cycles are still
    collected, only less often.
    """
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def _listening_socket(host: str, port: int) -> socket.socket:
    """The HTTP port, bound before the store opens and before anything says the processor is up:
    a port that is taken is then the one error the user reads, instead of a startup line that
    announces the address followed by uvicorn's own failure and shutdown lines."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def run(settings: Settings, processor: Processor | None = None) -> None:
    """Serve until interrupted."""
    import uvicorn

    from usermon.processor.server import create_app

    sock = _listening_socket(settings.listen_host, settings.listen_port)
    try:
        processor = processor or Processor(settings)
    except BaseException:
        sock.close()
        raise
    _tune_gc()
    logger.info("%s", processor.describe())
    grpc_server = None
    if settings.grpc_listen is not None:
        from usermon.processor.grpc_receiver import start_grpc

        grpc_server = start_grpc(processor, *settings.grpc_listen)
        logger.info("OTLP/gRPC on %s:%d", settings.grpc_listen[0], grpc_server.usermon_port)
    checkpointer = _IdleCheckpointer(processor)
    checkpointer.start()
    app = create_app(processor)
    config = uvicorn.Config(
        app,
        host=settings.listen_host,
        port=settings.listen_port,
        http=header_deadline_protocol(settings.header_timeout),
        log_level=settings.log_level,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    stopping: threading.Event = app.state.stopping

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            stopping.set()  # decompressions under way end now, with a 503
            super().handle_exit(sig, frame)

    # uvicorn re-raises the signal that stopped it once it is done; with these handlers in place
    # that lands here instead of killing the process before the final checkpoint.
    stops: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda number, frame: stops.append(number))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        Server(config).run(sockets=[sock])
    finally:
        sock.close()
        checkpointer.stopping.set()
        if grpc_server is not None:
            grpc_server.stop(grace=5).wait()
        processor.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        logger.info("usermon processor stopped")
