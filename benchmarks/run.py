"""Run the hrdash benchmarks and print ONE markdown table.

    python benchmarks/run.py --quick          # < 2 minutes: browser, fan-out 100/1,000, ingest
    python benchmarks/run.py                  # ~12 minutes: + fan-out 5,000/10,000, soak
    python benchmarks/run.py --only fanout    # one section: browser|fanout|ingest|soak|station
    python benchmarks/run.py --only station   # 64 patients: station page, bridge, monitor
    python benchmarks/run.py --only history   # SQLite: ingest, live latency, 24 h queries
    python benchmarks/run.py --only alarms    # onset/end/ack → tile and /api/alarms; alarm CPU
    python benchmarks/run.py --only scaleout  # floor / one process / Redis + 2 edges, 20k viewers
    python benchmarks/run.py --only failover  # edge, ingest killed; Redis restarted, 2,000 viewers

Writes ``benchmarks/results/results.json`` (every number, raw samples included) and PNG plots in
``benchmarks/results/``. Numbers are measured and reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.browser_latency import APPS, BEFORE_REV
from benchmarks.common import RESULTS, ROOT, machine
from benchmarks.station import HEIGHT, MONITOR_BEFORE, WIDTH
from benchmarks.station import SAMPLE_EVERY as SAMPLE_EVERY_S

SECTIONS = (
    "browser",
    "fanout",
    "ingest",
    "soak",
    "station",
    "history",
    "alarms",
    "scaleout",
    "failover",
)
# Sections a plain run (no --only) leaves out: the station is its own ~11-minute run, the history
# seeds a 200 MB file, the alarms take 4 minutes of 64 patients, the scale-out opens 20,000
# viewers on three setups, the failover kills processes of a Redis setup.
OPT_IN = ("station", "history", "alarms", "scaleout", "failover")


def run_section(name: str, args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    if name == "browser":
        from benchmarks import browser_latency

        return browser_latency.run(
            quick,
            period=args.period,
            apps=tuple(args.apps.split(",")),
            before_rev=args.before_rev,
            interval_ms=tuple(int(x) for x in args.interval_ms.split(",")),
            rounds=args.rounds,
        )
    if name == "fanout":
        from benchmarks import fanout

        return fanout.run(quick)
    if name == "ingest":
        from benchmarks import ingest

        return ingest.run(quick)
    if name == "history":
        from benchmarks import history

        return history.run(
            quick,
            parts=tuple(args.history_parts.split(",")),
            keep=args.keep,
            cache=Path(args.history_cache) if args.history_cache else history.CACHE,
        )
    if name == "alarms":
        from benchmarks import alarms

        return alarms.run(quick, cpu_only=args.only_cpu, before=args.alarms_before)
    if name == "scaleout":
        from benchmarks import scaleout

        return scaleout.run(quick, setups=tuple(args.scaleout_setups.split(",")))
    if name == "failover":
        from benchmarks import failover

        return failover.run(quick)
    if name == "station":
        from benchmarks import station

        return station.run(quick, parts=tuple(args.station_parts.split(",")))
    from benchmarks import soak

    return soak.run(args.soak_seconds, period=args.soak_period)


# -- the table -----------------------------------------------------------------------------


def fmt(x: Any, digits: int = 0) -> str:
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    if abs(x) >= 10000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def ratio(peer: Any, ours: Any) -> str:
    if not isinstance(peer, (int, float)) or not isinstance(ours, (int, float)):
        return "—"
    if ours == 0:
        return "inf" if peer else "—"
    return f"{peer / ours:.2f}x"


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


LABELS = {
    "floor": "floor (no Dash)",
    "hrdash": "hrdash",
    "hrdash_before": "hrdash (before)",
    "server_callback_peer": "server-callback peer",
}


def _label(name: str, app: dict[str, Any]) -> str:
    if app.get("kind") == "interval_peer":
        return f"interval peer ({app.get('interval_ms')} ms)"
    return LABELS.get(name, name)


def browser_table(br: dict[str, Any]) -> str:
    """Browser section: one column per app, then hrdash - floor and peer / hrdash."""
    names = list(br["apps"])
    apps = [br["apps"][n] for n in names]
    ours = br["apps"].get("hrdash")
    floor = br["apps"].get("floor")
    peers = [n for n in names if n not in ("floor", "hrdash", "hrdash_before")]
    head = ["figure", *(_label(n, br["apps"][n]) for n in names), "hrdash - floor"]
    head += [f"{_label(n, br['apps'][n])} / hrdash" for n in peers]
    rows = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]

    def row(label: str, path: tuple[str, ...], digits: int = 0, compare: bool = True) -> None:
        values = [_get(a, *path) for a in apps]
        cells = [fmt(v, digits) for v in values]
        mine, base = _get(ours, *path), _get(floor, *path)
        diff = "—"
        if compare and isinstance(mine, (int, float)) and isinstance(base, (int, float)):
            diff = f"{mine - base:+.{digits}f}"
        cells.append(diff)
        for n in peers:
            cells.append(ratio(_get(br["apps"][n], *path), mine) if compare else "—")
        rows.append(f"| {label} | " + " | ".join(cells) + " |")

    hz = f"{1 / br['period_s']:g} Hz"
    for display, label in (
        ("card", "current card (DOM)"),
        ("card_frame", "current card (next frame)"),
        ("table", "table row"),
        ("chart", "chart point"),
    ):
        for q in ("p50", "p99"):
            row(f"reading → {label}, {q} (ms), {hz}", ("latency_ms", display, q))
    for display in ("card", "table", "chart"):
        values = [
            None if display != "card" and a.get("kind") == "floor" else _get(a, "coverage", display)
            for a in apps
        ]
        cells = [fmt(100 * v if v is not None else None) for v in values]
        rows.append(
            f"| readings that reached the {display} (%) | "
            + " | ".join(cells + ["—"] * (1 + len(peers)))
            + " |"
        )
    row(
        f"page open → first reading on the card, median of {br['loads']} (ms)",
        ("load_to_card_ms", "p50"),
    )
    row(f"page open → 20 rows, median of {br['loads']} (ms)", ("load_to_20_rows_ms", "p50"))
    row(f"Dash `_dash-update-component` requests / min / viewer, {hz}", ("dash_requests_per_min",))
    row("page server CPU % with 1 viewer (app process, no children)", ("server", "cpu_percent"), 2)
    row("Chromium CPU % (all its processes, 1 page)", ("browser", "cpu_percent"), 1)
    row("page JS heap (MB)", ("js_heap_mb",), 1)
    row(
        f"bridge with 1 viewer: CPU % over {br['window_s']:g} s (same bridge)",
        ("bridge", "cpu_percent"),
        2,
    )
    row("bridge with 1 viewer: RSS (MB)", ("bridge", "rss_max_mb"), 1, compare=False)
    exits = br.get("bridge_exit_lines") or []
    codes = sorted({ln.split("status ", 1)[-1].split(")")[0] for ln in exits})
    restarts = f"{br.get('bridge_restarts', 0)}" + (f" ({', '.join(codes)})" if codes else "")
    rows.append(f"\nbridge restarts during the section: {restarts}")
    return "\n".join(rows)


def _pair(d: Any, path: tuple[str, ...], keys: tuple[str, ...] = ("p50", "p99")) -> str:
    return " / ".join(fmt(_get(d, *path, k)) for k in keys)


def station_table(st: dict[str, Any]) -> str:
    """Station section: figure, goal, measured."""
    rows = ["| figure | goal | measured |", "|---|---|---:|"]

    def row(label: str, goal: str, value: str) -> None:
        rows.append(f"| {label} | {goal} | {value} |")

    n, hz = st["patients"], f"{1 / st['period_s']:g} Hz"
    page = st.get("station")
    if isinstance(page, dict):
        mins = f"{page['window_s'] / 60:.3g} min"
        row(
            f"reading → tile (DOM), p50 / p99 (ms), {n} patients at {hz}",
            "≤ 50 / 100",
            _pair(page, ("latency_ms", "tile")),
        )
        row(
            "reading → tile (next frame), p50 / p99 (ms)",
            "≤ 50 / 100",
            _pair(page, ("latency_ms", "tile_frame")),
        )
        row(
            "of which: reading → its frame taken by the page's main thread, p50 / p99 (ms)",
            "—",
            _pair(page, ("latency_ms", "to_page")),
        )
        row(
            "of which: that → tile (Dash + station.js), p50 / p99 (ms)",
            "—",
            _pair(page, ("latency_ms", "page_to_tile")),
        )
        if page.get("handler_wrapped"):
            row(
                "of which: taken → `on_station_message` called (Dash), p50 / p99 (ms)",
                "—",
                _pair(page, ("latency_ms", "page_to_handler")),
            )
            row(
                "`on_station_message`, per call, p50 / p99 (ms)",
                "—",
                _pair(page, ("handler_ms",)),
            )
        cov, worst = page.get("coverage"), page.get("coverage_min_patient")
        row(
            f"readings that reached their tile (%), all / worst patient ({mins})",
            "100",
            f"{fmt(100 * cov if cov is not None else None, 1)} / "
            f"{fmt(100 * worst if worst is not None else None, 1)} "
            f"(of {page.get('readings', 0):,})",
        )
        row("tiles whose bpm was not the reading's", "0", fmt(page.get("bpm_mismatch")))
        row(f"Dash requests while streaming ({mins})", "0", fmt(page.get("dash_requests")))
        row(
            "station frames the page took, per second; mean size (bytes)",
            "—",
            f"{fmt(page.get('socket_frames', 0) / max(page['window_s'], 1), 2)}; "
            f"{fmt(_get(page, 'socket_frame_bytes', 'mean'))}",
        )
        row(
            f"station snapshot (first frame), bytes, after {page.get('snapshot_after_s')} s",
            "—",
            fmt(page.get("snapshot_bytes")),
        )
        row(
            f"page open → all {n} tiles show a reading (ms)",
            "—",
            fmt(page.get("open_to_all_tiles_ms")),
        )
        row(
            f"page's renderer CPU % of one core, mean over {mins} (all Chromium processes)",
            "—",
            f"{fmt(page.get('renderer_cpu_percent'), 1)} "
            f"({fmt(_get(page, 'chromium', 'cpu_percent'), 1)})",
        )
        heap = page.get("js_heap_mb") or {}
        row(
            "page JS heap after a forced GC, start → end (MB)",
            "flat",
            f"{fmt(heap.get('start_after_gc'), 1)} → {fmt(heap.get('end_after_gc'), 1)}",
        )
        row(
            f"page JS heap, every {SAMPLE_EVERY_S:g} s: min-max, mean (MB)",
            "—",
            f"{fmt(heap.get('min'), 1)}-{fmt(heap.get('max'), 1)}, {fmt(heap.get('mean'), 1)}",
        )
        row(
            "page DOM nodes, first → last sample",
            "—",
            f"{fmt(_get(page, 'dom_nodes', 'first'))} → {fmt(_get(page, 'dom_nodes', 'last'))}",
        )
        row(
            "bridge with 1 station page: CPU % of one core; RSS (MB)",
            "—",
            f"{fmt(_get(page, 'bridge', 'cpu_percent'), 1)}; "
            f"{fmt(_get(page, 'bridge', 'rss_max_mb'), 1)}",
        )
    elif "page_error" in st:
        row("station page", "—", f"ERROR {st['page_error'][:120]}")
    br = st.get("bridge")
    if isinstance(br, dict) and "station" in br:
        secs = _get(br, "station", "seconds") or 0.0
        tag = f"{n} patients + {br['viewers']} station viewers, {secs:.0f} s"
        row(
            f"bridge, {tag}: CPU % of one core (alone, before the viewers)",
            "< 15",
            f"{fmt(_get(br, 'station', 'cpu_percent_of_a_core'), 1)} "
            f"({fmt(_get(br, 'idle', 'cpu_percent_of_a_core'), 1)})",
        )
        row(
            "bridge: RSS, max (MB) (alone)",
            "< 100",
            f"{fmt(_get(br, 'station', 'rss_mb_max'), 1)} "
            f"({fmt(_get(br, 'idle', 'rss_mb_max'), 1)})",
        )
        kb = br.get("station_frame_kb_mean")
        row(
            "station frame, mean (bytes)",
            "—",
            fmt(kb * 1024 if isinstance(kb, (int, float)) else None),
        )
        low, high = br.get("frames_per_viewer_min_max") or [None, None]
        row(
            "station frames/s per viewer (frames per viewer, min-max)",
            "—",
            f"{fmt(br.get('station_frames_per_s'), 2)} ({fmt(low)}-{fmt(high)})",
        )
        row(
            "reading → station frame at the parsing viewer, p50 / p99 / max (ms)",
            "—",
            _pair(br, ("probe_age_ms",), ("p50", "p99", "max")),
        )
        row("station viewers dropped as slow", "0", fmt(br.get("viewers_dropped_slow")))
    elif "bridge_error" in st:
        row("bridge", "—", f"ERROR {st['bridge_error'][:120]}")
    mon = st.get("monitor")
    if isinstance(mon, dict) and "apps" in mon:
        ours, floor = _get(mon, "apps", "hrdash"), _get(mon, "apps", "floor")
        for display, label, goal in (
            ("card", "DOM", MONITOR_BEFORE["card"]),
            ("card_frame", "next frame", MONITOR_BEFORE["card_frame"]),
        ):
            row(
                f"monitor (1 patient): reading → card ({label}), p50 / p99 (ms); floor",
                f"not worse than {goal}",
                f"{_pair(ours, ('latency_ms', display))}; {_pair(floor, ('latency_ms', display))}",
            )
        row(
            "monitor (1 patient): Dash requests / min",
            "0",
            fmt(_get(ours, "dash_requests_per_min")),
        )
    elif "monitor_error" in st:
        row("monitor", "—", f"ERROR {st['monitor_error'][:120]}")
    ward = st.get("monitor_in_ward")
    if isinstance(ward, dict) and "latency_ms" in ward:
        for display, label in (("card", "DOM"), ("card_frame", "next frame")):
            row(
                f"monitor of bed-01, {n} patients: reading → card ({label}), p50 / p99 (ms)",
                "—",
                _pair(ward, ("latency_ms", display)),
            )
        row(
            f"monitor of bed-01, {n} patients: table row p50 / p99 (ms); Dash requests / min",
            "—",
            f"{_pair(ward, ('latency_ms', 'table'))}; {fmt(ward.get('dash_requests_per_min'))}",
        )
    return "\n".join(rows)


def summary_of(values: Any) -> dict[str, Any] | None:
    from benchmarks.common import summary

    return summary(values) if values else None


def history_table(h: dict[str, Any]) -> str:
    """History section: figure, goal, measured."""
    rows = ["| figure | goal | measured |", "|---|---|---:|"]

    def row(label: str, goal: str, value: str) -> None:
        rows.append(f"| {label} | {goal} | {value} |")

    def error(part: str) -> None:
        row(part, "—", f"ERROR {fmt(_get(h, part, 'error'))[:160]}")

    ing = h.get("ingest")
    if isinstance(ing, dict) and "sustained" in ing:
        su, rr = ing["sustained"], ing["real_rate"]
        ce = ing.get("ceiling") or {}
        for d, what in (
            (su, f"max_pending {fmt(su.get('max_pending'))} (default)"),
            (ce, f"max_pending {fmt(ce.get('max_pending'))}"),
        ):
            if "readings_per_s" not in d:
                continue
            row(
                f"ingest: readings/s sustained, Recorder, 64 patients, one CPU, {what} "
                f"({d['seconds']:.0f} s, {d['commits']} commits; dropped)",
                "≥ 50,000",
                f"{fmt(d['readings_per_s'])} ({fmt(d.get('dropped'))})",
            )
            row(
                "… CPU % of that core: process; recorder thread; readings per CPU-second of "
                "the recorder thread",
                "—",
                f"{fmt(d['process_cpu_percent'], 0)}; {fmt(d['recorder_threads_cpu_percent'], 0)}; "
                f"{fmt(d.get('readings_per_recorder_cpu_s'))}",
            )
        row(
            f"ingest at the real rate (64 x 2 Hz, {rr['seconds']:.0f} s): CPU % of one core, "
            "recorder threads (process - feeder alone)",
            "—",
            f"{fmt(rr['other_threads_cpu_percent'], 2)} ({fmt(rr['recorder_cpu_percent'], 2)})",
        )
    elif ing is not None:
        error("ingest")
    lat = h.get("latency")
    if isinstance(lat, dict) and "pooled" in lat:
        f, m = _get(lat, "pooled", "file"), _get(lat, "pooled", ":memory:")
        tag = f"{lat['rounds']} x {lat['seconds_per_run']:g} s each, interleaved"
        wired = "" if lat.get("recorder_wired") else " (NO RECORDER IN THIS BRIDGE)"

        def p1(d: Any) -> str:
            return " / ".join(fmt(_get(d, "patient_viewers_ms", k), 1) for k in ("p50", "p99"))

        n_each = _get(f, "patient_viewers_ms", "n")
        row(
            f"reading → patient viewer ({lat['patient_viewers']} viewers), p50 / p99 (ms), "
            f"HRDASH_DB file vs :memory: ({tag}; {fmt(n_each)} readings each){wired}",
            "no measurable difference",
            f"{p1(f)} vs {p1(m)}",
        )
        row(
            "readings later than 10 ms at the patient viewers (%), file vs :memory:",
            "—",
            f"{fmt(f.get('patient_viewers_over_10ms_pct'), 2)} vs "
            f"{fmt(m.get('patient_viewers_over_10ms_pct'), 2)}",
        )
        per_run = {
            which: " ".join(p1(r).replace(" ", "") for r in lat["runs"] if r["db"] == which)
            for which in ("file", ":memory:")
        }
        row(
            "the same per run, p50/p99 (ms): file; :memory:",
            "—",
            f"{per_run['file']}; {per_run[':memory:']}",
        )
        row(
            "reading → station viewer, p50 / p99 per run (ms), file; :memory:",
            "—",
            " ".join(f"{fmt(a)}/{fmt(b)}" for a, b in f["station_viewer_p50_p99_per_run"])
            + "; "
            + " ".join(f"{fmt(a)}/{fmt(b)}" for a, b in m["station_viewer_p50_p99_per_run"]),
        )
        row(
            "readings the bridge's recorder wrote in each file run; dropped",
            "—; 0",
            f"{', '.join(fmt(x) for x in lat.get('recorder_written_per_file_run') or [])}; "
            f"{', '.join(fmt(x) for x in lat.get('recorder_dropped_per_file_run') or [])}",
        )
        row(
            "bridge CPU % of one core, file vs :memory:",
            "—",
            f"{fmt(f['bridge_cpu_percent_mean'], 1)} vs {fmt(m['bridge_cpu_percent_mean'], 1)}",
        )
    elif lat is not None:
        error("latency")
    q = h.get("queries")
    if isinstance(q, dict) and "seed" in q:
        sd = q["seed"]
        row(
            f"seeded history: {sd['readings']:,} readings, 64 patients x 24 h at 2 Hz; "
            "seconds to seed",
            "< 120",
            fmt(sd["seconds"], 1) + (" (seeded before, reused)" if sd.get("reused") else ""),
        )
        row(
            "database size: file (MB); per patient-day (MB)",
            "—",
            f"{fmt(q['file_mb'], 0)}; {fmt(q['mb_per_patient_day'], 2)}",
        )
        tables = q.get("table_mb") or {}
        if "readings" in tables and "minutes" in tables:
            row(
                "of which readings; minutes (MB); bytes per stored reading",
                "—",
                f"{fmt(tables['readings'], 1)}; {fmt(tables['minutes'], 1)}; "
                f"{fmt(tables['readings'] * 2**20 / sd['readings'], 1)}",
            )
        api, http = q.get("api") or {}, q.get("http") or {}

        def p1(d: Any, key: str) -> str:
            return " / ".join(fmt(_get(d, key, k), 1) for k in ("p50", "p99"))

        n_q = _get(http, "1h", "n") or _get(api, "1h", "n")
        for label, _hours in (("1h", 1), ("8h", 8), ("24h", 24)):
            row(
                f"trend {label}, one patient ({fmt(_get(api, 'shapes', label, 'buckets'))} "
                f"buckets): history.trend; HTTP, p50 / p99 of {fmt(n_q)} (ms)",
                "p99 ≤ 100",
                f"{p1(api, label)}; {p1(http, label)}",
            )
        gcs = api.get("calls_with_a_full_gc_ms") or {}
        if gcs:
            row(
                "history.trend calls during which Python ran a full GC, 1h / 8h / 24h: "
                "count (their median ms)",
                "—",
                " / ".join(
                    f"{len(gcs.get(k) or [])} ({fmt(_get(summary_of(gcs.get(k)), 'p50'), 1)})"
                    for k in ("1h", "8h", "24h")
                ),
            )
        row(
            "zoom 10 min with raw=1 (1,200 readings): history.trend; HTTP, p50 / p99 (ms)",
            "—",
            f"{p1(api, 'zoom_10min_raw')}; {p1(http, 'zoom_10min_raw')}",
        )
        row(
            "readings_csv, 24 h of one patient, in process, once (ms)",
            "—",
            fmt(api.get("readings_csv_24h_ms")),
        )
        for name, goal in (("readings.csv", "≤ 2,000"), ("trend.csv", "—")):
            e = http.get(name)
            if isinstance(e, dict):
                row(
                    f"{name}, 24 h of one patient over HTTP: median / max of "
                    f"{len(e['runs_ms'])} (ms); rows, MB",
                    goal,
                    f"{fmt(_get(e, 'ms', 'p50'))} / {fmt(_get(e, 'ms', 'max'))}; "
                    f"{e['rows']:,}, {e['bytes'] / 2**20:.1f}",
                )
        if "error" in api:
            row("history.trend", "—", f"ERROR {fmt(api['error'])[:160]}")
        if "error" in http:
            row("HTTP", "—", f"ERROR {fmt(http['error'])[:160]}")
    elif q is not None:
        error("queries")
    loads = [h.get(k) or [None] for k in ("load_avg_at_start", "load_avg_at_end")]
    rows.append(
        f"\nload average (1 min) at start / end of the section: {fmt(loads[0][0], 2)} / "
        f"{fmt(loads[1][0], 2)} (2 CPUs)"
    )
    return "\n".join(rows)


def alarms_table(al: dict[str, Any]) -> str:
    """Alarms section: figure, goal, measured."""
    rows = ["| figure | goal | measured |", "|---|---|---:|"]

    def row(label: str, goal: str, value: str) -> None:
        rows.append(f"| {label} | {goal} | {value} |")

    if "latency_ms" in al:
        _alarm_latency_rows(al, row)
    if al.get("before"):
        _alarm_cpu_rows(al["before"], al, row, f", station assets as of {al['before_rev']}")
    _alarm_cpu_rows(al, al, row, ", working tree" if al.get("before") else "")
    rows.append(
        f"\nclock: {al['clock']}; page's performance clock - Date.now() at the end: "
        f"{fmt(al.get('page_clock_skew_ms'), 2)} ms. Load average (1 min) at start / end: "
        f"{fmt(al['load_avg_at_start'][0], 2)} / {fmt(al['load_avg_at_end'][0], 2)}"
    )
    return "\n".join(rows)


def _alarm_latency_rows(al: dict[str, Any], row: Any) -> None:
    lat, n = al["latency_ms"], al["events"]
    delays = al["delays_s"]
    for event, what in (
        ("onset_medium", f"onset → medium alarm, beyond its {delays['medium']:g} s delay"),
        ("onset_high", f"onset → high alarm, beyond its {delays['high']:g} s delay"),
        ("end_medium", "condition end (reading back inside) → medium alarm gone"),
        ("ack_high", "ack sent → high alarm acknowledged"),
    ):
        places = [("tile", "tile"), ("tile_frame", "tile, next frame")]
        if event == "ack_high":
            places.append(("list", "alarms list item"))
        places.append(("socket", "of which → the station frame taken by the page"))
        places.append(("api", "/api/alarms"))
        for key, where in places:
            got = lat[event][key]
            row(
                f"{what}: {where}, p50 / p99 / max (ms), {got['n']} of {n[event]}",
                "≤ 100 / 250" if key in ("tile", "api") else "—",
                _pair(lat[event], (key,), ("p50", "p99", "max")),
            )
    row(
        "ack sent → the bridge's log entry, p50 / p99 (ms)",
        "—",
        _pair(lat["ack_high"], ("bridge",)),
    )
    row(
        f"/api/alarms poll: every {al['poll_s'] * 1000:g} ms; request p50 / p99 (ms)",
        "—",
        _pair(al, ("poll_request_ms",)),
    )


def _alarm_cpu_rows(windows: dict[str, Any], al: dict[str, Any], row: Any, which: str) -> None:
    base, busy = windows.get("baseline") or {}, windows.get("alarms") or {}

    def cpu(key: str) -> str:
        return f"{fmt(base.get(key), 3)} → {fmt(busy.get(key), 3)}"

    tag = f"{al['patients']} patients, {fmt(busy.get('seconds'))} s each"
    row(f"bridge CPU s per s, no alarms → alarms ({tag}{which})", "—", cpu("bridge_cpu_s_per_s"))
    row(
        f"station page's renderer CPU s per s, no alarms → alarms{which}",
        "—",
        cpu("renderer_cpu_s_per_s"),
    )
    row("all of Chromium CPU s per s, no alarms → alarms", "—", cpu("chromium_cpu_s_per_s"))
    row("Dash server CPU s per s, no alarms → alarms", "—", cpu("server_cpu_s_per_s"))
    pb, pa = base.get("page_per_s") or {}, busy.get("page_per_s") or {}
    row(
        f"station page per s, no alarms → alarms{which}: frames taken; tile writes; "
        "sparkline draws",
        "—",
        "; ".join(
            f"{fmt(pb.get(k), 1)} → {fmt(pa.get(k), 1)}"
            for k in ("frames", "tile_writes", "spark_draws")
        ),
    )
    rb, ra = base.get("renderer_per_s") or {}, busy.get("renderer_per_s") or {}
    row(
        f"page's renderer per s, no alarms → alarms (CDP{which}): task; script; style; "
        "layout (ms); style recalcs; layouts",
        "—",
        "; ".join(
            f"{fmt(1000 * rb[k] if k in rb else None)} → {fmt(1000 * ra[k] if k in ra else None)}"
            for k in ("TaskDuration", "ScriptDuration", "RecalcStyleDuration", "LayoutDuration")
        )
        + "; "
        + "; ".join(
            f"{fmt(rb.get(k), 1)} → {fmt(ra.get(k), 1)}"
            for k in ("RecalcStyleCount", "LayoutCount")
        ),
    )
    by = busy.get("by_event") or {}
    row(
        "alarm window: log entries (raised / latched / acknowledged / ended); "
        "alarms listed per sample, mean (max)",
        "—",
        f"{fmt(busy.get('log_entries'))} ({' / '.join(fmt(by.get(k)) for k in by)}); "
        f"{fmt(_get(busy, 'alarms_listed', 'mean'), 1)} "
        f"({fmt(_get(busy, 'alarms_listed', 'max'))})",
    )
    refused = busy.get("acks_refused") or {}
    row(
        "alarm window: acks sent; accepted in the whole run; ignored (over the rate limit)",
        "—; —; 0",
        f"{fmt(busy.get('acks'))}; {fmt(refused.get('state_changes'))}; "
        f"{fmt(refused.get('rate_limited'))}",
    )


def scaleout_table(so: dict[str, Any]) -> str:
    """Scale-out section: one row per level and setup, then the issue's goals."""
    from benchmarks.scaleout import LABELS

    head = (
        "| viewers | setup | connected (per serving process) | age p50 / p99 / max (ms) "
        "| gaps; viewers with gaps | CPU % serving (per process) | simulator / load CPU % "
        "| machine CPU % (of all); load avg | KB per viewer | p50, p99, CPU / floor |"
    )
    rows = [head, "|---:|---|---|---|---|---|---|---:|---:|---|"]
    for lv in so["levels"]:
        floor = lv["setups"].get("floor") or {}
        for kind in so["setups"]:
            r = lv["setups"].get(kind)
            if r is None:
                continue
            name = LABELS.get(kind, kind)
            if "error" in r:
                rows.append(f"| {lv['viewers']:,} | {name} | ERROR {r['error'][:120]} |")
                continue
            av = r["all_viewers"]
            held = ", ".join(f"{n} {fmt(v)}" for n, v in r["held"].items())
            cpu = r["cpu_percent"]
            serving = [n for n in cpu if n != "simulator" and not n.startswith("load-")]
            per = " + ".join(f"{n} {fmt(cpu[n])}" for n in serving) if len(serving) > 1 else ""
            loads = " + ".join(fmt(cpu[n]) for n in cpu if n.startswith("load-"))
            ratios = "—"
            if kind != "floor":
                ratios = ", ".join(
                    [
                        *(
                            ratio(_get(av, "age_ms", q), _get(floor, "all_viewers", "age_ms", q))
                            for q in ("p50", "p99")
                        ),
                        ratio(r["serving_cpu_percent"], floor.get("serving_cpu_percent")),
                    ]
                )
            rows.append(
                f"| {lv['viewers']:,} | {name} | {fmt(r['connected'])} ({held}) | "
                + " / ".join(fmt(_get(av, "age_ms", q), 1) for q in ("p50", "p99", "max"))
                + f" | {fmt(av.get('gaps'))}; {fmt(av.get('viewers_with_gaps'))} | "
                f"{fmt(r['serving_cpu_percent'])}{f' ({per})' if per else ''} | "
                f"{fmt(cpu.get('simulator'))} / {loads} | {fmt(r['machine_cpu_percent'])}; "
                f"{fmt((r.get('load_avg_before') or [None])[0], 1)} | "
                f"{fmt(r['mem_per_viewer_kb'], 1)} | {ratios} |"
            )
    return "\n".join(rows) + "\n\n" + scaleout_goals(so)


