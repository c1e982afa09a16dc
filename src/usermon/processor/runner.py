"""Running the processor as a server: uvicorn for HTTP, optionally gRPC, checkpoints when idle.

This module owns the process around the :class:`~usermon.processor.service.Processor`: it
starts the receivers on the configured addresses, checkpoints in the background when ingest
goes quiet (so the journal does not wait for the next request), and on SIGINT/SIGTERM stops
accepting, checkpoints and closes the store. uvicorn's access log stays off: request paths
carry user hashes and addresses, which the processor's own logs never show.
"""

from __future__ import annotations

import gc
import logging
import signal
import socket
import threading
import time

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
    config = uvicorn.Config(
        create_app(processor),
        host=settings.listen_host,
        port=settings.listen_port,
        log_level=settings.log_level,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    # uvicorn re-raises the signal that stopped it once it is done; with these handlers in place
    # that lands here instead of killing the process before the final checkpoint.
    stops: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda number, frame: stops.append(number))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        checkpointer.stopping.set()
        if grpc_server is not None:
            grpc_server.stop(grace=5).wait()
        processor.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        logger.info("usermon processor stopped")
