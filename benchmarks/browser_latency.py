"""(a) Browser end to end: reading ``time`` (stamped by the simulator, same machine clock) → what
headless Chromium shows, for hrdash and the two peers (``benchmarks/peers``) on the SAME bridge.

A MutationObserver (``page.add_init_script``) records, on the page's wall clock
``performance.timeOrigin + performance.now()``, when each reading first appears on
(1) the current card (``#hr-current-card``: ``#hr-current-bpm`` + ``#hr-current-time``, updated
together; the reading is identified by its HH:MM:SS.mmm time), (2) the AG Grid (a row whose
``seq`` cell holds its seq), (3) the chart (``plotly_afterplot`` on the graph div, plus a
requestAnimationFrame poll of ``gd.data[0].x`` as a fallback). Times are DOM commit times (the
next paint follows within one frame, ~16 ms).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from typing import Any

import psutil

from benchmarks.common import PY, CpuSampler, end, spawn, summary
from tests.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    app_command,
    free_port,
    get_json,
    start_hrdash,
    stop,
    wait_port,
)

WINDOW = 20
SETTLE_MS = 2000

INIT_JS = r"""
(() => {
  if (window.__bench) return;
  const W = () => performance.timeOrigin + performance.now();
  const R = window.__bench = {
    card: {}, cardFrame: {}, table: {}, chart: {}, rows20: null, card1: null, cardBpm: {},
  };
  const dayMs = 86400000;
  R.longtasks = [];
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        R.longtasks.push([performance.timeOrigin + e.startTime, e.duration]);
      }
    }).observe({type: "longtask", buffered: true});
  } catch (e) { /* not supported */ }
  function cardKey(text) {
    const m = /(\d{2}):(\d{2}):(\d{2})\.(\d{3})\s*$/.exec(text || "");
    if (!m) return null;
    const d = new Date();
    d.setHours(+m[1], +m[2], +m[3], +m[4]);
    let t = d.getTime();
    const now = Date.now();
    if (t - now > dayMs / 2) t -= dayMs; else if (now - t > dayMs / 2) t += dayMs;
    return t;
  }
  function xKey(x) {
    if (typeof x === "number") return x;
    if (typeof x !== "string") return null;
    const t = Date.parse(x.replace(" ", "T"));
    return isFinite(t) ? t : null;
  }
  function onCard() {
    const t = W();
    const el = document.getElementById("hr-current-time");
    const k = el && cardKey(el.textContent);
    if (k !== null && k !== undefined && !(k in R.card)) {
      R.card[k] = t;
      if (R.card1 === null) R.card1 = t;
      const b = document.getElementById("hr-current-bpm");
      R.cardBpm[k] = b ? b.textContent.trim() : null;
      // The start of the next frame after the commit: later if the main thread stays busy
      // (e.g. the table and chart rendering in the same task), so it bounds the paint better.
      requestAnimationFrame(() => { R.cardFrame[k] = W(); });
    }
  }
  function onTable() {
    const t = W();
    const rows = document.querySelectorAll("#hr-table .ag-center-cols-container .ag-row");
    let full = 0;
    rows.forEach((row) => {
      const cell = row.querySelector('[col-id="seq"]');
      const seq = cell ? Number(cell.textContent) : NaN;
      if (seq > 0) {
        full += 1;
        if (!(seq in R.table)) R.table[seq] = t;
      }
    });
    if (full >= 20 && R.rows20 === null) R.rows20 = t;
  }
  function onPlot() {
    const gd = document.querySelector("#hr-chart .js-plotly-plot");
    const trace = gd && gd.data && gd.data[0];
    if (!trace || !trace.x || !trace.x.length) return;
    const last = xKey(trace.x[trace.x.length - 1]);
    if (last === null || last in R.chart) return;
    const t = W();
    for (const x of trace.x) {
      const k = xKey(x);
      if (k !== null && !(k in R.chart)) R.chart[k] = t;
    }
  }
  const opts = {childList: true, subtree: true, characterData: true};
  const cardObs = new MutationObserver(onCard);
  const tableObs = new MutationObserver(onTable);
  let cardEl = null, tableEl = null, gdEl = null;
  function frame() {
    const card = document.getElementById("hr-current-card");
    if (card && card !== cardEl) {
      cardObs.disconnect(); cardObs.observe(card, opts); cardEl = card; onCard();
    }
    const table = document.getElementById("hr-table");
    if (table && table !== tableEl) {
      tableObs.disconnect(); tableObs.observe(table, opts); tableEl = table; onTable();
    }
    const gd = document.querySelector("#hr-chart .js-plotly-plot");
    if (gd && gd !== gdEl && typeof gd.on === "function") {
      gd.on("plotly_afterplot", onPlot); gdEl = gd;
    }
    onPlot();
    requestAnimationFrame(frame);
  }
  requestAnimationFrame(frame);
})();
"""

WAIT_ROWS20 = "() => window.__bench && window.__bench.rows20 !== null"
WAIT_CARD = "() => window.__bench && window.__bench.card1 !== null"


def _chromium_pids(profile: str) -> list[int]:
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            cmd = proc.info["cmdline"] or []
            if any(profile in part for part in cmd):
                out.append(proc.pid)
    return out


def _latencies(
    bench: dict[str, Any], readings: list[dict[str, Any]]
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Per display: first-seen wall time - reading time (ms), over ``readings``."""
    out: dict[str, list[float]] = {"card": [], "card_frame": [], "table": [], "chart": []}
    card_bpm_mismatch = 0
    for r in readings:
        t, seq = r["time"], r["seq"]
        if str(t) in bench["cardFrame"]:
            out["card_frame"].append(bench["cardFrame"][str(t)] - t)
        if str(t) in bench["card"]:
            out["card"].append(bench["card"][str(t)] - t)
            if bench["cardBpm"].get(str(t)) != str(r["bpm"]):
                card_bpm_mismatch += 1
        if str(seq) in bench["table"]:
            out["table"].append(bench["table"][str(seq)] - t)
        if str(t) in bench["chart"]:
            out["chart"].append(bench["chart"][str(t)] - t)
    return out, {"card_bpm_mismatch": card_bpm_mismatch}