def scaleout_goals(so: dict[str, Any]) -> str:
    """The issue's goals for Redis + 2 edges against what this run measured."""
    rows = ["| goal (Redis + 2 edges) | measured |", "|---|---|"]
    by_level = {lv["viewers"]: lv["setups"] for lv in so["levels"]}

    def edges(level: int) -> dict[str, Any]:
        r = by_level.get(level, {}).get("redis")
        return r if isinstance(r, dict) and "all_viewers" in r else {}

    r10, r20 = edges(10_000), edges(20_000)
    p99 = fmt(_get(r10, "all_viewers", "age_ms", "p99"), 1)
    rows.append(f"| 10,000 viewers at p99 ≤ 100 ms | {p99} ms |")
    rows.append(
        f"| 20,000 connected with 0 gaps | {fmt(r20.get('connected'))} connected, "
        f"{fmt(_get(r20, 'all_viewers', 'gaps'))} gaps |"
    )
    per = "; ".join(
        f"{level:,}: {fmt(edges(level).get('mem_per_viewer_kb'), 1)}" for level in by_level
    )
    rows.append(f"| ≤ 16 KB per viewer | {per} |")
    within = "; ".join(
        f"{level:,}: "
        + ", ".join(
            ratio(
                _get(edges(level), "all_viewers", "age_ms", q),
                _get(setups.get("floor"), "all_viewers", "age_ms", q),
            )
            for q in ("p50", "p99")
        )
        for level, setups in by_level.items()
    )
    rows.append(f"| within 1.5x of the floor at each level (age p50, p99) | {within} |")
    return "\n".join(rows)


