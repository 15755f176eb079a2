"""The bridge reading a station of patients on real sockets: a sources file of three services of
different shapes, each patient's own feed, the station feed, /api/patients, and one service
going away and coming back without touching the others."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from hrdash.bridge import Bridge
from hrdash.edge import SNAPSHOT_REPEATS, STATION_EVERY, STATION_MIN_INTERVAL
from hrdash.hub import SPARK_SECONDS, SPARK_STEP, STATION_REPEAT
from hrdash.settings import Settings
from hrdash.store import MEMORY
from tests.conftest import (
    Service,
    ServiceFactory,
    bridges_closed_after,
    healthz,
    http_get,
    read_until,
    strict_json,
    timeout,
    wait_for,
)

T0 = 1_764_324_000  # Unix seconds
COUNT = 8  # frames each service sends on connect


def reference(first_bpm: int) -> list[str]:
    """The reference shape: {"time": <Unix ms>, "value": <bpm>}, 500 ms apart."""
    return [json.dumps({"time": T0 * 1000 + 500 * i, "value": first_bpm + i}) for i in range(COUNT)]


def nested(first_bpm: int) -> list[str]:
    """Nested: {"data": {"hr": <bpm>, "ts": <Unix ms>}} (read with data.hr / data.ts)."""
    return [
        json.dumps({"kind": "hr", "data": {"hr": first_bpm + i, "ts": T0 * 1000 + 500 * i}})
        for i in range(COUNT)
    ]


def epoch_seconds(first_bpm: int) -> list[str]:
    """Epoch seconds: {"ts": <Unix s>, "hr": <bpm>}, a second apart (read with hr / ts)."""
    return [json.dumps({"ts": T0 + i, "hr": first_bpm + i}) for i in range(COUNT)]


def readings_of(frames: list[str]) -> list[tuple[int, int]]:
    """The (time in Unix ms, bpm) pairs a service's frames must become, whatever their shape."""
    out = []
    for text in frames:
        obj = json.loads(text)
        if "data" in obj:
            out.append((obj["data"]["ts"], obj["data"]["hr"]))
        elif "ts" in obj:
            out.append((obj["ts"] * 1000, obj["hr"]))
        else:
            out.append((obj["time"], obj["value"]))
    return out