def measure_app(
    context: Any,
    name: str,
    url: str,
    server_pid: int,
    bridge_pid: Any,
    bridge_port: int,
    profile: str,
    window_s: float,
    loads: int,
    has_table: bool = True,
) -> dict[str, Any]:
    """Latency window on one page, then ``loads`` page loads timed to 20 rows (and to the first
    reading on the card).

    ``bridge_pid()`` is looked up at the start of the window: the bridge may have been restarted
    (see the README: a viewer closing its socket can kill it with SIGPIPE)."""
    result: dict[str, Any] = {"name": name, "url": url}
    page = context.new_page()
    dash_requests = [0]

    def on_request(request: Any) -> None:
        if "_dash-update-component" in request.url:
            dash_requests[0] += 1

    page.on("request", on_request)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)[:300]))
    ready = WAIT_ROWS20 if has_table else WAIT_CARD
    page.goto(url)
    page.wait_for_function(ready, timeout=30_000)
    page.wait_for_timeout(SETTLE_MS)  # after-load work (GC, compile) is not steady state
    server = CpuSampler([server_pid])
    run_before = get_json(f"http://127.0.0.1:{bridge_port}/healthz")["run"]
    bridge = CpuSampler([bridge_pid()])
    browser = CpuSampler(_chromium_pids(profile))
    dash_requests[0] = 0
    for sampler in (server, bridge, browser):
        sampler.start()
    t_start = time.time() * 1000
    deadline = time.monotonic() + window_s
    while time.monotonic() < deadline:
        page.wait_for_timeout(min(1000, max(1, (deadline - time.monotonic()) * 1000)))
        for sampler in (server, bridge, browser):
            sampler.sample()
    t_end = time.time() * 1000
    requests = dash_requests[0]
    result["server"] = server.stop()
    result["bridge"] = bridge.stop()
    result["browser"] = browser.stop()
    page.wait_for_timeout(1000)  # let late readings land before reading the record
    bench = page.evaluate("() => window.__bench")
    heap = page.evaluate("() => performance.memory ? performance.memory.usedJSHeapSize : null")
    page.close()
    body = get_json(f"http://127.0.0.1:{bridge_port}/readings")
    result["bridge_restarted_in_window"] = body["run"] != run_before
    all_readings = body["readings"]
    readings = [r for r in all_readings if t_start <= r["time"] <= t_end]
    lat, checks = _latencies(bench, readings)
    window = (t_end - t_start) / 1000
    result.update(
        readings=len(readings),
        window_s=round(window, 2),
        latency_ms={k: summary(v) for k, v in lat.items()},
        coverage={k: len(v) / len(readings) if readings else None for k, v in lat.items()},
        raw_ms={k: [round(x, 2) for x in v] for k, v in lat.items()},
        dash_requests=requests,
        dash_requests_per_min=requests / window * 60 if window > 0 else None,
        js_heap_mb=heap / 2**20 if heap else None,
        page_errors=errors,
        long_tasks=[
            [round(t - t_start), round(d)] for t, d in bench.get("longtasks", []) if t >= t_start
        ],
        **checks,
    )
    times: list[float] = []
    card_times: list[float] = []
    for _ in range(loads):
        p = context.new_page()
        t0 = time.time() * 1000
        try:
            p.goto(url, wait_until="commit")
            p.wait_for_function(ready, timeout=20_000)
            p.wait_for_function(WAIT_CARD, timeout=20_000)
            marks = p.evaluate("() => [window.__bench.rows20, window.__bench.card1]")
            if has_table:
                times.append(marks[0] - t0)
            card_times.append(marks[1] - t0)
        except Exception as exc:
            result.setdefault("load_errors", []).append(str(exc)[:200])
        finally:
            p.close()
    result["load_to_20_rows_ms"] = {"runs": [round(t, 1) for t in times], **summary(times)}
    result["load_to_card_ms"] = {"runs": [round(t, 1) for t in card_times], **summary(card_times)}
    return result


