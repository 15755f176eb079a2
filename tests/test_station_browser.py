"""The station end to end: `python app.py` with a sources file of three patients, each served by its
own heart-rate service (a real websockets server on 127.0.0.1), and the station page in headless
Chromium.

The three services send three shapes: the reference ``{"time": ms, "value": bpm}``, a nested
``{"data": {"hr", "ts"}}`` read through ``value_field``/``time_field``, and Unix seconds. Each
patient's values lie in a range of its own, so a tile that showed another patient's number, or a
number its service never sent, is caught.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from hrdash.edge import SNAPSHOT_REPEATS
from hrdash.settings import Settings
from tests.support import (
    Running,
    app_command,
    chromium_page,
    free_port,
    hrdash_running,
    poll,
    scaled,
)

pytestmark = pytest.mark.browser

PERIOD = 0.5  # seconds between a service's readings (the reference service's rate)

TILES_JS = """
() => Object.fromEntries(Array.from(document.querySelectorAll('[data-patient]')).map((t) => [
  t.getAttribute('data-patient'), {
    state: t.getAttribute('data-state'),
    alarm: t.getAttribute('data-alarm'),
    name: t.querySelector('.hr-tile-name').textContent,
    label: t.querySelector('.hr-tile-state').textContent,
    bpm: t.querySelector('.hr-tile-bpm').textContent,
    age: t.querySelector('.hr-tile-age').textContent,
    href: t.getAttribute('href'),
  }]))
