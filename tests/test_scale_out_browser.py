"""Scale out on Redis, as a person sees it: `python app.py` with HRDASH_REDIS_URL and
HRDASH_EDGES=2 (one `hrdash ingest`, two `hrdash edge` sharing the bridge port) over a real
redis-server and a simulated ward, the station and a monitor page in headless Chromium.

* the pages look exactly as without Redis: a live tile per patient with a number, a monitor's
  table and chart filled;
* Redis stopped while the pages are open: no tile stays live and the monitor's badge leaves
  Live (never a frozen number shown as live); Redis back on the same port: the tiles are live
  again without a reload, and the monitor's table holds the readings the ingest held meanwhile,
  one seq after another;
* an edge SIGKILLed under an open monitor: the page reconnects (to the other edge, or the
  restarted one) and its readings go on with no gap and no duplicate.

With ``HRDASH_TEST_SHOTS`` set to a directory, the station and the monitor are photographed
while Redis is down and once it is back (``redis-down-station.png`` and so on).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from hrdash import ids
from tests.redis_support import RedisServer, need_redis_server
from tests.support import (
    Running,
    app_command,
    chromium_page,
    hrdash_running,
    poll,
    scaled,
)
from tests.test_app_browser import IDS, SNAPSHOT_JS
from tests.test_station_browser import TILES_JS

pytestmark = pytest.mark.browser

PATIENTS = [f"bed-{n:02d}" for n in range(1, 4)]  # the simulator's first three
WINDOW = 60  # readings in the monitor's table: 30 s at the simulator's 0.5 s, more than an outage
WATCHED = PATIENTS[1]  # the patient whose monitor is open
SHOTS = os.environ.get("HRDASH_TEST_SHOTS", "")


@dataclass
class Ward:
    redis: RedisServer
    running: Running


@pytest.fixture(scope="module")
def ward() -> Iterator[Ward]:
    """A redis-server and `python app.py` on it with two edges and three simulated patients.
    Each test leaves both running (a test that stops Redis starts it again)."""
    need_redis_server()
    with tempfile.TemporaryDirectory(prefix="hrdash-redis-") as tmp:
        redis = RedisServer(Path(tmp)).start()
        env = {
            "HRDASH_REDIS_URL": redis.url,
            "HRDASH_EDGES": "2",
            "HRDASH_SIMULATOR_PATIENTS": str(len(PATIENTS)),
            "HRDASH_WINDOW": str(WINDOW),
        }
        try:
            with hrdash_running(app_command(), env) as running:
                running.wait_readings(3)
                yield Ward(redis, running)
        finally:
            redis.stop()


@pytest.fixture
def redis_up(ward: Ward) -> Iterator[Ward]:
    """The ward with Redis running at the start and at the end of the test."""
    if ward.redis.proc is None or ward.redis.proc.poll() is not None:
        ward.redis.start()
    try:
        yield ward
    finally:
        if ward.redis.proc is None or ward.redis.proc.poll() is not None:
            ward.redis.start()


BADGE_TEXT_JS = "id => document.getElementById(id).textContent.trim()"
TITLES_JS = """
() => Object.fromEntries(Array.from(document.querySelectorAll('[data-patient]'))
  .map((t) => [t.getAttribute('data-patient'),
    t.querySelector('.hr-tile-state').getAttribute('title') || '']))
