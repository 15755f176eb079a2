"""The history (SQLite): what recording costs and how fast the stored history answers. Measured
and reported, never asserted.

    python benchmarks/run.py --only history [--quick] [--keep] [--history-parts PARTS]
    python benchmarks/history.py [--quick] [--keep] [--parts ...] [--out FILE]

*ingest* (a child process pinned to one CPU): the real :class:`hrdash.ingest.recorder.Recorder`
on a new file in a temp dir, 64 patients, its own batching (``commit_interval`` 1 s). Sustained:
readings are added as fast as it takes them, keeping its pending queue between a low and a high
mark below ``max_pending`` (so none is dropped), and ``written`` is counted over a window. Real
rate: 64 patients x 2 Hz added in real time (one ``add`` per reading, as the bridge does); the
process's CPU (all threads) and the recorder's own threads' CPU, % of one core.

*latency*: ``hrdash bridge`` reading 64 patients at 2 Hz from a websockets server in this
process (``{"time": <now, Unix ms>, "value": bpm}`` on ``/p/<id>``, each patient its own phase),
with 8 ``/ws?patient=`` viewers (8 patients) and one ``/ws?station=1`` viewer here. Latency =
arrival at the viewer - the reading's ``time`` (same clock). Runs alternate ``HRDASH_DB`` = a new
file / ``:memory:`` (no recorder), in the same session, so a slow spell of the machine hits both.

*queries*: a history of 64 patients x 24 h at 2 Hz (11,059,200 readings,
``benchmarks/history_seed.py``, no holes) seeded once into a cache directory (printed; kept with
``--keep``, else deleted at the end): file size per patient-day; one patient's trend over the last
1 h / 8 h / 24 h of it through :func:`hrdash.history.trend` (in this process) and over HTTP from
the real Dash server (``python app.py`` on a copy of the file, 64 simulated patients at 2 Hz,
so its bridge records beside the readers), interleaved, each timed from request to the parsed
body; a 10-minute zoom with ``raw=1``; the 24 h ``readings.csv`` and ``trend.csv`` of that
patient over HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import PY, end, read_json_line, spawn, summary  # noqa: E402
from benchmarks.history_seed import HOUR_MS, seed  # noqa: E402
from hrdash.simulator import patient_ids  # noqa: E402

PATIENTS = 64
PERIOD_S = 0.5  # 2 Hz
HOURS = 24.0
SEED = 1
CACHE = Path(tempfile.gettempdir()) / "hrdash-bench-history"
RETENTION_S = 72 * 3600.0  # the settings' defaults
TREND_RETENTION_S = 30 * 86400.0
RANGES = (("1h", 1), ("8h", 8), ("24h", 24))  # label, hours
ZOOM_MS = 10 * 60_000  # the raw=1 zoom: 10 minutes = 1,200 readings at 2 Hz
QUERY_PATIENT = "bed-33"  # one patient in the middle of the file
PATIENT_VIEWERS = 8
PARTS = ("ingest", "latency", "queries")
CEILING_PENDING = 600_000  # max_pending of the ingest's ceiling run


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- (a) ingest: the recorder alone, in a child pinned to one CPU ---------------------------


def ingest_child(seconds: float, real_seconds: float) -> dict[str, Any]:
    """Runs in the child: the sustained rate, then the CPU at the real rate."""
    from hrdash.ingest import recorder as recorder_mod

    Recorder = recorder_mod.Recorder

    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[-1]})
    ids = patient_ids(PATIENTS)
    patients = [(pid, f"Bed {i + 1}") for i, pid in enumerate(ids)]
    out: dict[str, Any] = {"cpu": cpus[-1], "pid": os.getpid()}
    default = int(recorder_mod.MAX_PENDING)
    with tempfile.TemporaryDirectory(prefix="hrdash-bench-ingest-") as tmp:
        # As configured (max_pending the default): the queue's bound caps a batch.
        out["sustained"] = _sustained(
            Recorder, patients, str(Path(tmp) / "sustained.db"), seconds, default, default
        )
        # A larger queue: the writer's own ceiling (batches back to back once they take > 1 s).
        out["ceiling"] = _sustained(
            Recorder, patients, str(Path(tmp) / "ceiling.db"), seconds, CEILING_PENDING, default
        )
        out["real_rate"] = _real_rate(Recorder, patients, str(Path(tmp) / "real.db"), real_seconds)
    return out


def _other_threads_cpu() -> dict[int, float]:
    """CPU seconds of each of this process's threads other than the main one: the kernel's
    schedstat (ns) where there is one, else psutil's (clock ticks)."""
    main = threading.main_thread().native_id
    out: dict[int, float] = {}
    for t in psutil.Process().threads():
        if t.id == main:
            continue
        try:
            ns = Path(f"/proc/self/task/{t.id}/schedstat").read_text().split()[0]
            out[t.id] = int(ns) / 1e9
        except (OSError, ValueError, IndexError):
            out[t.id] = t.user_time + t.system_time
    return out