"""


@dataclass
class Shape:
    """How one service writes a reading (``encode(bpm, unix_seconds)``) and the sources-file
    options that read it."""

    encode: Callable[[int, float], dict[str, Any]]
    options: dict[str, str] = field(default_factory=dict)


SHAPES = {
    "reference": Shape(lambda bpm, t: {"time": int(t * 1000), "value": bpm}),
    "nested": Shape(
        lambda bpm, t: {"data": {"hr": bpm, "ts": int(t * 1000)}, "kind": "vitals"},
        {"value_field": "data.hr", "time_field": "data.ts"},
    ),
    "seconds": Shape(lambda bpm, t: {"time": round(t, 3), "value": bpm}),
}


class PatientService:
    """A heart-rate service on a fixed port of 127.0.0.1, in a thread with its own asyncio loop:
    every PERIOD a reading in ``shape``, bpm cycling through ``values``; with ``limit``, only
    that many readings, after which it stays connected and silent. ``stop()`` closes the server
    and its connections (the service is gone: connections are refused), ``start()`` serves again
    on the same port."""

    def __init__(self, shape: Shape, values: list[int], limit: int | None = None) -> None:
        self.shape = shape
        self.values = values
        self.limit = limit
        self.port = free_port()
        self.sent: list[int] = []  # every bpm sent, in order
        self._loop = asyncio.new_event_loop()
        self._server: Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/hr"

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(scaled(10))

    def start(self) -> None:
        async def go() -> None:
            self._server = await serve(self._handler, "127.0.0.1", self.port)

        self._call(go())

    def stop(self) -> None:
        async def halt() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
                self._server = None

        self._call(halt())

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(scaled(10))
        self._loop.close()

    async def _handler(self, ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while self.limit is None or len(self.sent) < self.limit:
                bpm = self.values[len(self.sent) % len(self.values)]
                await ws.send(json.dumps(self.shape.encode(bpm, time.time())))
                self.sent.append(bpm)
                await asyncio.sleep(PERIOD)
            await ws.wait_closed()


@dataclass
class Ward:
    running: Running
    services: dict[str, PatientService]
    names: dict[str, str]


PATIENTS = {  # id → (name, shape, the values its service sends: a range no other patient uses)
    "icu-a": ("Anna Reference", "reference", [61, 62, 63, 64, 65]),
    "icu-b": ("Ben Nested", "nested", [101, 103, 105, 107]),
    "icu-c": ("Cleo Seconds", "seconds", [141, 142, 143]),
}


def sources_toml(services: dict[str, PatientService]) -> str:
    tables = []
    for pid, (name, shape, _) in PATIENTS.items():
        lines = ["[[patient]]", f'id = "{pid}"', f'name = "{name}"', f'url = "{services[pid].url}"']
        lines += [f'{k} = "{v}"' for k, v in SHAPES[shape].options.items()]
        tables.append("\n".join(lines))
    return "\n\n".join(tables) + "\n"


@pytest.fixture(scope="module")
def ward(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ward]:
    """The three services and `python app.py` reading them from a sources file."""
    services = {
        pid: PatientService(SHAPES[shape], values) for pid, (_, shape, values) in PATIENTS.items()
    }
    try:
        for service in services.values():
            service.start()
        path = Path(tmp_path_factory.mktemp("station")) / "sources.toml"
        path.write_text(sources_toml(services))
        with hrdash_running(app_command(), {"HRDASH_SOURCES": str(path)}) as running:
            yield Ward(running, services, {pid: p[0] for pid, p in PATIENTS.items()})
    finally:
        for service in services.values():
            service.close()


def tiles(page: Any) -> dict[str, Any]:
    return dict(page.evaluate(TILES_JS))


def wait_tiles(
    page: Any, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str
) -> dict[str, Any]:
    return poll(page, tiles, predicate, timeout, what)


def showing_what_was_sent(ward: Ward, shown: dict[str, Any]) -> bool:
    """Every tile is live with a number its own service sent."""
    return all(
        shown[pid]["state"] == "live" and shown[pid]["bpm"] in {str(v) for v in service.sent}
        for pid, service in ward.services.items()
    )


def test_each_patient_is_shown_on_its_own_tile(ward: Ward) -> None:
    """Three services of three shapes: each patient's tile, in sources order, carries its name
    and link, and goes live with the values its own service sent, and keeps following them."""
    with chromium_page(1920, 1080) as page:
        page.goto(ward.running.url)
        shown = wait_tiles(
            page,
            lambda s: len(s) == 3 and showing_what_was_sent(ward, s),
            20,
            "three live tiles with their services' values",
        )
        assert list(shown) == list(PATIENTS)
        for pid, tile in shown.items():
            assert tile["name"] == ward.names[pid]
            assert tile["href"] == f"/patient/{pid}"
            assert (tile["label"], tile["alarm"], tile["age"]) == ("Live", "none", "")
        # The numbers move with their services.
        seen: dict[str, set[str]] = {pid: set() for pid in PATIENTS}
        deadline = time.monotonic() + scaled(6)
        while time.monotonic() < deadline and not all(len(s) >= 3 for s in seen.values()):
            now = tiles(page)
            assert showing_what_was_sent(ward, now), now
            for pid in PATIENTS:
                seen[pid].add(now[pid]["bpm"])
            page.wait_for_timeout(100)
        assert all(len(s) >= 3 for s in seen.values()), seen


def test_a_killed_service_takes_down_its_tile_only(ward: Ward) -> None:
    """One service stops: its tile goes down (never live, greyed number) while the two others
    stay live throughout; the service returns and its tile is live again with new values."""
    victim = "icu-b"
    others = [pid for pid in PATIENTS if pid != victim]
    service = ward.services[victim]
    with chromium_page(1920, 1080) as page:
        page.goto(ward.running.url)
        wait_tiles(
            page, lambda s: len(s) == 3 and showing_what_was_sent(ward, s), 20, "three live tiles"
        )
        service.stop()
        try:
            down = wait_tiles(
                page, lambda s: s[victim]["state"] == "down", 15, f"{victim} to go down"
            )
            assert down[victim]["label"] == "Down"
            for _ in range(20):  # two seconds of the others staying live
                now = tiles(page)
                assert now[victim]["state"] != "live", now
                assert all(now[pid]["state"] == "live" for pid in others), now
                page.wait_for_timeout(100)
        finally:
            sent_before = len(service.sent)
            service.start()
        wait_tiles(
            page,
            lambda s: (
                s[victim]["state"] == "live"
                and len(service.sent) > sent_before
                and showing_what_was_sent(ward, s)
            ),
            20,
            f"{victim} to come back live",
        )


def test_the_station_makes_no_dash_request_while_streaming(ward: Ward) -> None:
    """Once the page has loaded, the tiles keep changing for five seconds while the page asks
    the Dash server for nothing at all."""
    dash_origin = ward.running.url.rstrip("/")
    with chromium_page(1920, 1080) as page:
        requests: list[str] = []
        page.on(
            "request", lambda r: requests.append(r.url) if r.url.startswith(dash_origin) else None
        )
        page.goto(ward.running.url)
        wait_tiles(
            page, lambda s: len(s) == 3 and showing_what_was_sent(ward, s), 20, "three live tiles"
        )
        page.wait_for_timeout(1000)  # the page's own start-up requests are over
        requests.clear()
        frames = page.evaluate("window.hrdashStation.state.frames")
        changes = 0
        before = tiles(page)
        for _ in range(50):
            page.wait_for_timeout(100)
            now = tiles(page)
            changes += sum(now[p]["bpm"] != before[p]["bpm"] for p in PATIENTS)
            before = now
        assert page.evaluate("window.hrdashStation.state.frames") >= frames + 5
        assert changes >= 10, changes
        assert requests == [], requests


def test_the_page_acknowledges_its_snapshot_and_gets_live_frames(ward: Ward) -> None:
    """Through the real socket component, the page acknowledges the station snapshot it gets
    ({"type": "snapshot_ok", "run": <its run>}); the bridge then sends live frames, well before
    SNAPSHOT_REPEATS snapshots, and the sparklines keep the snapshot's readings."""
    sent: list[dict[str, Any]] = []
    received: list[dict[str, Any]] = []

    def on_socket(ws: Any) -> None:
        if "station=1" in ws.url:
            ws.on("framesent", lambda payload: sent.append(json.loads(payload)))
            ws.on("framereceived", lambda payload: received.append(json.loads(payload)))

    with chromium_page(1920, 1080) as page:
        page.on("websocket", on_socket)
        page.goto(ward.running.url)
        wait_tiles(
            page, lambda s: len(s) == 3 and showing_what_was_sent(ward, s), 20, "three live tiles"
        )
        deadline = time.monotonic() + scaled(10)
        while time.monotonic() < deadline and not any("snapshot" not in f for f in received):
            page.wait_for_timeout(100)
        sparks = page.evaluate(
            "Object.fromEntries(Object.entries(window.hrdashStation.state.sparks)"
            ".map(([id, s]) => [id, s.points.map((p) => [p.seq, p.time])]))"
        )
        span_ms = page.evaluate("window.hrdashStation.state.config.spark_seconds") * 1000
    snapshots = [f for f in received if f.get("snapshot") is True]
    assert snapshots and received[0].get("snapshot") is True
    assert [(m["type"], m["run"]) for m in sent][:1] == [("snapshot_ok", received[0]["run"])]
    assert len(snapshots) < SNAPSHOT_REPEATS, len(snapshots)
    assert received[len(snapshots)].get("snapshot") is None  # then live frames only
    assert all(f.get("snapshot") is None for f in received[len(snapshots) :])
    # The sparkline keeps the readings of the snapshot the page took: Dash may hand the page
    # only the last of several frames, so that is one of the snapshots sent (each thinned its
    # own way), not necessarily the first.
    for pid, points in sparks.items():
        shown = {seq for seq, _ in points}
        # ... those still inside the sparkline's span: older ones leave it as time goes on
        cut = max(t for _, t in points) - span_ms
        kept = [
            {r["seq"] for r in entry["recent"] if r["time"] >= cut}
            for snapshot in snapshots
            for entry in snapshot["patients"]
            if entry["id"] == pid
        ]
        assert len(kept) == len(snapshots) and all(kept), pid
        assert any(seqs <= shown for seqs in kept), pid


