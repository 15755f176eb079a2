"""``hrdash edge`` (hrdash.broker.edge_node) against a real redis-server: the streams are written
here with a real StreamWriter, as the ingest writes them, and read by real edges serving real
websockets viewers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect

from hrdash.broker import StreamReading, StreamWriter, encode_frame, keys_for
from hrdash.broker.client import aclose_quietly, client_for
from hrdash.broker.client import connect as redis_connect
from hrdash.broker.control import CONTROL_KEY, STATION_LOG_KEY, decode_control, encode_log, log_key
from hrdash.broker.edge_node import INGEST_SILENT_AFTER, RedisEdge, RemoteIngest
from hrdash.hub import UpstreamState
from hrdash.settings import Settings, redact_url
from hrdash.store import MEMORY
from tests.conftest import healthz, http_get, read_until, seqs_of, strict_json, timeout, wait_for
from tests.redis_support import RedisServer
from tests.support import ROOT, free_port, scaled, wait_port

RUN = "run0001"
T0 = 1_700_000_000_000  # Unix ms of the first reading
ORIGIN = "http://127.0.0.1:8050"  # allowed by default (HRDASH_PORT 8050)


def readings(first: int, count: int, run: str = RUN) -> list[StreamReading]:
    """``count`` readings of ``run`` from seq ``first``, 500 ms apart, bpm 60..99."""
    return [
        StreamReading(seq, run, T0 + 500 * seq, 60 + seq % 40)
        for seq in range(first, first + count)
    ]


def status_frame(patient: str, upstream: str = "live", detail: str = "") -> dict[str, Any]:
    """A status frame as the ingest writes it (the parts the edge reads)."""
    return {
        "type": "status",
        "patient": patient,
        "run": RUN,
        "upstream": upstream,
        "since": T0,
        "detail": detail,
        "source": "Embedded simulator",
        "mapping": {"value_field": "value", "time_field": "time"},
        "last_rejection": None,
        "counters": {"frames": 7, "upstream_connects": 1, "rejected": 2},
        "source_detail": {"url": "ws://127.0.0.1:1/", "recorder": {"db": "x.db", "state": "ok"}},
        "ingest": {"holder": "host:1:abcd", "writer": {}, "lease": {}},
        "now": T0,
    }


def alarm(patient: str, kind: str = "hr_high", state: str = "active") -> dict[str, Any]:
    """An ALARM as the ingest's engines make it."""
    return {
        "id": f"{patient}:{kind}:1",
        "patient": patient,
        "kind": kind,
        "priority": "medium",
        "state": state,
        "since": T0,
        "ended": None,
        "value": 130,
        "limit": 120,
    }


def alarm_frame(patient: str, alarms: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "alarm",
        "patient": patient,
        "now": T0,
        "alarms": alarms,
        "limits": {"extreme_low": 40, "low": 50, "high": 120, "extreme_high": 150},
        "sounding": "medium" if alarms else None,
        "audio_paused_until": None,
    }


def edge_settings(redis: RedisServer, **overrides: Any) -> Settings:
    """An edge's settings: the simulator's patients (bed-01, bed-02), a free port."""
    values: dict[str, Any] = {
        "redis_url": redis.url,
        "bridge_port": 0,
        "db": MEMORY,
        "simulator_patients": 2,
        "buffer": 500,
    }
    return Settings.load(env={}).replace(**{**values, **overrides})


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    redis = await redis_connect(redis_server.url)
    yield redis
    await aclose_quietly(redis)


@pytest.fixture
async def writer(client: Redis) -> AsyncIterator[StreamWriter]:
    """A running StreamWriter, as the ingest's (no lease)."""
    stream_writer = StreamWriter(client, buffer=2000, rng=random.Random(1))
    task = asyncio.create_task(stream_writer.run())
    yield stream_writer
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def written(writer: StreamWriter) -> None:
    async with asyncio.timeout(timeout(5)):
        await writer.drained()


StartEdge = Callable[..., Awaitable[RedisEdge]]


