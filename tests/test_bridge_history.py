"""The bridge's history end to end: real ``hrdash bridge`` processes on free ports, a heart-rate
service the test controls, a real SQLite file in ``tmp_path``.

What must hold: a SIGKILLed bridge loses nothing it had committed, and a restarted one goes on
recording on the same file (in time order, no duplicates); a graceful stop (SIGTERM) commits
everything the bridge accepted; after a restart a monitor's first frame holds the last readings
from before; the recorder's state is in ``/healthz``; an unhappy file never keeps the live
readings from the viewers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from hrdash import bridge as bridge_module
from hrdash import store
from tests.conftest import (
    StartBridge,
    free_port,
    healthz,
    http_get,
    server_port,
    strict_json,
    timeout,
    viewer_url,
    wait_for,
)

PATIENT = "patient-1"  # the one patient of HRDASH_UPSTREAM_URL
PERIOD = 0.02  # seconds between two readings of the test's service (50 Hz: many per commit)
STEP_MS = 20  # the readings' own times advance this much each
REPLAY = 5  # readings the service sends again on every new connection (some services do)

Pair = tuple[int, int | float]


class Service:
    """A heart-rate service on 127.0.0.1 that sends reference frames from one counter for all
    its connections, every ``PERIOD`` s while ``streaming`` is set; a new connection first gets
    the last ``replay`` readings sent again. ``sent`` holds every distinct reading sent."""

    def __init__(self, replay: int = REPLAY) -> None:
        self.replay = replay
        self.sent: list[Pair] = []
        self.base = int(time.time() * 1000) - 60_000  # within the history's raw retention
        self.streaming = asyncio.Event()
        self.streaming.set()
        self.server: Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def next_reading(self) -> Pair:
        i = len(self.sent)
        reading: Pair = (self.base + STEP_MS * i, 60 + i % 60 if i % 7 else 60.5 + i % 60)
        self.sent.append(reading)
        return reading

    async def send_count(self, ws: ServerConnection, count: int) -> None:
        for _ in range(count):
            t, bpm = self.next_reading()
            await ws.send(json.dumps({"time": t, "value": bpm}))

    async def _handler(self, ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            for t, bpm in self.sent[len(self.sent) - self.replay :] if self.replay else []:
                await ws.send(json.dumps({"time": t, "value": bpm}))
            while True:
                await self.streaming.wait()
                if ws.state is not State.OPEN:
                    return  # no reading is made for a connection that is gone
                await self.send_count(ws, 1)
                await asyncio.sleep(PERIOD)

    async def start(self) -> Service:
        self.server = await serve(self._handler, "127.0.0.1", 0, compression=None)
        self.port = server_port(self.server)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.streaming.set()  # a handler waiting to stream sees its connection gone
            self.server.close()
            async with asyncio.timeout(timeout(5)):
                await self.server.wait_closed()


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    running = await Service().start()
    yield running
    await running.stop()


class BridgeProcess:
    """``python -m hrdash bridge`` on a free port, reading ``upstream`` and recording to ``db``;
    its log in ``log_path``."""

    def __init__(self, upstream: str, db: Path, log_path: Path, **env: str) -> None:
        self.port = free_port()
        clean = {k: v for k, v in os.environ.items() if not k.startswith("HRDASH_")}
        self.env = {
            **clean,
            "HRDASH_UPSTREAM_URL": upstream,
            "HRDASH_BRIDGE_PORT": str(self.port),
            "HRDASH_DB": str(db),
            "HRDASH_LOG_LEVEL": "info",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hrdash", "bridge"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    async def start(self) -> BridgeProcess:
        await asyncio.to_thread(self._spawn)
        await wait_for(self.listening, 15, f"the bridge on port {self.port}:\n{self.log()}")
        return self

    def listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"the bridge exited ({self.proc.returncode}):\n{self.log()}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    async def stop(self, sig: int) -> int:
        """Send ``sig``; returns the exit status (-9 for SIGKILL)."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        return await asyncio.to_thread(self.proc.wait, timeout(10))

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def bridges(tmp_path: Path) -> Iterator[list[BridgeProcess]]:
    """The bridge processes a test starts (append them); killed at teardown if still running."""
    started: list[BridgeProcess] = []
    yield started
    for bridge in started:
        bridge.kill()