APPS = ("floor", "hrdash", "hrdash_before", "interval_peer", "server_callback_peer")
# The page code hrdash is compared with as "hrdash (before)": assets/hrdash.js before the direct
# card write (the last commit of the previous page code).
BEFORE_REV = "db631b2"
INTERVAL_MS = (250,)


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One app's rounds as one result: samples pooled, CPU weighted by time, loads of the last."""
    out = dict(parts[-1])
    raw = {k: [x for p in parts for x in p["raw_ms"][k]] for k in parts[0]["raw_ms"]}
    readings = sum(p["readings"] for p in parts)
    window = sum(p["window_s"] for p in parts)
    out.update(
        rounds=len(parts),
        readings=readings,
        window_s=round(window, 2),
        raw_ms=raw,
        latency_ms={k: summary(v) for k, v in raw.items()},
        coverage={k: len(v) / readings if readings else None for k, v in raw.items()},
        dash_requests=sum(p["dash_requests"] for p in parts),
        page_errors=[e for p in parts for e in p["page_errors"]],
        long_tasks=[[i, *t] for i, p in enumerate(parts) for t in p["long_tasks"]],
        card_bpm_mismatch=sum(p["card_bpm_mismatch"] for p in parts),
        bridge_restarted_in_window=any(p["bridge_restarted_in_window"] for p in parts),
    )
    out["dash_requests_per_min"] = out["dash_requests"] / window * 60 if window else None
    for key in ("server", "bridge", "browser"):
        secs = [p[key]["seconds"] for p in parts]
        cpus = [p[key]["cpu_percent"] or 0.0 for p in parts]
        out[key] = {
            "seconds": round(sum(secs), 2),
            "cpu_percent": sum(c * t for c, t in zip(cpus, secs, strict=True)) / sum(secs)
            if sum(secs)
            else None,
            "rss_mean_mb": parts[-1][key]["rss_mean_mb"],
            "rss_max_mb": max((p[key]["rss_max_mb"] or 0.0) for p in parts),
        }
    return out


def _peer_argv(app: str, port: int, bridge_ws: str, before_rev: str, interval: int) -> list[str]:
    module = {"hrdash_before": "hrdash_rev"}.get(app, app)
    argv = [PY, "-m", f"benchmarks.peers.{module}", "--port", str(port), "--bridge", bridge_ws]
    if app == "hrdash_before":
        argv += ["--js" if os.path.isfile(before_rev) else "--rev", before_rev]
    if app == "interval_peer":
        argv += ["--interval-ms", str(interval)]
    return argv


