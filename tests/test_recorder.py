"""The recorder (hrdash.ingest.recorder): real SQLite files in temp dirs, a real writer thread;
only the clock is faked (retention, pruning)."""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from hrdash import store
from hrdash.ingest import Recorder
from tests.support import scaled

HOUR = 3600.0
DAY = 24 * HOUR
T0 = 1_794_999_960_000  # Unix ms, a minute boundary (2026-11-18 11:06 UTC)
PATIENTS = [("bed-01", "Bed 1"), ("bed-02", "Bed 2"), ("bed-03", "Bed 3")]
STATUS_KEYS = [
    "db",
    "state",
    "cause",
    "detail",
    "since",
    "pending",
    "written",
    "duplicates",
    "too_old",
    "dropped",
    "commits",
    "last_commit",
    "pruned",
    "retries",
]


class FakeClock:
    """Unix seconds that move only when a test says so."""

    def __init__(self, now_ms: int = T0) -> None:
        self.now = now_ms / 1000

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0 + 3_600_000)  # an hour after T0: readings from T0 on are recent


@pytest.fixture
def make(tmp_path: Path, clock: FakeClock) -> Iterator[Callable[..., Recorder]]:
    """Builds started recorders on a file in tmp_path (one commit a minute unless flushed, so
    that each flush is one batch); closes them all at the end."""
    made: list[Recorder] = []

    def build(path: Path | str | None = None, *, start: bool = True, **options: Any) -> Recorder:
        options.setdefault("retention", 72 * HOUR)
        options.setdefault("trend_retention", 30 * DAY)
        options.setdefault("clock", clock)
        options.setdefault("commit_interval", 60.0)
        rec = Recorder(str(path or tmp_path / "hrdash.db"), PATIENTS, **options)
        made.append(rec)
        if start:
            rec.start()
        return rec

    yield build
    for rec in made:
        rec.close(timeout=scaled(10))