def failover_table(fv: dict[str, Any]) -> str:
    """Failover section: figure, goal, measured."""
    rows = ["| figure | goal | measured |", "|---|---|---:|"]

    def row(label: str, goal: str, value: str) -> None:
        rows.append(f"| {label} | {goal} | {value} |")

    def s3(d: Any, digits: int = 2) -> str:
        return " / ".join(fmt(_get(d, q), digits) for q in ("p50", "p99", "max"))

    def lost(d: dict[str, Any]) -> str:
        a = d.get("arrivals") or {}
        return (
            f"{fmt(a.get('gaps'))} (viewers with gaps {fmt(a.get('viewers_with_gaps'))}); "
            f"{fmt(a.get('duplicates'))}"
        )

    n = f"{fv['viewers']:,}"
    ed = fv.get("edge") or {}
    if "error" in ed:
        row("edge SIGKILLed", "—", f"ERROR {ed['error'][:160]}")
    elif ed:
        held = ed.get("held_before") or {}
        row(
            f"edge SIGKILLed under {n} viewers (2 edges): viewers it held; closed; reconnected; "
            "with a reading again",
            "all",
            f"{fmt(held.get(ed['victim']))}; {fmt(ed['closed'])}; {fmt(ed['reopened'])}; "
            f"{fmt(ed['reading_again'])}",
        )
        row(
            "… reconnect time (new handshake's response - kill), p50 / p99 / max (s)",
            "—",
            s3(ed["reconnect_s"]),
        )
        row(
            "… first new reading at the viewer - kill, p50 / p99 / max (s)",
            "—",
            s3(ed["first_reading_s"]),
        )
        row("… gaps; duplicates over every viewer, whole window", "0; 0", lost(ed))
    ig = fv.get("ingest") or {}
    if "error" in ig:
        row("ingest SIGKILLed", "—", f"ERROR {ig['error'][:160]}")
    elif ig:
        st = ig.get("stream") or {}
        at = ig.get("first_new_reading_at_viewers_s") or [None, None]
        row(
            f"ingest holding the patient SIGKILLed, standby running, {n} viewers: takeover "
            "(kill → first reading from the new holder in the stream) (s)",
            "a few seconds (lease ttl)",
            fmt(ig.get("takeover_s"), 2),
        )
        row(
            "… that reading stamped; at the first / last viewer (s after the kill)",
            "—",
            f"{fmt(ig.get('first_new_reading_stamped_s'), 2)}; {fmt(at[0], 2)} / {fmt(at[1], 2)}",
        )
        row(
            "… readings lost: seqs missing in the stream; gaps at the viewers; duplicates",
            "0; 0; 0",
            f"{fmt(st.get('missing_seqs'))}; {lost(ig)}",
        )
        row(
            "… no ingest reading the patient: the stream's time hole (s); readings not taken",
            "—",
            f"{fmt((st.get('time_hole_ms') or 0) / 1000, 2)}; {fmt(st.get('not_read'))}",
        )
    rd = fv.get("redis") or {}
    if "error" in rd:
        row("Redis restarted", "—", f"ERROR {rd['error'][:160]}")
    elif rd:
        st = rd.get("stream") or {}
        row(
            f"Redis restarted (same port, empty, down {fmt(rd.get('down_s'), 1)} s), {n} viewers: "
            "readings lost: seqs missing in the stream; gaps at the viewers; duplicates",
            "0; 0; 0",
            f"{fmt(st.get('missing_seqs'))}; {lost(rd)}",
        )
        for key, what in (
            ("back", "first reading stamped after the stop"),
            ("live", "first reading stamped after Redis answered"),
        ):
            at = rd.get(f"{key}_after_up_s") or [None, None]
            row(
                f"… Redis answering → {what}, at the first / last viewer (s)",
                "—",
                f"{fmt(at[0], 2)} / {fmt(at[1], 2)}",
            )
        row(
            "… viewers closed by the edges meanwhile; run changes seen",
            "0; 0",
            f"{fmt(_get(rd, 'load', 'closed'))}; {fmt(_get(rd, 'load', 'run_changes'))}",
        )
    return "\n".join(rows)