@dataclass
class Station:
    bridge: Bridge
    services: dict[str, Service]  # patient id → its service
    frames: dict[str, list[str]]  # patient id → the frames its service sends

    @property
    def port(self) -> int:
        return self.bridge.port

    def url(self, query: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws?{query}"

    async def get(self, path: str) -> tuple[int, Any]:
        status, body = await asyncio.to_thread(http_get, self.port, path)
        return status, strict_json(body) if status == 200 else body.decode()


IDS = ("bed-01", "icu_2", "Ward-3")


@pytest.fixture
async def station(services: ServiceFactory, tmp_path: Path) -> AsyncIterator[Station]:
    """Three services (reference, nested, epoch seconds), a sources file naming them and a
    bridge reading it (stale only after 60 s, so that sent-once frames stay live)."""
    frames = {"bed-01": reference(70), "icu_2": nested(100), "Ward-3": epoch_seconds(50)}
    running = {pid: await services(frames[pid]) for pid in IDS}
    path = tmp_path / "ward.toml"
    path.write_text(
        f"""
[[patient]]
id = "bed-01"
name = "Bed 1"
url = "{running["bed-01"].url}"

[[patient]]
id = "icu_2"
name = "ICU 2"
url = "{running["icu_2"].url}"
value_field = "data.hr"
time_field = "data.ts"

[[patient]]
id = "Ward-3"
url = "{running["Ward-3"].url}"
value_field = "hr"
time_field = "ts"
"""
    )
    settings = Settings.load(env={"HRDASH_SOURCES": str(path)}).replace(
        bridge_port=0, db=MEMORY, stale_after=60.0
    )
    async with bridges_closed_after() as start:
        bridge = await start(settings)
        await wait_for(
            lambda: all(bridge.hub[pid].flushed_seq == COUNT for pid in IDS),
            10,
            "every patient's frames read and sent out",
        )
        yield Station(bridge, running, frames)


def pairs(readings: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [(r["time"], r["bpm"]) for r in readings]


def thinned(sent: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """What a snapshot's sparkline keeps of ``sent`` (all within SPARK_SECONDS): the first
    reading of each SPARK_STEP (from the epoch) but for the last STATION_REPEAT, all of those."""
    head, tail = sent[:-STATION_REPEAT], sent[-STATION_REPEAT:]
    step_ms = SPARK_STEP * 1000
    firsts = [
        r for i, r in enumerate(head) if i == 0 or r[0] // step_ms != head[i - 1][0] // step_ms
    ]
    return firsts + tail


def entries(frame: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["id"]: p for p in frame["patients"]}


def station_where(predicate: Callable[[dict[str, dict[str, Any]]], bool]) -> Any:
    return lambda f: f.get("type") == "station" and predicate(entries(f))


async def ack(ws: Any, snapshot: dict[str, Any]) -> None:
    """Acknowledge a snapshot, as the station page does: live frames from then on."""
    await ws.send(json.dumps({"type": "snapshot_ok", "run": snapshot["run"]}))


async def first_live(ws: Any) -> dict[str, Any]:
    """The first live frame (snapshots sent before the ack arrived are skipped)."""
    while True:
        frame = strict_json(await ws.recv())
        if "snapshot" not in frame:
            return dict(frame)


async def test_each_patient_feed_carries_exactly_its_own_readings(station: Station) -> None:
    """Each /ws?patient=ID gets exactly the readings its own service sent (whatever the shape,
    times in Unix ms), every frame naming the patient; /ws without a patient is the first."""
    for pid in IDS:
        async with asyncio.timeout(timeout(10)), connect(station.url(f"patient={pid}")) as ws:
            first = strict_json(await ws.recv())
            status = strict_json(await ws.recv())
        assert first["type"] == "readings" and first["snapshot"] is True
        assert pairs(first["readings"]) == readings_of(station.frames[pid]), pid
        assert [r["seq"] for r in first["readings"]] == list(range(1, COUNT + 1))
        assert (first["patient"], status["patient"]) == (pid, pid)
        assert status["type"] == "status" and status["upstream"] == "live"
    async with asyncio.timeout(timeout(10)), connect(station.url("overlap=1")) as ws:
        first = strict_json(await ws.recv())
    assert first["patient"] == "bed-01"
    assert pairs(first["readings"]) == readings_of(station.frames["bed-01"])


async def test_station_feed_carries_every_patient_on_its_entry(station: Station) -> None:
    """/ws?station=1 starts with a snapshot: every patient in sources order, live, with its
    name, its last reading and, as its sparkline, the readings its service sent, one per
    SPARK_STEP but for the last STATION_REPEAT (all of those); the frames
    that follow carry each patient's last STATION_REPEAT readings on its own entry."""
    async with asyncio.timeout(timeout(10)), connect(station.url("station=1")) as ws:
        snapshot = strict_json(await ws.recv())
        await ack(ws, snapshot)
        live = await first_live(ws)
    assert snapshot["type"] == "station" and snapshot["snapshot"] is True
    assert snapshot["run"] == station.bridge.run_id and snapshot["stale_after"] == 60.0
    assert [p["id"] for p in snapshot["patients"]] == list(IDS)
    assert [p["name"] for p in snapshot["patients"]] == ["Bed 1", "ICU 2", "Ward-3"]
    for pid, entry in entries(snapshot).items():
        sent = readings_of(station.frames[pid])
        assert pairs(entry["recent"]) == thinned(sent), pid  # the sparkline, oldest first
        assert (entry["last"]["time"], entry["last"]["bpm"]) == sent[-1]
        assert (entry["upstream"], entry["state"], entry["detail"]) == ("live", "live", "")
        assert 0 <= entry["age"] < 60 and entry["alarms"] == []
    assert "snapshot" not in live
    for pid, entry in entries(live).items():
        sent = readings_of(station.frames[pid])
        assert pairs(entry["recent"]) == sent[-STATION_REPEAT:], pid
        assert entry["state"] == "live"


async def test_api_patients_and_readings(station: Station) -> None:
    """GET /api/patients lists each patient in order with its upstream, state, age and last
    reading; GET /readings?patient=ID is that patient's ring; unknown ids get 404."""
    status, listing = await station.get("/api/patients")
    assert status == 200
    assert [p["id"] for p in listing] == list(IDS)
    for entry in listing:
        sent = readings_of(station.frames[entry["id"]])
        assert set(entry) == {"id", "name", "upstream", "state", "age", "last", "alarms", "limits"}
        assert (entry["upstream"], entry["state"]) == ("live", "live")
        assert (entry["last"]["seq"], entry["last"]["time"], entry["last"]["bpm"]) == (
            COUNT,
            *sent[-1],
        )
    status, body = await station.get("/readings?patient=icu_2")
    assert status == 200 and body["patient"] == "icu_2"
    assert pairs(body["readings"]) == readings_of(station.frames["icu_2"])
    status, health = await station.get("/healthz")
    assert status == 200 and health["patient"] == "bed-01"
    assert [(p["id"], p["state"]) for p in health["patients"]] == [(p, "live") for p in IDS]
    assert all(p["counters"]["accepted"] == COUNT for p in health["patients"])
    status, text = await station.get("/readings?patient=nobody")
    assert status == 404 and "nobody" in text and text.count("\n") == 1


async def test_unknown_patient_is_refused_with_404(station: Station) -> None:
    """/ws?patient=<unknown> is refused at the handshake with HTTP 404 and one line."""
    with pytest.raises(InvalidStatus) as info:
        async with asyncio.timeout(timeout(5)), connect(station.url("patient=bed-99")):
            pass
    response = info.value.response
    assert response.status_code == 404
    assert response.body is not None and b"bed-99" in response.body
    assert response.body.count(b"\n") == 1


async def test_station_frames_come_at_most_every_tenth_and_at_least_every_second(
    station: Station,
) -> None:
    """Readings arriving in a stream give station frames no closer than STATION_MIN_INTERVAL
    (by the bridge's own clock in ``now``); with nothing new they still come, about once a
    STATION_EVERY."""
    async with asyncio.timeout(timeout(20)), connect(station.url("station=1")) as ws:
        await ws.recv()  # the snapshot
        upstream = station.services["bed-01"].connections[-1]
        sender = asyncio.create_task(stream(upstream, 60, 0.01))  # 60 readings in ~0.6 s
        loop = asyncio.get_running_loop()
        nows: list[int] = []
        arrivals: list[float] = []
        end = loop.time() + 3.5
        while loop.time() < end:
            frame = strict_json(await ws.recv())
            nows.append(frame["now"])
            arrivals.append(loop.time())
        await sender
    gaps_ms = [b - a for a, b in itertools.pairwise(nows)]
    assert min(gaps_ms) >= STATION_MIN_INTERVAL * 1000 - 1, gaps_ms
    assert sum(1 for gap in gaps_ms if gap < 500) >= 3, gaps_ms  # readings made them come often
    assert len(nows) >= 4
    quiet = [b - a for a, b in itertools.pairwise(arrivals) if a > arrivals[0] + 1.5]
    assert quiet and max(quiet) < STATION_EVERY + 0.5, quiet  # the margin absorbs jitter
    assert entries(frame)["bed-01"]["last"]["seq"] == COUNT + 60


async def stream(ws: Any, count: int, every: float) -> None:
    for i in range(count):
        await ws.send(json.dumps({"time": (T0 + 100 + i) * 1000, "value": 80 + i % 10}))
        await asyncio.sleep(every)


async def test_a_service_going_away_touches_only_its_patient(station: Station) -> None:
    """One service stops: in the station feed and /api/patients only its patient goes
    connecting or down (with the cause), the others stay live; started again, it recovers and
    its new readings reach its entry."""
    bridge = station.bridge
    gone = station.services["icu_2"]
    async with asyncio.timeout(timeout(30)), connect(station.url("station=1")) as ws:
        await ack(ws, strict_json(await ws.recv()))
        await first_live(ws)
        await gone.stop()
        frames = await read_until(
            ws, station_where(lambda e: e["icu_2"]["upstream"] == "down"), seconds=15
        )
        for frame in frames:
            others = [e for pid, e in entries(frame).items() if pid != "icu_2"]
            assert all((e["upstream"], e["state"]) == ("live", "live") for e in others), frame
            assert entries(frame)["icu_2"]["state"] in ("connecting", "down"), frame
        down = entries(frames[-1])["icu_2"]
        assert down["state"] == "down" and down["detail"] == "connection refused"
        assert down["last"]["bpm"] == 100 + COUNT - 1  # the last reading is kept, not live
        status, listing = await station.get("/api/patients")
        assert status == 200
        assert [(p["upstream"], p["state"]) for p in listing] == [
            ("live", "live"),
            ("down", "down"),
            ("live", "live"),
        ]
        # The service comes back (same port) with new readings.
        gone.frames = nested(130)
        await gone.start()
        frames = await read_until(
            ws,
            station_where(lambda e: (e["icu_2"]["last"] or {}).get("bpm") == 130 + COUNT - 1),
            seconds=20,
        )
        back = entries(frames[-1])["icu_2"]
        assert (back["upstream"], back["state"], back["detail"]) == ("live", "live", "")
        assert [r["bpm"] for r in back["recent"]] == [
            130 + i for i in range(COUNT - STATION_REPEAT, COUNT)
        ]
        assert all(e["state"] == "live" for e in entries(frames[-1]).values())
    assert bridge.hub["bed-01"].buffer.last_seq == COUNT  # the others read nothing twice
    assert bridge.hub["icu_2"].buffer.last_seq == 2 * COUNT


# -- the snapshot, repeated until acknowledged -------------------------------------------------


def is_snapshot(frame: dict[str, Any], station: Station) -> bool:
    """A snapshot frame: flagged, and every patient's whole sparkline (the readings streamed
    here are all within SPARK_SECONDS: from seq 1 to the last, seq increasing, the last
    STATION_REPEAT all there, at most one per SPARK_STEP before them)."""
    if frame.get("snapshot") is not True:
        return False
    for pid, entry in entries(frame).items():
        seqs = [r["seq"] for r in entry["recent"]]
        last = entry["last"]["seq"]
        assert seqs[0] == 1 and seqs == sorted(set(seqs)), pid
        assert seqs[-STATION_REPEAT:] == list(range(last - STATION_REPEAT + 1, last + 1)), pid
        assert len(seqs) <= SPARK_SECONDS / SPARK_STEP + STATION_REPEAT + 1, pid
    return True


def is_live(frame: dict[str, Any]) -> bool:
    """A live frame: not flagged, each patient's last STATION_REPEAT readings."""
    return "snapshot" not in frame and all(
        len(e["recent"]) == min(STATION_REPEAT, e["last"]["seq"]) for e in frame["patients"]
    )


async def frames_while_streaming(station: Station, ws: Any, count: int) -> list[dict[str, Any]]:
    """``count`` station frames from ``ws``, bed-01's service streaming readings (100 ms apart
    by their own times) meanwhile, so that frames come every STATION_MIN_INTERVAL."""
    upstream = station.services["bed-01"].connections[-1]

    async def feed() -> None:
        for i in range(400):
            reading = {"time": T0 * 1000 + 10_000 + 100 * i, "value": 80 + i % 10}
            await upstream.send(json.dumps(reading))
            await asyncio.sleep(0.02)

    sender = asyncio.create_task(feed())
    try:
        return [strict_json(await ws.recv()) for _ in range(count)]
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender


async def test_a_viewer_that_never_acks_gets_snapshot_repeats_snapshots(station: Station) -> None:
    """A viewer that never acknowledges (a plain client, an old page) gets exactly
    SNAPSHOT_REPEATS snapshots, the one on connect included, then live frames; /healthz
    counts them and the viewer as never acknowledging."""
    async with asyncio.timeout(timeout(20)), connect(station.url("station=1")) as ws:
        frames = await frames_while_streaming(station, ws, SNAPSHOT_REPEATS + 4)
        _, health = await station.get("/healthz")
    kinds = [
        "snapshot" if is_snapshot(f, station) else "live" if is_live(f) else "?" for f in frames
    ]
    assert kinds == ["snapshot"] * SNAPSHOT_REPEATS + ["live"] * 4
    counters = health["station"]
    assert (counters["snapshots"], counters["snapshot_acks"], counters["snapshot_unacked"]) == (
        SNAPSHOT_REPEATS,
        0,
        1,
    )
    assert counters["viewers_awaiting_ack"] == 0


async def test_a_viewer_that_acks_its_first_frame_gets_live_frames_from_the_next_tick(
    station: Station,
) -> None:
    """A viewer that acknowledges its first snapshot (with its run) gets live frames from the
    next station tick on; the ack is counted in /healthz."""
    async with asyncio.timeout(timeout(20)), connect(station.url("station=1")) as watcher:
        await ack(watcher, strict_json(await watcher.recv()))
        await first_live(watcher)  # a tick has just gone out: the next is a heartbeat away
        async with connect(station.url("station=1")) as ws:
            first = strict_json(await ws.recv())
            await ack(ws, first)
            later = [strict_json(await ws.recv()) for _ in range(3)]
            _, health = await station.get("/healthz")
    assert is_snapshot(first, station)
    assert all(is_live(frame) for frame in later), later
    counters = health["station"]
    assert (counters["snapshot_acks"], counters["snapshot_unacked"]) == (2, 0)
    assert counters["viewers_awaiting_ack"] == 0


async def test_an_ack_of_another_run_or_a_malformed_message_changes_nothing(
    station: Station,
) -> None:
    """An ack naming another run, or a message that is not a well-formed ack, leaves the
    viewer getting snapshots, SNAPSHOT_REPEATS of them, as if it had sent nothing."""
    async with asyncio.timeout(timeout(20)), connect(station.url("station=1")) as ws:
        first = strict_json(await ws.recv())
        for message in (
            {"type": "snapshot_ok", "run": first["run"] + "x"},
            {"type": "snapshot_ok"},
            {"type": "resend", "run": first["run"], "since": 0},
            [{"type": "snapshot_ok", "run": first["run"]}],
        ):
            await ws.send(json.dumps(message))
        await ws.send("{not json")
        frames = [first, *await frames_while_streaming(station, ws, SNAPSHOT_REPEATS + 1)]
        _, health = await station.get("/healthz")
    kinds = [
        "snapshot" if is_snapshot(f, station) else "live" if is_live(f) else "?" for f in frames
    ]
    assert kinds == ["snapshot"] * SNAPSHOT_REPEATS + ["live"] * 2
    assert health["station"]["snapshot_acks"] == 0


async def test_each_kind_of_frame_is_encoded_once_per_tick(
    station: Station, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With two viewers that acknowledged and two that did not, each station tick builds one
    snapshot and one live frame, whatever the number of viewers of each kind."""
    edge = station.bridge.edge
    ticks: list[list[bool]] = []  # per tick: the snapshot flag of each frame built
    real_frame, real_send = edge.station_frame, edge.send_station

    def frame(*, snapshot: bool = False) -> dict[str, Any]:
        if ticks:
            ticks[-1].append(snapshot)
        return real_frame(snapshot=snapshot)

    def send() -> None:
        ticks.append([])
        real_send()

    monkeypatch.setattr(edge, "station_frame", frame)
    monkeypatch.setattr(edge, "send_station", send)
    async with contextlib.AsyncExitStack() as stack:
        viewers = [
            await stack.enter_async_context(connect(station.url("station=1"))) for _ in "abcd"
        ]
        async with asyncio.timeout(timeout(20)):
            for ws in viewers[:2]:
                await ack(ws, strict_json(await ws.recv()))
            for ws in viewers[:2]:
                await first_live(ws)
            start = len(ticks)
            frames = await frames_while_streaming(station, viewers[2], 3)
    both = [t for t in ticks[start:] if t]
    assert both and all(sorted(t) == [False, True] for t in both), ticks
    assert all(f.get("snapshot") is True for f in frames)


# -- a snapshot in flight and a viewer that stops reading --------------------------------------

WARD = 48  # patients: every one's 120 s sparkline makes a snapshot of ~250 KB
WARD_BUFFER = 64 * 1024  # viewer_buffer here: a snapshot is several times larger
WARD_READINGS = 240  # each service's readings on connect, 0.5 s apart: 120 s by their times


@dataclass
class Ward:
    bridge: Bridge
    service: Service  # every patient's service (one server, a connection per patient)
    snapshot_bytes: int  # a snapshot's size once every reading is in

    @property
    def port(self) -> int:
        return self.bridge.port

    async def station(self) -> dict[str, Any]:
        """The station feed's counters in /healthz."""
        return dict((await healthz(self.port))["station"])

    async def stream(self, stop: asyncio.Event) -> None:
        """Send every patient a reading each 50 ms until ``stop``: station frames come at
        their fastest (every STATION_MIN_INTERVAL)."""
        for i in itertools.count():
            if stop.is_set():
                return
            reading = json.dumps({"time": T0 * 1000 + 120_000 + 50 * i, "value": 70 + i % 20})
            for ws in list(self.service.connections):
                with contextlib.suppress(Exception):
                    await ws.send(reading)
            await asyncio.sleep(0.05)


@pytest.fixture
async def ward(services: ServiceFactory, tmp_path: Path) -> AsyncIterator[Ward]:
    """WARD patients on one service that sends each WARD_READINGS readings on connect, and a
    bridge with viewer_buffer WARD_BUFFER (no keepalive ping in the test's time)."""
    frames = [
        json.dumps({"time": T0 * 1000 + 500 * i, "value": 60 + i % 50})
        for i in range(WARD_READINGS)
    ]
    service = await services(frames)
    path = tmp_path / "ward.toml"
    path.write_text(
        "".join(f'[[patient]]\nid = "p-{i:02}"\nurl = "{service.url}"\n\n' for i in range(WARD))
    )
    settings = Settings.load(env={"HRDASH_SOURCES": str(path)}).replace(
        bridge_port=0, db=MEMORY, stale_after=60.0, viewer_buffer=WARD_BUFFER, ping_interval=600.0
    )
    async with bridges_closed_after() as start:
        bridge = await start(settings)
        await wait_for(
            lambda: all(bridge.hub[pid].flushed_seq == WARD_READINGS for pid in bridge.hub),
            20,
            "every patient's readings read and sent out",
        )
        size = len(json.dumps(bridge.edge.station_frame(snapshot=True), separators=(",", ":")))
        assert size > 3 * WARD_BUFFER, size  # (a check of the setup)
        yield Ward(bridge, service, size)


class RawViewer:
    """A station viewer on a raw socket with a tiny receive buffer, speaking WebSocket through
    websockets' sans-I/O client: after the handshake it reads only when told to, so that what
    the bridge writes piles up in the bridge's write buffer."""

    def __init__(self, sock: socket.socket, protocol: ClientProtocol) -> None:
        self.sock, self.protocol = sock, protocol
        self.loop = asyncio.get_running_loop()

    @classmethod
    async def connect(cls, port: int) -> RawViewer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
        sock.setblocking(False)
        viewer = cls(sock, ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/ws?station=1")))
        await viewer.loop.sock_connect(sock, ("127.0.0.1", port))
        viewer.protocol.send_request(viewer.protocol.connect())
        await viewer.flush()
        while viewer.protocol.state is not State.OPEN:  # the handshake, a little past it
            viewer.protocol.receive_data(await viewer.loop.sock_recv(sock, 1024))
            assert viewer.protocol.handshake_exc is None, viewer.protocol.handshake_exc
        return viewer

    async def flush(self) -> None:
        for data in self.protocol.data_to_send():
            await self.loop.sock_sendall(self.sock, data)

    async def send(self, message: dict[str, Any]) -> None:
        self.protocol.send_text(json.dumps(message).encode())
        await self.flush()

    async def frames(self, count: int) -> list[dict[str, Any]]:
        """Read until ``count`` text frames have come (the first may have begun already)."""
        got: list[dict[str, Any]] = []
        while len(got) < count:
            self.protocol.receive_data(await self.loop.sock_recv(self.sock, 1 << 16))
            for event in self.protocol.events_received():
                if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                    got.append(strict_json(event.data))
        return got

    async def closed(self) -> bool:
        """Read what is left until the bridge closes the connection: true when it has."""
        while True:
            try:
                data = await self.loop.sock_recv(self.sock, 1 << 16)
            except ConnectionResetError:
                return True
            if not data:
                return True

    def close(self) -> None:
        self.sock.close()


@contextlib.asynccontextmanager
async def raw_viewer(port: int) -> AsyncIterator[RawViewer]:
    viewer = await RawViewer.connect(port)
    try:
        yield viewer
    finally:
        viewer.close()


async def counters_until(
    ward: Ward, predicate: Callable[[dict[str, Any]], bool], seconds: float = 20
) -> dict[str, Any]:
    """Poll /healthz until the station's counters satisfy ``predicate``; returns them."""
    async with asyncio.timeout(timeout(seconds)):
        while not predicate(counters := await ward.station()):  # noqa: ASYNC110 - /healthz
            await asyncio.sleep(0.05)
    return counters


async def test_a_viewer_with_its_snapshot_in_flight_is_not_dropped(ward: Ward) -> None:
    """A station viewer that does not read while its first snapshot (several times
    viewer_buffer) is unsent is not dropped: each tick skips its snapshot repeat (counted)
    instead of writing another. Once it reads, it gets the whole snapshot, then repeats."""
    async with raw_viewer(ward.port) as viewer:
        counters = await counters_until(
            ward, lambda c: c["snapshots_skipped"] >= 3 or c["viewers_dropped_slow"] > 0
        )
        assert counters["viewers_dropped_slow"] == 0, counters
        assert (counters["viewers"], counters["viewers_awaiting_ack"]) == (1, 1), counters
        assert counters["snapshots"] == 1, counters  # the one on connect, no repeat on top
        async with asyncio.timeout(timeout(20)):
            first, repeat = await viewer.frames(2)
    assert first["snapshot"] is True and repeat["snapshot"] is True
    assert [p["id"] for p in first["patients"]] == list(ward.bridge.hub)
    assert all(p["last"]["seq"] == WARD_READINGS for p in first["patients"])
    counters = await ward.station()
    assert counters["snapshots"] >= 2 and counters["viewers_dropped_slow"] == 0, counters


async def test_a_viewer_that_stops_reading_is_dropped_beyond_its_snapshot(ward: Ward) -> None:
    """A station viewer that acknowledges its snapshot and stops reading gets live frames
    until it falls more than viewer_buffer behind beyond its snapshot in flight, then it is
    dropped (counted, its connection closed), within a bounded time."""
    stop = asyncio.Event()
    streaming = asyncio.create_task(ward.stream(stop))
    try:
        async with raw_viewer(ward.port) as viewer:
            await viewer.send({"type": "snapshot_ok", "run": ward.bridge.run_id})
            counters = await counters_until(ward, lambda c: c["viewers_dropped_slow"] > 0)
            async with asyncio.timeout(timeout(10)):
                assert await viewer.closed()
    finally:
        stop.set()
        await streaming
    assert counters["viewers_dropped_slow"] == 1 and counters["viewers"] == 0, counters
    assert (counters["snapshots"], counters["snapshot_acks"]) == (1, 1), counters
    # Before the drop the bridge wrote it a live frame every tick but the one that dropped it
    # and those before its ack (a repeat skipped each: its snapshot unsent), and they were more
    # than viewer_buffer: its snapshot in flight did not count against it.
    live = len(json.dumps(ward.bridge.edge.station_frame(), separators=(",", ":")))
    written = counters["frames"] - counters["snapshots_skipped"] - 1
    assert written * live > WARD_BUFFER, (counters, live)