def _since(before: dict[int, float]) -> float:
    """CPU seconds the threads alive now used since ``before`` (new threads: all of theirs)."""
    return sum(cpu - before.get(tid, 0.0) for tid, cpu in _other_threads_cpu().items())


def _sustained(
    recorder_cls: Any,
    patients: list[tuple[str, str]],
    path: str,
    seconds: float,
    max_pending: int,
    default_max_pending: int,
) -> dict[str, Any]:
    """Readings added as fast as the recorder takes them (pending kept between 45 and 90 % of
    ``max_pending``); ``written`` over whole batches."""
    high = max(1000, int(max_pending * 0.9))
    low = high // 2
    chunk = 50  # readings per patient per add
    extra = {} if max_pending == default_max_pending else {"max_pending": max_pending}
    rec = recorder_cls(
        path, patients, retention=RETENTION_S, trend_retention=TREND_RETENTION_S, **extra
    )
    rec.start()
    rng = random.Random(SEED)
    next_t = {
        pid: int(time.time() * 1000) - 24 * HOUR_MS + rng.randrange(500) for pid, _ in patients
    }
    bpm = {pid: 60 + rng.randrange(40) for pid, _ in patients}
    added = 0

    def feed() -> None:
        nonlocal added
        for pid, _ in patients:
            t0, b = next_t[pid], bpm[pid]
            batch = []
            for k in range(chunk):
                b = min(180, max(40, b + rng.choice((-1, 0, 0, 1))))
                batch.append((t0 + 500 * k, b))
            next_t[pid], bpm[pid] = t0 + 500 * chunk, b
            rec.add(pid, batch)
            added += chunk

    # The window runs from the first commit after a warm-up to the first commit after
    # ``seconds``: whole batches only (``written`` moves by a whole batch at each commit).
    warm_end = time.monotonic() + min(3.0, seconds / 3)
    window: dict[str, Any] = {}
    t_start = time.monotonic()
    marks: list[tuple[float, int, int, float]] = []  # t, written, commits, process cpu
    threads0: dict[int, float]
    threads_used = 0.0
    last_commits = -1
    try:
        while True:
            now = time.monotonic()
            st = rec.status()
            if st["commits"] != last_commits:
                last_commits = st["commits"]
                if now >= warm_end:
                    marks.append((now, st["written"], st["commits"], time.process_time()))
                    if len(marks) == 1:
                        threads0 = _other_threads_cpu()
                    elif now - marks[0][0] >= seconds:
                        threads_used = _since(threads0)
                        break
            if now - t_start > seconds + 60:
                raise TimeoutError("the sustained window did not end")
            if st["pending"] < low:
                burst = 0
                while rec.status()["pending"] < high and burst < high:
                    feed()
                    burst += chunk * len(patients)
            else:
                time.sleep(0.002)
        (t0, w0, c0, cpu0), (t1, w1, c1, cpu1) = marks[0], marks[-1]
        wall = t1 - t0
        window = {
            "seconds": round(wall, 2),
            "written": w1 - w0,
            "readings_per_s": (w1 - w0) / wall,
            "commits": c1 - c0,
            "process_cpu_percent": 100 * (cpu1 - cpu0) / wall,
            "recorder_threads_cpu_percent": 100 * threads_used / wall,
            # what one core would write if the recorder had it all: readings per CPU-second
            "readings_per_recorder_cpu_s": (w1 - w0) / threads_used if threads_used else None,
            "pending_low_high": [low, high],
            "max_pending": max_pending,
            "status_end": rec.status(),
        }
    finally:
        t_close = time.monotonic()
        rec.close(timeout=120)
        window["close_seconds"] = round(time.monotonic() - t_close, 2)
    window["added"] = added
    window["file_mb"] = round(os.path.getsize(path) / 2**20, 1)
    final = rec.status()
    window["status_closed"] = final
    window["dropped"] = final["dropped"]
    return window


