"""(d) Soak (full mode; ``--soak-seconds``): ``python app.py`` with the simulator at
``--period`` (default 0.1 s, i.e. 5 minutes hold 3,000 readings = 25 minutes at the real 2 Hz), one
Chromium page and 100 extra bridge viewers (a load process). Every 5 s: bridge RSS, Dash server
RSS, the page's JS heap (CDP ``Performance.getMetrics`` → ``JSHeapUsedSize``) and DOM node count.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from typing import Any

import psutil

from benchmarks.common import PY, end, spawn
from tests.support import CHROMIUM, CHROMIUM_ARGS, app_command, start_hrdash, stop

VIEWERS = 100
EVERY = 5.0


def _slope_per_hour(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of ys over xs (seconds), per hour, on the second half of the run."""
    half = len(xs) // 2
    xs, ys = xs[half:], ys[half:]
    if len(xs) < 3:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return (
        3600 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else None
    )


def run(seconds: float, period: float = 0.1) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from benchmarks.fanout import _read_json_line

    env = {"HRDASH_SIMULATOR_PERIOD": str(period), "HRDASH_LOG_LEVEL": "warning"}
    running = start_hrdash(app_command(), env)
    samples: list[dict[str, Any]] = []
    out: dict[str, Any] = {"seconds": seconds, "period_s": period, "viewers": VIEWERS + 1}
    load = None
    try:
        running.wait_readings(25, timeout=30)
        bridge = running.child("bridge")
        url = f"ws://127.0.0.1:{running.bridge_port}/ws"
        server = psutil.Process(running.proc.pid)
        load = spawn(
            "soak-load",
            [PY, "-m", "benchmarks._load", "load", url, str(VIEWERS)],
            stdout=subprocess.PIPE,
            raise_limit=True,
        )
        out["load"] = _read_json_line(load, 60)
        with tempfile.TemporaryDirectory(prefix="hrdash-soak-") as profile, sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = context.pages[0] if context.pages else context.new_page()
                cdp = context.new_cdp_session(page)
                cdp.send("Performance.enable")
                page.goto(running.url)
                page.wait_for_selector("#hr-table .ag-row", timeout=30_000)
                t0 = time.monotonic()
                while True:
                    metrics = {
                        m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]
                    }
                    health = running.health()
                    samples.append(
                        {
                            "t": round(time.monotonic() - t0, 1),
                            "bridge_rss_mb": bridge.memory_info().rss / 2**20,
                            "server_rss_mb": server.memory_info().rss / 2**20,
                            "js_heap_mb": metrics.get("JSHeapUsedSize", 0) / 2**20,
                            "dom_nodes": metrics.get("Nodes"),
                            "bridge_viewers": health["viewers"],
                            "last_seq": health["last_seq"],
                            "rows": page.locator(
                                "#hr-table .ag-center-cols-container .ag-row"
                            ).count(),
                        }
                    )
                    if time.monotonic() - t0 >= seconds:
                        break
                    page.wait_for_timeout(EVERY * 1000)
            finally:
                context.close()
    finally:
        end(load)
        stop(running)
    out["samples"] = samples
    if samples:
        ts = [s["t"] for s in samples]
        for key in ("bridge_rss_mb", "server_rss_mb", "js_heap_mb"):
            values = [s[key] for s in samples]
            out[key] = {
                "first": values[0],
                "last": values[-1],
                "max": max(values),
                "slope_mb_per_hour_2nd_half": _slope_per_hour(ts, values),
            }
        out["readings"] = samples[-1]["last_seq"] - samples[0]["last_seq"]
    return out


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(float(sys.argv[1]) if len(sys.argv) > 1 else 30), indent=1)[-3000:])