def table(results: dict[str, Any]) -> str:
    parts: list[str] = []
    rows: list[str] = ["| figure | value |", "|---|---:|"]

    def row(label: str, values: list[Any], digits: int = 0) -> None:
        rows.append(f"| {label} | {fmt(values[0], digits)} |")

    sections = results["sections"]
    br = sections.get("browser")
    if isinstance(br, dict) and "apps" in br:
        parts.append(browser_table(br))
    elif br is not None:
        parts.append(f"browser: ERROR {fmt(_get(br, 'error'))[:200]}")
    st = sections.get("station")
    if isinstance(st, dict) and "patients" in st:
        parts.append(station_table(st))
    elif st is not None:
        parts.append(f"station: ERROR {fmt(_get(st, 'error'))[:200]}")
    hi = sections.get("history")
    if isinstance(hi, dict):
        parts.append(history_table(hi))
    al = sections.get("alarms")
    if isinstance(al, dict) and ("latency_ms" in al or "baseline" in al):
        parts.append(alarms_table(al))
    elif al is not None:
        parts.append(f"alarms: ERROR {fmt(_get(al, 'error'))[:200]}")
    so = sections.get("scaleout")
    if isinstance(so, dict) and "levels" in so:
        parts.append(scaleout_table(so))
    elif so is not None:
        parts.append(f"scaleout: ERROR {fmt(_get(so, 'error'))[:200]}")
    fv = sections.get("failover")
    if isinstance(fv, dict) and "error" not in fv:
        parts.append(failover_table(fv))
    elif fv is not None:
        parts.append(f"failover: ERROR {fmt(_get(fv, 'error'))[:200]}")
    fo = sections.get("fanout")
    if isinstance(fo, dict) and "levels" in fo:
        base = _get(fo, "idle", "rss_mean_mb")
        row("fan-out: bridge RSS with 0 viewers (MB)", [base], 1)
        for lv in fo["levels"]:
            n = f"{lv['viewers']:,}"
            av = lv.get("all_viewers") or {}
            row(
                f"fan-out {n} viewers: delivery age over all load viewers p50 / p99 / max (ms)",
                [" / ".join(fmt(_get(av, "age_ms", q), 1) for q in ("p50", "p99", "max"))],
            )
            row(
                f"fan-out {n} viewers: arrivals measured / readings / viewers; gaps; missing",
                [
                    f"{fmt(av.get('arrivals'))} / {av.get('readings')} / "
                    f"{av.get('viewers_with_readings')} of {av.get('viewers')}; "
                    f"{av.get('gaps')}; {av.get('missing')}"
                ],
            )
            row(
                f"fan-out {n} viewers: first → last viewer per reading, p50 / max (ms)",
                [" / ".join(fmt(_get(av, "per_reading_spread_ms", q), 1) for q in ("p50", "max"))],
            )
            row(
                f"fan-out {n} viewers: probes (5, cross-check) age p50 / p99 / max (ms)",
                [" / ".join(fmt(_get(lv, "age_ms", q), 1) for q in ("p50", "p99", "max"))],
            )
            row(
                f"fan-out {n} viewers: probe gaps / duplicates; dropped slow",
                [f"{lv['gaps']} / {lv['duplicates']}; {lv['dropped_slow']}"],
            )
            row(
                f"fan-out {n} viewers: CPU % bridge / load / probes (of 1 core) / machine (of all)",
                [
                    " / ".join(
                        fmt(v, 0)
                        for v in (
                            _get(lv, "bridge", "cpu_percent"),
                            lv.get("load_cpu_percent"),
                            lv.get("probe_cpu_percent"),
                            lv.get("machine_cpu_percent"),
                        )
                    )
                ],
            )
            row(
                f"fan-out {n} viewers: handshakes failed / retried; closed by the bridge",
                [
                    f"{lv.get('connect_failed', 0)} / {lv.get('connect_retried', 0)}; "
                    f"{lv.get('load_closed_by_bridge', 0)}"
                ],
            )
            row(f"fan-out {n} viewers: bridge RSS (MB)", [_get(lv, "bridge", "rss_mean_mb")], 1)
            row(f"fan-out {n} viewers: memory per viewer (KB)", [lv.get("mem_per_viewer_kb")], 1)
        sv = fo.get("slow_viewer")
        if isinstance(sv, dict) and "baseline" in sv:
            tag = f"{sv['viewers']} viewers, sim {1 / sv['simulator_period_s']:g} Hz"
            for key, what in (
                ("baseline", "without"),
                ("with_slow", f"with 1 never-reading viewer, {sv['seconds_with_slow']:g} s"),
            ):
                row(
                    f"slow viewer ({tag}): age p50 / p99 / max over all load viewers, {what} (ms)",
                    [
                        " / ".join(
                            fmt(_get(sv, key, "all_viewers", "age_ms", q), 1)
                            for q in ("p50", "p99", "max")
                        )
                    ],
                )
                row(
                    f"slow viewer: probe age p50 / p99, {what} (ms)",
                    [
                        f"{fmt(_get(sv, key, 'age_ms', 'p50'), 1)} / "
                        f"{fmt(_get(sv, key, 'age_ms', 'p99'), 1)}"
                    ],
                )
            row("slow viewer: all-viewer p99 difference (ms)", [sv.get("all_p99_delta_ms")], 1)
            ev = sv.get("events_s_after_connect") or {}
            row(
                f"slow viewer: dropped as slow (viewer_buffer {sv['viewer_buffer']:,} B)",
                [
                    f"after {sv['dropped_after_s']} s"
                    if sv.get("dropped_slow")
                    else "no"
                    + (f"; connection gone after {ev['tcp_gone']} s" if "tcp_gone" in ev else "")
                ],
            )
            sq = [x for x in sv.get("bridge_send_queue") or [] if "send_q" in x]
            if sq:
                top = max(sq, key=lambda x: x["send_q"])
                row(
                    "slow viewer: bridge kernel send queue, largest sample (bytes at s; sndbuf)",
                    [f"{top['send_q']:,} at {top['t']} s; {top.get('sndbuf', 0):,}"],
                )
        elif isinstance(sv, dict):
            rows.append(f"| slow viewer: ERROR {fmt(sv.get('error'))[:80]} | — |")
    elif fo is not None:
        rows.append(f"| fan-out: ERROR {fmt(_get(fo, 'error'))[:80]} | — |")
    ing = sections.get("ingest")
    if isinstance(ing, dict) and "core" in ing:
        row(
            "ingest: parse_frame + RingBuffer.append, one core (frames/s)",
            [_get(ing, "core", "parse_frame_append_per_s")],
        )
        row(
            "ingest: FrameReader.feed + append (the bridge's path), one core (frames/s)",
            [_get(ing, "core", "frame_reader_append_per_s")],
        )
        row(
            f"ingest: bridge end to end, {_get(ing, 'bridge', 'frames'):,} frames (frames/s)",
            [_get(ing, "bridge", "frames_per_s")],
        )
    elif ing is not None:
        rows.append(f"| ingest: ERROR {fmt(_get(ing, 'error'))[:80]} | — |")
    sk = sections.get("soak")
    if isinstance(sk, dict) and "samples" in sk:
        mins = f"{sk['seconds'] / 60:g} min"
        for key, label in (
            ("bridge_rss_mb", "bridge RSS"),
            ("server_rss_mb", "Dash server RSS"),
            ("js_heap_mb", "page JS heap"),
        ):
            row(
                f"soak {mins}, {sk['viewers']} viewers: {label} first → last (MB)",
                [f"{sk[key]['first']:.1f} → {sk[key]['last']:.1f}"],
            )
            row(
                f"soak {mins}: {label} slope, 2nd half (MB/h)",
                [sk[key]["slope_mb_per_hour_2nd_half"]],
                1,
            )
    elif sk is not None:
        rows.append(f"| soak: ERROR {fmt(_get(sk, 'error'))[:80]} | — |")
    if len(rows) > 2:
        parts.append("\n".join(rows))
    return "\n\n".join(parts)