@pytest.fixture
async def start_edge(redis_server: RedisServer) -> AsyncIterator[StartEdge]:
    """Factory: ``await start_edge(**options)`` starts a RedisEdge with its own client (options
    of RedisEdge, and ``settings=``); all are closed at teardown."""
    started: list[tuple[RedisEdge, Redis]] = []

    async def start(settings: Settings | None = None, **options: Any) -> RedisEdge:
        options.setdefault("block_ms", 200)
        options.setdefault("rng", random.Random(2))
        redis = await redis_connect(redis_server.url)
        edge = RedisEdge(settings or edge_settings(redis_server), redis, **options)
        started.append((edge, redis))
        await edge.start()
        return edge

    yield start
    for edge, redis in started:
        async with asyncio.timeout(timeout(5)):
            await edge.close()
        await aclose_quietly(redis)


def ws_url(edge: RedisEdge, query: str) -> str:
    return f"ws://127.0.0.1:{edge.port}/ws?{query}"


async def test_two_edges_serve_the_same_readings_with_the_same_seqs_and_run(
    writer: StreamWriter, start_edge: StartEdge
) -> None:
    """Two edges reading the same streams send every viewer the same readings under the
    ingest's run and seqs: the same snapshot, then the same live frames."""
    writer.add("bed-01", readings(101, 30))  # a run begun at 101 (a takeover)
    await written(writer)
    a, b = await start_edge(), await start_edge()
    async with (
        connect(ws_url(a, "patient=bed-01")) as va,
        connect(ws_url(b, "patient=bed-01")) as vb,
    ):
        first_a, first_b = json.loads(await va.recv()), json.loads(await vb.recv())
        for first in (first_a, first_b):
            assert first["run"] == RUN and first["snapshot"] is True
            assert [r["seq"] for r in first["readings"]] == list(range(111, 131))  # the window
            assert (first["first_seq"], first["last_seq"]) == (101, 130)
        assert first_a["readings"] == first_b["readings"]
        writer.add("bed-01", readings(131, 5))
        frames_a = await read_until(va, lambda f: 135 in [r["seq"] for r in f.get("readings", [])])
        frames_b = await read_until(vb, lambda f: 135 in [r["seq"] for r in f.get("readings", [])])
    live_a = [f for f in frames_a if f["type"] == "readings"]
    live_b = [f for f in frames_b if f["type"] == "readings"]
    assert seqs_of(live_a) == seqs_of(live_b) == list(range(131, 136))
    assert {f["run"] for f in live_a + live_b} == {RUN}
    assert [r for f in live_a for r in f["readings"]] == [
        {"seq": r.seq, "time": r.time, "bpm": r.bpm} for r in readings(131, 5)
    ]


async def test_a_viewer_resumes_on_another_edge_with_no_gap_and_no_duplicate(
    writer: StreamWriter, start_edge: StartEdge
) -> None:
    """A viewer that read up to seq N from edge A and reconnects to edge B with
    ``?since=N&run=RUN`` gets exactly the readings after N, those written while it was away
    included, then the live ones: no gap, no duplicate."""
    writer.add("bed-01", readings(1, 10))
    await written(writer)
    a, b = await start_edge(), await start_edge()
    async with connect(ws_url(a, "patient=bed-01")) as va:
        writer.add("bed-01", readings(11, 5))
        frames = await read_until(va, lambda f: 15 in [r["seq"] for r in f.get("readings", [])])
    seen = seqs_of(frames)
    assert seen == list(range(1, 16))
    writer.add("bed-01", readings(16, 7))  # while the viewer is away
    await written(writer)
    await wait_for(lambda: b.hub["bed-01"].flushed_seq == 22, what="edge B has seq 22")
    async with connect(ws_url(b, f"patient=bed-01&since=15&run={RUN}")) as vb:
        first = json.loads(await vb.recv())
        assert [r["seq"] for r in first["readings"]] == list(range(16, 23))
        writer.add("bed-01", readings(23, 3))
        later = await read_until(vb, lambda f: 25 in [r["seq"] for r in f.get("readings", [])])
    resumed = [r["seq"] for r in first["readings"]] + seqs_of(later)
    assert seen + resumed == list(range(1, 26))  # every seq once, in order


