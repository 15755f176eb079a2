"""(f) Alarms: how long past its delay an alarm shows, and what alarms cost the bridge and the page.

``python app.py`` (``tests/support.start_hrdash``; its history in a file in a temp dir, so the
recorder writes the readings and the alarm log as deployed) reads 64 patients through a sources
file from scripted heart-rate services (``tests/support.ScriptedService``: one websockets server
on 127.0.0.1, a reading every 0.5 s per patient with the value this benchmark sets); the station
page ``/`` is open in headless Chromium at 1920x1080.

*Latency* (five patients, bed-01..bed-05, one repetition at a time each, staggered; the 59 others
stay normal): a medium repetition sets 130 bpm (above ``high``), holds it past the delay, then
70 (back inside by more than the hysteresis); a high repetition sets 160 (above
``extreme_high``), acknowledges the alarm once it is raised (an ``ack`` on a WebSocket from the
page's own origin), then 70. Measured:

* *onset*: the alarm's raise time, which the engine sets to the bridge's receive time of the first
  reading beyond the limit plus the delay (``hrdash.alarms``: the log's ``raised`` entry and the
  alarm's ``since``; the timer fires at that exact time whenever it runs) → the tile's
  ``data-alarm`` changes to the priority (DOM), → the next animation frame after it, and →
  ``GET /api/alarms`` (polled every ``POLL_S``) lists it. So each figure is the time *beyond* the
  configured delay.
* *end*: the log's ``ended`` entry (the bridge's receive time of the first reading back inside)
  → the tile back to ``none`` / the alarm gone from ``/api/alarms``.
* *acknowledge*: the moment this process sent the ``ack`` → the tile back to ``none`` (an
  acknowledged alarm no longer colours it), → the alarms list's item ``data-state=acknowledged``,
  → ``/api/alarms`` shows ``acknowledged``; and → the log's ``acknowledged`` entry (the bridge).

One clock: the machine's system wall clock (CLOCK_REALTIME), read by ``time.time()`` in the bridge
and in this process, and by ``Date.now()`` in the page at each mutation (a MutationObserver
injected with ``page.add_init_script``). ``performance.timeOrigin + performance.now()`` is that
clock sampled once at navigation and advanced by a monotonic clock since, so it can drift from it
over a run; the difference between the two at the end is reported (``page_clock_skew_ms``).
``/api/alarms`` times are when the poll's answer arrived (resolution: the poll interval plus the
request's round trip, ~1 ms). The tile's figures are split at the page's socket: when the page
took the first station frame that carried the change (CDP ``Network`` events, as the station
section does).

*CPU*: the same 64 patients, no alarms for ``window_s`` (the baseline), then ``window_s`` with
every patient cycling 130 (6 s) → 70 (2 s) → 45 (6 s) → 70 (2 s) → 160 (3 s) → 70 (3 s), at
random phases, so medium alarms raise and end and high ones raise and latch every few seconds,
the latched ones acknowledged one by one ``ACK_SPACING`` s apart at least (as a nurse would;
the bridge ignores a viewer's messages beyond 5 a second), looked up every ``ACK_EVERY`` s: the
bridge's CPU seconds per wall second (``hrdash bridge`` child), the station page's renderer
process (the busiest renderer of the profile) and all of Chromium, and the Dash server, in each
window; and per second, assets/station.js's own counters (station frames taken, tile writes,
sparkline draws) and the renderer's own accounting (CDP ``Performance.getMetrics``: task, script,
style and layout seconds, style recalcs and layouts).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psutil

from benchmarks.common import cpu_seconds, summary
from benchmarks.station import (
    ALL_TILES_SHOWN,
    HEIGHT,
    WIDTH,
    SocketArrivals,
    _chromium_family,
    _metrics,
    _renderers,
)
from hrdash.alarms import HIGH_DELAY, HYSTERESIS, MEDIUM_DELAY, Limits
from tests.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ScriptedService,
    app_command,
    get_json,
    start_hrdash,
    stop,
)

PATIENTS = 64
PERIOD = 0.5  # seconds between two readings of a service (the reference 2 Hz)
MEASURED = 5  # patients whose alarms are timed, one repetition at a time each
POLL_S = 0.01  # seconds between two GET /api/alarms while timing
HOLD_S = 1.5  # seconds a repetition holds a state once the alarm shows (or to settle)
ACK_EVERY = 1.0  # seconds between two looks for latched alarms to acknowledge (CPU window)
ACK_SPACING = 0.25  # seconds between two acks at least: within the bridge's 5 messages a second
SAMPLE_EVERY = 5.0  # seconds between two CPU samples

_LIMITS = Limits()  # the defaults the sources file leaves in place
NORMAL = 70
assert _LIMITS.low + HYSTERESIS < NORMAL < _LIMITS.high - HYSTERESIS
HIGH = _LIMITS.high + 10  # 130: hr_high (medium)
LOW = _LIMITS.low - 5  # 45: hr_low (medium)
EXTREME = _LIMITS.extreme_high + 10  # 160: hr_extreme_high (high, latching)
# The CPU window's cycle, per patient: (bpm, seconds).
STORM = ((HIGH, 6.0), (NORMAL, 2.0), (LOW, 6.0), (NORMAL, 2.0), (EXTREME, 3.0), (NORMAL, 3.0))

# Every change of a tile's data-alarm and of the alarms list's items, on the page's wall clock
# (Date.now()), and the start of the next animation frame after a tile's change.
INIT_JS = r"""
(() => {
  if (window.__alarms) return;
  const A = window.__alarms = {tiles: [], list: []};
  const tiles = new Map();
  let items = new Map();
  A.drain = () => {
    const out = {tiles: A.tiles, list: A.list};
    A.tiles = []; A.list = [];
    return out;
  };
  A.clock = () => [Date.now(), performance.timeOrigin + performance.now()];
  function look(tile, t, fresh) {
    const id = tile.getAttribute("data-patient");
    const alarm = tile.getAttribute("data-alarm");
    if (!id || alarm === null || tiles.get(id) === alarm) return;
    tiles.set(id, alarm);
    const rec = [id, alarm, t, null];
    A.tiles.push(rec);
    fresh.push(rec);
  }
  function lookList(t) {
    const now = new Map();
    document.querySelectorAll("#hr-station-alarms li[data-alarm-id]").forEach((li) => {
      now.set(li.getAttribute("data-alarm-id"), li.getAttribute("data-state"));
    });
    now.forEach((state, id) => { if (items.get(id) !== state) A.list.push([id, state, t]); });
    items.forEach((_, id) => { if (!now.has(id)) A.list.push([id, null, t]); });
    items = now;
  }
  function scan(records) {
    const t = Date.now();
    const fresh = [];
    let all = !records, list = !records;
    for (const r of records || []) {
      const el = r.target.nodeType === 1 ? r.target : r.target.parentElement;
      if (!el) continue;
      if (r.type === "attributes") { look(el, t, fresh); continue; }
      if (el.closest("#hr-station-alarms")) list = true;
      else if (!el.closest("[data-patient]")) all = true;
    }
    if (all) document.querySelectorAll("[data-patient]").forEach((e) => look(e, t, fresh));
    if (list) lookList(t);
    if (fresh.length) {
      requestAnimationFrame(() => { const f = Date.now(); fresh.forEach((r) => { r[3] = f; }); });
    }
  }
  const obs = new MutationObserver(scan);
  A.stop = () => obs.disconnect();
  function attach() {
    if (!document.documentElement) return setTimeout(attach, 10);
    obs.observe(document.documentElement, {
      subtree: true, childList: true, attributes: true, attributeFilter: ["data-alarm"],
    });
    scan(null);
  }
  attach();
})();
"""


# assets/station.js's own counters: station frames taken, tile writes, sparkline draws.
PAGE_COUNTERS = (
    "() => { const s = window.hrdashStation.state;"
    " return {frames: s.frames, tile_writes: s.tileWrites, spark_draws: s.draws}; }"
)


def patient_ids(n: int = PATIENTS) -> list[str]:
    return [f"bed-{i:02d}" for i in range(1, n + 1)]


class Poller:
    """``GET /api/alarms`` every POLL_S in a thread: each answer's arrival (Unix s) with the
    (id, state) of every alarm in it."""

    def __init__(self, bridge_port: int) -> None:
        self.url = f"http://127.0.0.1:{bridge_port}/api/alarms"
        self.samples: list[tuple[float, dict[str, str]]] = []
        self.request_ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.time()
            with contextlib.suppress(OSError, ValueError):
                alarms = get_json(self.url)
                t1 = time.time()
                self.samples.append((t1, {a["id"]: a["state"] for a in alarms}))
                self.request_ms.append((t1 - t0) * 1000)
            self._stop.wait(POLL_S)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(10)

    def first(self, after: float, holds: Any) -> float | None:
        return _first_state(self.samples, after, holds)


class AlarmArrivals(SocketArrivals):
    """When the page took each station frame (CDP ``Network`` events, as
    :class:`benchmarks.station.SocketArrivals`), with the (id, state) of the alarms it carried
    for ``patients``: splits the tile's latency at the page's socket."""

    def __init__(self, cdp: Any, patients: list[str]) -> None:
        self.patients = set(patients)
        self.samples: list[tuple[float, dict[str, str]]] = []
        super().__init__(cdp)

    def _frame(self, event: dict[str, Any]) -> None:
        if self.offset is None:
            return
        payload = event.get("response", {}).get("payloadData", "")
        try:
            frame = json.loads(payload)
        except ValueError:
            return
        if not isinstance(frame, dict) or frame.get("type") != "station":
            return
        states = {
            a["id"]: a["state"]
            for p in frame.get("patients") or []
            if p.get("id") in self.patients
            for a in p.get("alarms") or []
        }
        self.samples.append((float(event["timestamp"]) + self.offset, states))


def _first_state(
    samples: list[tuple[float, dict[str, str]]], after: float, holds: Any
) -> float | None:
    """The time of the first sample at or after ``after`` whose states satisfy ``holds``."""
    for at, states in samples:
        if at >= after and holds(states):
            return at
    return None


class Acker:
    """A viewer of one patient's feed from the page's own origin (so its ``ack`` is accepted),
    on the services' loop; reads (and drops) every frame it gets, counts error frames."""

    def __init__(self, bridge_port: int, origin: str) -> None:
        self.url = f"ws://127.0.0.1:{bridge_port}/ws?patient={patient_ids()[0]}"
        self.origin = origin
        self.errors: list[str] = []
        self.ws: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(self.url, origin=self.origin, max_size=None)  # type: ignore[arg-type]
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for message in self.ws:
                if '"error"' in message:
                    frame = json.loads(message)
                    if frame.get("type") == "error":
                        self.errors.append(str(frame.get("message")))

    async def ack(self, alarm_id: str) -> float:
        """Send the ack; returns when (Unix s, just before the send)."""
        at = time.time()
        await self.ws.send(json.dumps({"type": "ack", "alarm": alarm_id}))
        return at

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