BPM_COLOUR_JS = """
() => Object.fromEntries(Array.from(document.querySelectorAll('[data-patient]')).map((t) => [
  t.getAttribute('data-patient'), getComputedStyle(t.querySelector('.hr-tile-bpm')).color]))
"""


def test_down_stale_and_live_at_once(tmp_path: Path) -> None:
    """A ward with one service gone, one connected but silent and one streaming: at the same
    moment the tiles say down, stale and live; the stale tile keeps its last number, greyed
    (not the live tile's colour) with its age beside it, and so does the down tile."""
    specs = {"icu-a": [61, 62, 63], "icu-b": [101, 103], "icu-c": [141, 142]}
    services = {pid: PatientService(SHAPES["reference"], values) for pid, values in specs.items()}
    services["icu-b"].limit = 6  # then connected and silent (the bridge reconnects after 10 s)
    try:
        for service in services.values():
            service.start()
        path = tmp_path / "sources.toml"
        path.write_text(
            "".join(f'[[patient]]\nid = "{p}"\nurl = "{s.url}"\n\n' for p, s in services.items())
        )
        with (
            hrdash_running(app_command(), {"HRDASH_SOURCES": str(path)}) as running,
            chromium_page(1920, 1080) as page,
        ):
            page.goto(running.url)
            wait_tiles(
                page,
                lambda s: len(s) == 3 and s["icu-a"]["state"] == s["icu-c"]["state"] == "live",
                20,
                "live tiles",
            )
            services["icu-c"].stop()
            shown = wait_tiles(
                page,
                lambda s: [s[p]["state"] for p in specs] == ["live", "stale", "down"],
                20,
                "icu-a live, icu-b stale, icu-c down at once",
            )
            colours = page.evaluate(BPM_COLOUR_JS)
    finally:
        for service in services.values():
            service.close()
    live, stale, down = (shown[p] for p in specs)
    assert (live["label"], live["age"]) == ("Live", "")
    assert live["bpm"] in {str(v) for v in services["icu-a"].sent}
    assert stale["label"] == "Stale" and stale["age"].endswith("ago"), stale
    assert stale["bpm"] == str(services["icu-b"].sent[-1])  # its last reading, not a dash
    assert colours["icu-b"] != colours["icu-a"]  # ... greyed, never in the live colour
    assert down["label"] == "Down" and down["age"].endswith("ago"), down
    assert down["bpm"] == str(services["icu-c"].sent[-1]) and colours["icu-c"] != colours["icu-a"]