def rows(path: Path, table: str = "readings") -> list[tuple[Any, ...]]:
    """A table's rows with patient ids in place of keys, in key order."""
    conn = sqlite3.connect(path)
    try:
        if table == "readings":
            query = (
                "SELECT p.id, r.t, r.n, r.bpm FROM readings r JOIN patients p ON p.key = r.patient"
                " ORDER BY p.id, r.t, r.n"
            )
        else:
            query = (
                "SELECT p.id, m.t, m.min, m.sum, m.max, m.n FROM minutes m"
                " JOIN patients p ON p.key = m.patient ORDER BY p.id, m.t"
            )
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def wait_for(check: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + scaled(seconds)
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# -- the normal path ------------------------------------------------------------------------------


def test_batches_are_committed_in_order_one_transaction_each(
    make: Callable[..., Recorder], tmp_path: Path
) -> None:
    """Readings added in several calls are committed in one transaction by a flush, in time order
    per patient, with bpm stored as sent (int stays int, float stays float)."""
    rec = make()
    rec.add("bed-01", [(T0, 72), (T0 + 500, 73.5)])
    rec.add("bed-02", [(T0 + 100, 60)])
    rec.add("bed-01", [(T0 + 1000, 74)])
    assert rec.status()["pending"] == 4
    assert rec.flush(timeout=scaled(10))
    status = rec.status()
    assert list(status) == STATUS_KEYS
    assert status["state"] == "ok" and status["cause"] == "" and status["since"] is None
    assert status["written"] == 4 and status["pending"] == 0 and status["commits"] == 1
    assert status["last_commit"] == T0 + 3_600_000
    assert status["db"] == str(tmp_path / "hrdash.db")
    stored = rows(tmp_path / "hrdash.db")
    assert stored == [
        ("bed-01", T0, 0, 72),
        ("bed-01", T0 + 500, 0, 73.5),
        ("bed-01", T0 + 1000, 0, 74),
        ("bed-02", T0 + 100, 0, 60),
    ]
    assert [type(r[3]) for r in stored] == [int, float, int, int]
    rec.add("bed-03", [(T0, 80)])
    assert rec.flush(timeout=scaled(10))
    assert rec.status()["commits"] == 2
    conn = sqlite3.connect(tmp_path / "hrdash.db")
    assert conn.execute("SELECT id, name FROM patients ORDER BY key").fetchall() == PATIENTS
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_commits_about_every_commit_interval_without_flush(
    make: Callable[..., Recorder], tmp_path: Path
) -> None:
    """Without a flush, what was added is committed within about commit_interval."""
    rec = make(commit_interval=0.2)
    rec.add("bed-01", [(T0, 72)])
    wait_for(lambda: rec.status()["written"] == 1, seconds=5)
    assert rows(tmp_path / "hrdash.db") == [("bed-01", T0, 0, 72)]


def test_exact_resends_are_duplicates_and_same_ms_readings_are_kept(
    make: Callable[..., Recorder], tmp_path: Path
) -> None:
    """A reading already stored (same patient, time and bpm) is counted, not stored again, in a
    later batch or the same one; another bpm at the same millisecond gets the next n."""
    rec = make()
    rec.add("bed-01", [(T0, 72), (T0 + 500, 73), (T0 + 500, 75)])
    assert rec.flush(timeout=scaled(10))
    rec.add("bed-01", [(T0, 72), (T0 + 500, 75), (T0 + 500, 73), (T0 + 500, 76), (T0, 72.0)])
    rec.add("bed-02", [(T0, 72)])  # the same reading for another patient is not a duplicate
    rec.add("bed-01", [(T0 + 500, 76)])  # a re-send within the same batch
    assert rec.flush(timeout=scaled(10))
    status = rec.status()
    assert status["written"] == 5 and status["duplicates"] == 5
    assert rows(tmp_path / "hrdash.db") == [
        ("bed-01", T0, 0, 72),
        ("bed-01", T0 + 500, 0, 73),
        ("bed-01", T0 + 500, 1, 75),
        ("bed-01", T0 + 500, 2, 76),
        ("bed-02", T0, 0, 72),
    ]
    # the minute counts each reading once
    assert rows(tmp_path / "hrdash.db", "minutes") == [
        ("bed-01", T0, 72, 72 + 73 + 75 + 76, 76, 4),
        ("bed-02", T0, 72, 72, 72, 1),
    ]


def test_minutes_equal_pandas_on_the_raw_rows(
    make: Callable[..., Recorder], tmp_path: Path, clock: FakeClock
) -> None:
    """After batches of any size, late readings, re-sends and same-ms readings, the minutes
    table equals pandas' per-minute min / sum / mean / max / count of the raw readings, and the
    raw readings are exactly the distinct readings sent."""
    rnd = random.Random(9)
    rec = make()
    sent: list[tuple[str, int, int | float]] = []
    for patient, _ in PATIENTS:
        t = T0
        for _ in range(600):
            t += rnd.choice([0, 1, 250, 500, 500, 500, 1000, 7000])
            bpm: int | float = rnd.randint(40, 180) if rnd.random() < 0.7 else rnd.uniform(40, 180)
            sent.append((patient, t, round(bpm, 1) if isinstance(bpm, float) else bpm))
    order = sent[:]
    rnd.shuffle(order)  # late readings: minutes are touched again and again
    order += rnd.sample(sent, 200)  # re-sends
    i = 0
    while i < len(order):
        size = rnd.choice([1, 5, 50, 400])
        for patient, t, bpm in order[i : i + size]:
            rec.add(patient, [(t, bpm)])
        i += size
        if rnd.random() < 0.5:
            assert rec.flush(timeout=scaled(10))
    assert rec.flush(timeout=scaled(10))
    distinct = {(p, t, float(b)) for p, t, b in sent}
    status = rec.status()
    assert status["written"] == len(distinct)
    assert status["duplicates"] == len(order) - len(distinct)

    raw = pd.DataFrame(rows(tmp_path / "hrdash.db"), columns=["patient", "t", "n", "bpm"])
    assert {(p, t, float(b)) for p, t, _, b in raw.itertuples(index=False)} == distinct
    assert len(raw) == len(distinct)
    raw["minute"] = raw["t"] // 60_000 * 60_000
    expected = (
        raw.groupby(["patient", "minute"])["bpm"]
        .agg(["min", "sum", "mean", "max", "count"])
        .reset_index()
    )
    got = pd.DataFrame(
        rows(tmp_path / "hrdash.db", "minutes"),
        columns=["patient", "minute", "min", "sum", "max", "count"],
    )
    got["mean"] = got["sum"] / got["count"]
    assert len(got) == len(expected) > 3 * 10
    merged = expected.merge(got, on=["patient", "minute"], suffixes=("", "_db"))
    assert len(merged) == len(expected)
    for column in ("min", "sum", "mean", "max", "count"):
        assert merged[column].to_numpy() == pytest.approx(merged[f"{column}_db"].to_numpy())


def test_readings_older_than_the_retention_are_not_written(
    make: Callable[..., Recorder], tmp_path: Path, clock: FakeClock
) -> None:
    """A reading older than the raw retention (on the injected clock) is counted too_old."""
    rec = make(retention=HOUR, trend_retention=DAY)
    now = round(clock() * 1000)
    rec.add("bed-01", [(now - 3_600_001, 70), (now - 3_600_000, 71), (now, 72)])
    assert rec.flush(timeout=scaled(10))
    assert rec.status()["too_old"] == 1 and rec.status()["written"] == 2
    assert [r[1] for r in rows(tmp_path / "hrdash.db")] == [now - 3_600_000, now]


def test_close_commits_everything_and_is_idempotent(
    make: Callable[..., Recorder], tmp_path: Path
) -> None:
    """close() commits what was added (with a commit interval far away), stops the writer and
    closes the file (no WAL left); a second close does nothing; later readings are dropped."""
    rec = make(commit_interval=3600.0)
    readings = [(T0 + 500 * i, 60 + i % 50) for i in range(5000)]
    for chunk in range(0, len(readings), 7):
        rec.add("bed-02", readings[chunk : chunk + 7])
    rec.close(timeout=scaled(10))
    status = rec.status()
    assert status["state"] == "closed" and status["pending"] == 0
    assert status["written"] == 5000
    assert [(t, b) for _, t, _, b in rows(tmp_path / "hrdash.db")] == readings
    assert not (tmp_path / "hrdash.db-wal").exists()
    rec.close(timeout=scaled(10))
    rec.add("bed-02", [(T0 + 10**7, 70)])
    assert rec.status()["dropped"] == 1
    assert rec.status()["state"] == "closed"


def test_load_recent(make: Callable[..., Recorder], tmp_path: Path, clock: FakeClock) -> None:
    """load_recent gives the newest `limit` stored readings within the retention, oldest first;
    [] for an unknown patient, a patient with nothing stored, or no file."""
    rec = make(retention=HOUR, trend_retention=DAY)
    assert rec.load_recent("bed-01", 20) == []
    now = round(clock() * 1000)
    old = [(now - 3_500_000 + 500 * i, 70 + i % 3) for i in range(10)]
    new = [(now - 10_000 + 500 * i, 80 + i % 7) for i in range(30)] + [(now + 4_500, 99.5)]
    rec.add("bed-01", old + new)
    rec.add("bed-02", [(now, 66)])
    assert rec.flush(timeout=scaled(10))
    assert rec.load_recent("bed-01", 20) == new[-20:]
    assert rec.load_recent("bed-01", 1000) == old + new
    assert rec.load_recent("bed-02", 20) == [(now, 66)]
    assert rec.load_recent("bed-03", 20) == []
    assert rec.load_recent("nobody", 20) == []
    assert rec.load_recent("bed-01", 0) == []
    clock.advance(1000)  # the old ones are now beyond the retention (not yet pruned)
    assert rec.load_recent("bed-01", 1000) == new
    rec.close()
    assert rec.load_recent("bed-01", 3) == new[-3:]  # also after close, from the file
    missing = make(tmp_path / "none" / "h.db", start=False)
    assert missing.load_recent("bed-01", 20) == []


def test_unknown_patient_ids_are_recorded_too(
    make: Callable[..., Recorder], tmp_path: Path
) -> None:
    """A patient that is not in the constructor's list is registered (empty name) and recorded."""
    rec = make()
    rec.add("late-1", [(T0, 70)])
    assert rec.flush(timeout=scaled(10))
    assert rows(tmp_path / "hrdash.db") == [("late-1", T0, 0, 70)]
    assert rec.load_recent("late-1", 5) == [(T0, 70)]


def test_pending_is_bounded_oldest_dropped(
    make: Callable[..., Recorder], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Beyond max_pending waiting readings, the oldest are dropped, counted and logged once."""
    rec = make(start=False, max_pending=5)
    with caplog.at_level(logging.WARNING, logger="hrdash.recorder"):
        rec.add("bed-01", [(T0 + i, 70 + i) for i in range(4)])
        rec.add("bed-01", [(T0 + i, 70 + i) for i in range(4, 10)])
    assert rec.status()["pending"] == 5 and rec.status()["dropped"] == 5
    assert sum("dropping" in r.getMessage() for r in caplog.records) == 1
    rec.start()
    assert rec.flush(timeout=scaled(10))
    assert [t - T0 for _, t, _, _ in rows(tmp_path / "hrdash.db")] == [5, 6, 7, 8, 9]


def test_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    """Nonsense options are refused with one line."""
    path = str(tmp_path / "h.db")
    with pytest.raises(ValueError, match="file"):
        Recorder(store.MEMORY, PATIENTS, retention=HOUR, trend_retention=DAY)
    with pytest.raises(ValueError, match="trend_retention"):
        Recorder(path, PATIENTS, retention=DAY, trend_retention=HOUR)
    with pytest.raises(ValueError, match="max_pending"):
        Recorder(path, PATIENTS, retention=HOUR, trend_retention=DAY, max_pending=0)