async def start_bridge_process(
    started: list[BridgeProcess], upstream: str, db: Path, **env: str
) -> BridgeProcess:
    log = db.with_name(f"bridge-{len(started) + 1}.log")
    bridge = BridgeProcess(upstream, db, log, **env)
    started.append(bridge)
    return await bridge.start()


class Viewer:
    """A monitor's connection (``/ws?patient=``): its first frame, and every reading it got."""

    def __init__(self, ws: ClientConnection, first: dict[str, Any]) -> None:
        self.ws = ws
        self.first = first
        self.readings: list[Pair] = [(r["time"], r["bpm"]) for r in first["readings"]]
        self.live: list[Pair] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in self.ws:
                frame = strict_json(message)
                if frame.get("type") == "readings":
                    got = [(r["time"], r["bpm"]) for r in frame["readings"]]
                    self.readings += got
                    self.live += got

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.ws.close()


@contextlib.asynccontextmanager
async def viewer(port: int) -> AsyncIterator[Viewer]:
    async with connect(f"ws://127.0.0.1:{port}/ws?patient={PATIENT}") as ws:
        first = strict_json(await asyncio.wait_for(ws.recv(), timeout(5)))
        assert first["type"] == "readings" and first.get("snapshot") is True, first
        seen = Viewer(ws, first)
        try:
            yield seen
        finally:
            await seen.close()


def stored(db: Path, patient: str = PATIENT) -> list[tuple[int, int, int | float]]:
    """(t, n, bpm) of the patient's stored readings, in key order (time order), read the way
    the Dash server reads them."""
    conn = store.connect(db, readonly=True)
    try:
        return [
            (int(t), int(n), bpm)
            for t, n, bpm in conn.execute(
                "SELECT t, n, bpm FROM readings JOIN patients ON readings.patient = patients.key"
                " WHERE patients.id = ? ORDER BY t, n",
                (patient,),
            ).fetchall()
        ]
    finally:
        conn.close()


def history_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("history"))


def pairs(rows: list[tuple[int, int, int | float]]) -> list[Pair]:
    return [(t, bpm) for t, _, bpm in rows]


def assert_history(rows: list[tuple[int, int, int | float]], sent: list[Pair]) -> None:
    """Every stored reading was sent, as sent (72 stays 72); strictly increasing times (in
    order, no reading twice)."""
    times = [t for t, _, _ in rows]
    assert times == sorted(set(times)), "stored readings out of order or twice"
    assert all(n == 0 for _, n, _ in rows)
    sent_set = set(sent)
    assert all((t, bpm) in sent_set for t, _, bpm in rows), "a stored reading nobody sent"
    by_time = dict(sent)
    assert all(type(bpm) is type(by_time[t]) for t, _, bpm in rows)  # 72 stays 72


async def recorder_status(port: int) -> dict[str, Any]:
    return dict((await healthz(port))["recorder"])


async def wait_commits(port: int, count: int, seconds: float = 10.0) -> dict[str, Any]:
    """Poll /healthz until the recorder has made ``count`` commits; returns its status."""
    deadline = time.monotonic() + timeout(seconds)
    while True:
        status = await recorder_status(port)
        if status.get("commits", 0) >= count:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"not {count} commits within {seconds} s: {status}")
        await asyncio.sleep(0.1)


