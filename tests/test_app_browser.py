"""End to end, the way a newcomer meets hrdash: `python app.py` (and `gunicorn -w 2 app:server`)
started as a subprocess, the page opened in a real headless Chromium."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from hrdash import ids
from tests.support import (
    Running,
    app_command,
    chromium_page,
    gunicorn_command,
    hrdash_running,
    poll,
    scaled,
    start_hrdash,
    stop,
    watch,
)

pytestmark = pytest.mark.browser

# Reads what a person sees: the grid's rows in display order, the chart's points, the cards.
SNAPSHOT_JS = """
(ids) => {
  const rows = [...document.querySelectorAll(`#${ids.table} .ag-center-cols-container .ag-row`)]
    .map((row) => ({
      index: Number(row.getAttribute('row-index')),
      id: row.getAttribute('row-id'),
      seq: Number(row.querySelector('[col-id="seq"]')?.textContent),
      bpm: Number(row.querySelector('[col-id="bpm"]')?.textContent),
      time: row.querySelector('[col-id="time"]')?.textContent.trim(),
    }))
    .sort((a, b) => a.index - b.index);
  const gd = document.querySelector(`#${ids.chart} .js-plotly-plot`);
  const trace = gd && gd.data && gd.data[0];
  return {
    rows,
    points: trace ? trace.x.length : 0,
    lastPoint: trace && trace.y.length ? trace.y[trace.y.length - 1] : null,
    bpm: document.getElementById(ids.bpm)?.textContent.trim(),
    time: document.getElementById(ids.time)?.textContent.trim(),
    status: document.getElementById(ids.status)?.textContent.trim(),
  };
}
"""
IDS = {
    "table": ids.TABLE,
    "chart": ids.CHART,
    "bpm": ids.CURRENT_BPM,
    "time": ids.CURRENT_TIME,
    "status": ids.STATUS,
}
WINDOW = 20


def snapshot(page: Any) -> dict[str, Any]:
    return dict(page.evaluate(SNAPSHOT_JS, IDS))


def wait_until(page: Any, predicate: Any, timeout: float, what: str) -> dict[str, Any]:
    """Poll the page's snapshot until ``predicate`` holds; fail with the last snapshot."""
    return poll(page, snapshot, predicate, timeout, what)


def newest(snap: dict[str, Any]) -> dict[str, Any]:
    """The newest row: the last one, since the default order appends the newest last."""
    return dict(snap["rows"][-1])


def open_and_check_live_page(running: Running) -> None:
    """The checks every deployment must pass (see the test docstrings)."""
    running.wait_readings(WINDOW + 2, timeout=30)  # the bridge has run for >= 10 s
    with chromium_page() as page:
        dash_requests, errors = watch(page)
        page.goto(running.url)
        first = wait_until(page, lambda s: len(s["rows"]) > 0, 15, "the first rows")
        # The snapshot arrives as one frame: the table starts full rather than filling up over
        # 10 s. A lost first frame is repaired by the gap fill within about a second.
        wait_until(
            page,
            lambda s: len(s["rows"]) == WINDOW and s["points"] == WINDOW,
            2.0,
            f"{WINDOW} rows and {WINDOW} chart points",
        )
        assert first["rows"], first

        # The current card equals the newest row, and the chart's last point too; rows are
        # ordered oldest first (newest appended last) with contiguous seqs. A frame that Dash
        # coalesced away leaves a hole for a moment, repaired from the next frame or by a resend.
        def settled(s: dict[str, Any]) -> bool:
            seqs = [row["seq"] for row in s["rows"]]
            return (
                len(seqs) == WINDOW
                and seqs == list(range(seqs[0], seqs[0] + WINDOW))
                and s["bpm"] == str(newest(s)["bpm"])
                and s["time"] == newest(s)["time"]
                and s["lastPoint"] == newest(s)["bpm"]
            )

        wait_until(page, settled, 3, "a whole window with the card = newest row")
        wait_until(page, lambda s: "Live" in s["status"], 5, "the badge to say Live")

        # Streaming: the current card changes 15 times (7.5 s at 2 Hz), the table stays whole
        # meanwhile, and no request reaches the Dash server.
        dash_requests.clear()
        seen: set[str] = set()

        def changed_15_times(s: dict[str, Any]) -> bool:
            assert len(s["rows"]) == WINDOW, s
            seen.add(s["time"])
            return len(seen) >= 15

        wait_until(page, changed_15_times, 15, "the current-time card to change 15 times")
        assert dash_requests == [], dash_requests
        assert errors == [], errors