async def _alarm_of(bridge_port: int, patient: str, kind: str, within: float) -> str | None:
    """The id of the patient's active alarm of ``kind`` once /api/alarms lists it (None after
    ``within`` seconds)."""
    url = f"http://127.0.0.1:{bridge_port}/api/alarms"
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for a in await asyncio.to_thread(get_json, url):
            if a["patient"] == patient and a["kind"] == kind and a["state"] == "active":
                return str(a["id"])
        await asyncio.sleep(0.05)
    return None


async def _repetitions(
    service: ScriptedService,
    acker: Acker,
    bridge_port: int,
    patient: str,
    start_after: float,
    reps: int,
    acks: list[tuple[str, str, float]],
) -> None:
    """One patient's repetitions, alternately medium (130 → 70) and high (160 → ack → 70)."""
    await asyncio.sleep(start_after)
    for i in range(2 * reps):
        if i % 2 == 0:
            await service.change(patient, HIGH)
            await asyncio.sleep(MEDIUM_DELAY + HOLD_S)
            await service.change(patient, NORMAL)
        else:
            await service.change(patient, EXTREME)
            await asyncio.sleep(HIGH_DELAY + HOLD_S / 2)
            alarm_id = await _alarm_of(bridge_port, patient, "hr_extreme_high", within=5.0)
            if alarm_id is not None:
                await asyncio.sleep(HOLD_S / 2)
                acks.append((patient, alarm_id, await acker.ack(alarm_id)))
            await asyncio.sleep(HOLD_S)
            await service.change(patient, NORMAL)
        await asyncio.sleep(HOLD_S)