def run(
    quick: bool,
    period: float = 0.5,
    apps: tuple[str, ...] = APPS,
    before_rev: str = BEFORE_REV,
    interval_ms: tuple[int, ...] = INTERVAL_MS,
    rounds: int | None = None,
) -> dict[str, Any]:
    """Every app in ``apps``, one after the other, in one browser, on hrdash's bridge, in
    ``rounds`` rounds (app A, B, C, A, B, C, ...: a noisy machine's slow spells spread over all
    apps instead of hitting one), the window split evenly; samples are pooled per app and page
    loads are timed in the last round. An interval peer is measured once per period in
    ``interval_ms`` (named ``interval_peer`` when there is one period, ``interval_peer_<ms>ms``
    otherwise)."""
    from playwright.sync_api import sync_playwright

    # Per app, over all rounds: >= 120 readings in full mode (60 s at 2 Hz), >= 32 in quick.
    window_s = max(16.0, 32 * period) if quick else max(32.0, 120 * period)
    if rounds is None:
        rounds = 2 if quick else 3
    loads = 3 if quick else 5
    env = {
        "HRDASH_SIMULATOR_PERIOD": str(period),
        # The other pages live on other origins and connect to the same bridge.
        "HRDASH_ALLOWED_ORIGINS": "*",
        "HRDASH_LOG_LEVEL": "warning",
    }
    out: dict[str, Any] = {
        "period_s": period,
        "window_s": window_s,
        "loads": loads,
        "before_rev": before_rev,
        "interval_ms": list(interval_ms),
        "rounds": rounds,
        "apps": {},
    }
    running = start_hrdash(app_command(), env)
    peers: list[Any] = []
    try:
        running.wait_readings(WINDOW + 5, timeout=30)

        def bridge_pid() -> int:
            return running.child("bridge").pid

        bridge_ws = f"ws://127.0.0.1:{running.bridge_port}/ws"
        plan: list[tuple[str, str, int]] = []
        for app in apps:
            if app == "interval_peer":
                for ms in interval_ms:
                    name = app if len(interval_ms) == 1 else f"{app}_{ms}ms"
                    plan.append((name, app, ms))
            else:
                plan.append((app, app, 0))
        with tempfile.TemporaryDirectory(prefix="hrdash-bench-") as profile, sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 900},
            )
            try:
                context.add_init_script(INIT_JS)
                parts: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in plan}
                for round_no in range(rounds):
                    last = round_no == rounds - 1
                    for name, app, ms in plan:
                        print(
                            f"[bench] browser: {name} (round {round_no + 1}/{rounds})",
                            file=sys.stderr,
                            flush=True,
                        )
                        if app == "hrdash":
                            url, pid, child = running.url, running.proc.pid, None
                        else:
                            port = free_port()
                            child = spawn(name, _peer_argv(app, port, bridge_ws, before_rev, ms))
                            peers.append(child)
                            wait_port(port, 30, child.proc)
                            url, pid = f"http://127.0.0.1:{port}/", child.proc.pid
                        parts[name].append(
                            measure_app(
                                context,
                                name,
                                url,
                                pid,
                                bridge_pid,
                                running.bridge_port,
                                profile,
                                window_s / rounds,
                                loads if last else 0,
                                has_table=app != "floor",
                            )
                        )
                        end(child)
                for name, app, ms in plan:
                    out["apps"][name] = _merge(parts[name])
                    out["apps"][name]["kind"] = app
                    if ms:
                        out["apps"][name]["interval_ms"] = ms
            finally:
                context.close()
    finally:
        for child in peers:
            end(child)
        log = running.log()
        out["bridge_restarts"] = log.count("bridge restarted")
        out["bridge_exit_lines"] = [ln for ln in log.splitlines() if "bridge exited" in ln]
        leftovers = stop(running)
        if leftovers:
            out["leftover_pids"] = leftovers
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run("--quick" in sys.argv), indent=1)[:5000])
