"""The alarm log and the page-set limits survive a restart of a real ``hrdash bridge`` process on
a real SQLite file; a sources file edited while the bridge was down wins, and says so in the log.
The Dash server's read side (:func:`hrdash.history.alarm_log`,
:func:`hrdash.history.patient_limits`) agrees with the bridge, up or down."""

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
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from hrdash import history, store
from hrdash.alarms import Limits
from hrdash.settings import Settings
from tests.conftest import free_port, http_get, read_until, strict_json, timeout, wait_for

PATIENT = "bed-01"
OTHER = "bed-02"
ORIGIN = "http://127.0.0.1:8050"  # the Dash server's own origin: allowed by default
FILE = {"low": 52, "high": 118}  # bed-01's limits in the sources file
PAGE = {"extreme_low": 35, "low": 45, "high": 110, "extreme_high": 140}  # set on a page
EDITED = {"low": 53, "high": 118}  # the sources file after someone edited it


def write_sources(path: Path, limits: dict[str, int], dead_url: str) -> None:
    """Two patients whose services do not answer (nothing listens at ``dead_url``)."""
    lines = [
        "[[patient]]",
        f'id = "{PATIENT}"',
        f'url = "{dead_url}/1"',
        "[patient.limits]",
        *(f"{k} = {v}" for k, v in limits.items()),
        "[[patient]]",
        f'id = "{OTHER}"',
        f'url = "{dead_url}/2"',
    ]
    path.write_text("\n".join(lines) + "\n")


class BridgeProcess:
    """``python -m hrdash bridge`` with ``HRDASH_SOURCES`` on a free port; log in a file."""

    def __init__(self, sources: Path, db: Path, log_path: Path) -> None:
        self.port = free_port()
        clean = {k: v for k, v in os.environ.items() if not k.startswith("HRDASH_")}
        env = {
            **clean,
            "HRDASH_SOURCES": str(sources),
            "HRDASH_BRIDGE_PORT": str(self.port),
            "HRDASH_DB": str(db),
            "HRDASH_LOG_LEVEL": "info",
            "PYTHONUNBUFFERED": "1",
        }
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hrdash", "bridge"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def listening(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the bridge exited ({self.proc.returncode}):\n{self.log()}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def stop(self) -> None:
        """SIGTERM: a graceful stop (the recorder commits what it holds)."""
        self.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(self.proc.wait, timeout(10)) == 0, self.log()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    async def get(self, path: str) -> Any:
        status, body = await asyncio.to_thread(http_get, self.port, path)
        assert status == 200, body
        return strict_json(body)

    async def limits(self, patient: str = PATIENT) -> dict[str, Any]:
        listing = await self.get("/api/patients")
        return next(e["limits"] for e in listing if e["id"] == patient)

    def settings(self, db: Path, sources: Path) -> Settings:
        base = Settings.load(env={})
        return base.replace(db=str(db), sources=str(sources), bridge_port=self.port)


@pytest.fixture
def processes() -> Iterator[list[BridgeProcess]]:
    started: list[BridgeProcess] = []
    yield started
    for process in started:
        process.kill()


async def start(started: list[BridgeProcess], sources: Path, db: Path) -> BridgeProcess:
    process = BridgeProcess(sources, db, db.with_name(f"bridge-{len(started) + 1}.log"))
    started.append(process)
    await wait_for(process.listening, timeout(15), f"the bridge:\n{process.log()}")
    return process


@contextlib.asynccontextmanager
async def monitor(process: BridgeProcess) -> AsyncIterator[ClientConnection]:
    url = f"ws://127.0.0.1:{process.port}/ws?patient={PATIENT}"
    async with connect(url, origin=ORIGIN) as ws:  # type: ignore[arg-type]
        yield ws


async def next_alarm(ws: ClientConnection) -> dict[str, Any]:
    return (await read_until(ws, lambda f: f["type"] == "alarm"))[-1]


