"""(e) The monitoring station: 64 simulated patients at the real 2 Hz.

*page*: ``python app.py`` (``tests/support.start_hrdash``) with ``HRDASH_SIMULATOR_PATIENTS=64``
and the simulator at 0.5 s; one station page ``/`` in headless Chromium at 1920x1080. A
MutationObserver (``page.add_init_script``) notes, on the page's wall clock
``performance.timeOrigin + performance.now()``, when each reading first appears on its tile: the
tile is the element with ``data-patient=ID``, the reading is named by the tile's ``data-time``
(the shown reading's ``time``, Unix ms, written by assets/station.js together with the bpm in
``.hr-tile-bpm``; the bpm shown is checked against the reading). Latency = that time - the
reading's ``time`` (the simulator stamps it with this machine's clock); the next-animation-frame
variant as in ``browser_latency.py``. The readings sent are what the bridge holds for each
patient (``GET /readings?patient=ID``) over the window. Every 5 s: the JS heap and DOM nodes (CDP
``Performance.getMetrics``), the page's renderer CPU; the heap is also read after a forced GC
(``HeapProfiler.collectGarbage``) at the start and the end of the window. Dash requests are the
``_dash-update-component`` requests the page makes during the window. The page's part of the
latency is split at the page's WebSocket (CDP ``Network`` frames) and at the start of each
``on_station_message`` call. Then the monitor of one
patient (``/patient/bed-01``) on the same 64-patient app, measured as ``browser_latency`` does.

*bridge*: ``benchmarks/station_bridge.py``'s measurement: ``hrdash simulate`` and ``hrdash
bridge`` with 64 patients, alone, then with 100 station viewers on ``/ws?station=1`` reading every
frame: the bridge's CPU % of one core and RSS, the station frame size, frames/s per viewer, and
reading → station frame at the viewer that parses every frame.

*monitor*: the browser section's floor and hrdash columns (one patient, as in the earlier runs),
so that the monitor's figures sit in the same table as the station's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import time
from typing import Any

import psutil

from benchmarks.common import CpuSampler, cpu_seconds, summary
from tests.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    app_command,
    get_json,
    start_hrdash,
    stop,
)

PATIENTS = 64
PERIOD = 0.5  # the real 2 Hz
WIDTH, HEIGHT = 1920, 1080  # the station screen
VIEWERS = 100
SAMPLE_EVERY = 5.0
SETTLE_MS = 3000
# The tile attribute naming the reading it shows (its ``time``, Unix ms), next to the bpm.
TILE_TIME_ATTR = "data-time"
MONITOR_PATIENT = "bed-01"
# The monitor's card in the last full browser run before the station (README, Performance):
# reading → card p50 / p99 (ms) in the DOM and on the next frame, at 2 Hz.
MONITOR_BEFORE = {"card": "7 / 12", "card_frame": "11 / 20"}

INIT_JS = r"""
(() => {
  if (window.__station) return;
  const ATTR = "__ATTR__";
  const W = () => performance.timeOrigin + performance.now();
  // Only what arrived since the last drain is kept, so that the record does not grow the heap
  // it measures; per tile only the last reading time seen is remembered.
  const S = window.__station = {seen: [], frames: [], longtasks: [], first: null, tiles: 0};
  const last = new Map();
  S.drain = () => {
    const out = {seen: S.seen, frames: S.frames, longtasks: S.longtasks};
    S.seen = []; S.frames = []; S.longtasks = [];
    return out;
  };
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        S.longtasks.push([performance.timeOrigin + e.startTime, e.duration]);
      }
    }).observe({type: "longtask", buffered: true});
  } catch (e) { /* not supported */ }
  function look(tile, t, fresh) {
    const id = tile.getAttribute("data-patient");
    const time = Number(tile.getAttribute(ATTR));
    if (!id || !(time > 0) || last.get(id) === time) return;
    last.set(id, time);
    const b = tile.querySelector(".hr-tile-bpm");
    S.seen.push([id, time, t, b ? b.textContent.trim() : null]);
    fresh.push([id, time]);
  }
  function scan(records) {
    const t = W();
    const fresh = [];
    const tiles = new Set();
    let all = !records;
    for (const r of records || []) {
      const node = r.target.nodeType === 1 ? r.target : r.target.parentElement;
      const tile = node && node.closest("[data-patient]");
      if (tile) tiles.add(tile); else all = true;
    }
    if (all) {
      const found = document.querySelectorAll("[data-patient]");
      S.tiles = found.length;
      found.forEach((tile) => look(tile, t, fresh));
    } else {
      tiles.forEach((tile) => look(tile, t, fresh));
    }
    if (fresh.length) {
      if (S.first === null) S.first = t;
      // The start of the next frame after the commit: a person cannot see the tile sooner.
      requestAnimationFrame(() => {
        const f = W();
        for (const [id, time] of fresh) S.frames.push([id, time, f]);
      });
    }
  }
  const obs = new MutationObserver(scan);
  function attach() {
    if (!document.documentElement) return setTimeout(attach, 10);
    obs.observe(document.documentElement, {
      subtree: true, childList: true, characterData: true,
      attributes: true, attributeFilter: [ATTR],
    });
    scan(null);
  }
  attach();
})();
""".replace("__ATTR__", TILE_TIME_ATTR)

# Once the page runs: time every call of the station's message handler (Dash looks the clientside
# function up by namespace and name at each call), to split the page's part of the latency into
# Dash (message taken → handler called) and the handler itself.
WRAP_HANDLER_JS = r"""
() => {
  const ns = window.dash_clientside && window.dash_clientside.hrdash;
  if (!ns || typeof ns.on_station_message !== "function" || ns.on_station_message.__bench) {
    return false;
  }
  const W = () => performance.timeOrigin + performance.now();
  const S = window.__station;
  S.calls = [];
  const drain = S.drain;
  S.drain = () => { const out = drain(); out.calls = S.calls; S.calls = []; return out; };
  const inner = ns.on_station_message;
  const wrapped = function () {
    const t0 = W();
    try { return inner.apply(this, arguments); } finally { S.calls.push([t0, W()]); }
  };
  wrapped.__bench = true;
  ns.on_station_message = wrapped;
  return true;
}
"""

ALL_TILES_SHOWN = (
    "(n) => { const t = document.querySelectorAll('[data-patient]');"
    " return t.length === n && [...t].every((e) => Number(e.getAttribute('__ATTR__')) > 0); }"
).replace("__ATTR__", TILE_TIME_ATTR)


def _renderers(profile: str) -> list[psutil.Process]:
    """The profile's renderer processes (not the browser UI's own WebUI renderer)."""
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            cmd = proc.info["cmdline"] or []
            if (
                any(profile in part for part in cmd)
                and "--type=renderer" in cmd
                and "--top-chrome-webui" not in cmd
            ):
                out.append(proc)
    return out


def _metrics(cdp: Any) -> dict[str, float]:
    return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}


def _heap_after_gc(cdp: Any) -> float:
    cdp.send("HeapProfiler.collectGarbage")
    return _metrics(cdp).get("JSHeapUsedSize", 0.0) / 2**20


class SocketArrivals:
    """When each reading's station frame was taken by the page: CDP ``Network`` events of the
    page's WebSocket (``webSocketFrameReceived``, stamped by Blink's WebSocket on the page's
    main thread as it takes the message, before the ``message`` event reaches dash-extensions,
    on the monotonic clock; turned into wall time with the ``wallTime`` - ``timestamp`` of the
    socket's handshake event). Parsed here, in Python: the page does no extra work."""

    def __init__(self, cdp: Any) -> None:
        self.offset: float | None = None
        self.first: dict[tuple[str, int], float] = {}
        self.frames = 0
        self.sizes: list[int] = []
        cdp.on("Network.webSocketWillSendHandshakeRequest", self._handshake)
        cdp.on("Network.webSocketFrameReceived", self._frame)
        cdp.send("Network.enable")

    def _handshake(self, event: dict[str, Any]) -> None:
        self.offset = float(event["wallTime"]) - float(event["timestamp"])

    def _frame(self, event: dict[str, Any]) -> None:
        if self.offset is None:
            return
        at = (float(event["timestamp"]) + self.offset) * 1000
        payload = event.get("response", {}).get("payloadData", "")
        try:
            frame = json.loads(payload)
        except ValueError:
            return
        if not isinstance(frame, dict) or frame.get("type") != "station":
            return
        self.frames += 1
        self.sizes.append(len(payload.encode()))
        for p in frame.get("patients") or []:
            last = p.get("last") if isinstance(p, dict) else None
            if isinstance(last, dict) and "time" in last:
                self.first.setdefault((str(p.get("id")), int(last["time"])), at)