"""
CAUSE_JS = """
(ids) => ({
  badgeText: document.getElementById(ids.status).textContent.trim(),
  badge: document.getElementById(ids.status).getAttribute('title') || '',
  detail: document.getElementById(ids.detail).textContent.trim(),
})
"""
CAUSE_IDS = {"status": ids.STATUS, "detail": ids.SOURCE_DETAIL}


def tiles(page: Any) -> dict[str, Any]:
    return dict(page.evaluate(TILES_JS))


def monitor(page: Any) -> dict[str, Any]:
    return dict(page.evaluate(SNAPSHOT_JS, IDS))


def all_live(shown: dict[str, Any]) -> bool:
    """A tile per patient, each live with a number."""
    return sorted(shown) == PATIENTS and all(
        t["state"] == "live" and t["bpm"].isdigit() for t in shown.values()
    )


def all_down(shown: dict[str, Any]) -> bool:
    """A tile per patient, each down: the edge says why (not merely stale on the page's clock)."""
    return sorted(shown) == PATIENTS and all(t["state"] == "down" for t in shown.values())


def rows_of(shown: dict[str, Any]) -> list[tuple[str, int]]:
    """The monitor table's rows as (run, seq), in display order."""
    return [(row["id"].rsplit("-", 1)[0], row["seq"]) for row in shown["rows"]]


def one_sequence(rows: list[tuple[str, int]]) -> bool:
    """One run, every seq once, none missing."""
    seqs = [seq for _, seq in rows]
    return len({run for run, _ in rows}) == 1 and seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def filled(shown: dict[str, Any]) -> bool:
    """The table and the chart hold readings, the badge says Live."""
    return len(shown["rows"]) >= 3 and shown["points"] >= 3 and "Live" in shown["status"]


def shoot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


class Seen:
    """Every row the monitor's table showed, sampled while a test waits: ``(run, seq)`` →
    bpm, and the rows that came back with another bpm (a reading shown twice, differently)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], float] = {}
        self.changed: list[tuple[str, int]] = []

    def __call__(self, page: Any) -> dict[str, Any]:
        shown = monitor(page)
        for row in shown["rows"]:
            key = (row["id"].rsplit("-", 1)[0], row["seq"])
            if key in self.rows and self.rows[key] != row["bpm"]:
                self.changed.append(key)
            self.rows[key] = row["bpm"]
        return shown

    def seqs_after(self, run: str, seq: int) -> list[int]:
        return sorted(s for r, s in self.rows if r == run and s > seq)


def wait(page: Any, read: Callable[[Any], Any], predicate: Any, timeout: float, what: str) -> Any:
    return poll(page, read, predicate, timeout, what)


def test_station_and_monitor_are_live_as_without_redis(redis_up: Ward) -> None:
    """A live tile per patient with a bpm; the monitor's table and chart fill, its card equals
    the newest row, its seqs are one sequence, and the badge says Live."""
    running = redis_up.running
    with chromium_page(1600, 900) as station:
        station.goto(running.url)
        wait(station, tiles, all_live, 20, "a live tile with a number per patient")
        view = station.context.new_page()
        view.goto(f"{running.url}patient/{WATCHED}")
        shown = wait(
            view,
            monitor,
            lambda s: filled(s) and s["bpm"] == str(s["rows"][-1]["bpm"]),
            20,
            "the monitor's table, chart and card",
        )
        assert one_sequence(rows_of(shown)), rows_of(shown)
        assert shown["lastPoint"] == shown["rows"][-1]["bpm"]


def test_redis_away_and_back_is_shown_and_nothing_is_lost(redis_up: Ward) -> None:
    """Redis stopped under the open station and monitor: within seconds no tile is live and the
    badge leaves Live; Redis started again on its port: every tile is live again without a
    reload, and the monitor's table holds the readings the ingest held meanwhile, one run, one
    seq after another from before the outage to after it."""
    running, redis = redis_up.running, redis_up.redis
    with chromium_page(1600, 900) as station:
        station.goto(running.url)
        wait(station, tiles, all_live, 20, "a live tile per patient")
        view = station.context.new_page()
        view.goto(f"{running.url}patient/{WATCHED}")
        seen = Seen()
        before = wait(view, seen, filled, 20, "a live monitor")
        run, last = rows_of(before)[-1]

        redis.stop()
        stopped = time.monotonic()
        # The edges notice at their next read (or the ingest's silence, 3 s): bounded.
        down = wait(station, tiles, all_down, 10, "every tile to show down")
        took = {"down": time.monotonic() - stopped}
        wait(view, seen, lambda s: "Live" not in s["status"], 10, "the badge to leave Live")
        # What names the cause: each tile's and the badge's title, the Source panel's detail.
        causes = station.evaluate(TITLES_JS)
        assert sorted(causes) == PATIENTS and all(
            c.startswith("Redis unreachable") for c in causes.values()
        ), causes
        view.click(f"#{ids.SOURCE_PANEL} summary")
        told = view.evaluate(CAUSE_JS, CAUSE_IDS)
        assert told["badge"].startswith("Redis unreachable"), told
        # The badges blame the relay, not the patients' services (which are fine).
        assert view.evaluate(BADGE_TEXT_JS, ids.STATUS) == "Relay down"
        station.wait_for_function(
            f"id => ({BADGE_TEXT_JS})(id) === 'Relay down'",
            arg=ids.STATION_STATUS,
            timeout=scaled(5) * 1000,
        )
        assert told["detail"].startswith("Redis unreachable"), told
        shoot(station, "redis-down-station")
        shoot(view, "redis-down-monitor")
        # The readings go on meanwhile (the ingest holds them): let a few accumulate.
        view.wait_for_timeout(max(0.0, 4.0 - (time.monotonic() - stopped)) * 1000)
        away = time.monotonic() - stopped

        redis.start()
        started = time.monotonic()
        wait(station, tiles, all_live, 20, "every tile live again, without a reload")
        took["live again"] = time.monotonic() - started
        held = int(away / 0.5) - 2  # the simulator's readings while Redis was away, at least
        after = wait(
            view,
            seen,
            lambda s: (
                "Live" in s["status"]
                and len(seen.seqs_after(run, last)) >= held
                and one_sequence(rows_of(s))
            ),
            20,
            f"the readings held during the outage (>= {held} after seq {last})",
        )
        shoot(station, "redis-back-station")
        shoot(view, "redis-back-monitor")
        rows = rows_of(after)
        assert (run, last) in rows and rows[-1][1] > last + held, (last, held, rows)
        later = seen.seqs_after(run, last)
        assert later == list(range(last + 1, later[-1] + 1)), f"a reading is missing: {later}"
        assert seen.changed == [], f"rows shown twice with another bpm: {seen.changed}"
    print(f"shown while Redis was down: {down}\n{causes}\n{told}")
    print(", ".join(f"{what} after {seconds:.2f} s" for what, seconds in took.items()))


def edge_serving(running: Running) -> psutil.Process:
    """The `hrdash edge` child holding an established connection on the bridge port (the only
    page open is one monitor: one socket)."""
    edges = []
    for proc in psutil.Process(running.proc.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if proc.cmdline()[-3:] == ["-m", "hrdash", "edge"]:
                edges.append(proc)
    assert len(edges) == 2, edges
    serving = [
        proc
        for proc in edges
        if any(
            c.status == psutil.CONN_ESTABLISHED and c.laddr.port == running.bridge_port
            for c in proc.net_connections(kind="tcp")
        )
    ]
    assert len(serving) == 1, f"{len(serving)} edges serve the page"
    return serving[0]


def test_a_killed_edge_is_left_for_the_other_with_no_gap_and_no_duplicate(
    redis_up: Ward,
) -> None:
    """The edge serving an open monitor SIGKILLed: the page reconnects (to the other edge on the
    shared port, or the restarted one) and resumes: its table is one run, one seq after another,
    every row seen showing its first bpm, and readings keep coming."""
    running = redis_up.running
    with chromium_page() as view:
        view.goto(f"{running.url}patient/{WATCHED}")
        seen = Seen()
        before = wait(view, seen, filled, 20, "a live monitor")
        victim = edge_serving(running)
        victim.kill()
        victim.wait(scaled(5))
        killed = time.monotonic()
        _, last = rows_of(monitor(view))[-1]
        after = wait(
            view,
            seen,
            lambda s: "Live" in s["status"] and s["rows"] and s["rows"][-1]["seq"] >= last + 10,
            30,
            "ten readings after the edge's death",
        )
        print(f"ten readings after the edge's death after {time.monotonic() - killed:.2f} s")
        rows = rows_of(after)
        run = rows_of(before)[-1][0]
        assert {r for r, _ in rows} == {run}, "another run: the table started over"
        assert one_sequence(rows), rows
        first = min(s for r, s in seen.rows if r == run)
        seqs = sorted(s for r, s in seen.rows if r == run)
        assert seqs == list(range(first, seqs[-1] + 1)), "a reading is missing"
        assert seen.changed == [], f"rows shown twice with another bpm: {seen.changed}"
        now_on = edge_serving(running)
        assert victim.pid != now_on.pid
        restarted = now_on.create_time() > victim.create_time()
        print(f"the page is on the {'restarted' if restarted else 'other'} edge")