# Dash looks a clientside function up by namespace and name at each call: wrapping the names
# counts every call Dash makes (the page's own timer calls station.js's functions directly).
COUNT_DASH_CALLS_JS = """
() => {
  const ns = window.dash_clientside.hrdash;
  window.dashCalls = {};
  window.dropFrames = false;
  for (const name of Object.keys(ns)) {
    const inner = ns[name];
    if (typeof inner !== 'function') continue;
    ns[name] = function () {
      window.dashCalls[name] = (window.dashCalls[name] || 0) + 1;
      if (name === 'on_station_message' && window.dropFrames) {
        return window.dash_clientside.no_update;
      }
      return inner.apply(this, arguments);
    };
  }
}
"""


def test_the_page_clock_runs_without_a_dash_interval(ward: Ward) -> None:
    """The tiles keep following their services while Dash calls nothing but the frame and socket
    handlers (no tick callback); when the page gets no more frames (dropped before station.js
    sees them), the page's own timer turns every live tile stale by itself, with its age."""
    stale_after = Settings.load(env={}).stale_after  # the ward's (no HRDASH_STALE_AFTER)
    with chromium_page(1920, 1080) as page:
        page.goto(ward.running.url)
        wait_tiles(
            page, lambda s: len(s) == 3 and showing_what_was_sent(ward, s), 20, "three live tiles"
        )
        page.evaluate(COUNT_DASH_CALLS_JS)
        ticks = page.evaluate("window.hrdashStation.state.ticks")
        before = tiles(page)
        changes = 0
        for _ in range(20):
            page.wait_for_timeout(100)
            now = tiles(page)
            assert all(t["state"] == "live" for t in now.values()), now
            changes += sum(now[p]["bpm"] != before[p]["bpm"] for p in PATIENTS)
            before = now
        assert changes >= 4, changes
        calls = page.evaluate("window.dashCalls")
        assert calls.get("on_station_message", 0) >= 4, calls
        assert set(calls) <= {"on_station_message", "on_station_state"}, calls
        assert page.evaluate("window.hrdashStation.state.ticks") >= ticks + 4  # 250 ms timer
        page.evaluate("() => { window.dropFrames = true; }")
        stale = wait_tiles(
            page,
            lambda s: all(t["state"] == "stale" for t in s.values()),
            stale_after + 5,
            "every tile stale by the page's clock",
        )
        assert all(t["label"] == "Stale" and t["age"].endswith(" s ago") for t in stale.values())
        calls = page.evaluate("window.dashCalls")
        assert "on_station_tick" not in calls, calls