@pytest.fixture(scope="module")
def python_app() -> Iterator[Running]:
    with hrdash_running(app_command()) as running:
        yield running


def test_python_app_shows_live_page(python_app: Running) -> None:
    """`python app.py`: 20 rows and 20 points at once, card = newest row, cards keep changing,
    zero Dash requests while the card changes 15 times, no console error."""
    open_and_check_live_page(python_app)


def test_bridge_restart_resumes_without_duplicates(python_app: Running) -> None:
    """The bridge SIGKILLed while the page is open: it is restarted and the page resumes with
    no duplicate row and no hole in the new run's readings."""
    python_app.wait_readings(WINDOW + 2)
    with chromium_page() as page:
        page.goto(python_app.url)
        before = wait_until(page, lambda s: len(s["rows"]) == WINDOW, 15, "a full table")
        old_run = before["rows"][-1]["id"].split("-")[0]
        old_bridge = python_app.child("bridge")
        old_bridge.kill()
        wait_until(page, lambda s: "Live" not in s["status"], 5, "the badge to leave Live")
        after = wait_until(
            page,
            lambda s: sum(not row["id"].startswith(old_run) for row in s["rows"]) >= 6,
            20,
            "readings from the restarted bridge",
        )
        new_bridge = python_app.child("bridge")
        assert new_bridge.pid != old_bridge.pid
        rows = after["rows"]
        assert len(rows) == WINDOW
        assert len({row["id"] for row in rows}) == WINDOW, "duplicate rows"
        assert len({row["time"] for row in rows}) == WINDOW, "duplicate times"
        assert [r["time"] for r in rows] == sorted(r["time"] for r in rows), "rows out of order"
        new_seqs = [row["seq"] for row in rows if not row["id"].startswith(old_run)]
        assert new_seqs == list(range(new_seqs[0], new_seqs[0] + len(new_seqs))), new_seqs
        wait_until(page, lambda s: "Live" in s["status"], 5, "the badge to say Live again")
        assert "restarted" in python_app.log()


def test_python_app_stops_cleanly_on_sigterm() -> None:
    """SIGTERM to `python app.py` stops it and every child within 5 s, leaving no process."""
    running = start_hrdash(app_command())
    children = psutil.Process(running.proc.pid).children(recursive=True)
    assert {"bridge", "simulate"} <= {word for c in children for word in c.cmdline()}
    started = time.monotonic()
    leftovers = stop(running, timeout=5)
    assert leftovers == []
    assert running.proc.returncode is not None
    assert time.monotonic() - started < scaled(5) + 0.5


def test_gunicorn_two_workers_serve_the_live_page() -> None:
    """`gunicorn -w 2 app:server`: exactly one bridge and one simulator, and the same page checks
    hold."""
    running = start_hrdash(gunicorn_command(workers=2))
    try:
        family = psutil.Process(running.proc.pid).children(recursive=True)
        cmdlines = [c.cmdline() for c in family]
        assert sum("bridge" in c for c in cmdlines) == 1, cmdlines
        assert sum("simulate" in c for c in cmdlines) == 1, cmdlines
        open_and_check_live_page(running)
    finally:
        leftovers = stop(running)
    assert leftovers == [], f"processes left behind: {leftovers}"