def _real_rate(
    recorder_cls: Any, patients: list[tuple[str, str]], path: str, seconds: float
) -> dict[str, Any]:
    """64 patients x 2 Hz in real time, each patient's reading at its own phase."""

    def window(rec: Any | None, length: float) -> dict[str, Any]:
        rng = random.Random(SEED)
        phase = {pid: rng.random() * PERIOD_S for pid, _ in patients}
        due = sorted((phase[pid], pid) for pid, _ in patients)
        t_origin = time.monotonic()
        cpu0, threads0 = time.process_time(), _other_threads_cpu()
        sent = 0
        while True:
            offset, pid = due[0]
            at = t_origin + offset
            if offset > length:
                break
            delay = at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if rec is not None:
                rec.add(pid, [(int(time.time() * 1000), 60 + sent % 40)])
            sent += 1
            due[0] = (offset + PERIOD_S, pid)
            due.sort()
        wall = time.monotonic() - t_origin
        return {
            "seconds": round(wall, 2),
            "readings": sent,
            "process_cpu_percent": 100 * (time.process_time() - cpu0) / wall,
            "other_threads_cpu_percent": 100 * _since(threads0) / wall,
        }

    baseline = window(None, min(10.0, seconds / 2))  # the feeding loop alone, no recorder
    rec = recorder_cls(path, patients, retention=RETENTION_S, trend_retention=TREND_RETENTION_S)
    rec.start()
    try:
        time.sleep(1.0)
        measured = window(rec, seconds)
        rec.flush(timeout=30)
        measured["status"] = rec.status()
    finally:
        rec.close(timeout=30)
    measured["feeder_alone"] = baseline
    measured["recorder_cpu_percent"] = (
        measured["process_cpu_percent"] - baseline["process_cpu_percent"]
    )
    return measured


def run_ingest(quick: bool) -> dict[str, Any]:
    seconds, real_seconds = (10.0, 20.0) if quick else (30.0, 60.0)
    load0 = _load()
    child = spawn(
        "history-ingest",
        [PY, str(Path(__file__).resolve()), "--ingest-child", f"{seconds},{real_seconds}"],
        stdout=-1,
    )
    try:
        result = read_json_line(child, timeout=2 * seconds + real_seconds + 300)
    finally:
        end(child, timeout=30)
    result["load_avg_before"] = load0
    result["load_avg_after"] = _load()
    return result


# -- (b) the recorder's effect on live latency ---------------------------------------------