def _first_frame_bytes(url: str) -> int:
    """The size of the first frame a new viewer of ``url`` gets (a synchronous client: this
    runs next to Playwright's event loop)."""
    from websockets.sync.client import connect

    with connect(url, max_size=None, open_timeout=30) as ws:
        message = ws.recv(timeout=30)
    return len(message.encode() if isinstance(message, str) else message)


def _call_before(calls: list[list[float]], at: float) -> list[float] | None:
    """The last handler call (``[start, end]``, sorted by start) that started at or before
    ``at``."""
    import bisect

    i = bisect.bisect_right(calls, [at, float("inf")])
    return calls[i - 1] if i else None


def _readings(bridge_port: int, patient: str) -> dict[str, Any]:
    return dict(get_json(f"http://127.0.0.1:{bridge_port}/readings?patient={patient}", 30))


def station_page(
    running: Any, context: Any, profile: str, window_s: float
) -> tuple[dict[str, Any], Any]:
    """The station page over ``window_s``; returns the result and the page (still open)."""
    page = context.pages[0] if context.pages else context.new_page()
    dash_requests = [0]

    def on_request(request: Any) -> None:
        if "_dash-update-component" in request.url:
            dash_requests[0] += 1

    page.on("request", on_request)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)[:300]))
    page.on("console", lambda m: errors.append(m.text[:300]) if m.type == "error" else None)
    cdp = context.new_cdp_session(page)
    cdp.send("Performance.enable")
    arrivals = SocketArrivals(cdp)
    t_open = time.time() * 1000
    page.goto(running.url)
    try:
        page.wait_for_function(ALL_TILES_SHOWN, arg=PATIENTS, timeout=60_000)
    except Exception:
        tiles, named = page.evaluate(
            "(a) => { const t = document.querySelectorAll('[data-patient]');"
            " return [t.length, [...t].filter((e) => e.hasAttribute(a)).length]; }",
            TILE_TIME_ATTR,
        )
        raise RuntimeError(
            f"after 60 s the page has {tiles} tiles (want {PATIENTS}), {named} with "
            f"{TILE_TIME_ATTR} (the shown reading's time, written by assets/station.js)"
        ) from None
    open_to_all_tiles = time.time() * 1000 - t_open
    wrapped = bool(page.evaluate(WRAP_HANDLER_JS))
    page.wait_for_timeout(SETTLE_MS)  # after-load work (GC, compile) is not steady state
    page.evaluate("() => window.__station.drain()")
    patients = [p["id"] for p in get_json(f"http://127.0.0.1:{running.bridge_port}/api/patients")]
    renderers = _renderers(profile)
    chromium = CpuSampler([p.pid for p in _chromium_family(profile)])
    bridge = CpuSampler([running.child("bridge").pid])
    server = CpuSampler([running.proc.pid])
    heap_start_gc = _heap_after_gc(cdp)
    runs_before = {p: _readings(running.bridge_port, p)["run"] for p in patients[:1]}
    seen: list[list[Any]] = []
    calls: list[list[float]] = []
    frames: list[list[Any]] = []
    longtasks: list[list[float]] = []
    samples: list[dict[str, Any]] = []
    cpu0 = {p.pid: cpu_seconds(p) for p in renderers}
    prev_cpu, prev_t = dict(cpu0), time.monotonic()
    for sampler in (chromium, bridge, server):
        sampler.start()
    dash_requests[0] = 0
    t_start = time.time() * 1000
    m0 = time.monotonic()
    deadline = m0 + window_s
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        page.wait_for_timeout(min(SAMPLE_EVERY, deadline - now) * 1000)
        got = page.evaluate("() => window.__station.drain()")
        seen += got["seen"]
        calls += got.get("calls", [])
        frames += got["frames"]
        longtasks += got["longtasks"]
        metrics = _metrics(cdp)
        now = time.monotonic()
        cpu = {p.pid: cpu_seconds(p) for p in renderers}
        dt = now - prev_t
        samples.append(
            {
                "t": round(now - m0, 1),
                "js_heap_mb": metrics.get("JSHeapUsedSize", 0.0) / 2**20,
                "js_heap_total_mb": metrics.get("JSHeapTotalSize", 0.0) / 2**20,
                "dom_nodes": metrics.get("Nodes"),
                "listeners": metrics.get("JSEventListeners"),
                "renderer_cpu_percent": {
                    str(pid): round(100 * (cpu[pid] - prev_cpu.get(pid, 0.0)) / dt, 2)
                    for pid in cpu
                }
                if dt > 0
                else {},
            }
        )
        prev_cpu, prev_t = cpu, now
        for sampler in (chromium, bridge, server):
            sampler.sample()
    t_end = time.time() * 1000
    wall = time.monotonic() - m0
    requests = dash_requests[0]
    cpu1 = {p.pid: cpu_seconds(p) for p in renderers}
    result: dict[str, Any] = {
        "chromium": chromium.stop(),
        "bridge": bridge.stop(),
        "server": server.stop(),
    }
    page.wait_for_timeout(1000)  # late readings of the window land
    got = page.evaluate("() => window.__station.drain()")
    seen += got["seen"]
    calls += got.get("calls", [])
    frames += got["frames"]
    longtasks += got["longtasks"]
    heap_end_gc = _heap_after_gc(cdp)
    station_url = f"ws://127.0.0.1:{running.bridge_port}/ws?station=1"
    snapshot_bytes = _first_frame_bytes(station_url)
    uptime_s = time.time() - psutil.Process(running.child("bridge").pid).create_time()
    by_renderer = {
        str(pid): 100 * (cpu1[pid] - cpu0.get(pid, 0.0)) / wall for pid in cpu1 if wall > 0
    }
    page_renderer = max(by_renderer, key=lambda k: by_renderer[k]) if by_renderer else None

    tile_at = {(r[0], int(r[1])): (r[2], r[3]) for r in seen}
    frame_at = {(r[0], int(r[1])): r[2] for r in frames}
    lat: list[float] = []
    lat_frame: list[float] = []
    to_socket: list[float] = []  # reading time → its station frame reached the browser
    socket_to_tile: list[float] = []  # that → the tile
    socket_to_handler: list[float] = []  # taken → on_station_message called (Dash)
    handler_to_tile: list[float] = []  # called → the tile (the handler, then the observer)
    call_starts = sorted(calls)
    per_patient: dict[str, dict[str, int]] = {}
    bpm_mismatch = 0
    missed: list[list[Any]] = []  # (patient, reading time, its frame reached the browser?)
    readings = 0
    restarted = False
    for pid in patients:
        body = _readings(running.bridge_port, pid)
        if pid in runs_before and body["run"] != runs_before[pid]:
            restarted = True
        mine = [r for r in body["readings"] if t_start <= r["time"] <= t_end]
        shown = 0
        for r in mine:
            key = (pid, int(r["time"]))
            if key not in tile_at:
                missed.append([pid, r["time"], key in arrivals.first])
            else:
                shown += 1
                at, bpm = tile_at[key]
                lat.append(at - r["time"])
                if key in arrivals.first:
                    socket_to_tile.append(at - arrivals.first[key])
                    call = _call_before(call_starts, at)
                    if call is not None and call[0] >= arrivals.first[key]:
                        socket_to_handler.append(call[0] - arrivals.first[key])
                        handler_to_tile.append(at - call[0])
                if bpm != str(r["bpm"]):
                    bpm_mismatch += 1
            if key in frame_at:
                lat_frame.append(frame_at[key] - r["time"])
            if key in arrivals.first:
                to_socket.append(arrivals.first[key] - r["time"])
        readings += len(mine)
        per_patient[pid] = {"readings": len(mine), "shown": shown}
    coverage = [v["shown"] / v["readings"] for v in per_patient.values() if v["readings"]]
    heaps = [s["js_heap_mb"] for s in samples]
    result.update(
        url=running.url,
        patients=len(patients),
        period_s=PERIOD,
        window_s=round((t_end - t_start) / 1000, 2),
        open_to_all_tiles_ms=round(open_to_all_tiles, 1),
        readings=readings,
        latency_ms={
            "tile": summary(lat),
            "tile_frame": summary(lat_frame),
            "to_page": summary(to_socket),
            "page_to_tile": summary(socket_to_tile),
            "page_to_handler": summary(socket_to_handler),
            "handler_to_tile": summary(handler_to_tile),
        },
        raw_ms={
            "tile": [round(x, 2) for x in lat],
            "tile_frame": [round(x, 2) for x in lat_frame],
            "to_page": [round(x, 2) for x in to_socket],
            "page_to_tile": [round(x, 2) for x in socket_to_tile],
            "page_to_handler": [round(x, 2) for x in socket_to_handler],
            "handler_to_tile": [round(x, 2) for x in handler_to_tile],
        },
        handler_wrapped=wrapped,
        handler_calls=len(calls),
        handler_ms=summary([b - a for a, b in calls]),
        socket_frames=arrivals.frames,
        snapshot_bytes=snapshot_bytes,
        snapshot_after_s=round(uptime_s),
        socket_frame_bytes=summary(arrivals.sizes),
        coverage=sum(v["shown"] for v in per_patient.values()) / readings if readings else None,
        coverage_min_patient=min(coverage) if coverage else None,
        per_patient=per_patient,
        missed=missed[:500],
        missed_count=len(missed),
        bpm_mismatch=bpm_mismatch,
        dash_requests=requests,
        dash_requests_per_min=requests / (t_end - t_start) * 60_000 if t_end > t_start else None,
        renderer_cpu_percent=by_renderer.get(page_renderer) if page_renderer else None,
        renderer_cpu_by_pid=by_renderer,
        js_heap_mb={
            "start_after_gc": heap_start_gc,
            "end_after_gc": heap_end_gc,
            "first": heaps[0] if heaps else None,
            "last": heaps[-1] if heaps else None,
            "min": min(heaps) if heaps else None,
            "max": max(heaps) if heaps else None,
            "mean": sum(heaps) / len(heaps) if heaps else None,
        },
        dom_nodes={
            "first": samples[0]["dom_nodes"] if samples else None,
            "last": samples[-1]["dom_nodes"] if samples else None,
        },
        samples=samples,
        long_tasks=[[round(t - t_start), round(d)] for t, d in longtasks if t >= t_start],
        page_errors=errors,
        bridge_restarted_in_window=restarted,
    )
    return result, page


