"""Shared fixtures for the server-core tests: a simulator, bridges, viewers and a scripted upstream.

Everything runs on real sockets on 127.0.0.1 with port 0; every wait is bounded by a timeout
(scaled by ``HRDASH_TEST_TIMEOUT_FACTOR`` on slow machines) so that no test can hang.

The test session keeps no history by default: ``HRDASH_DB=:memory:`` in the environment (which
the processes the tests start inherit) and in :func:`bridge_settings`. A test that needs a history
gives a file in its ``tmp_path``; none writes ``hrdash.db`` in the repo (checked at the end).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import os
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers

from hrdash.bridge import Bridge
from hrdash.settings import Settings
from hrdash.simulator import Simulator
from hrdash.store import MEMORY
from tests.redis_support import redis_server, stop_all
from tests.support import ROOT, TIMEOUT_FACTOR, scaled

FACTOR = TIMEOUT_FACTOR  # one factor for the whole suite (tests/support.py)
timeout = scaled  # a time bound for a test step, scaled for slow machines


REPO_HISTORY = ROOT / "hrdash.db"  # where a test that forgot HRDASH_DB would write


def pytest_configure(config: pytest.Config) -> None:
    """The per-test limit of pytest-timeout (pyproject.toml) scales with the factor too; the
    session keeps no history unless a test says where (``HRDASH_DB``, inherited by the
    processes the tests start)."""
    limit = config.getoption("timeout", None) or config.getini("timeout")
    if limit and FACTOR != 1:
        config.option.timeout = float(limit) * FACTOR
    os.environ["HRDASH_DB"] = MEMORY


__all__ = ["redis_server"]  # the real redis-server fixture (tests/redis_support.py)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No redis-server started by a test outlives the session."""
    stop_all()


@pytest.fixture(scope="session", autouse=True)
def no_history_in_the_repo() -> Iterator[None]:
    """No test writes ``hrdash.db`` in the repo (a bridge started with settings that do not
    come from :func:`bridge_settings` or the session's environment would)."""
    existed = REPO_HISTORY.exists()
    yield
    assert existed or not REPO_HISTORY.exists(), (
        f"a test wrote {REPO_HISTORY}: give it HRDASH_DB=:memory: or a file in tmp_path"
    )


def strict_json(text: str | bytes) -> Any:
    """Parse JSON the way a browser does: ``NaN`` and ``Infinity`` are errors."""

    def refuse(name: str) -> Any:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_port(server: Server) -> int:
    return int(server.sockets[0].getsockname()[1])


async def read_until(
    ws: ClientConnection,
    predicate: Callable[[dict[str, Any]], bool],
    seconds: float = 5.0,
) -> list[dict[str, Any]]:
    """Read frames (strict JSON) until one satisfies ``predicate``; returns all of them, the
    matching one last. Raises ``TimeoutError`` after ``seconds``."""
    frames: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout(seconds)):
            while True:
                message = await ws.recv()
                frame = strict_json(message)
                frames.append(frame)
                if predicate(frame):
                    return frames
    except TimeoutError:
        types = [f.get("type") for f in frames[-5:]]
        raise TimeoutError(
            f"no matching frame within {seconds} s ({len(frames)} frames, last types {types})"
        ) from None