async def test_a_new_edge_serves_the_backlog_in_its_snapshot(
    redis_server: RedisServer, writer: StreamWriter, start_edge: StartEdge
) -> None:
    """An edge started after readings were written opens its port with them in its rings (read
    in several reads: more than one XREAD's count): the first viewer's snapshot is the last
    window of them and /readings holds them all, with the ingest's run."""
    for first in (1, 601):  # (the writer holds at most HOLD at once)
        writer.add("bed-01", readings(first, 600))
        await written(writer)
    writer.add("bed-02", readings(1, 3, run="other1"))
    await written(writer)
    edge = await start_edge(settings=edge_settings(redis_server, buffer=1500))
    assert edge.hub["bed-01"].buffer.last_seq == 1200  # before any viewer: the port just opened
    async with connect(ws_url(edge, "patient=bed-01")) as viewer:
        first = json.loads(await viewer.recv())
    assert [r["seq"] for r in first["readings"]] == list(range(1181, 1201))
    status, body = await asyncio.to_thread(http_get, edge.port, "/readings?patient=bed-01")
    held = strict_json(body)
    assert status == 200 and held["run"] == RUN
    assert [r["seq"] for r in held["readings"]] == list(range(1, 1201))
    status, body = await asyncio.to_thread(http_get, edge.port, "/readings?patient=bed-02")
    assert strict_json(body)["run"] == "other1"


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def kinds(frames: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [f for f in frames if f.get("type") == kind]


async def test_status_and_alarm_frames_reach_the_viewers(
    writer: StreamWriter, start_edge: StartEdge
) -> None:
    """The ingest's status and alarm frames reach a patient's viewers (its upstream, detail,
    counters; its whole alarm state with the edge's clock) and the station viewers (each
    patient's upstream, alarms and what sounds); /api/alarms and /api/patients show them."""
    writer.add("bed-01", readings(1, 3))
    writer.add_status("bed-01", status_frame("bed-01"))
    await written(writer)
    edge = await start_edge()
    async with (
        connect(ws_url(edge, "patient=bed-01")) as viewer,
        connect(ws_url(edge, "station=1")) as station,
    ):
        first = await read_until(viewer, lambda f: f["type"] == "alarm")
        status = kinds(first, "status")[0]
        assert (status["upstream"], status["run"], status["last_seq"]) == ("live", RUN, 3)
        assert status["counters"]["frames"] == 7 and status["counters"]["rejected"] == 2
        assert kinds(first, "alarm")[0]["alarms"] == []
        writer.add_status("bed-01", status_frame("bed-01", "connecting", "connection refused"))
        changed = await read_until(viewer, lambda f: f.get("upstream") == "connecting")
        assert changed[-1]["detail"] == "connection refused"
        high = alarm("bed-01")
        writer.add_alarm("bed-01", alarm_frame("bed-01", [high]))
        frames = await read_until(viewer, lambda f: f["type"] == "alarm" and f["alarms"] != [])
        got = frames[-1]
        assert got["alarms"] == [high] and got["sounding"] == "medium"
        assert got["limits"]["high"] == 120 and abs(got["now"] - edge.clock() * 1000) < 5000
        tile = await read_until(
            station,
            lambda f: f["type"] == "station" and f["patients"][0]["alarms"] == [high],
        )
        assert tile[-1]["sounding"] == "medium"
        assert tile[-1]["patients"][0]["upstream"] == "connecting"
    status_code, body = await asyncio.to_thread(http_get, edge.port, "/api/alarms")
    assert status_code == 200 and strict_json(body) == [high]
    _, body = await asyncio.to_thread(http_get, edge.port, "/api/patients")
    listing = strict_json(body)
    assert listing[0]["alarms"] == [high] and listing[0]["upstream"] == "connecting"
    assert listing[1]["alarms"] == [] and listing[1]["limits"]["low"] == 50  # no frame yet


async def test_a_silent_ingest_shows_the_patient_down_until_it_reports_again(
    writer: StreamWriter, start_edge: StartEdge
) -> None:
    """No status frame for INGEST_SILENT_AFTER (the edge's monotonic clock): the patient's
    viewers and the station see it down, saying why; the next frame brings it back live
    without a reconnect."""
    clock = Clock()
    writer.add("bed-01", readings(1, 3))
    writer.add_status("bed-01", status_frame("bed-01"))
    await written(writer)
    edge = await start_edge(monotonic=clock)
    async with (
        connect(ws_url(edge, "patient=bed-01")) as viewer,
        connect(ws_url(edge, "station=1")) as station,
    ):
        await read_until(viewer, lambda f: f.get("upstream") == "live")
        clock.now += INGEST_SILENT_AFTER - 0.5
        await asyncio.sleep(0.6)  # the edge looks every 0.25 s: still live
        assert edge.ingests["bed-01"].upstream_state.state == "live"
        clock.now += 1.0
        down = await read_until(viewer, lambda f: f.get("upstream") == "down")
        why = f"no ingest has reported for this patient for {INGEST_SILENT_AFTER:g} s"
        assert down[-1]["detail"] == why
        tiles = await read_until(
            station, lambda f: f["type"] == "station" and f["patients"][0]["state"] == "down"
        )
        assert tiles[-1]["patients"][0]["detail"] == why
        writer.add_status("bed-01", status_frame("bed-01"))
        back = await read_until(viewer, lambda f: f.get("upstream") == "live")
        assert back[-1]["detail"] == ""
    health = await healthz(edge.port)
    assert health["patients"][0]["upstream"] == "live"


async def test_an_ingest_that_never_reported_shows_down_after_the_wait(
    start_edge: StartEdge,
) -> None:
    """A patient no ingest has reported on is connecting at first, then down, saying why."""
    clock = Clock()
    edge = await start_edge(monotonic=clock)
    assert edge.ingests["bed-02"].upstream_state.state == "connecting"
    clock.now += INGEST_SILENT_AFTER + 0.1
    await wait_for(lambda: edge.ingests["bed-02"].upstream_state.state == "down")
    assert "no ingest has reported" in edge.ingests["bed-02"].upstream_state.detail


async def viewer_with_origin(edge: RedisEdge, query: str) -> ClientConnection:
    return await connect(ws_url(edge, query), origin=ORIGIN)  # type: ignore[arg-type]


async def control_entries(client: Redis) -> list[dict[str, Any]]:
    entries: Any = await client.xrange(CONTROL_KEY)
    decoded = [decode_control(entry_id, fields) for entry_id, fields in entries]
    assert all(isinstance(entry, dict) for entry in decoded)
    return [entry for entry in decoded if isinstance(entry, dict)]


async def test_state_changes_go_to_the_control_stream_checked_as_the_bridge_checks_them(
    client: Redis, writer: StreamWriter, start_edge: StartEdge
) -> None:
    """A valid ack, audio pause or limits change from an allowed Origin is written to the
    control stream in its checked form, with its origin and this edge's id, and applied
    nowhere here; an invalid one is answered with an error frame in the bridge's words,
    counted, and not written; one from a connection without an Origin is refused."""
    high = alarm("bed-01")
    writer.add_alarm("bed-01", alarm_frame("bed-01", [high, alarm("bed-01", "no_signal", "ended")]))
    await written(writer)
    edge = await start_edge()
    viewer = await viewer_with_origin(edge, "patient=bed-01")
    async with viewer:
        await read_until(viewer, lambda f: f["type"] == "alarm")
        await viewer.send(json.dumps({"type": "ack", "alarm": high["id"], "extra": "x" * 50}))
        await viewer.send(json.dumps({"type": "audio_pause", "seconds": 60}))
        limits = {"low": 45, "high": 125, "extreme_low": 35, "extreme_high": 160}
        await viewer.send(json.dumps({"type": "limits", "patient": "bed-02", **limits}))
        await wait_for(lambda: edge.edge.alarm_counters["state_changes"] == 3)
        bad: list[tuple[dict[str, Any], str]] = [
            ({"type": "ack", "alarm": "bed-01:nope:1"}, "ack: alarm: no active or latched"),
            ({"type": "ack", "alarm": "bed-01:no_signal:1"}, "ack: alarm: no active or latched"),
            ({"type": "ack", "alarm": 7}, "ack: alarm: expected an alarm id"),
            ({"type": "audio_pause", "seconds": 500}, "audio_pause: seconds: expected more"),
            ({"type": "audio_pause", "seconds": "10"}, "audio_pause: seconds: expected a number"),
            ({"type": "limits", "patient": "bed-09", **limits}, "limits: patient: no patient"),
            ({"type": "limits", "patient": "bed-01", "low": 45}, "limits: extreme_low: missing"),
        ]
        for request, words in bad:
            await viewer.send(json.dumps(request))
            answer = await read_until(viewer, lambda f: f["type"] == "error")
            assert answer[-1]["request"] == request["type"]
            assert answer[-1]["message"].startswith(words), answer[-1]
    entries = await control_entries(client)
    assert entries == [
        {"type": "ack", "alarm": high["id"], "origin": ORIGIN, "edge": edge.edge_id},
        {"type": "audio_pause", "seconds": 60, "origin": ORIGIN, "edge": edge.edge_id},
        {"type": "limits", "patient": "bed-02", **limits, "origin": ORIGIN, "edge": edge.edge_id},
    ]
    counters = edge.edge.alarm_counters
    assert (counters["state_changes"], counters["invalid_state_changes"]) == (3, len(bad))
    assert edge.alarms.alarms("bed-01")[0]["state"] == "active"  # the ingest applies it
    async with connect(ws_url(edge, "patient=bed-01")) as script:  # no Origin: read only
        await script.send(json.dumps({"type": "audio_pause", "seconds": 60}))
        refused = await read_until(script, lambda f: f["type"] == "error")
        assert "needs an allowed Origin" in refused[-1]["message"]
    assert len(await control_entries(client)) == 3


async def test_the_alarm_log_is_read_from_the_log_streams(
    client: Redis, start_edge: StartEdge
) -> None:
    """GET /api/alarms/log answers from the log streams, newest first: a patient's, or every
    patient's and the station's together; the limit holds; a bad query is still 400."""

    def entry(patient: str | None, event: str, time_ms: int) -> dict[str, Any]:
        return {
            "time": time_ms,
            "patient": patient,
            "alarm": None,
            "kind": None,
            "priority": None,
            "event": event,
            "value": None,
            "limit": None,
            "origin": ORIGIN,
        }

    written_entries = [
        (log_key("bed-01"), entry("bed-01", "raised", T0 + 1)),
        (log_key("bed-02"), entry("bed-02", "raised", T0 + 2)),
        (STATION_LOG_KEY, entry(None, "audio_paused", T0 + 3)),
        (log_key("bed-01"), entry("bed-01", "acknowledged", T0 + 4)),
    ]
    for key, item in written_entries:
        await client.xadd(key, encode_log(item))  # type: ignore[arg-type]
    edge = await start_edge()
    newest_first = [item for _, item in reversed(written_entries)]

    async def log(query: str) -> tuple[int, Any]:
        status, body = await asyncio.to_thread(http_get, edge.port, f"/api/alarms/log{query}")
        return status, strict_json(body) if status == 200 else body

    assert await log("") == (200, newest_first)
    assert await log("?limit=2") == (200, newest_first[:2])
    assert await log("?patient=bed-01") == (200, [newest_first[0], newest_first[3]])
    assert await log("?patient=bed-02&limit=5") == (200, [newest_first[2]])
    assert (await log("?limit=0"))[0] == 400
    assert (await log("?patient=bed-77"))[0] == 404


async def test_healthz_has_the_broker_section(
    redis_server: RedisServer, writer: StreamWriter, start_edge: StartEdge
) -> None:
    """/healthz says it is an edge, which one, the Redis URL (redacted), the reader's state and
    each patient's ingest; the patients' status as usual."""
    writer.add("bed-01", readings(1, 4))
    writer.add_status("bed-01", status_frame("bed-01"))
    await written(writer)
    edge = await start_edge(edge_id="edge-a")
    health = await healthz(edge.port)
    broker = health["broker"]
    assert (broker["role"], broker["edge"]) == ("edge", "edge-a")
    assert broker["redis"] == redact_url(redis_server.url)
    assert broker["reader"]["state"] == "up" and broker["reader"]["readings"] == 4
    assert broker["ingests"]["bed-01"]["holder"] == "host:1:abcd"
    assert broker["ingests"]["bed-02"] == {"holder": None, "heard": None}
    assert health["last_seq"] == 4 and health["patients"][0]["upstream"] == "live"


async def test_redis_down_shows_patients_down_refuses_state_changes_and_comes_back(
    redis_server: RedisServer, writer: StreamWriter, start_edge: StartEdge
) -> None:
    """Redis going away: every patient shows down with the cause, a station viewer keeps
    getting frames, a state change is answered with an error frame saying it was not applied,
    the alarm log is 503; Redis back (empty) and the ingest writing again: the patient comes
    back live on the same connection."""
    high = alarm("bed-01")
    writer.add("bed-01", readings(1, 3))
    writer.add_status("bed-01", status_frame("bed-01"))
    writer.add_alarm("bed-01", alarm_frame("bed-01", [high]))
    await written(writer)
    edge = await start_edge(sleep=fast_sleep)
    viewer = await viewer_with_origin(edge, "patient=bed-01")
    async with viewer, connect(ws_url(edge, "station=1")) as station:
        await read_until(viewer, lambda f: f.get("upstream") == "live")
        redis_server.stop()
        down = await read_until(viewer, lambda f: f.get("upstream") == "down")
        assert down[-1]["detail"].startswith("Redis unreachable: ")
        tiles = await read_until(
            station,
            lambda f: f["type"] == "station" and {p["state"] for p in f["patients"]} == {"down"},
        )
        await read_until(station, lambda f: f["type"] == "station")  # and frames go on
        assert tiles[-1]["patients"][1]["detail"].startswith("Redis unreachable: ")
        relay = await read_until(station, lambda f: f.get("relay") == "down")
        assert relay[-1]["relay_detail"].startswith("Redis unreachable: ")
        await viewer.send(json.dumps({"type": "ack", "alarm": high["id"]}))
        error = await read_until(viewer, lambda f: f["type"] == "error")
        assert error[-1]["message"].startswith("ack: not applied: Redis unreachable: ")
        assert error[-1]["message"].endswith("; try again")
        assert edge.edge.alarm_counters["unsent_state_changes"] == 1
        status, body = await asyncio.to_thread(http_get, edge.port, "/api/alarms/log")
        assert status == 503 and body.startswith(b"Alarm log: Redis unreachable: ")
        redis_server.start()
        writer.add("bed-01", readings(4, 2))  # the ingest writes again (Redis came back empty)
        writer.add_status("bed-01", status_frame("bed-01"))
        seen: dict[str, Any] = {}

        def live_with_seq_5(frame: dict[str, Any]) -> bool:
            if frame.get("upstream") == "live":
                seen["live"] = frame
            if 5 in [r["seq"] for r in frame.get("readings", [])]:
                seen["readings"] = frame
            return len(seen) == 2

        await read_until(viewer, live_with_seq_5, seconds=15)
        back = await read_until(station, lambda f: f.get("relay") == "up")
        assert back[-1]["relay_detail"] == ""
    assert seen["live"]["detail"] == "" and seen["readings"]["run"] == RUN
    assert edge.reader.counters["failures"] >= 1


async def fast_sleep(seconds: float) -> None:
    """The reader's backoff waits cut to a tenth."""
    await asyncio.sleep(seconds / 10)


def edge_process(redis_url: str, port: int, log_path: Any) -> subprocess.Popen[bytes]:
    """``python -m hrdash edge`` on ``port`` (the simulator's two patients), its output in
    ``log_path``."""
    env = {
        **os.environ,
        "HRDASH_REDIS_URL": redis_url,
        "HRDASH_BRIDGE_PORT": str(port),
        "HRDASH_SIMULATOR_PATIENTS": "2",
        "HRDASH_DB": MEMORY,
        "PYTHONUNBUFFERED": "1",
    }
    with open(log_path, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hrdash", "edge"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def test_two_edge_processes_share_one_port(redis_server: RedisServer, tmp_path: Any) -> None:
    """Two ``hrdash edge`` processes listen on one port (SO_REUSEPORT): the kernel spreads the
    connections over both (two edge ids answer /healthz); each logs its start line (edge id,
    port, Redis URL redacted, patients) and stops cleanly on SIGTERM, within the supervisor's
    grace."""
    from hrdash.supervisor import STOP_GRACE

    port = free_port()
    procs = [edge_process(redis_server.url, port, tmp_path / f"edge-{i}.log") for i in (0, 1)]
    try:
        for i, proc in enumerate(procs):  # both listening: each has logged its start
            wait_port(port, 15, proc)
            deadline = time.monotonic() + scaled(15)
            while "(port shared)" not in (tmp_path / f"edge-{i}.log").read_text():
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        seen: set[str] = set()
        for _ in range(60):  # 2**-59 that one edge gets them all
            status, body = http_get(port, "/healthz")
            assert status == 200
            seen.add(strict_json(body)["broker"]["edge"])
            if len(seen) == 2:
                break
        assert len(seen) == 2, seen
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert proc.wait(scaled(STOP_GRACE)) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    logs = [(tmp_path / f"edge-{i}.log").read_text() for i in (0, 1)]
    shown = redact_url(redis_server.url)
    for edge_id in seen:
        (line,) = [
            line for text in logs for line in text.splitlines() if f"edge {edge_id} " in line
        ]
        assert f":{port}/ws" in line and shown in line and "2 patients: bed-01, bed-02" in line


@pytest.mark.parametrize("with_url", [True, False])
def test_edge_without_redis_is_one_line_and_exit_2(with_url: bool) -> None:
    """``hrdash edge`` whose Redis does not answer at the start (or with no HRDASH_REDIS_URL)
    ends with one line naming HRDASH_REDIS_URL, and exit status 2."""
    url = f"redis://user:secret@127.0.0.1:{free_port()}/0" if with_url else ""
    env = {**os.environ, "HRDASH_REDIS_URL": url, "HRDASH_BRIDGE_PORT": str(free_port())}
    done = subprocess.run(
        [sys.executable, "-m", "hrdash", "edge"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=scaled(20),
        check=False,
    )
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("hrdash: error: ") and "HRDASH_REDIS_URL" in lines[0]
    if with_url:
        assert "cannot reach Redis" in lines[0] and "secret" not in lines[0]


async def test_the_audio_pause_is_the_newest_alarm_frames_while_it_lasts(
    writer: StreamWriter, start_edge: StartEdge
) -> None:
    """The station's audio pause is what the newest alarm frame says, while it is ahead of the
    edge's clock: in every patient's alarm frame, the station frames and /healthz."""
    edge = await start_edge()
    until = int(edge.clock() * 1000) + 60_000
    writer.add_alarm("bed-02", {**alarm_frame("bed-02", []), "audio_paused_until": until})
    await written(writer)
    await wait_for(lambda: edge.alarms.paused_until() == until)
    assert edge.alarms.alarm_frame("bed-01")["audio_paused_until"] == until
    async with connect(ws_url(edge, "station=1")) as station:
        frames = await read_until(station, lambda f: f["type"] == "station")
        assert frames[-1]["audio_paused_until"] == until
    assert (await healthz(edge.port))["alarms"]["audio_paused_until"] == until
    past = int(edge.clock() * 1000) - 1
    writer.add_alarm("bed-01", {**alarm_frame("bed-01", []), "audio_paused_until": past})
    await written(writer)
    await wait_for(lambda: edge.alarms.frames.get("bed-01") is not None)
    assert edge.alarms.paused_until() is None  # a newer pause that has ended


async def test_an_edge_started_while_redis_is_down_serves_and_reads_once_it_is_back(
    redis_server: RedisServer,
) -> None:
    """An edge (re)started during an outage (a supervised one skips the start check) opens its
    port at once, shows every patient down with the cause, and reads once Redis is back."""
    redis_server.stop()
    redis = client_for(redis_server.url)
    edge = RedisEdge(
        edge_settings(redis_server), redis, block_ms=200, rng=random.Random(3), sleep=fast_sleep
    )
    try:
        async with asyncio.timeout(timeout(5)):
            await edge.start()
        await wait_for(lambda: {i.upstream_state.state for i in edge.ingests.values()} == {"down"})
        health = await healthz(edge.port)
        assert {p["upstream"] for p in health["patients"]} == {"down"}
        assert health["broker"]["reader"]["state"] == "down"
        async with connect(ws_url(edge, "patient=bed-01")) as viewer:
            down = await read_until(viewer, lambda f: f.get("type") == "status")
            assert down[-1]["detail"].startswith("Redis unreachable: ")
            redis_server.start()
            writer_client = await redis_connect(redis_server.url)
            stream_writer = StreamWriter(writer_client, buffer=100, rng=random.Random(1))
            stream_writer.add("bed-01", readings(1, 3))
            stream_writer.add_status("bed-01", status_frame("bed-01"))
            task = asyncio.create_task(stream_writer.run())
            try:
                got = await read_until(
                    viewer, lambda f: 3 in [r["seq"] for r in f.get("readings", [])], seconds=15
                )
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await aclose_quietly(writer_client)
        assert seqs_of(got) == [1, 2, 3]
    finally:
        async with asyncio.timeout(timeout(5)):
            await edge.close()
        await aclose_quietly(redis)


def test_remote_ingest_states_on_a_fake_clock() -> None:
    """A RemoteIngest shows: connecting before any frame, then the frame's state (live from
    when this edge saw it go live), down when silent or when Redis is unreachable (Redis's
    cause first), and says each time what changed, a new ``since`` of the same state too."""
    clock, wall = Clock(), Clock()
    cause: list[str | None] = [None]
    ingest = RemoteIngest("bed-01", lambda: cause[0], clock=wall, monotonic=clock)
    assert ingest.refresh() is False and ingest.upstream_state.state == "connecting"
    assert ingest.update(status_frame("bed-01")) is True
    assert ingest.upstream_state == UpstreamState("live", "", wall.now)
    assert ingest.status_fields()["since"] == T0 and ingest.counters["frames"] == 7
    assert ingest.status_fields()["relay"] == "up"
    assert ingest.rejected() == {"rejected": 2, "rejected_by_reason": {}}
    wall.now += 5
    assert ingest.update(status_frame("bed-01")) is False  # the heartbeat: nothing new
    assert ingest.upstream_state.live_since == wall.now - 5
    assert ingest.update({**status_frame("bed-01"), "since": T0 + 9}) is True  # reconnected
    assert ingest.upstream_state.live_since == wall.now
    clock.now += INGEST_SILENT_AFTER + 0.01
    assert ingest.refresh() is True
    assert ingest.upstream_state.state == "down" and "has reported" in ingest.upstream_state.detail
    assert ingest.status_fields()["since"] == int(wall.now * 1000)
    assert ingest.status_fields()["relay"] == "down"  # the fan-out's fault, not the service's
    cause[0] = "connection refused"
    assert ingest.refresh() is True
    assert ingest.upstream_state == UpstreamState("down", "Redis unreachable: connection refused")
    assert ingest.status_fields()["relay"] == "down"
    cause[0] = None
    ingest.reconnected()  # Redis back: the silence counts from now
    assert ingest.refresh() is True and ingest.upstream_state.state == "live"
    assert ingest.status_fields()["relay"] == "up"
    assert ingest.update({**status_frame("bed-01"), "upstream": "down", "detail": "refused"})
    assert ingest.status_fields()["relay"] == "up"  # the service is down: the relay is fine
    assert ingest.source_detail()["recorder"] == {"db": "x.db", "state": "ok"}
    assert ingest.heard() == {"holder": "host:1:abcd", "heard": 0.0}


async def test_a_status_frame_long_written_shows_the_patient_down_from_the_start(
    client: Redis, writer: StreamWriter, start_edge: StartEdge
) -> None:
    """An edge started after the ingest went silent long ago shows that patient down from its
    first frame (the frame's age on Redis's clock counts), not live for INGEST_SILENT_AFTER; a
    patient whose ingest reports shows live."""
    old_id = f"{T0}-0"  # written at T0 on Redis's clock (long before its TIME now)
    await client.xadd(keys_for("bed-01").status, encode_frame(status_frame("bed-01")), id=old_id)  # type: ignore[arg-type]
    writer.add_status("bed-02", status_frame("bed-02"))
    await written(writer)
    edge = await start_edge()
    first = edge.ingests["bed-01"].upstream_state
    assert first.state == "down" and "no ingest has reported" in first.detail
    assert edge.ingests["bed-02"].upstream_state.state == "live"


async def test_the_streams_readings_do_not_make_a_patient_live_at_the_start(
    writer: StreamWriter, start_edge: StartEdge
) -> None:
    """Readings an edge read at its start are served but not taken as just received (their age
    is unknown): the patient is live from its next reading, never a stored number as live."""
    writer.add("bed-01", readings(1, 5))
    writer.add_status("bed-01", status_frame("bed-01"))
    await written(writer)
    edge = await start_edge()
    _, body = await asyncio.to_thread(http_get, edge.port, "/api/patients")
    entry = strict_json(body)[0]
    assert (entry["state"], entry["age"], entry["last"]["seq"]) == ("connecting", None, 5)
    writer.add("bed-01", readings(6, 1))
    await wait_for(lambda: edge.hub["bed-01"].last_reading_at is not None)
    _, body = await asyncio.to_thread(http_get, edge.port, "/api/patients")
    assert strict_json(body)[0]["state"] == "live"