def limits_row(db: Path) -> tuple[Any, ...]:
    conn = sqlite3.connect(db)
    try:
        return tuple(
            conn.execute(
                "SELECT l.extreme_low, l.low, l.high, l.extreme_high, l.file, l.origin"
                " FROM limits l JOIN patients p ON p.key = l.patient WHERE p.id = ?",
                (PATIENT,),
            ).fetchone()
        )
    finally:
        conn.close()


async def test_the_log_and_page_limits_survive_a_restart_and_an_edited_file_wins(
    processes: list[BridgeProcess], tmp_path: Path
) -> None:
    """Limits set on a page and an audio pause are logged and stored; after a restart the
    patient has the page's limits (frames, /api/patients, the read side) and /api/alarms/log
    still holds the entries. The sources file edited while the bridge was down: the next start
    takes the file's limits and logs a limits_changed entry from "sources file"."""
    db = tmp_path / "history.db"
    sources = tmp_path / "sources.toml"
    dead = f"ws://127.0.0.1:{free_port()}"
    write_sources(sources, FILE, dead)
    in_file = Limits.from_mapping(FILE, Limits()).as_dict()

    first = await start(processes, sources, db)
    assert await first.limits() == in_file
    async with monitor(first) as ws:
        assert (await next_alarm(ws))["limits"] == in_file
        await ws.send(json.dumps({"type": "limits", "patient": PATIENT, **PAGE}))
        assert (await next_alarm(ws))["limits"] == PAGE
        await ws.send(json.dumps({"type": "audio_pause", "seconds": 30}))
        await read_until(ws, lambda f: f["type"] == "alarm" and f["audio_paused_until"])
    before = await first.get("/api/alarms/log")
    assert [(e["event"], e["origin"]) for e in before] == [
        ("audio_paused", ORIGIN),
        ("limits_changed", ORIGIN),
    ]
    await first.stop()
    assert limits_row(db) == (35, 45, 110, 140, store.limits_json(Limits(**FILE)), ORIGIN)

    second = await start(processes, sources, db)
    assert await second.limits() == PAGE
    assert await second.get("/api/alarms/log") == before
    assert await second.get(f"/api/alarms/log?patient={PATIENT}") == before[1:]
    async with monitor(second) as ws:
        assert (await next_alarm(ws))["limits"] == PAGE
    settings = second.settings(db, sources)
    assert await asyncio.to_thread(history.patient_limits, settings, PATIENT) == Limits(**PAGE)
    assert await asyncio.to_thread(history.alarm_log, settings, PATIENT) == before[1:]
    health = await second.get("/healthz")
    assert health["recorder"]["alarms"]["pending"] == 0
    await second.stop()
    assert await asyncio.to_thread(history.patient_limits, settings, PATIENT) == Limits(**PAGE)

    write_sources(sources, EDITED, dead)  # someone edits the file while the bridge is down
    edited = Limits.from_mapping(EDITED, Limits())
    # The read side, the bridge down, already says what the next start will do.
    assert await asyncio.to_thread(history.patient_limits, settings, PATIENT) == edited
    third = await start(processes, sources, db)
    assert await third.limits() == edited.as_dict()
    log = await third.get(f"/api/alarms/log?patient={PATIENT}")
    assert [(e["event"], e["origin"]) for e in log] == [
        ("limits_changed", "sources file"),
        ("limits_changed", ORIGIN),
    ]
    assert log[0]["value"] == PAGE and log[0]["limit"] == edited.as_dict()
    await wait_for(lambda: limits_row(db)[1] == 53, timeout(10), "the file's limits stored")
    assert limits_row(db)[4:] == (store.limits_json(edited), "sources file")
    await third.stop()
    assert [e["origin"] for e in history.alarm_log(settings, PATIENT)] == [
        "sources file",
        ORIGIN,
    ]

    fourth = await start(processes, sources, db)  # the same file again: nothing new logged
    assert await fourth.limits() == edited.as_dict()
    assert len(await fourth.get(f"/api/alarms/log?patient={PATIENT}")) == 2
    await fourth.stop()