def _first(records: list[list[Any]], after: float, match: Any) -> list[Any] | None:
    for rec in records:
        if rec[2] >= after and match(rec):
            return rec
    return None


def _latencies(
    poller: Poller,
    arrivals: AlarmArrivals,
    page: dict[str, list[list[Any]]],
    logs: dict[str, list[dict[str, Any]]],
    acks: list[tuple[str, str, float]],
) -> tuple[dict[str, dict[str, list[float]]], dict[str, int]]:
    """Milliseconds from each event to each place it shows, by event and place."""
    tiles = [[r[0], r[1], r[2] / 1000, r[3] / 1000 if r[3] else None] for r in page["tiles"]]
    items = [[r[0], r[1], r[2] / 1000] for r in page["list"]]
    out: dict[str, dict[str, list[float]]] = {
        "onset_medium": {"tile": [], "tile_frame": [], "api": [], "socket": []},
        "onset_high": {"tile": [], "tile_frame": [], "api": [], "socket": []},
        "end_medium": {"tile": [], "tile_frame": [], "api": [], "socket": []},
        "ack_high": {
            "tile": [],
            "tile_frame": [],
            "list": [],
            "api": [],
            "socket": [],
            "bridge": [],
        },
    }
    counts = dict.fromkeys(out, 0)

    def place(event: str, patient: str, at: float, alarm: str, api: Any) -> None:
        counts[event] += 1
        mine = [r for r in tiles if r[0] == patient]
        rec = _first(mine, at - 0.001, lambda r: r[1] == alarm)
        if rec is not None:
            out[event]["tile"].append((rec[2] - at) * 1000)
            if rec[3] is not None:
                out[event]["tile_frame"].append((rec[3] - at) * 1000)
        seen = poller.first(at, api)
        if seen is not None:
            out[event]["api"].append((seen - at) * 1000)
        taken = _first_state(arrivals.samples, at, api)
        if taken is not None:
            out[event]["socket"].append((taken - at) * 1000)

    for patient, log in logs.items():
        for e in log:
            at = e["time"] / 1000
            if e["event"] == "raised" and e["kind"] == "hr_high":
                place("onset_medium", patient, at, "medium", lambda s, i=e["alarm"]: i in s)
            elif e["event"] == "raised" and e["kind"] == "hr_extreme_high":
                place("onset_high", patient, at, "high", lambda s, i=e["alarm"]: i in s)
            elif e["event"] == "ended" and e["kind"] == "hr_high" and e["origin"] is None:
                place("end_medium", patient, at, "none", lambda s, i=e["alarm"]: i not in s)
    for patient, alarm_id, sent in acks:
        place(
            "ack_high",
            patient,
            sent,
            "none",
            lambda s, i=alarm_id: s.get(i) == "acknowledged",
        )
        item = _first(items, sent - 0.001, lambda r, i=alarm_id: r[0] == i)
        if item is not None and item[1] == "acknowledged":
            out["ack_high"]["list"].append((item[2] - sent) * 1000)
        logged = [
            e["time"] / 1000
            for e in logs[patient]
            if e["alarm"] == alarm_id and e["event"] == "acknowledged"
        ]
        if logged:
            out["ack_high"]["bridge"].append((logged[0] - sent) * 1000)
    return out, counts


