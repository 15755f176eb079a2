"""The history as a user meets it: `python app.py` with ``HRDASH_DB`` a file in ``tmp_path``,
stopped and started again, the monitor and its Source panel in headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psutil
import pytest

from hrdash import ids, store
from tests.support import app_command, chromium_page, hrdash_running, poll

pytestmark = pytest.mark.browser

PATIENT = "bed-01"  # the embedded simulator's one patient
WINDOW = 20

ROWS_JS = """
(ids) => {
  const rows = [...document.querySelectorAll(`#${ids.table} .ag-center-cols-container .ag-row`)]
    .map((row) => ({
      seq: Number(row.querySelector('[col-id="seq"]')?.textContent),
      bpm: Number(row.querySelector('[col-id="bpm"]')?.textContent),
    }))
    .sort((a, b) => a.seq - b.seq);
  const panel = document.getElementById(ids.panel);
  return {rows, history: document.getElementById(ids.history)?.textContent ?? null,
          open: panel ? panel.open : null};
}
"""
IDS = {"table": ids.TABLE, "history": ids.SOURCE_HISTORY, "panel": ids.SOURCE_PANEL}


def shown(page: Any) -> dict[str, Any]:
    return dict(page.evaluate(ROWS_JS, IDS))


def stored_bpm(db: Path) -> list[int | float]:
    conn = store.connect(db, readonly=True)
    try:
        rows = conn.execute(
            "SELECT bpm FROM readings JOIN patients ON readings.patient = patients.key"
            " WHERE patients.id = ? ORDER BY t, n",
            (PATIENT,),
        ).fetchall()
    finally:
        conn.close()
    return [bpm for (bpm,) in rows]


def open_for_writing(pid: int, path: Path) -> bool:
    """Whether process ``pid`` holds ``path`` open with write access."""
    files = psutil.Process(pid).open_files()
    return any(Path(f.path) == path and f.mode in ("w", "a", "r+", "a+") for f in files)


def test_after_a_restart_the_monitor_shows_the_readings_from_before(tmp_path: Path) -> None:
    """`python app.py` with a history file: the bridge (not the Dash server) holds the file
    open for writing, and the Source panel says it is recording; stopped (SIGTERM) and started
    again, the monitor's table shows the last 20 readings from before at once (new seqs, the
    stored bpm), before new ones arrive."""
    db = tmp_path / "history.db"
    env = {"HRDASH_DB": str(db), "HRDASH_SIMULATOR_PERIOD": "0.1"}
    with hrdash_running(app_command(), env) as running:
        running.wait_readings(WINDOW + 10)
        assert running.health()["recorder"]["db"] == str(db)
        assert open_for_writing(running.child("bridge").pid, db)
        assert not open_for_writing(running.proc.pid, db)  # the Dash server only ever reads
        with chromium_page() as page:
            page.goto(running.url)
            page.click(f"#{ids.SOURCE_PANEL} > summary")
            line = re.compile(rf"recording to {re.escape(str(db))} — ([\d,]+) readings? written")
            seen = poll(
                page,
                shown,
                lambda s: (
                    bool(line.fullmatch(s["history"] or ""))
                    and int(line.fullmatch(s["history"]).group(1).replace(",", "")) > 0
                ),
                15,
                "the history line to say it is recording",
            )
            assert seen["open"] is True
    before = stored_bpm(db)
    assert len(before) >= WINDOW + 10

    # Again, with a slow simulator: what the table shows at first is what was kept.
    slow = {**env, "HRDASH_SIMULATOR_PERIOD": "5"}
    with hrdash_running(app_command(), slow) as running, chromium_page() as page:
        page.goto(running.url)
        first = poll(page, shown, lambda s: len(s["rows"]) >= WINDOW, 15, "a full table")
        health = running.health()
        preloaded = health["last_seq"] - health["counters"]["accepted"]
        assert preloaded == len(before)
        old = [row["bpm"] for row in first["rows"] if row["seq"] <= preloaded]
        assert len(old) >= WINDOW - 3, first["rows"]  # at most a few new ones came first
        assert old == before[-len(old) :]