# -- plots ---------------------------------------------------------------------------------


def plots(results: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    made = []
    sections = results["sections"]
    br = sections.get("browser")
    if isinstance(br, dict) and "apps" in br:
        displays = ("card", "card_frame", "table", "chart")
        titles = {"card_frame": "card (next frame)"}
        fig, axes = plt.subplots(1, len(displays), figsize=(20, 4.5), sharey=True)
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for ax, display in zip(axes, displays, strict=True):
            for i, (name, app) in enumerate(br["apps"].items()):
                values = sorted(v for v in app["raw_ms"].get(display, []) if v > 0)
                if not values:
                    continue
                ys = [(i + 1) / len(values) for i in range(len(values))]
                label = f"{_label(name, app)} (n={len(values)})"
                ax.step(values, ys, where="post", label=label, color=colours[i % len(colours)])
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(f"reading time → {titles.get(display, display + ' (DOM)')}")
            ax.set_xlabel("latency (ms, log)")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        axes[0].set_ylabel("fraction of readings (ECDF)")
        fig.suptitle(f"Browser end to end, simulator at {1 / br['period_s']:g} Hz")
        fig.tight_layout()
        path = RESULTS / f"latency-{results['mode']}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(str(path.relative_to(ROOT)))
    fo = sections.get("fanout")
    if isinstance(fo, dict) and fo.get("levels"):
        levels = fo["levels"]
        xs = [lv["viewers"] for lv in levels]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for q, mark in (("p50", "o-"), ("p99", "s-"), ("max", "d-")):
            ax.plot(
                xs,
                [_get(lv, "all_viewers", "age_ms", q) for lv in levels],
                mark,
                label=f"age {q}, all viewers",
            )
        ax.plot(
            xs, [lv["age_ms"]["p99"] for lv in levels], "x:", color="grey", label="p99, 5 probes"
        )
        ax.set_xscale("log")
        ax.set_xlabel("viewers")
        ax.set_ylabel("delivery age (ms)")
        ax2 = ax.twinx()
        ax2.plot(
            xs, [lv["bridge"]["cpu_percent"] for lv in levels], "^--", color="grey", label="bridge"
        )
        ax2.plot(
            xs,
            [lv.get("machine_cpu_percent") for lv in levels],
            "v:",
            color="black",
            label="whole machine",
        )
        ax2.set_ylabel("CPU % (bridge: of one core; machine: of all cores)")
        ax2.legend(loc="center left", fontsize=8)
        ax.legend(loc="upper left")
        ax.grid(True, alpha=0.3)
        ax.set_title("Fan-out at 2 Hz: delivery age at every viewer vs viewers")
        fig.tight_layout()
        path = RESULTS / f"fanout_age-{results['mode']}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(str(path.relative_to(ROOT)))
    so = sections.get("scaleout")
    if isinstance(so, dict) and so.get("levels"):
        from benchmarks.scaleout import LABELS as SCALEOUT_LABELS

        fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.5))
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, kind in enumerate(so["setups"]):
            done = [lv for lv in so["levels"] if "all_viewers" in lv["setups"].get(kind, {})]
            xs = [lv["viewers"] for lv in done]
            label = SCALEOUT_LABELS.get(kind, kind)
            for q, mark in (("p50", "o-"), ("p99", "s--")):
                a1.plot(
                    xs,
                    [_get(lv["setups"][kind], "all_viewers", "age_ms", q) for lv in done],
                    mark,
                    color=colours[i % len(colours)],
                    label=f"{label} {q}",
                )
            a2.plot(
                xs,
                [lv["setups"][kind]["serving_cpu_percent"] for lv in done],
                "o-",
                color=colours[i % len(colours)],
                label=label,
            )
        a1.set_ylabel("delivery age at every viewer (ms)")
        a2.set_ylabel("CPU % of the serving processes (100 = one core)")
        for ax in (a1, a2):
            ax.set_xscale("log")
            ax.set_xlabel("viewers")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle("Scale-out at 2 Hz: the broadcast floor, one process, Redis + 2 edges")
        fig.tight_layout()
        path = RESULTS / f"scaleout-{results['mode']}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(str(path.relative_to(ROOT)))
    st = _get(sections, "station", "station")
    if isinstance(st, dict) and st.get("samples"):
        fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(18, 4.5))
        for key, label in (("tile", "tile (DOM)"), ("tile_frame", "tile (next frame)")):
            values = sorted(v for v in st["raw_ms"].get(key, []) if v > 0)
            if values:
                ys = [(i + 1) / len(values) for i in range(len(values))]
                a1.step(values, ys, where="post", label=f"{label} (n={len(values):,})")
        a1.set_xscale("log")
        a1.set_xticks([10, 20, 50, 100, 200, 500, 1000])
        a1.xaxis.set_major_formatter(ScalarFormatter())
        a1.xaxis.set_minor_formatter(NullFormatter())
        a1.set_xlabel("reading time → tile (ms, log)")
        a1.set_ylabel("fraction of readings (ECDF)")
        a1.legend(fontsize=8)
        a1.grid(True, alpha=0.3)
        ts = [x["t"] / 60 for x in st["samples"]]
        a2.plot(ts, [x["js_heap_mb"] for x in st["samples"]], color="tab:green")
        a2.set_xlabel("minutes")
        a2.set_ylabel("JS heap used (MB)")
        a2.grid(True, alpha=0.3)
        pid = max(
            st.get("renderer_cpu_by_pid") or {"": 0},
            key=lambda k: (st.get("renderer_cpu_by_pid") or {}).get(k, 0),
        )
        a3.plot(ts, [x["renderer_cpu_percent"].get(pid) for x in st["samples"]])
        a3.set_xlabel("minutes")
        a3.set_ylabel("page renderer CPU (% of one core)")
        a3.grid(True, alpha=0.3)
        fig.suptitle(
            f"Station page: {st['patients']} patients at {1 / st['period_s']:g} Hz, "
            f"{WIDTH}x{HEIGHT}"
        )
        fig.tight_layout()
        path = RESULTS / f"station-{results['mode']}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(str(path.relative_to(ROOT)))
    sk = sections.get("soak")
    if isinstance(sk, dict) and sk.get("samples"):
        s = sk["samples"]
        ts = [x["t"] / 60 for x in s]
        fig, (a1, a2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
        a1.plot(ts, [x["bridge_rss_mb"] for x in s], label="bridge RSS")
        a1.plot(ts, [x["server_rss_mb"] for x in s], label="Dash server RSS")
        a1.set_ylabel("MB")
        a1.legend()
        a1.grid(True, alpha=0.3)
        a1.set_title(f"Soak: {sk['viewers']} viewers, simulator at {1 / sk['period_s']:g} Hz")
        a2.plot(ts, [x["js_heap_mb"] for x in s], color="tab:green", label="page JS heap")
        a2.set_ylabel("MB")
        a2.set_xlabel("minutes")
        a2.legend()
        a2.grid(True, alpha=0.3)
        fig.tight_layout()
        path = RESULTS / f"soak_rss-{results['mode']}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(str(path.relative_to(ROOT)))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the < 2 minute subset")
    parser.add_argument("--only", choices=SECTIONS, help="run one section")
    parser.add_argument(
        "--period",
        type=float,
        default=0.5,
        help="simulator period (s) for the browser section (default 0.5 = the real 2 Hz; "
        "0.1 = the 10 Hz stress run)",
    )
    parser.add_argument(
        "--apps",
        default=",".join(APPS),
        help=f"browser section: pages to measure, in order (default {','.join(APPS)})",
    )
    parser.add_argument(
        "--interval-ms",
        default="250",
        help="browser section: interval peer period(s), comma-separated (default 250)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="browser section: rounds over all apps (default 3; quick: 2)",
    )
    parser.add_argument(
        "--before-rev",
        default=BEFORE_REV,
        help=f"git revision of assets/hrdash.js for 'hrdash (before)' (default {BEFORE_REV})",
    )
    parser.add_argument(
        "--soak-seconds", type=float, default=300.0, help="soak duration (full mode; default 300)"
    )
    parser.add_argument(
        "--soak-period",
        type=float,
        default=0.1,
        help="simulator period (s) for the soak (default 0.1 = 10 Hz: 5 minutes hold 25 at 2 Hz)",
    )
    parser.add_argument(
        "--station-parts",
        default="page,bridge,monitor",
        help="station section: parts to run (default page,bridge,monitor)",
    )
    parser.add_argument(
        "--history-parts",
        default="ingest,latency,queries",
        help="history section: parts to run (default ingest,latency,queries)",
    )
    parser.add_argument(
        "--history-cache",
        default=None,
        help="history section: where the seeded 24 h file is cached (default: a folder in the "
        "system's temp dir, printed)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="history section: keep the seeded file for next time"
    )
    parser.add_argument(
        "--only-cpu",
        action="store_true",
        help="alarms section: the CPU windows only (no latency part)",
    )
    parser.add_argument(
        "--alarms-before",
        default=None,
        metavar="REV",
        help="alarms section: first run the CPU windows with the station's assets "
        "(station.css, station.js) as of git revision REV, then with the working tree's",
    )
    parser.add_argument(
        "--scaleout-setups",
        default="floor,bridge,redis",
        help="scaleout section: setups to measure (default floor,bridge,redis)",
    )
    parser.add_argument("--out", default=str(RESULTS / "results.json"))
    args = parser.parse_args()
    names = [n for n in SECTIONS if not (n == "soak" and args.quick) and n not in OPT_IN]
    if args.only:
        names = [args.only]
    started = time.monotonic()
    results: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "sections": {},
        "seconds": {},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in names:
        t0 = time.monotonic()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            results["sections"][name] = run_section(name, args)
        except Exception as exc:
            traceback.print_exc()
            results["sections"][name] = {"error": f"{type(exc).__name__}: {exc}"}
        results["seconds"][name] = round(time.monotonic() - t0, 1)
        print(f"[bench] {name} done in {results['seconds'][name]} s", file=sys.stderr, flush=True)
    results["seconds"]["total"] = round(time.monotonic() - started, 1)
    results["table"] = table(results)
    try:
        results["plots"] = plots(results)
    except Exception as exc:
        results["plots_error"] = f"{type(exc).__name__}: {exc}"
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(results["table"])
    m = results["machine"]
    print(
        f"\n{results['mode']} run, {results['seconds']['total']} s; "
        f"machine: {m.get('cpus')} CPUs, {m.get('cpu_model', '?')}; results: {args.out}"
    )


if __name__ == "__main__":
    main()
