"""A real Redis for the tests: Debian's ``redis-server``, started by the tests on a free port.

Each :class:`RedisServer` runs on 127.0.0.1 only, with no persistence (``--save ''
--appendonly no``: a restart comes back empty, as a Redis without persistence does) and its
working directory in a temp dir; it is stopped at the end of the test that started it, and any
left running is killed when the session ends (``tests/conftest.py`` calls
:func:`stop_all`). Without ``/usr/bin/redis-server`` (or ``HRDASH_TEST_REDIS``) the tests that
need it are skipped with the reason, except under CI (``CI`` set), where they fail: CI installs
it (``.ci/run``) and must never skip them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port, scaled

REDIS_SERVER = os.environ.get("HRDASH_TEST_REDIS", "/usr/bin/redis-server")
START_WAIT = 10.0  # seconds a server may take to answer PING (scaled)

_running: list[RedisServer] = []


def _ping(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5) as s:
        s.settimeout(0.5)
        s.sendall(b"PING\r\n")
        return s.recv(64).startswith(b"+PONG")
    return False


class RedisServer:
    """One ``redis-server`` process on ``port`` (a free one by default), its files in ``dir``."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.dir = directory
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start it (again, on the same port) and wait until it answers PING."""
        self.starts += 1
        log = self.dir / f"redis-{self.starts}.log"
        command = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            "--logfile",
            str(log),
            "--daemonize",
            "no",
        ]
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        if self not in _running:
            _running.append(self)
        deadline = time.monotonic() + scaled(START_WAIT)
        while not _ping(self.port):
            if self.proc.poll() is not None:
                text = log.read_text(errors="replace")[-400:] if log.exists() else ""
                raise RuntimeError(f"redis-server exited ({self.proc.returncode}): {text}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server did not answer on {self.port} in {START_WAIT} s")
            time.sleep(0.02)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it (SIGTERM; with no persistence its data are gone) and wait for the exit."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(scaled(10))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(scaled(10))

    def restart(self) -> None:
        """Stop it and start it again on the same port, empty."""
        self.stop()
        self.start()


def stop_all() -> None:
    """Kill every server still running (the session's end)."""
    while _running:
        server = _running.pop()
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(5)


def need_redis_server() -> None:
    """Skip the test (CI: fail it) when there is no redis-server to start."""
    if shutil.which(REDIS_SERVER) is None:
        why = f"{REDIS_SERVER} is missing (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}: CI must run the Redis tests")
        pytest.skip(why)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh, empty redis-server on a free port of 127.0.0.1, stopped after the test."""
    need_redis_server()
    with tempfile.TemporaryDirectory(prefix="hrdash-redis-") as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            yield server
        finally:
            server.stop()
            if server in _running:
                _running.remove(server)