# The renderer's own accounting (CDP Performance.getMetrics), per second of a CPU window.
RENDERER_METRICS = (
    "TaskDuration",
    "ScriptDuration",
    "RecalcStyleDuration",
    "LayoutDuration",
    "RecalcStyleCount",
    "LayoutCount",
)


def _cpu_window(
    running: Any, page: Any, cdp: Any, profile: str, seconds: float, alarms_url: str
) -> dict[str, Any]:
    """CPU seconds per wall second over ``seconds``: the bridge, the page's renderer, all of
    Chromium, the Dash server; and how many alarms /api/alarms listed at each sample."""
    bridge = psutil.Process(running.child("bridge").pid)
    server = psutil.Process(running.proc.pid)
    renderers = _renderers(profile)
    family = _chromium_family(profile)

    def now() -> dict[str, Any]:
        return {
            "bridge": cpu_seconds(bridge),
            "server": cpu_seconds(server),
            "renderers": {p.pid: cpu_seconds(p) for p in renderers},
            "chromium": sum(cpu_seconds(p) for p in family),
        }

    shown: list[int] = []
    s0 = page.evaluate(PAGE_COUNTERS)
    r0 = _metrics(cdp)
    c0, m0 = now(), time.monotonic()
    while (left := m0 + seconds - time.monotonic()) > 0:
        page.wait_for_timeout(min(SAMPLE_EVERY, left) * 1000)
        shown.append(len(get_json(alarms_url)))
    c1, wall = now(), time.monotonic() - m0
    s1 = page.evaluate(PAGE_COUNTERS)
    r1 = _metrics(cdp)
    by_renderer = [(c1["renderers"][pid] - c0["renderers"][pid]) / wall for pid in c1["renderers"]]
    return {
        "seconds": round(wall, 2),
        "bridge_cpu_s_per_s": (c1["bridge"] - c0["bridge"]) / wall,
        "renderer_cpu_s_per_s": max(by_renderer, default=None),
        "chromium_cpu_s_per_s": (c1["chromium"] - c0["chromium"]) / wall,
        "server_cpu_s_per_s": (c1["server"] - c0["server"]) / wall,
        "alarms_listed": summary(shown),
        "page_per_s": {k: (s1[k] - s0[k]) / wall for k in s1 if isinstance(s1[k], int | float)},
        "renderer_per_s": {k: (r1.get(k, 0) - r0.get(k, 0)) / wall for k in RENDERER_METRICS},
        "load_avg": [round(x, 2) for x in psutil.getloadavg()],
    }


