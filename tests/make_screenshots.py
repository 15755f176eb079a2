"""Regenerate the README's screenshots: `python -m tests.make_screenshots`.

Starts `python app.py` on free ports with a seeded simulator, waits for a full window, and saves
desktop and phone screenshots of the page taken in headless Chromium.
"""

from __future__ import annotations

from tests.support import ROOT, app_command, chromium_page, start_hrdash, stop

OUT = ROOT / "assets" / "screenshots"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
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


if __name__ == "__main__":
    main()
