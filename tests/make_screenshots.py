"""Regenerate the README's screenshots:
`python -m tests.make_screenshots [monitor|station|trend|alarms]`.

Starts `python app.py` on free ports with a seeded simulator, waits for a full window, and saves
desktop and phone screenshots of the page taken in headless Chromium. The station's screenshots
(`station-16.png`, `station-64.png`) are of a simulated ward of 16 and 64 patients at 1920x1080,
taken once every tile is live and the sparklines hold STATION_HISTORY seconds;
`station-states.png` is a ward of 12 from a sources file where one service is down (nothing
listens) and one has gone silent (its tile stale), the others simulated. `trend-24h.png` is the
monitor of `bed-01` over a seeded history (`benchmarks/history_seed.py`: 24 h at 2 Hz with its
default holes) with the 24 h trend shown, at TREND_SIZE. `station-alarms.png` is a ward of 9
scripted services driven into high, medium and low alarms (one of each acknowledged or latched
too), `monitor-alarms.png` the monitor of its patient with the extreme high alarm: its Alarms
panel with the current alarm and the log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hrdash import ids
from tests.support import (
    ROOT,
    ScriptedService,
    app_command,
    chromium_page,
    free_port,
    get_json,
    start_hrdash,
    stop,
    wait_port,
)
from tests.test_station_browser import SHAPES, PatientService

OUT = ROOT / "assets" / "screenshots"
TREND_SIZE = (1440, 900)  # a laptop screen: the live chart and the trend card above the fold
TREND_LIVE_S = 12.0  # seconds of live readings before the trend's screenshot
STATION_SIZES = (16, 64)  # patients
STATION_HISTORY = 125.0  # seconds of readings held before the shot: full sparklines


def settle_and_shoot(
    page: Any, name: str, *, full_page: bool = False, settle_ms: int = 1500
) -> None:
    """Let the page settle (the last frames drawn), then save OUT/<name>.png."""
    page.wait_for_timeout(settle_ms)
    path = OUT / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    print(f"wrote {path}")


def monitor() -> None:
    running = start_hrdash(app_command(), {"HRDASH_SIMULATOR_SEED": "7"})
    try:
        running.wait_readings(24)
        for name, (width, height) in {"monitor": (1280, 900), "phone": (390, 844)}.items():
            with chromium_page(width, height) as page:
                page.goto(running.url)
                page.wait_for_function(
                    "document.querySelectorAll('#hr-table .ag-center-cols-container .ag-row')"
                    ".length >= 20",
                    timeout=15000,
                )
                settle_and_shoot(page, name, full_page=True)
    finally:
        stop(running)


def station() -> None:
    for count in STATION_SIZES:
        env = {"HRDASH_SIMULATOR_SEED": "7", "HRDASH_SIMULATOR_PATIENTS": str(count)}
        running = start_hrdash(app_command(), env)
        try:
            time.sleep(STATION_HISTORY)
            with chromium_page(1920, 1080) as page:
                page.goto(running.url)
                page.wait_for_function(
                    "(n) => document.querySelectorAll('[data-patient][data-state=\"live\"]')"
                    ".length === n",
                    arg=count,
                    timeout=30000,
                )
                settle_and_shoot(page, f"station-{count}")
        finally:
            stop(running)


def station_states() -> None:
    """A ward of 12: ten simulated patients, one whose service is down, one gone silent."""
    count = 12
    sim_port, dead_port = free_port(), free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "hrdash", "simulate"],
        env={
            **os.environ,
            "HRDASH_SIMULATOR_PORT": str(sim_port),
            "HRDASH_SIMULATOR_PATIENTS": str(count),
            "HRDASH_SIMULATOR_SEED": "7",
        },
        cwd=ROOT,
    )
    silent = PatientService(SHAPES["reference"], [78, 80, 82, 81, 79], limit=90)
    running = None
    try:
        wait_port(sim_port, 30, sim)
        silent.start()
        tables = []
        for i in range(1, count + 1):
            pid = f"bed-{i:02d}"
            url = f"ws://127.0.0.1:{sim_port}/patients/{pid}"
            if i == 3:
                url = f"ws://127.0.0.1:{dead_port}/hr"
            elif i == 7:
                url = silent.url
            tables.append(f'[[patient]]\nid = "{pid}"\nname = "Bed {i}"\nurl = "{url}"\n')
        with tempfile.TemporaryDirectory() as tmp:
            sources = Path(tmp) / "sources.toml"
            sources.write_text("\n".join(tables))
            running = start_hrdash(
                app_command(), {"HRDASH_SOURCES": str(sources), "HRDASH_SOURCE_NAME": "Ward 4B"}
            )
            time.sleep(STATION_HISTORY)
            with chromium_page(1920, 1080) as page:
                page.goto(running.url)
                page.wait_for_function(
                    "() => ['down', 'stale'].every((s) => "
                    "document.querySelector(`[data-state=${s}]`))",
                    timeout=30000,
                )
                settle_and_shoot(page, "station-states")
    finally:
        if running is not None:
            stop(running)
        silent.close()
        sim.terminate()
        sim.wait(10)


def trend() -> None:
    """The monitor over a seeded 24 h history, the 24 h trend shown."""
    from benchmarks.history_seed import seed

    now = int(time.time() * 1000)
    with tempfile.TemporaryDirectory() as tmp:
        # The seeded history ends where this minute starts: the simulator's readings fill the
        # minutes from here on, without a bucket that mixes the two.
        info = seed(
            Path(tmp) / "history.db", patients=1, hours=24, seed=7, end_ms=now - now % 60_000
        )
        env = {"HRDASH_SIMULATOR_SEED": "7", "HRDASH_DB": info["path"]}
        running = start_hrdash(app_command(), env)
        try:
            time.sleep(TREND_LIVE_S)  # the live window holds the simulator's readings only
            with chromium_page(*TREND_SIZE) as page:
                page.goto(f"{running.url}patient/bed-01")
                page.wait_for_function(
                    "document.querySelectorAll('#hr-table .ag-center-cols-container .ag-row')"
                    ".length >= 20",
                    timeout=15000,
                )
                page.click(f"#{ids.TREND_RANGES} [data-range='24h']")
                page.wait_for_function(
                    "(id) => { const c = document.getElementById(id);"
                    " return c.dataset.range === '24h' && c.dataset.mode === 'buckets'"
                    " && Number(c.dataset.points) > 1000; }",
                    arg=ids.TREND_CARD,
                    timeout=15000,
                )
                settle_and_shoot(page, "trend-24h", settle_ms=1000)
        finally:
            stop(running)


ALARM_WARD = {  # bed → the value its service ends on (None: it goes silent)
    "bed-1": 168,  # extreme high: high priority
    "bed-2": 131,  # high: medium
    "bed-3": 72,
    "bed-4": 45,  # low: medium
    "bed-5": 36,  # extreme low, acknowledged below
    "bed-6": None,  # no signal: low
    "bed-7": 81,
    "bed-8": 64,
    "bed-9": 77,
}
ALARMS_SIZE = (1600, 900)


def alarms() -> None:
    """A ward of 9 scripted services in high, medium and low alarms at once, and the monitor of
    the patient with the extreme high alarm."""
    import json

    from websockets.sync.client import connect

    from hrdash.alarms import HIGH_DELAY, MEDIUM_DELAY, NO_SIGNAL_AFTER

    service = ScriptedService(list(ALARM_WARD), value=70)
    running = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            sources = Path(tmp) / "sources.toml"
            names = {pid: f"Bed {pid.split('-')[1]}" for pid in ALARM_WARD}
            sources.write_text(service.sources(names))
            env = {
                "HRDASH_SOURCES": str(sources),
                "HRDASH_SOURCE_NAME": "Ward 4B",
                "HRDASH_DB": str(Path(tmp) / "history.db"),  # a history of this run only
            }
            running = start_hrdash(app_command(), env)
            running.wait_readings(4)
            time.sleep(20)  # a normal stretch: the sparklines have some history
            for pid, value in ALARM_WARD.items():
                service.set(pid, value)
            time.sleep(max(MEDIUM_DELAY, HIGH_DELAY, NO_SIGNAL_AFTER) + 3)
            # Acknowledge bed-5's extreme low alarm as a page would (its allowed Origin).
            origin = running.url.rstrip("/")
            bridge = f"ws://127.0.0.1:{running.bridge_port}/ws?station=1"
            with connect(bridge, origin=origin) as ws:  # type: ignore[arg-type]
                for alarm in get_json(f"http://127.0.0.1:{running.bridge_port}/api/alarms"):
                    if alarm["patient"] == "bed-5" and alarm["kind"] == "hr_extreme_low":
                        ws.send(json.dumps({"type": "ack", "alarm": alarm["id"]}))
                time.sleep(1)
            with chromium_page(*ALARMS_SIZE, reduced_motion="reduce") as page:
                page.goto(running.url)
                page.wait_for_function(
                    "() => ['high', 'medium', 'low'].every((a) => "
                    "document.querySelector(`[data-alarm=${a}]`))",
                    timeout=30000,
                )
                settle_and_shoot(page, "station-alarms")
            with chromium_page(1280, 900, reduced_motion="reduce") as page:
                page.goto(f"{running.url}patient/bed-1")
                page.wait_for_function(
                    "(id) => document.querySelectorAll(`#${id} tbody tr`).length >= 1",
                    arg=ids.ALARM_LOG,
                    timeout=30000,
                )
                page.locator(f"#{ids.ALARMS}").scroll_into_view_if_needed()
                settle_and_shoot(page, "monitor-alarms", full_page=True)
    finally:
        if running is not None:
            stop(running)
        service.close()


def main(which: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    if not which or "monitor" in which:
        monitor()
    if not which or "station" in which:
        station()
    if not which or "station" in which or "states" in which:
        station_states()
    if not which or "trend" in which:
        trend()
    if not which or "alarms" in which:
        alarms()


if __name__ == "__main__":
    main(sys.argv[1:])
