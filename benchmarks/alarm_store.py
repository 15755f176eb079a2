"""The alarm log and the limits in the history (SQLite): what they cost the bridge's start, the
writer and the Dash server's reads. Measured and reported, never asserted.

    python benchmarks/alarm_store.py [--patients 64] [--entries 5000] [--repeat 20]

On a new file in a temp dir: ``--entries`` log entries per patient (and as many of the
station's), a day old, plus 64 limits rows, written through the real
:class:`hrdash.ingest.recorder.Recorder` (its own batches).

* *start*: what the bridge does before it serves anyone: ``load_limits`` + ``load_log(1000)``
  (the newest 1,000 per patient) and :meth:`hrdash.station_alarms.StationAlarms.preload_log`,
  p50 / max over ``--repeat`` runs;
* *writer*: one batch of 64 patients x 4 entries (a raise and an end each, twice) committed
  with ``flush``, p50 / max;
* *prune*: one pass of the log's pruning (the writer thread, once per ``prune_interval``): the
  entries a day old beyond the newest 1,000 per patient;
* *read*: :func:`hrdash.history.alarm_log` of one patient, ``limit`` 100 and 1,000, p50 / max;
* *migration*: :func:`hrdash.store.ensure_schema` on a version 1 file of 1,000,000 readings.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hrdash import history, store  # noqa: E402
from hrdash.alarms import Limits  # noqa: E402
from hrdash.ingest.recorder import Recorder  # noqa: E402
from hrdash.settings import Settings  # noqa: E402
from hrdash.station_alarms import LOG_KEPT, StationAlarms  # noqa: E402

DAY_S = 86_400.0


def entry(patient: str | None, t: int, event: str) -> dict[str, Any]:
    return {
        "time": t,
        "patient": patient,
        "alarm": None if patient is None else f"{patient}:hr_high:{t}",
        "kind": None if patient is None else "hr_high",
        "priority": None if patient is None else "medium",
        "event": event,
        "value": 131,
        "limit": 120,
        "origin": None,
    }


def timed(fn: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    samples, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples, result


def p50_max(samples: list[float]) -> str:
    return f"{statistics.median(samples):.1f} / {max(samples):.1f}"


def run(patients: int, entries: int, repeat: int) -> list[tuple[str, str]]:
    ids = [f"bed-{i + 1:02d}" for i in range(patients)]
    now = time.time()
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hrdash.db"
        recorder = Recorder(
            str(path),
            [(p, p) for p in ids],
            retention=3600,
            trend_retention=DAY_S * 2,
            clock=lambda: now,
        )
        recorder.start()
        old = round((now - DAY_S) * 1000)
        for who in [*ids, None]:
            recorder.add_log([entry(who, old + i, "raised") for i in range(entries)])
            assert recorder.flush(120)  # at most MAX_LOG_PENDING wait
        for p in ids:
            recorder.set_limits(p, Limits(low=45), Limits(), old, "http://a")
        assert recorder.flush(120)
        recorder.close(60)
        size = path.stat().st_size
        rows.append(("file", f"{size / 1e6:.1f} MB for {(patients + 1) * entries:,} entries"))

        reader = Recorder(str(path), [], retention=3600, trend_retention=DAY_S * 2)

        def start() -> int:
            stored = reader.load_limits()
            log = reader.load_log(LOG_KEPT)
            alarms = StationAlarms([(p, Limits()) for p in ids], no_signal_after=10.0)
            assert len(stored) == patients
            return alarms.preload_log(log)

        samples, kept = timed(start, repeat)
        label = f"start: limits + newest {LOG_KEPT} x {patients + 1} ({kept:,} entries) (ms)"
        rows.append((label, p50_max(samples)))

        writer = Recorder(
            str(path),
            [(p, p) for p in ids],
            retention=3600,
            trend_retention=DAY_S * 2,
            clock=lambda: now,
            prune_interval=1e9,
            commit_interval=60.0,
        )
        writer.start()
        writer.load_limits()  # waits for the first open
        t = round(now * 1000)

        def batch() -> None:
            nonlocal t
            t += 1000
            writer.add_log([entry(p, t, e) for p in ids for e in ("raised", "ended") * 2])
            assert writer.flush(30)

        samples, _ = timed(batch, repeat)
        rows.append((f"writer: commit of {patients * 4} entries (ms)", p50_max(samples)))
        writer.close(30)

        pruner = Recorder(
            str(path),
            [(p, p) for p in ids],
            retention=3600,
            trend_retention=DAY_S / 2,
            clock=lambda: now,
        )
        conn = store.connect(path)
        keys: list[int | None] = [None, *store.patient_keys(conn).values()]
        start_prune = time.perf_counter()
        pruner._prune_log(conn, keys, round((now - DAY_S / 2) * 1000))
        prune_ms = (time.perf_counter() - start_prune) * 1000
        conn.close()
        pruned = pruner.status()["alarms"]["pruned"]
        label = f"prune: one pass over {len(keys)} keys, {pruned:,} entries deleted (ms)"
        rows.append((label, f"{prune_ms:.0f}"))

        settings = Settings.load(env={}).replace(db=str(path))
        for limit in (100, 1000):
            samples, found = timed(
                lambda n=limit: history.alarm_log(settings, ids[0], limit=n), repeat
            )
            assert len(found) == limit
            rows.append((f"read: history.alarm_log limit={limit} (ms)", p50_max(samples)))

        v1 = Path(tmp) / "v1.db"
        conn = sqlite3.connect(v1, isolation_level=None)
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
        conn.execute("CREATE TABLE patients (key INTEGER PRIMARY KEY, id TEXT UNIQUE, name TEXT)")
        conn.execute(
            "CREATE TABLE readings (patient INTEGER, t INTEGER, n INTEGER, bpm,"
            " PRIMARY KEY (patient, t, n)) WITHOUT ROWID"
        )
        conn.execute(
            "CREATE TABLE minutes (patient INTEGER, t INTEGER, min, sum, max, n INTEGER,"
            " PRIMARY KEY (patient, t)) WITHOUT ROWID"
        )
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [("app", "hrdash"), ("schema", "1")])
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO readings VALUES (1, ?, 0, 70)", ((i * 500,) for i in range(1_000_000))
        )
        conn.execute("COMMIT")
        conn.close()
        conn = store.connect(v1)
        start_mig = time.perf_counter()
        store.ensure_schema(conn)
        migration_ms = (time.perf_counter() - start_mig) * 1000
        conn.close()
        rows.append(("migration: v1 file of 1,000,000 readings to v2 (ms)", f"{migration_ms:.1f}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=64)
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    rows = run(args.patients, args.entries, args.repeat)
    print("| figure | p50 / max (ms) or value |\n|---|---|")
    for label, value in rows:
        print(f"| {label} | {value} |")


if __name__ == "__main__":
    main()