def _storm_bpm(at: float) -> int:
    """The bpm ``at`` seconds into the STORM cycle."""
    for bpm, seconds in STORM:
        if at < seconds:
            return bpm
        at -= seconds
    return STORM[-1][0]


async def _storm(
    service: ScriptedService, acker: Acker, bridge_port: int, stop_at: float, seed: int = 7
) -> dict[str, int]:
    """Every patient through STORM at a random phase until ``stop_at`` (loop time); the latched
    alarms acknowledged, ACK_SPACING s apart at least."""
    rng = random.Random(seed)
    cycle = sum(s for _, s in STORM)
    loop = asyncio.get_running_loop()
    start = loop.time()
    phase = {p: rng.uniform(0, cycle) for p in service.values}
    counts = {"changes": 0, "acks": 0}
    next_look = start + ACK_EVERY
    last_ack = start
    queue: list[str] = []  # latched alarms to acknowledge, oldest first
    acked: set[str] = set()
    url = f"http://127.0.0.1:{bridge_port}/api/alarms"
    while (now := loop.time()) < stop_at:
        for p, offset in phase.items():
            bpm = _storm_bpm((now - start + offset) % cycle)
            if service.values[p] != bpm:
                await service.change(p, bpm)
                counts["changes"] += 1
        if now >= next_look:
            next_look += ACK_EVERY
            alarms = await asyncio.to_thread(get_json, url)
            queue = [a["id"] for a in alarms if a["state"] == "latched" and a["id"] not in acked]
        if queue and now - last_ack >= ACK_SPACING:
            alarm_id = queue.pop(0)
            acked.add(alarm_id)
            await acker.ack(alarm_id)
            last_ack = now
            counts["acks"] += 1
        await asyncio.sleep(0.05)
    for p in service.values:
        await service.change(p, NORMAL)
    return counts