def _chromium_family(profile: str) -> list[psutil.Process]:
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(profile in part for part in proc.info["cmdline"] or []):
                out.append(proc)
    return out


def page_section(quick: bool, window_s: float, monitor_s: float) -> dict[str, Any]:
    """The station page, then one patient's monitor, on one 64-patient ``python app.py``."""
    from playwright.sync_api import sync_playwright

    from benchmarks.browser_latency import INIT_JS as MONITOR_JS
    from benchmarks.browser_latency import measure_app

    env = {
        "HRDASH_SIMULATOR_PATIENTS": str(PATIENTS),
        "HRDASH_SIMULATOR_PERIOD": str(PERIOD),
        "HRDASH_LOG_LEVEL": "warning",
    }
    running = start_hrdash(app_command(), env)
    out: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 60
        while running.health()["last_seq"] < 10 and time.monotonic() < deadline:
            time.sleep(0.2)
        with (
            tempfile.TemporaryDirectory(prefix="hrdash-station-") as profile,
            sync_playwright() as p,
        ):
            context = p.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": WIDTH, "height": HEIGHT},
            )
            try:
                context.add_init_script(INIT_JS)
                print(f"[bench] station: page, {window_s:g} s", file=sys.stderr, flush=True)
                out["station"], page = station_page(running, context, profile, window_s)
                page.close()
                context.add_init_script(MONITOR_JS)
                print("[bench] station: monitor of one patient", file=sys.stderr, flush=True)
                out["monitor_in_ward"] = measure_app(
                    context,
                    "hrdash",
                    f"{running.url}patient/{MONITOR_PATIENT}",
                    running.proc.pid,
                    lambda: running.child("bridge").pid,
                    running.bridge_port,
                    profile,
                    monitor_s,
                    3 if quick else 5,
                )
            finally:
                context.close()
    finally:
        log = running.log()
        out["bridge_restarts"] = log.count("bridge restarted")
        leftovers = stop(running)
        if leftovers:
            out["leftover_pids"] = leftovers
    return out


