"""Regenerate the README's screenshots: `python -m tests.make_screenshots [monitor|station]`.

Starts `python app.py` on free ports with a seeded simulator, waits for a full window, and saves
desktop and phone screenshots of the page taken in headless Chromium. The station's screenshots
(`station-16.png`, `station-64.png`) are of a simulated ward of 16 and 64 patients at 1920x1080,
taken once every tile is live and the sparklines hold STATION_HISTORY seconds.
"""

from __future__ import annotations

import sys
import time

from tests.support import ROOT, app_command, chromium_page, start_hrdash, stop

OUT = ROOT / "assets" / "screenshots"
STATION_SIZES = (16, 64)  # patients
STATION_HISTORY = 125.0  # seconds of readings held before the shot: full sparklines


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
                page.wait_for_timeout(1500)
                page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
                print(f"wrote {OUT / f'{name}.png'}")
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
                page.wait_for_timeout(1500)
                path = OUT / f"station-{count}.png"
                page.screenshot(path=str(path))
                print(f"wrote {path}")
        finally:
            stop(running)


def main(which: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    if not which or "monitor" in which:
        monitor()
    if not which or "station" in which:
        station()


if __name__ == "__main__":
    main(sys.argv[1:])