async def _quiet(acker: Acker, bridge_port: int, within: float = 100.0) -> float:
    """Every patient back to normal (STORM ends there): the latched alarms left acknowledged,
    ACK_SPACING s apart, until /api/alarms lists none; returns how long that took (s)."""
    url = f"http://127.0.0.1:{bridge_port}/api/alarms"
    start = time.monotonic()
    acked: set[str] = set()
    while time.monotonic() - start < within:
        alarms = await asyncio.to_thread(get_json, url)
        if not alarms:
            break
        for a in alarms:
            if a["state"] == "latched" and a["id"] not in acked:
                acked.add(a["id"])
                await acker.ack(a["id"])
                await asyncio.sleep(ACK_SPACING)
        await asyncio.sleep(0.5)
    return round(time.monotonic() - start, 1)


# The station page's own assets, which ``before`` serves as of another revision.
STATION_ASSETS = ("assets/station.css", "assets/station.js")


def _assets_at(rev: str) -> dict[str, str]:
    """STATION_ASSETS as of git revision ``rev`` (path → text)."""
    root = Path(__file__).resolve().parent.parent
    return {
        path: subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=root, check=True, capture_output=True, text=True
        ).stdout
        for path in STATION_ASSETS
    }


def _cpu_windows(
    running: Any,
    page: Any,
    cdp: Any,
    profile: str,
    window_s: float,
    service: ScriptedService,
    acker: Acker,
    ids: list[str],
) -> dict[str, Any]:
    """The CPU part: ``window_s`` without alarms (the baseline), then ``window_s`` of STORM."""
    bridge_port = running.bridge_port
    alarms_url = f"http://127.0.0.1:{bridge_port}/api/alarms"
    out: dict[str, Any] = {}
    print(f"[bench] alarms: CPU, {window_s:g} s without", file=sys.stderr)
    out["baseline"] = _cpu_window(running, page, cdp, profile, window_s, alarms_url)
    print(f"[bench] alarms: CPU, {window_s:g} s with", file=sys.stderr)
    stop_at = service.loop.time() + window_s + 1.0
    storm = asyncio.run_coroutine_threadsafe(
        _storm(service, acker, bridge_port, stop_at), service.loop
    )
    page.wait_for_timeout(1000)  # the first alarms' delays are running
    t0 = time.time()
    out["alarms"] = _cpu_window(running, page, cdp, profile, window_s, alarms_url)
    t1 = time.time()
    out["alarms"].update(storm.result(timeout=60))
    events = [
        e
        for p in ids
        for e in get_json(f"http://127.0.0.1:{bridge_port}/api/alarms/log?patient={p}&limit=1000")
        if t0 * 1000 <= e["time"] <= t1 * 1000
    ]
    # flashing animations station.js put in phase (null: a station.js from before that)
    out["flash_synced"] = page.evaluate("() => window.hrdashStation.state.flashSynced ?? null")
    out["alarms"]["log_entries"] = len(events)
    out["alarms"]["by_event"] = {
        name: sum(e["event"] == name for e in events)
        for name in ("raised", "latched", "acknowledged", "ended")
    }
    health = get_json(f"http://127.0.0.1:{bridge_port}/healthz")
    out["alarms"]["acks_refused"] = {
        "rate_limited": health["patients"][0]["counters"].get("viewer_messages_refused"),
        **health["alarms"],
    }
    return out