# -- the bridge with 100 station viewers ---------------------------------------------------


def bridge_section(seconds: float, idle_seconds: float) -> dict[str, Any]:
    """``benchmarks/station_bridge.py``'s measurement: ``hrdash simulate`` + ``hrdash bridge``
    with 64 patients, alone for ``idle_seconds``, then with 100 station viewers."""
    from benchmarks import station_bridge

    return dict(
        asyncio.run(station_bridge.measure(PATIENTS, VIEWERS, seconds, idle_seconds, PERIOD))
    )


# -- the monitor's figures, as in the browser section ------------------------------------


def monitor_section(quick: bool) -> dict[str, Any]:
    """The browser section's floor and hrdash columns (one patient, 2 Hz)."""
    from benchmarks import browser_latency

    return browser_latency.run(quick, period=PERIOD, apps=("floor", "hrdash"))


def run(quick: bool, parts: tuple[str, ...] = ("page", "bridge", "monitor")) -> dict[str, Any]:
    window_s = 60.0 if quick else 300.0
    bridge_s = 20.0 if quick else 60.0
    bridge_idle_s = 10.0 if quick else 20.0
    monitor_s = 16.0 if quick else 32.0
    out: dict[str, Any] = {
        "patients": PATIENTS,
        "period_s": PERIOD,
        "window_s": window_s,
        "bridge_window_s": bridge_s,
        "viewers": VIEWERS,
    }
    for part in parts:
        print(f"[bench] station: {part}", file=sys.stderr, flush=True)
        try:
            if part == "page":
                out.update(page_section(quick, window_s, monitor_s))
            elif part == "bridge":
                out["bridge"] = bridge_section(bridge_s, bridge_idle_s)
            elif part == "monitor":
                out["monitor"] = monitor_section(quick)
        except Exception as exc:
            import traceback

            traceback.print_exc()
            out[f"{part}_error"] = f"{type(exc).__name__}: {exc}"
    return out


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=1)[:5000])