def seqs_of(frames: list[dict[str, Any]]) -> list[int]:
    """Every reading's seq, in the order received."""
    return [r["seq"] for f in frames if f.get("type") == "readings" for r in f["readings"]]


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """A plain HTTP/1.1 GET on 127.0.0.1 (blocking: call through ``asyncio.to_thread``)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout(5))
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


async def healthz(port: int) -> dict[str, Any]:
    status, body = await asyncio.to_thread(http_get, port, "/healthz")
    assert status == 200, body
    return dict(strict_json(body))


async def wait_for(condition: Callable[[], bool], seconds: float = 5.0, what: str = "") -> None:
    """Poll ``condition`` every 10 ms until it holds; ``TimeoutError`` after ``seconds``."""
    try:
        async with asyncio.timeout(timeout(seconds)):
            while not condition():  # noqa: ASYNC110 - polls state another task changes
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise TimeoutError(f"not within {seconds} s: {what or condition}") from None


# -- simulator ---------------------------------------------------------------------------------


class RunningSimulator:
    """A started :class:`Simulator` and its server; ``url`` is what a bridge connects to."""

    def __init__(self, sim: Simulator, server: Server) -> None:
        self.sim = sim
        self.server = server
        self.port = server_port(server)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def restart(self) -> None:
        """Start a fresh simulator on the same port (after :meth:`stop`)."""
        self.sim = Simulator(period=self.sim.period, seed=2)
        self.server = await self.sim.start(port=self.port)


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    """A simulator on a free port sending a frame every 20 ms."""
    sim = Simulator(period=0.02, seed=1)
    running = RunningSimulator(sim, await sim.start(port=0))
    yield running
    await running.stop()


# -- bridge ------------------------------------------------------------------------------------

StartBridge = Callable[..., Awaitable[Bridge]]


def bridge_settings(upstream_url: str, **overrides: Any) -> Settings:
    """A bridge's settings for ``upstream_url`` on a free port, keeping no history unless
    ``db=`` says where."""
    return Settings.load(env={}).replace(
        upstream_url=upstream_url, bridge_port=0, **{"db": MEMORY, **overrides}
    )


@pytest.fixture
async def start_bridge() -> AsyncIterator[StartBridge]:
    """Factory: ``await start_bridge(url, **settings)`` starts a bridge on a free port; every
    bridge started is closed at teardown."""
    async with bridges_closed_after() as start_settings:

        async def start(upstream_url: str, **overrides: Any) -> Bridge:
            return await start_settings(bridge_settings(upstream_url, **overrides))

        yield start


@contextlib.asynccontextmanager
async def bridges_closed_after() -> AsyncIterator[Callable[[Settings], Awaitable[Bridge]]]:
    """Yields ``start(settings)``, which starts a bridge; every bridge started is closed on
    exit."""
    bridges: list[Bridge] = []

    async def start(settings: Settings) -> Bridge:
        bridge = Bridge(settings)
        bridges.append(bridge)
        await bridge.start()
        return bridge

    try:
        yield start
    finally:
        for bridge in bridges:
            async with asyncio.timeout(timeout(5)):
                await bridge.close()


def viewer_url(bridge: Bridge, query: str = "") -> str:
    return f"ws://127.0.0.1:{bridge.port}/ws" + (f"?{query}" if query else "")


# -- scripted upstream -------------------------------------------------------------------------


class Upstream:
    """A WebSocket server whose test decides every frame. It records each connection and keeps
    it open until the test (or the client) closes it; it can stop and restart on its port."""

    def __init__(self) -> None:
        self.connections: list[ServerConnection] = []
        self.server: Server | None = None
        self.port = 0
        self._changed = asyncio.Event()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        self._changed.set()
        await ws.wait_closed()

    async def start(self) -> None:
        self.server = await serve(self._handler, "127.0.0.1", self.port, compression=None)
        self.port = server_port(self.server)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    async def wait_connections(self, count: int, seconds: float = 5.0) -> ServerConnection:
        """Wait until ``count`` connections have been accepted in all; returns the latest."""
        try:
            async with asyncio.timeout(timeout(seconds)):
                while len(self.connections) < count:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(
                f"{len(self.connections)} upstream connections within {seconds} s, wanted {count}"
            ) from None
        return self.connections[-1]

    async def send(self, *frames: str | bytes) -> None:
        """Send frames, in order, on the latest connection."""
        ws = self.connections[-1]
        for data in frames:
            await ws.send(data)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    """A scripted upstream server on a free port."""
    server = Upstream()
    await server.start()
    yield server
    await server.stop()


# -- a recording heart-rate service (any shape, any option) -------------------------------------


def reference_frames(count: int = 8, start_ms: int = 1_513_152_655_902) -> list[str]:
    """``count`` frames in the reference shape: bpm 70, 71, ... every 500 ms from ``start_ms``."""
    return [json.dumps({"time": start_ms + 500 * i, "value": 70 + i}) for i in range(count)]


SERVICE_LOGGER = "tests.service"  # the test services' own log, apart from hrdash's


@dataclass
class Seen:
    """What a :class:`Service` saw of one connection."""

    path: str
    headers: Headers
    subprotocol: str | None
    first_message: str | bytes | None = None


class Service:
    """A heart-rate service on 127.0.0.1 that records each connection's request path, headers,
    negotiated subprotocol and first message (waiting up to ``first_wait`` s for it), then sends
    ``frames`` (default: :func:`reference_frames`) and keeps the connection open.

    ``require(seen)`` false → the service closes the connection (code 1008) without a frame;
    ``process_request`` is passed to websockets' ``serve`` (e.g. to answer 403 at the handshake).
    """

    def __init__(
        self,
        frames: list[str] | None = None,
        *,
        subprotocols: list[str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        first_wait: float = 0.0,
        require: Callable[[Seen], bool] | None = None,
        process_request: Callable[..., Any] | None = None,
    ) -> None:
        self.frames = reference_frames() if frames is None else frames
        self.subprotocols = subprotocols
        self.ssl_context = ssl_context
        self.first_wait = first_wait
        self.require = require
        self.process_request = process_request
        self.seen: list[Seen] = []
        self.connections: list[ServerConnection] = []
        self.server: Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl_context else "ws"
        return f"{scheme}://127.0.0.1:{self.port}/"

    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        seen = Seen(ws.request.path, ws.request.headers, ws.subprotocol)
        if self.first_wait:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.first_wait):
                    seen.first_message = await ws.recv()
        self.seen.append(seen)
        self.connections.append(ws)
        if self.require is not None and not self.require(seen):
            await ws.close(1008, "forbidden")
            return
        for frame in self.frames:
            await ws.send(frame)
        await ws.wait_closed()

    async def start(self) -> Service:
        self.server = await serve(
            self._handler,
            "127.0.0.1",
            self.port,  # 0 at first; after stop(), a start() listens on the same port again
            subprotocols=self.subprotocols,  # type: ignore[arg-type]
            ssl=self.ssl_context,
            process_request=self.process_request,
            compression=None,
            logger=logging.getLogger(SERVICE_LOGGER),
        )
        self.port = server_port(self.server)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    async def wait_seen(self, count: int, seconds: float = 5.0) -> Seen:
        """Wait until ``count`` connections have been seen; returns the ``count``-th."""
        await wait_for(lambda: len(self.seen) >= count, seconds, f"{count} connections seen")
        return self.seen[count - 1]


ServiceFactory = Callable[..., Awaitable[Service]]


@pytest.fixture
async def services() -> AsyncIterator[ServiceFactory]:
    """Factory: ``await services(frames, **options)`` starts a :class:`Service`; all stop at
    teardown."""
    started: list[Service] = []

    async def start(frames: list[str] | None = None, **options: Any) -> Service:
        service = await Service(frames, **options).start()
        started.append(service)
        return service

    yield start
    for service in started:
        async with asyncio.timeout(timeout(5)):
            await service.stop()


@dataclass
class Tls:
    """A throwaway CA (``ca_file``, PEM) and a server context whose certificate for 127.0.0.1
    it signed."""

    ca_file: str
    server: ssl.SSLContext


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A test CA made with ``trustme`` (no system trust store knows it)."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return Tls(str(path), server)