async def test_sigkill_loses_nothing_committed_and_the_history_goes_on(
    service: Service, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    """A bridge SIGKILLed while recording, restarted on the same file: what was committed
    before the kill is all there, unchanged; the new bridge records on after it (in time
    order, no duplicates, though the service sends its last readings again on reconnect), and
    everything its viewer got live is stored once it stops (SIGTERM)."""
    db = tmp_path / "history.db"
    first = await start_bridge_process(bridges, service.url, db)
    async with viewer(first.port) as seen:
        await wait_for(lambda: len(seen.live) >= 100, 10, "100 live readings")
        status = await wait_commits(first.port, 2)
        assert status["state"] == "ok" and status["db"] == str(db), status
        assert await first.stop(signal.SIGKILL) == -signal.SIGKILL
    before = stored(db)
    assert len(before) >= 2, before
    assert_history(before, service.sent)
    # Committed in the order accepted: a run of the service's readings, from its first on.
    assert pairs(before) == service.sent[: len(before)]

    second = await start_bridge_process(bridges, service.url, db)
    async with viewer(second.port) as seen:
        await wait_for(lambda: len(seen.live) >= 100, 10, "100 live readings after the restart")
        assert await second.stop(signal.SIGTERM) == 0, second.log()
    after = stored(db)
    assert after[: len(before)] == before  # nothing committed was lost or changed
    assert_history(after, service.sent)
    assert set(seen.live) <= set(pairs(after)), "a reading the viewer got is not stored"
    assert len(after) >= len(before) + 100 - REPLAY


async def test_sigterm_commits_everything_accepted(
    service: Service, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    """SIGTERM while readings stream in (50 a second, commits about once a second): the
    bridge exits 0 having committed every reading it accepted, so the file holds everything
    its viewer received, and a run of the service's readings with no hole."""
    db = tmp_path / "history.db"
    bridge = await start_bridge_process(bridges, service.url, db)
    async with viewer(bridge.port) as seen:
        await wait_for(lambda: len(seen.live) >= 150, 10, "150 live readings")
        assert await bridge.stop(signal.SIGTERM) == 0, bridge.log()
        received = list(seen.live)
    rows = stored(db)
    assert_history(rows, service.sent)
    assert pairs(rows) == service.sent[: len(rows)]  # no hole
    assert set(received) <= set(pairs(rows))  # everything the viewer got, and what came before
    assert "Traceback" not in bridge.log()


async def test_a_restarted_bridge_shows_the_readings_from_before_at_once(
    service: Service, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    """After a restart, a monitor's first frame (the snapshot) holds the last 20 readings from
    before, as they were, before any new one arrives; the patient is not live for them (they
    are not counted as accepted, have no age); new readings follow with the next seqs."""
    service.replay = 0
    db = tmp_path / "history.db"
    first = await start_bridge_process(bridges, service.url, db)
    async with viewer(first.port) as seen:
        await wait_for(lambda: len(seen.live) >= 60, 10, "60 live readings")
        service.streaming.clear()
        await asyncio.sleep(PERIOD * 5)
        assert await first.stop(signal.SIGTERM) == 0, first.log()
    before = pairs(stored(db))
    assert before == service.sent

    second = await start_bridge_process(bridges, service.url, db)
    async with viewer(second.port) as seen:
        assert [(r["time"], r["bpm"]) for r in seen.first["readings"]] == before[-20:]
        seqs = [r["seq"] for r in seen.first["readings"]]
        assert seqs == list(range(len(before) - 19, len(before) + 1))
        assert seen.first["last_seq"] == len(before)
        health = await healthz(second.port)
        assert health["counters"]["accepted"] == 0
        assert health["last_reading_age"] is None
        assert health["patients"][0]["state"] != "live"
        assert health["recorder"]["state"] in ("starting", "ok"), health["recorder"]
        service.streaming.set()
        await wait_for(lambda: len(seen.live) >= 5, 10, "live readings after the restart")
    status, body = await asyncio.to_thread(http_get, second.port, "/api/patients")
    listing = strict_json(body)
    assert status == 200 and listing[0]["last"]["seq"] > len(before)


async def test_a_corrupt_file_is_left_alone_and_the_readings_flow(
    service: Service, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    """A history file that is not a database: the bridge serves live readings all the same,
    /healthz says the recorder is in error (corrupt) and why, and the file is never written."""
    db = tmp_path / "history.db"
    garbage = b"this is not an SQLite database\n" * 200
    db.write_bytes(garbage)
    bridge = await start_bridge_process(bridges, service.url, db)
    async with viewer(bridge.port) as seen:
        await wait_for(lambda: len(seen.live) >= 50, 10, "50 live readings")
        status = await recorder_status(bridge.port)
        assert status["state"] == "error" and status["cause"] == "corrupt", status
        assert status["detail"] and "\n" not in status["detail"]
        assert await bridge.stop(signal.SIGTERM) == 0, bridge.log()
    assert db.read_bytes() == garbage
    assert history_files(tmp_path) == ["history.db"]  # nothing renamed, nothing beside it


async def test_a_locked_file_holds_the_readings_until_it_is_free(
    service: Service, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    """Another process holds the file's write lock: the bridge still serves live readings,
    /healthz says the recorder is not recording (locked) with readings waiting; once the lock
    is gone they are committed, none lost."""
    db = tmp_path / "history.db"
    conn = store.connect(db)
    store.ensure_schema(conn)
    locker = sqlite3.connect(str(db), isolation_level=None, timeout=0)
    try:
        locker.execute("BEGIN IMMEDIATE")  # the write lock, held
        bridge = await start_bridge_process(bridges, service.url, db)
        async with viewer(bridge.port) as seen:
            await wait_for(lambda: len(seen.live) >= 50, 10, "50 live readings while locked")
            deadline = time.monotonic() + timeout(20)
            while True:
                status = await recorder_status(bridge.port)
                if status["state"] == "error" or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert status["state"] == "error" and status["cause"] == "locked", status
            assert status["pending"] > 0 and status["since"] is not None
            locker.execute("ROLLBACK")
            deadline = time.monotonic() + timeout(40)  # the writer's backoff is up to 30 s
            while True:
                status = await recorder_status(bridge.port)
                if status["state"] == "ok" or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert status["state"] == "ok", status
            assert await bridge.stop(signal.SIGTERM) == 0, bridge.log()
            received = list(seen.live)
    finally:
        locker.close()
        conn.close()
    rows = stored(db)
    assert_history(rows, service.sent)
    assert set(received) <= set(pairs(rows))


async def test_history_off_in_healthz_and_the_source_detail(
    service: Service, start_bridge: StartBridge
) -> None:
    """With HRDASH_DB=:memory: there is no recorder: /healthz and the Source panel's detail
    say the history is off; readings flow as ever."""
    bridge = await start_bridge(service.url)
    assert bridge.recorder is None
    assert (await healthz(bridge.port))["recorder"] == {"db": ":memory:", "state": "off"}
    async with connect(viewer_url(bridge)) as ws:
        await ws.send(json.dumps({"type": "detail", "on": True}))
        async with asyncio.timeout(timeout(5)):
            while True:
                frame = strict_json(await ws.recv())
                if "source_detail" in frame:
                    break
    assert frame["source_detail"]["recorder"] == {"db": ":memory:", "state": "off"}


async def test_the_start_waits_for_the_history_a_bounded_time(
    service: Service,
    start_bridge: StartBridge,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A history nobody can read (another connection holds it in exclusive locking mode): the
    bridge waits for the readings from before no longer than its load timeout, then serves
    live readings without them; once the file is free it records them."""
    db = tmp_path / "history.db"
    conn = store.connect(db)
    store.ensure_schema(conn)
    key = store.patient_key(conn, PATIENT)
    old = [(service.base - 10_000 + i, 70) for i in range(30)]
    conn.executemany(
        "INSERT INTO readings (patient, t, n, bpm) VALUES (?, ?, 0, ?)",
        [(key, t, bpm) for t, bpm in old],
    )
    conn.close()
    monkeypatch.setattr(bridge_module, "HISTORY_LOAD_TIMEOUT", 0.5)
    holder = sqlite3.connect(str(db), isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("SELECT count(*) FROM readings").fetchone()
        bridge = await start_bridge(service.url, db=str(db))
        assert "the newest readings not read within 0.5 s" in caplog.text
        assert len(bridge.buffer) == 0  # nothing from before: serving without it
        async with viewer(bridge.port) as seen:
            await wait_for(lambda: len(seen.live) >= 20, 10, "live readings, history locked")
            assert not set(seen.readings) & set(old)
            holder.execute("COMMIT")
            holder.close()
            await wait_for(lambda: bridge.history_status()["written"] > 0, 40, "recording")
    finally:
        holder.close()