class Upstream:
    """64 patients' services: ``/p/<id>`` sends ``{"time", "value"}`` every PERIOD_S."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = list(ids)
        self.conns: dict[str, set[Any]] = {pid: set() for pid in self.ids}
        self.sent = 0
        self.rng = random.Random(SEED)

    async def handler(self, ws: Any) -> None:
        pid = ws.request.path.rsplit("/", 1)[-1]
        conns = self.conns.get(pid)
        if conns is None:
            await ws.close(1008, "unknown patient")
            return
        conns.add(ws)
        try:
            await ws.wait_closed()
        finally:
            conns.discard(ws)

    async def tick(self, pid: str, phase: float) -> None:
        loop = asyncio.get_running_loop()
        at = loop.time() + phase
        bpm = 60 + self.rng.randrange(40)
        while True:
            at += PERIOD_S
            await asyncio.sleep(max(0.0, at - loop.time()))
            bpm = min(180, max(40, bpm + self.rng.choice((-1, 0, 1))))
            for ws in list(self.conns[pid]):
                frame = json.dumps({"time": time.time_ns() // 1_000_000, "value": bpm})
                with contextlib.suppress(Exception):
                    await ws.send(frame)
                    self.sent += 1


class Viewers:
    """Patient viewers (every reading once) and a station viewer (new seqs in ``recent``)."""

    def __init__(self) -> None:
        self.counting = False
        self.patient_ms: list[float] = []
        self.station_ms: list[float] = []
        self.station_seen: dict[str, int] = {}

    async def patient(self, port: int, pid: str) -> None:
        from websockets.asyncio.client import connect

        async with connect(f"ws://127.0.0.1:{port}/ws?patient={pid}", max_size=None) as ws:
            async for message in ws:
                arrived = time.time() * 1000
                frame = json.loads(message)
                if frame.get("type") != "readings" or frame.get("snapshot") or not self.counting:
                    continue
                self.patient_ms.extend(arrived - r["time"] for r in frame["readings"])

    async def station(self, port: int) -> None:
        from websockets.asyncio.client import connect

        async with connect(f"ws://127.0.0.1:{port}/ws?station=1", max_size=None) as ws:
            async for message in ws:
                arrived = time.time() * 1000
                frame = json.loads(message)
                if frame.get("type") != "station":
                    continue
                if frame.get("snapshot"):
                    await ws.send(json.dumps({"type": "snapshot_ok", "run": frame.get("run")}))
                for p in frame.get("patients", []):
                    last = self.station_seen.get(p["id"])
                    recent = p.get("recent") or []
                    for r in recent:
                        if self.counting and last is not None and r["seq"] > last:
                            self.station_ms.append(arrived - r["time"])
                    if recent:
                        self.station_seen[p["id"]] = max(last or 0, recent[-1]["seq"])


def _get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


async def _latency_run(
    db: str, sources: Path, upstream_port: int, seconds: float, tag: str
) -> dict[str, Any]:
    from benchmarks.simulator_ward import free_port, wait_listening

    bridge_port = free_port()
    env = {
        "HRDASH_SOURCES": str(sources),
        "HRDASH_BRIDGE_PORT": str(bridge_port),
        "HRDASH_PORT": str(free_port()),
        "HRDASH_DB": db,
        "HRDASH_LOG_LEVEL": "warning",
    }
    child = spawn(f"history-bridge-{tag}", [PY, "-m", "hrdash", "bridge"], env=env)
    tasks: list[asyncio.Task[None]] = []
    try:
        await wait_listening(bridge_port, 30)
        deadline = time.monotonic() + 30
        while True:
            listing = await asyncio.to_thread(
                _get_json, f"http://127.0.0.1:{bridge_port}/api/patients"
            )
            if len(listing) == PATIENTS and all(p.get("state") == "live" for p in listing):
                break
            if time.monotonic() > deadline:
                raise TimeoutError("not every patient was live within 30 s")
            await asyncio.sleep(0.2)
        views = Viewers()
        ids = patient_ids(PATIENTS)
        step = PATIENTS // PATIENT_VIEWERS
        tasks = [
            asyncio.create_task(views.patient(bridge_port, ids[i * step]))
            for i in range(PATIENT_VIEWERS)
        ]
        tasks.append(asyncio.create_task(views.station(bridge_port)))
        await asyncio.sleep(2.0)
        proc = psutil.Process(child.proc.pid)
        cpu0, t0 = proc.cpu_times(), time.monotonic()
        views.counting = True
        await asyncio.sleep(seconds)
        views.counting = False
        cpu1, wall = proc.cpu_times(), time.monotonic() - t0
        health = await asyncio.to_thread(_get_json, f"http://127.0.0.1:{bridge_port}/healthz")
        return {
            "db": "file" if db != ":memory:" else ":memory:",
            "seconds": round(wall, 2),
            "patient_viewers_ms": summary(views.patient_ms),
            "patient_viewers_over_10ms": sum(1 for x in views.patient_ms if x > 10),
            "station_viewer_ms": summary(views.station_ms),
            "bridge_cpu_percent": 100
            * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system))
            / wall,
            "bridge_rss_mb": proc.memory_info().rss / 2**20,
            "recorder": health.get("recorder"),
            "load_avg": _load(),
            "raw_patient_ms": [round(x, 1) for x in views.patient_ms],
        }
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        end(child, timeout=15)


async def _latency(quick: bool) -> dict[str, Any]:
    from websockets.asyncio.server import serve

    rounds, seconds = (2, 12.0) if quick else (3, 30.0)
    ids = patient_ids(PATIENTS)
    upstream = Upstream(ids)
    rng = random.Random(SEED)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hrdash-bench-latency-") as tmp:
        async with serve(upstream.handler, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            sources = Path(tmp) / "sources.toml"
            sources.write_text(
                "".join(
                    f'[[patient]]\nid = "{pid}"\nname = "Bed {i + 1}"\n'
                    f'url = "ws://127.0.0.1:{port}/p/{pid}"\n\n'
                    for i, pid in enumerate(ids)
                )
            )
            tickers = [
                asyncio.create_task(upstream.tick(pid, rng.random() * PERIOD_S)) for pid in ids
            ]
            try:
                for r in range(rounds):
                    order = ("file", ":memory:") if r % 2 == 0 else (":memory:", "file")
                    for which in order:
                        db = str(Path(tmp) / "history.db") if which == "file" else ":memory:"
                        tag = f"{r}-{'file' if which == 'file' else 'memory'}"
                        print(f"[history] latency run {tag}", file=sys.stderr, flush=True)
                        run = await _latency_run(db, sources, port, seconds, tag)
                        run["round"] = r
                        runs.append(run)
            finally:
                for task in tickers:
                    task.cancel()
                await asyncio.gather(*tickers, return_exceptions=True)
    pooled: dict[str, Any] = {}
    for which in ("file", ":memory:"):
        samples = [x for run in runs if run["db"] == which for x in run.pop("raw_patient_ms")]
        mine = [run for run in runs if run["db"] == which]
        pooled[which] = {
            "patient_viewers_ms": summary(samples),
            "patient_viewers_over_10ms_pct": (
                100 * sum(1 for x in samples if x > 10) / len(samples) if samples else None
            ),
            "station_viewer_p50_p99_per_run": [
                [run["station_viewer_ms"]["p50"], run["station_viewer_ms"]["p99"]] for run in mine
            ],
            "bridge_cpu_percent_mean": sum(run["bridge_cpu_percent"] for run in mine) / len(mine),
        }
    file_runs = [run.get("recorder") for run in runs if run["db"] == "file"]
    recorder_wired = all(isinstance(r, dict) and "written" in r for r in file_runs)
    return {
        "patients": PATIENTS,
        "period_s": PERIOD_S,
        "patient_viewers": PATIENT_VIEWERS,
        "rounds": rounds,
        "seconds_per_run": seconds,
        "recorder_wired": recorder_wired,
        "recorder_written_per_file_run": [
            r.get("written") if isinstance(r, dict) else None for r in file_runs
        ],
        "recorder_dropped_per_file_run": [
            r.get("dropped") if isinstance(r, dict) else None for r in file_runs
        ],
        "pooled": pooled,
        "runs": runs,
    }


@contextlib.contextmanager
def _no_hrdash_env() -> Iterator[None]:
    """Children get our environment (common.spawn, tests.support): none of our HRDASH_*."""
    saved = dict(os.environ)
    for key in [k for k in os.environ if k.startswith("HRDASH_")]:
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_latency(quick: bool) -> dict[str, Any]:
    with _no_hrdash_env():
        return asyncio.run(_latency(quick))


# -- (c) the seeded 24 h history: size, trend queries, exports -----------------------------


def seeded(cache: Path) -> dict[str, Any]:
    """The cached 64 x 24 h file, seeded now if the cache does not hold it."""
    path = cache / f"history-{PATIENTS}x{HOURS:g}h-2hz-seed{SEED}.db"
    meta = path.with_suffix(".json")
    want = {"patients": PATIENTS, "hours": HOURS, "rate_hz": 1 / PERIOD_S, "seed": SEED}
    if path.exists() and meta.exists():
        info = json.loads(meta.read_text())
        if all(info.get(k) == v for k, v in want.items()):
            info["reused"] = True
            info["bytes"] = path.stat().st_size
            return info
    cache.mkdir(parents=True, exist_ok=True)
    for stale in (path, meta):
        stale.unlink(missing_ok=True)
    print(f"[history] seeding {path} ...", file=sys.stderr, flush=True)
    info = seed(path, patients=PATIENTS, hours=HOURS, rate_hz=1 / PERIOD_S, seed=SEED, holes=())
    info.pop("ids")
    info["load_avg_after"] = _load()
    meta.write_text(json.dumps(info, indent=1))
    info["reused"] = False
    return info


def _table_bytes(path: Path) -> dict[str, int] | None:
    """Bytes per table and index (SQLite's dbstat), None when this SQLite lacks it."""
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
        rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
        conn.close()
    except sqlite3.Error:
        return None
    return {str(name): int(size) for name, size in rows}


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = fn()
    return 1000 * (time.perf_counter() - t0), value


def _ranges(end_ms: int) -> list[tuple[str, int, int]]:
    return [(label, end_ms - hours * HOUR_MS, end_ms) for label, hours in RANGES]


def _api_queries(path: Path, end_ms: int, n: int) -> dict[str, Any]:
    from hrdash import history
    from hrdash.settings import Settings

    settings = Settings.load(
        env={"HRDASH_DB": str(path), "HRDASH_SIMULATOR_PATIENTS": str(PATIENTS)}
    )
    out: dict[str, Any] = {}
    times: dict[str, list[float]] = {label: [] for label, _ in RANGES}
    shapes: dict[str, Any] = {}
    # Python's full (generation 2) garbage collections during each timed call: the trend's
    # tail is mostly those (the calls allocate a few thousand objects each).
    full_gcs: list[int] = []

    def note_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info.get("generation") == 2:
            full_gcs.append(1)

    with_gc: dict[str, list[float]] = {label: [] for label, _ in RANGES}
    gc.callbacks.append(note_gc)
    try:
        for i in range(n + 1):
            for label, start, stop in _ranges(end_ms):
                before = len(full_gcs)
                ms, body = _timed(
                    lambda s=start, e=stop: history.trend(settings, QUERY_PATIENT, s, e)
                )
                if i == 0:
                    out[f"{label}_first_ms"] = ms
                    shapes[label] = {"buckets": len(body["buckets"]), "width": body["width"]}
                else:
                    times[label].append(ms)
                    if len(full_gcs) > before:
                        with_gc[label].append(ms)
    finally:
        gc.callbacks.remove(note_gc)
    out["calls_with_a_full_gc_ms"] = with_gc
    zoom: list[float] = []
    for _ in range(n):
        ms, body = _timed(
            lambda: history.trend(settings, QUERY_PATIENT, end_ms - ZOOM_MS, end_ms, raw=True)
        )
        zoom.append(ms)
    shapes["zoom_10min_raw"] = {
        "buckets": len(body["buckets"]),
        "readings": None if body["readings"] is None else len(body["readings"]),
    }
    csv_ms, text = _timed(
        lambda: history.readings_csv(settings, QUERY_PATIENT, end_ms - 24 * HOUR_MS, end_ms)
    )
    out.update({label: summary(v) for label, v in times.items()})
    out["zoom_10min_raw"] = summary(zoom)
    out["shapes"] = shapes
    out["readings_csv_24h_ms"] = csv_ms
    out["readings_csv_24h_rows"] = text.count("\n") - 1
    return out


def _http_get(url: str, timeout: float = 30.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _http_queries(path: Path, end_ms: int, n: int, exports: int) -> dict[str, Any]:
    from tests.support import app_command, start_hrdash, stop

    env = {
        "HRDASH_DB": str(path),
        "HRDASH_SIMULATOR_PATIENTS": str(PATIENTS),
        "HRDASH_SIMULATOR_PERIOD": str(PERIOD_S),
        "HRDASH_SIMULATOR_SEED": str(SEED),
        "HRDASH_LOG_LEVEL": "warning",
    }
    with _no_hrdash_env():
        running = start_hrdash(app_command(), env)
    base = f"http://127.0.0.1:{running.port}/api/patients/{QUERY_PATIENT}"
    out: dict[str, Any] = {"server": "python app.py (werkzeug, threaded)"}
    try:
        time.sleep(3.0)  # the bridge connected, its recorder writing beside us
        server_pid = running.proc.pid
        times: dict[str, list[float]] = {label: [] for label, _ in RANGES}
        statuses: set[int] = set()
        cpu = psutil.Process(server_pid)
        c0 = cpu.cpu_times()
        t_all = time.monotonic()
        for i in range(n + 1):
            for label, start, stop_ms in _ranges(end_ms):
                url = f"{base}/trend?" + urllib.parse.urlencode({"from": start, "to": stop_ms})

                def get(u: str = url) -> tuple[int, Any]:
                    status, body = _http_get(u)
                    return status, json.loads(body) if status == 200 else body

                ms, (status, body) = _timed(get)
                statuses.add(status)
                if i == 0:
                    out[f"{label}_first_ms"] = ms
                    out[f"{label}_buckets"] = (
                        len(body["buckets"]) if status == 200 else f"{status}: {body[:200]!r}"
                    )
                else:
                    times[label].append(ms)
        c1 = cpu.cpu_times()
        out["server_cpu_percent_while_querying"] = (
            100 * ((c1.user + c1.system) - (c0.user + c0.system)) / (time.monotonic() - t_all)
        )
        zoom: list[float] = []
        zoom_url = f"{base}/trend?" + urllib.parse.urlencode(
            {"from": end_ms - ZOOM_MS, "to": end_ms, "raw": 1}
        )
        for _ in range(n):
            ms, (status, _body) = _timed(lambda: _http_get(zoom_url))
            statuses.add(status)
            zoom.append(ms)
        out.update({label: summary(v) for label, v in times.items()})
        out["zoom_10min_raw"] = summary(zoom)
        for name in ("readings.csv", "trend.csv"):
            url = f"{base}/{name}?" + urllib.parse.urlencode(
                {"from": end_ms - 24 * HOUR_MS, "to": end_ms}
            )
            runs: list[float] = []
            size = rows = 0
            for _ in range(exports):
                ms, (status, body) = _timed(lambda u=url: _http_get(u, timeout=60))
                statuses.add(status)
                runs.append(ms)
                size, rows = len(body), body.count(b"\n") - 1
            out[name] = {"ms": summary(runs), "runs_ms": runs, "bytes": size, "rows": rows}
        out["statuses"] = sorted(statuses)
        with contextlib.suppress(Exception):
            out["bridge_recorder"] = _get_json(
                f"http://127.0.0.1:{running.bridge_port}/healthz"
            ).get("recorder")
    finally:
        out["leftover_pids"] = stop(running)
    return out


def run_queries(quick: bool, cache: Path, keep: bool) -> dict[str, Any]:
    n, exports = (20, 3) if quick else (50, 5)
    result: dict[str, Any] = {"cache": str(cache), "kept": keep}
    print(f"[history] seeded history cached in {cache}", file=sys.stderr, flush=True)
    try:
        info = seeded(cache)
        path = Path(info["path"])
        patient_days = PATIENTS * HOURS / 24
        result["seed"] = info
        result["file_mb"] = info["bytes"] / 2**20
        result["mb_per_patient_day"] = info["bytes"] / 2**20 / patient_days
        tables = _table_bytes(path)
        if tables:
            result["table_mb"] = {k: round(v / 2**20, 2) for k, v in tables.items()}
        result["load_avg_before"] = _load()
        for part, fn in (
            ("api", lambda: _api_queries(path, info["end_ms"], n)),
            ("http", lambda: _http_copy(path, info["end_ms"], n, exports)),
        ):
            try:
                result[part] = fn()
            except Exception as exc:  # one part failing leaves the others' numbers
                result[part] = {"error": f"{type(exc).__name__}: {exc}"}
        result["load_avg_after"] = _load()
    finally:
        if not keep:
            shutil.rmtree(cache, ignore_errors=True)
    return result


def _http_copy(path: Path, end_ms: int, n: int, exports: int) -> dict[str, Any]:
    """The HTTP queries on a copy of the cached file (the app's bridge records into it)."""
    with tempfile.TemporaryDirectory(prefix="hrdash-bench-http-") as tmp:
        work = Path(tmp) / "hrdash.db"
        shutil.copyfile(path, work)
        return _http_queries(work, end_ms, n, exports)


# -- the section ---------------------------------------------------------------------------


def run(
    quick: bool,
    *,
    parts: Sequence[str] = PARTS,
    keep: bool = False,
    cache: Path = CACHE,
) -> dict[str, Any]:
    out: dict[str, Any] = {"parts": list(parts), "load_avg_at_start": _load()}
    for part in parts:
        print(f"[history] {part} ...", file=sys.stderr, flush=True)
        try:
            if part == "ingest":
                out["ingest"] = run_ingest(quick)
            elif part == "latency":
                out["latency"] = run_latency(quick)
            elif part == "queries":
                out["queries"] = run_queries(quick, cache, keep)
            else:
                raise ValueError(f"unknown part {part!r} (one of {', '.join(PARTS)})")
        except Exception as exc:
            out[part] = {"error": f"{type(exc).__name__}: {exc}"}
    out["load_avg_at_end"] = _load()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--keep", action="store_true", help="keep the seeded cache")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--ingest-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ingest_child:
        seconds, real_seconds = (float(x) for x in args.ingest_child.split(","))
        print(json.dumps(ingest_child(seconds, real_seconds)), flush=True)
        return
    result = run(args.quick, parts=tuple(args.parts.split(",")), keep=args.keep, cache=args.cache)
    text = json.dumps(result, indent=1) + "\n"
    print(text, end="")  # the table: python benchmarks/run.py --only history
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
