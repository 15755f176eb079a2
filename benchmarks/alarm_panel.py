"""The monitor's Alarms panel: what its routes and its client cost.

- ``alarms?limit=50`` (what the panel asks on load and after each state change) and
  ``alarms.csv`` (every entry kept) of one patient, on a history file holding ``--entries`` log
  entries of that patient among ``--patients``; served by the real Dash app in process (Flask's
  test client: the handler's time, no socket), ``--repeats`` times each.
- In headless Chromium, with the very ``assets/alarm_panel.js`` the app serves: the time the
  panel's socket listener takes for a readings frame (which it only looks at: every frame of
  the page's socket passes through it) and for an alarm frame of four alarms (parsed and drawn).

    python benchmarks/alarm_panel.py [--entries 20000 --patients 8 --repeats 30]

Markdown tables on stdout; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hrdash import alarms, ids, routes, store  # noqa: E402
from hrdash.callbacks import alarm_panel  # noqa: E402
from hrdash.settings import Settings  # noqa: E402
from hrdash.webapp import ASSETS, create_app  # noqa: E402
from tests.support import chromium_page, free_port  # noqa: E402

T0 = 1_764_324_000_000


def seed(path: Path, patients: int, entries: int) -> None:
    """``entries`` log entries for each of ``patients`` patients, a few seconds apart."""
    conn = store.connect(path)
    try:
        store.ensure_schema(conn)
        conn.execute("BEGIN")
        for p in range(patients):
            pid = f"bed-{p + 1:02d}"
            key = store.patient_key(conn, pid)
            rows = []
            for i in range(entries):
                kind = alarms.KINDS[i % 4]
                entry = {
                    "time": T0 + i * 3_000,
                    "alarm": f"{pid}:{kind}:{T0 + i * 3_000}",
                    "kind": kind,
                    "priority": alarms.PRIORITY[kind],
                    "event": ("raised", "ended")[i % 2],
                    "value": 130 + i % 40,
                    "limit": 120,
                    "origin": None,
                }
                rows.append(store.log_row(entry, key))
            conn.executemany(
                f"INSERT INTO alarm_log ({store.LOG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        conn.execute("COMMIT")
    finally:
        conn.close()


def timed(fn: Any, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def quantiles(ms: list[float], digits: int = 2) -> str:
    ms = sorted(ms)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return f"{statistics.median(ms):.{digits}f} | {p99:.{digits}f}"


def routes_part(entries: int, patients: int, repeats: int) -> list[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "h.db"
        seed(path, patients, entries)
        settings = Settings.load(env={"HRDASH_SIMULATOR_PATIENTS": str(patients)}).replace(
            db=str(path), bridge_port=free_port()
        )
        app = create_app(settings)
        routes.routes(app).clock = lambda: (T0 + entries * 3_000) / 1000
        client = app.server.test_client()
        url = f"/api/patients/bed-01/{routes.ALARMS_JSON}?limit={alarm_panel.LOG_SHOWN}"
        assert len(client.get(url).get_json()) == alarm_panel.LOG_SHOWN
        csv_url = f"/api/patients/bed-01/{routes.ALARMS_CSV}"
        lines = client.get(csv_url).get_data(as_text=True).count("\n")
        assert lines == entries + 1, lines
        return [
            (
                f"alarms?limit={alarm_panel.LOG_SHOWN}",
                quantiles(timed(lambda: client.get(url), repeats)),
            ),
            (
                f"alarms.csv ({entries:,} entries)",
                quantiles(timed(lambda: client.get(csv_url), max(3, repeats // 5))),
            ),
        ]


CLIENT_JS = """
async ([panel, config, readings, alarm, n]) => {
  const dc = (window.dash_clientside = window.dash_clientside || {});
  dc.no_update = {};
  dc.set_props = () => {};
  window.fetch = () => Promise.resolve(new Response('[]'));
  document.body.innerHTML = `<section id="hr-alarms"><ul id="hr-alarm-current"></ul>
    <div id="hr-alarm-message"></div><span id="hr-limits-message"></span>
    <table id="hr-alarm-log"><tbody></tbody></table><div id="hr-alarm-log-status"></div>
    ${config.limit_order.map((k) => `<input id="hr-limit-${k}">`).join('')}</section>`;
  const s = document.createElement('script');
  s.textContent = panel;
  document.head.appendChild(s);
  dc.hrdash.alarm_panel_start(config, {patient: 'bed-01', ids: {ws: 'hr-ws'}});
  // A readings frame takes less than the clock's resolution: time batches of 1,000.
  const time = (data) => {
    const ev = new MessageEvent('message', {data});
    const out = [];
    for (let i = 0; i < 50; i++) {
      const t = performance.now();
      for (let j = 0; j < 1000; j++) window.hrdashAlarms.onSocketMessage(ev);
      out.push((performance.now() - t) / 1000);
    }
    return out;
  };
  // Alarm frames alternate between two states, so each one is drawn anew.
  const other = JSON.parse(alarm);
  other.alarms[0].state = 'acknowledged';
  const frames = [alarm, JSON.stringify(other)];
  const drawn = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    window.hrdashAlarms.onSocketMessage(new MessageEvent('message', {data: frames[i % 2]}));
    drawn.push(performance.now() - t);
  }
  return {readings: time(readings), alarm: drawn};
}
"""


def client_part(repeats: int) -> list[tuple[str, str]]:
    readings = {
        "type": "readings",
        "run": "r",
        "patient": "bed-01",
        "readings": [{"seq": 100 + i, "time": T0 + i * 500, "bpm": 80 + i} for i in range(5)],
        "first_seq": 1,
        "last_seq": 104,
    }
    items = [
        {
            "id": f"bed-01:{kind}:{T0}",
            "patient": "bed-01",
            "kind": kind,
            "priority": alarms.PRIORITY[kind],
            "state": "active",
            "since": T0,
            "ended": None,
            "value": None if kind in alarms.TECHNICAL else 160,
            "limit": 150,
        }
        for kind in ("hr_extreme_high", "hr_low", "no_signal", "source_down")
    ]
    frame = {
        "type": "alarm",
        "patient": "bed-01",
        "alarms": items,
        "limits": {"extreme_low": 40, "low": 50, "high": 120, "extreme_high": 150},
        "sounding": "high",
        "audio_paused_until": None,
    }
    with chromium_page() as page:
        page.set_content("<!doctype html><html><head></head><body></body></html>")
        got = page.evaluate(
            CLIENT_JS,
            [
                (ASSETS / "alarm_panel.js").read_text(),
                alarm_panel.config("bed-01"),
                json.dumps(readings, separators=(",", ":")),
                json.dumps(frame, separators=(",", ":")),
                max(200, repeats * 20),
            ],
        )
    assert ids.ALARMS == "hr-alarms"
    return [
        (
            "socket listener, a readings frame (looked at, left alone; batches of 1,000)",
            quantiles(got["readings"], 5),
        ),
        ("socket listener, an alarm frame of 4 alarms (parsed, drawn)", quantiles(got["alarm"])),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=20_000, help="log entries per patient")
    parser.add_argument("--patients", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    rows = routes_part(args.entries, args.patients, args.repeats)
    rows += client_part(args.repeats)
    print("| what | p50 ms | p99 ms |")
    print("|---|---|---|")
    for what, numbers in rows:
        print(f"| {what} | {numbers} |")


if __name__ == "__main__":
    main()