def run(quick: bool, cpu_only: bool = False, before: str | None = None) -> dict[str, Any]:
    """The section. ``cpu_only``: the CPU windows only (no latency part). ``before``: a git
    revision; the CPU windows are run first with the station's own assets (STATION_ASSETS) as
    of that revision (served in their place, the rest of the app as it is), under
    ``out["before"]``, then with the working tree's (``out["baseline"]``/``out["alarms"]``),
    on the same app, page and scripted services."""
    from playwright.sync_api import sync_playwright

    reps = 2 if quick else 4  # per measured patient and kind: MEASURED x reps repetitions each
    window_s = 20.0 if quick else 60.0
    old_assets = _assets_at(before) if before else None
    out: dict[str, Any] = {
        "patients": PATIENTS,
        "period_s": PERIOD,
        "measured_patients": MEASURED,
        "repetitions": MEASURED * reps,
        "poll_s": POLL_S,
        "window_s": window_s,
        "delays_s": {"medium": MEDIUM_DELAY, "high": HIGH_DELAY},
        "storm_cycle": [list(x) for x in STORM],
        "clock": "system wall clock (CLOCK_REALTIME): time.time() in the bridge and here, "
        "Date.now() in the page",
        "load_avg_at_start": [round(x, 2) for x in psutil.getloadavg()],
        "cpu_only": cpu_only,
        "before_rev": before,
    }
    ids = patient_ids()
    service = ScriptedService(ids, value=NORMAL, period=PERIOD)
    running = None
    try:
        with tempfile.TemporaryDirectory(prefix="hrdash-alarms-") as tmp:
            sources = Path(tmp) / "sources.toml"
            sources.write_text(service.sources({p: f"Bed {i}" for i, p in enumerate(ids, 1)}))
            env = {
                "HRDASH_SOURCES": str(sources),
                "HRDASH_DB": str(Path(tmp) / "history.db"),  # the history records, as deployed
                "HRDASH_LOG_LEVEL": "warning",
            }
            running = start_hrdash(app_command(), env)
            origin = running.url.rstrip("/")
            bridge_port = running.bridge_port
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                listing = get_json(f"http://127.0.0.1:{bridge_port}/api/patients")
                if all(p["last"] for p in listing):
                    break
                time.sleep(0.2)
            acker = Acker(bridge_port, origin)
            service.run(acker.open())
            profile = str(Path(tmp) / "profile")
            with sync_playwright() as pw:
                context = pw.chromium.launch_persistent_context(
                    profile,
                    executable_path=CHROMIUM,
                    headless=True,
                    args=CHROMIUM_ARGS,
                    viewport={"width": WIDTH, "height": HEIGHT},
                )
                try:
                    context.add_init_script(INIT_JS)
                    page = context.pages[0] if context.pages else context.new_page()
                    cdp = context.new_cdp_session(page)
                    errors: list[str] = []
                    page.on("pageerror", lambda e: errors.append(str(e)[:300]))
                    served: dict[str, str] = {}  # asset path → the text served in its place

                    def serve(route: Any) -> None:
                        path = urlparse(route.request.url).path.lstrip("/")
                        if path in served:
                            kind = "text/css" if path.endswith(".css") else "text/javascript"
                            route.fulfill(body=served[path], content_type=kind)
                        else:
                            route.continue_()

                    def load() -> None:
                        page.goto(running.url)
                        page.wait_for_function(ALL_TILES_SHOWN, arg=PATIENTS, timeout=60_000)
                        page.wait_for_timeout(2000)

                    if old_assets is not None:
                        # (routing also turns the page's HTTP cache off: each load fetches)
                        page.route("**/assets/station.*", serve)
                        served.update(old_assets)
                        print(f"[bench] alarms: station assets as of {before}", file=sys.stderr)
                        load()
                        page.evaluate("() => window.__alarms.stop()")
                        cdp.send("Performance.enable")
                        out["before"] = _cpu_windows(
                            running, page, cdp, profile, window_s, service, acker, ids
                        )
                        out["before"]["quiet_after_s"] = service.run(
                            _quiet(acker, bridge_port), timeout=120
                        )
                        served.clear()
                    arrivals = None if cpu_only else AlarmArrivals(cdp, ids[:MEASURED])
                    load()
                    page.evaluate("() => window.__alarms.drain()")

                    if not cpu_only:
                        assert arrivals is not None
                        # -- latency -------------------------------------------------------------
                        print(f"[bench] alarms: latency, {MEASURED * reps} each", file=sys.stderr)
                        acks: list[tuple[str, str, float]] = []
                        cycle = 2 * (MEDIUM_DELAY + 2 * HOLD_S) + HIGH_DELAY + 3 * HOLD_S
                        with Poller(bridge_port) as poller:

                            async def latency() -> None:
                                await asyncio.gather(
                                    *(
                                        _repetitions(
                                            service,
                                            acker,
                                            bridge_port,
                                            p,
                                            i * cycle / (2 * MEASURED) + 0.137 * i,
                                            reps,
                                            acks,
                                        )
                                        for i, p in enumerate(ids[:MEASURED])
                                    )
                                )

                            service.run(latency(), timeout=reps * cycle * 2 + 60)
                            page.wait_for_timeout(1000)
                        recorded = page.evaluate("() => window.__alarms.drain()")
                        skew = page.evaluate("() => window.__alarms.clock()")
                        page.evaluate("() => window.__alarms.stop()")
                        logs = {
                            p: get_json(
                                f"http://127.0.0.1:{bridge_port}/api/alarms/log?patient={p}&limit=1000"
                            )[::-1]
                            for p in ids[:MEASURED]
                        }
                        raw, counts = _latencies(poller, arrivals, recorded, logs, acks)
                        out["latency_ms"] = {
                            event: {where: summary(v) for where, v in places.items()}
                            for event, places in raw.items()
                        }
                        out["raw_ms"] = {
                            event: {where: [round(x, 2) for x in v] for where, v in places.items()}
                            for event, places in raw.items()
                        }
                        out["events"] = counts
                        out["poll_request_ms"] = summary(poller.request_ms)
                        out["polls"] = len(poller.samples)
                        out["page_clock_skew_ms"] = round(skew[1] - skew[0], 2)
                        out["ack_errors"] = list(acker.errors)

                    page.evaluate("() => window.__alarms.stop()")
                    cdp.send("Network.disable")  # no instrumentation in the CPU windows
                    cdp.send("Performance.enable")

                    # -- CPU: baseline, then alarms raising and clearing ---------------------
                    page.wait_for_timeout(3000)  # the last repetitions' alarms are over
                    out.update(
                        _cpu_windows(running, page, cdp, profile, window_s, service, acker, ids)
                    )
                    out["page_errors"] = errors
                finally:
                    context.close()
            service.run(acker.close())
    finally:
        if running is not None:
            out["bridge_restarts"] = running.log().count("bridge restarted")
            leftovers = stop(running)
            if leftovers:
                out["leftover_pids"] = leftovers
        service.close()
    out["load_avg_at_end"] = [round(x, 2) for x in psutil.getloadavg()]
    return out


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv, "--only-cpu" in sys.argv), indent=1)[:5000])
