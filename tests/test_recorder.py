"""The recorder (hrdash.ingest.recorder): real SQLite files in temp dirs, a real writer thread;
only the clock is faked (retention, pruning)."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from hrdash import history, store
from hrdash.alarms import Limits
from hrdash.ingest import Recorder
from hrdash.ingest import recorder as recorder_module
from hrdash.settings import Settings
from tests.support import scaled

HOUR = 3600.0
DAY = 24 * HOUR
T0 = 1_794_999_960_000  # Unix ms, a minute boundary (2026-11-18 11:06 UTC)
PATIENTS = [("bed-01", "Bed 1"), ("bed-02", "Bed 2"), ("bed-03", "Bed 3")]
PATIENT_IDS = [p for p, _ in PATIENTS]
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
    "alarms",
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


def wait_status(rec: Recorder, seconds: float = 20.0, **expected: Any) -> dict[str, Any]:
    """Waits until the status has the expected values; returns it."""
    status: dict[str, Any] = {}

    def check() -> bool:
        nonlocal status
        status = rec.status()
        return all(status[k] == v for k, v in expected.items())

    wait_for(check, seconds)
    return status


# -- the normal path ------------------------------------------------------------------------------


def test_batches_are_committed_in_order_one_transaction_each(
    make: Callable[..., Recorder], tmp_path: Path
) -> None:
    """Readings added in several calls are committed in one transaction by a flush, in time order
    per patient, with bpm stored as sent (int stays int, float stays float)."""
    rec = make()
    wait_status(rec, state="ok")  # the file is open: the next commit comes with the flush
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


def test_dropping_is_logged_once_per_episode(
    make: Callable[..., Recorder], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Under a sustained overload (a commit that leaves readings waiting) dropping is logged
    once; once the writer has caught up, a new overload is logged again."""
    rec = make(start=False, max_pending=5)
    with caplog.at_level(logging.WARNING, logger="hrdash.recorder"):
        rec.add("bed-01", [(T0 + i, 70) for i in range(10)])
        rec._recovered()  # a commit that left readings waiting: the episode goes on
        rec.add("bed-01", [(T0 + i, 71) for i in range(10, 20)])
        assert sum("dropping" in r.getMessage() for r in caplog.records) == 1
        rec.start()
        assert rec.flush(timeout=scaled(10))  # caught up: the episode is over
        rec.add("bed-01", [(T0 + i, 72) for i in range(20, 30)])
    assert sum("dropping" in r.getMessage() for r in caplog.records) == 2
    assert rec.status()["dropped"] == 20


def test_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    """Nonsense options are refused with one line."""
    path = str(tmp_path / "h.db")
    with pytest.raises(ValueError, match="file"):
        Recorder(store.MEMORY, PATIENTS, retention=HOUR, trend_retention=DAY)
    with pytest.raises(ValueError, match="trend_retention"):
        Recorder(path, PATIENTS, retention=DAY, trend_retention=HOUR)
    with pytest.raises(ValueError, match="max_pending"):
        Recorder(path, PATIENTS, retention=HOUR, trend_retention=DAY, max_pending=0)


# -- pruning --------------------------------------------------------------------------------------


def test_pruning_with_a_fake_clock(
    make: Callable[..., Recorder],
    tmp_path: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every prune_interval (on the injected clock), raw readings whose whole minute is older
    than the retention are deleted (in short transactions), minute rows only once older than
    the trend retention; nothing is pruned between two intervals."""
    monkeypatch.setattr(recorder_module, "PRUNE_CHUNK", 7)  # several transactions per patient
    monkeypatch.setattr(recorder_module, "PRUNE_CHUNKS", 1000)  # all of them in one cycle
    path = tmp_path / "hrdash.db"
    rec = make(retention=HOUR, trend_retention=DAY, prune_interval=60.0)
    readings = [(T0 + 10_000 * i, 60 + i % 40) for i in range(360)]  # T0 .. T0 + 1 h, 10 s apart
    rec.add("bed-01", readings)
    rec.add("bed-02", readings[:6])  # the first minute only
    assert rec.flush(timeout=scaled(10))
    minutes = rows(path, "minutes")
    assert len(minutes) == 61 and rec.status()["pruned"] == 0

    def step(seconds: float) -> None:
        clock.advance(seconds)
        now = round(clock() * 1000)
        rec.add("bed-03", [(now, 70)])  # something to commit, so that the flush runs a cycle
        assert rec.flush(timeout=scaled(10))

    step(30 * 60 + 10)  # now - 1 h = T0 + 30 min 10 s: the minutes before T0 + 30 min go
    raw = [(p, t) for p, t, _, _ in rows(path) if p != "bed-03"]
    assert raw == [("bed-01", t) for t, _ in readings if t >= T0 + 30 * 60_000]
    assert rec.status()["pruned"] == 180 + 6
    assert [m for m in rows(path, "minutes") if m[0] != "bed-03"] == minutes  # all kept

    step(59)  # the cutoff passes another minute, but the next pruning is not due yet
    assert rec.status()["pruned"] == 186
    step(1)
    assert rec.status()["pruned"] == 186 + 6
    assert min(t for p, t, _, _ in rows(path) if p == "bed-01") == T0 + 31 * 60_000

    step(T0 / 1000 + DAY + 20 * 60 - clock())  # now - 1 day = T0 + 20 min: earlier minutes go
    assert [p for p, _, _, _ in rows(path)] == ["bed-03"]  # the newest reading only
    kept = [m for m in rows(path, "minutes") if m[0] != "bed-03"]
    assert kept == [m for m in minutes if m[1] >= T0 + 20 * 60_000]
    assert rec.status()["state"] == "ok"


def test_a_long_pruning_is_spread_over_cycles(
    make: Callable[..., Recorder],
    tmp_path: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pruning longer than PRUNE_CHUNKS transactions goes on in the next cycles, with commits
    in between, until it is done."""
    monkeypatch.setattr(recorder_module, "PRUNE_CHUNK", 10)
    monkeypatch.setattr(recorder_module, "PRUNE_CHUNKS", 3)
    path = tmp_path / "hrdash.db"
    rec = make(retention=HOUR, trend_retention=DAY)
    rec.add("bed-01", [(T0 + 1000 * i, 70) for i in range(100)])
    assert rec.flush(timeout=scaled(10))
    clock.advance(HOUR)
    for cycle in range(1, 5):
        rec.add("bed-02", [(round(clock() * 1000) + cycle, 80)])
        assert rec.flush(timeout=scaled(10))
        assert rec.status()["pruned"] == min(30 * cycle, 100)
        assert rec.status()["commits"] == 1 + cycle
    assert [p for p, _, _, _ in rows(path)] == ["bed-02"] * 4


# -- unhappy disks --------------------------------------------------------------------------------


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "hrdash.recorder" and text in r.getMessage()
    ]


def digest(path: Path) -> bytes:
    return path.read_bytes()


def test_locked_then_released(
    make: Callable[..., Recorder], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another connection holding the write lock: state error / locked (logged once while the
    recorder retries), the readings wait; released: the recorder catches up (logged once)."""
    caplog.set_level(logging.INFO, logger="hrdash.recorder")
    path = tmp_path / "hrdash.db"
    rec = make(busy_timeout=0.1)
    rec.add("bed-01", [(T0, 70)])
    assert rec.flush(timeout=scaled(10))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        rec.add("bed-01", [(T0 + 500, 71), (T0 + 1000, 72)])
        assert not rec.flush(timeout=0.5)
        status = wait_status(rec, state="error", cause="locked")
        assert "locked" in status["detail"] and status["since"] == T0 + 3_600_000
        assert status["pending"] == 2 and status["written"] == 1
        wait_status(rec, retries=2)  # it tried again, still locked
        rec.add("bed-02", [(T0, 60)])
    finally:
        other.execute("ROLLBACK")
        other.close()
    status = wait_status(rec, state="ok")
    assert status["cause"] == "" and status["since"] is None
    assert rec.flush(timeout=scaled(10))
    assert [(p, t) for p, t, _, _ in rows(path)] == [
        ("bed-01", T0),
        ("bed-01", T0 + 500),
        ("bed-01", T0 + 1000),
        ("bed-02", T0),
    ]
    assert len(messages(caplog, "history not recorded (locked)")) == 1
    assert len(messages(caplog, "history recording again")) == 1


def test_pending_bounded_while_unhappy(
    make: Callable[..., Recorder], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """While the disk is unhappy at most max_pending readings wait (the oldest dropped, counted,
    logged once); the newest are written when it recovers."""
    path = tmp_path / "hrdash.db"
    rec = make(busy_timeout=0.1, max_pending=10, commit_interval=0.1)
    rec.add("bed-01", [(T0, 70)])
    assert rec.flush(timeout=scaled(10))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        for i in range(1, 26):
            rec.add("bed-01", [(T0 + 1000 * i, 70)])
            if i == 5:
                wait_status(rec, cause="locked")
        status = wait_status(rec, retries=2)
        assert status["pending"] == 10 and status["dropped"] == 15
    finally:
        other.execute("ROLLBACK")
        other.close()
    wait_status(rec, state="ok")
    assert rec.flush(timeout=scaled(10))
    assert [t - T0 for _, t, _, _ in rows(path)] == [0, *range(16_000, 26_000, 1000)]
    assert len(messages(caplog, "dropping")) == 1


def test_full_then_space_freed(make: Callable[..., Recorder], tmp_path: Path) -> None:
    """No room left for a batch (here max_pages, SQLite's own size cap, on a file filled by
    another table): state error / full, the batch waits; room made: it is written."""
    path = tmp_path / "hrdash.db"
    conn = store.connect(path)
    store.ensure_schema(conn)
    conn.execute("CREATE TABLE filler (x)")
    conn.executemany("INSERT INTO filler VALUES (randomblob(4000))", [()] * 100)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    rec = make(path, max_pages=pages + 3)
    readings = [(T0 + 500 * i, 60 + i % 50) for i in range(5000)]  # needs ~40 pages
    rec.add("bed-01", readings)
    status = wait_status(rec, state="error", cause="full")
    assert "full" in status["detail"] and status["pending"] == 5000 and status["written"] == 0
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("DROP TABLE filler")  # frees ~100 pages inside the file
    other.close()
    wait_status(rec, state="ok", written=5000)
    assert [(t, b) for _, t, _, b in rows(path)] == readings


def test_corrupt_file_is_never_touched(
    make: Callable[..., Recorder], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file that is not a database: state error / corrupt, its bytes never change (no WAL
    switch, no rename, no side files) however often the recorder looks again; moved away by
    the user, a new history starts and the waiting readings are written."""
    caplog.set_level(logging.INFO, logger="hrdash.recorder")
    path = tmp_path / "hrdash.db"
    garbage = random.Random(1).randbytes(64 * 1024)
    path.write_bytes(garbage)
    rec = make(path)
    rec.add("bed-01", [(T0, 70)])
    status = wait_status(rec, state="error", cause="corrupt")
    assert status["detail"] == "file is not a database"
    assert rec.load_recent("bed-01", 20) == []
    wait_status(rec, retries=2)
    assert path.read_bytes() == garbage
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hrdash.db"]
    assert len(messages(caplog, "history not recorded (corrupt)")) == 1
    path.rename(tmp_path / "broken.db")
    wait_status(rec, state="ok", written=1)
    assert (tmp_path / "broken.db").read_bytes() == garbage
    assert rows(path) == [("bed-01", T0, 0, 70)]


def test_damaged_history_is_reported_corrupt(make: Callable[..., Recorder], tmp_path: Path) -> None:
    """A history whose pages are damaged is reported corrupt, and not written to afterwards."""
    path = tmp_path / "hrdash.db"
    rec = make(path)
    rec.add("bed-01", [(T0 + 500 * i, 60 + i % 50) for i in range(20_000)])
    rec.close()
    data = bytearray(path.read_bytes())
    page = 4096
    for start in range(2 * page, len(data), page):  # every page after the first two
        data[start : start + 64] = b"\xa5" * 64
    path.write_bytes(bytes(data))
    rec = make(path)
    rec.add("bed-01", [(T0 + 500 * 20_000, 70)])
    wait_status(rec, state="error", cause="corrupt")
    damaged = path.read_bytes()
    wait_status(rec, retries=2)
    assert path.read_bytes() == damaged


def test_foreign_database_is_never_touched(make: Callable[..., Recorder], tmp_path: Path) -> None:
    """Another program's SQLite file (or a newer hrdash schema): state error / foreign with a
    one-line detail; the file is not switched to WAL or written in any way."""
    path = tmp_path / "notes.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (text)")
    conn.execute("INSERT INTO notes VALUES ('keep me')")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    rec = make(path)
    rec.add("bed-01", [(T0, 70)])
    status = wait_status(rec, state="error", cause="foreign")
    assert status["detail"] == "the file is another program's SQLite database (no hrdash tables)"
    wait_status(rec, retries=2)
    assert path.read_bytes() == before
    assert rec.load_recent("bed-01", 5) == []

    newer = tmp_path / "newer.db"
    conn = sqlite3.connect(newer)
    store.ensure_schema(conn)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(store.SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    before = newer.read_bytes()
    rec = make(newer)
    status = wait_status(rec, state="error", cause="foreign")
    assert "newer" in status["detail"]
    assert newer.read_bytes() == before


def test_missing_directory_then_created(make: Callable[..., Recorder], tmp_path: Path) -> None:
    """A path in a directory that does not exist: state error / unavailable naming the
    directory; once it exists, the history is created and the waiting readings written."""
    folder = tmp_path / "later"
    rec = make(folder / "hrdash.db")
    rec.add("bed-01", [(T0, 70)])
    status = wait_status(rec, state="error", cause="unavailable")
    assert status["detail"] == f"unable to open database file (no directory {folder})"
    assert rec.load_recent("bed-01", 5) == []
    folder.mkdir()
    wait_status(rec, state="ok", written=1)
    assert rows(folder / "hrdash.db") == [("bed-01", T0, 0, 70)]


def test_classify_real_errors(tmp_path: Path) -> None:
    """The causes of the exceptions SQLite and the OS really raise (read-only included: a
    connection opened read-only gives the exception a read-only file gives)."""
    path = tmp_path / "h.db"
    conn = store.connect(path)
    store.ensure_schema(conn)
    conn.close()
    ro = store.connect(path, readonly=True)
    ro.execute("PRAGMA query_only=OFF")
    with pytest.raises(sqlite3.Error) as readonly:
        ro.execute("INSERT INTO meta VALUES ('x', 'y')")
    ro.close()
    assert recorder_module.classify(readonly.value) == (
        "read_only",
        "attempt to write a readonly database",
    )
    garbage = tmp_path / "g.db"
    garbage.write_bytes(b"x" * 5000)
    with pytest.raises(sqlite3.Error) as notadb:
        sqlite3.connect(garbage).execute("SELECT * FROM sqlite_schema")
    assert recorder_module.classify(notadb.value) == ("corrupt", "file is not a database")
    with pytest.raises(sqlite3.Error) as cantopen:
        sqlite3.connect(tmp_path / "no" / "h.db").execute("SELECT 1")
    assert recorder_module.classify(cantopen.value)[0] == "unavailable"
    conn = sqlite3.connect(path, isolation_level=None, timeout=0)
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other.execute("BEGIN EXCLUSIVE")
    with pytest.raises(sqlite3.Error) as locked:
        conn.execute("BEGIN IMMEDIATE")
    assert recorder_module.classify(locked.value) == ("locked", "database is locked")
    other.execute("ROLLBACK")
    conn.execute("PRAGMA max_page_count=1")
    with pytest.raises(sqlite3.Error) as full:
        conn.execute("CREATE TABLE big (x)")
    assert recorder_module.classify(full.value)[0] == "full"
    assert recorder_module.classify(store.StoreError("newer"))[0] == "foreign"
    assert recorder_module.classify(OSError(30, "Read-only file system"))[0] == "read_only"
    assert recorder_module.classify(OSError(28, "No space left on device"))[0] == "full"
    assert recorder_module.classify(sqlite3.OperationalError("disk I/O error"))[0] == "error"
    assert recorder_module.classify(RuntimeError("a\nb"))[1] == "a b"  # one line


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Makes `path` (file or directory) unwritable for this process: chmod for a user, the
    immutable attribute for root (whom chmod does not stop); skips when neither can be done."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    chattr = shutil.which("chattr")
    done = chattr and subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode
    if chattr is None or done != 0:
        pytest.skip("root, and no immutable attribute here: cannot make a read-only file")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


def test_read_only_file_then_writable(make: Callable[..., Recorder], tmp_path: Path) -> None:
    """A history the process may not write: state error / read_only, the readings wait and
    loading still works; writable again: they are written."""
    path = tmp_path / "hrdash.db"
    rec = make(path)
    rec.add("bed-01", [(T0, 70)])
    rec.close()
    with read_only(path):
        rec = make(path)
        rec.add("bed-01", [(T0 + 500, 71)])
        status = wait_status(rec, state="error", cause="read_only")
        assert "readonly" in status["detail"]
        assert rec.load_recent("bed-01", 5) == [(T0, 70)]
    wait_status(rec, state="ok", written=1)
    assert [t for _, t, _, _ in rows(path)] == [T0, T0 + 500]


def test_read_only_directory(make: Callable[..., Recorder], tmp_path: Path) -> None:
    """A new history in a directory the process may not write: read_only, naming it."""
    folder = tmp_path / "locked-down"
    folder.mkdir()
    with read_only(folder):
        rec = make(folder / "hrdash.db")
        rec.add("bed-01", [(T0, 70)])
        status = wait_status(rec, state="error", cause="read_only")
        assert status["detail"] == f"unable to open database file (directory {folder} is read-only)"
    wait_status(rec, state="ok", written=1)


KILLED_WRITER = """
import os, signal, sys
from hrdash.ingest import Recorder
rec = Recorder(sys.argv[1], [("bed-01", "Bed 1")], retention=3 * 86400, trend_retention=30 * 86400,
               commit_interval=3600)
rec.start()
t0 = int(sys.argv[2])
rec.add("bed-01", [(t0 + 500 * i, 60 + i % 40) for i in range(1000)])
assert rec.flush(30)
rec.add("bed-01", [(t0 + 500 * i, 99) for i in range(1000, 1010)])  # never committed
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_after_a_sigkill_the_committed_readings_are_there(
    make: Callable[..., Recorder], tmp_path: Path
) -> None:
    """A writer process killed with SIGKILL leaves its WAL behind: the next recorder loads what
    was committed, in order, and goes on writing; a re-send of it is counted duplicate."""
    path = tmp_path / "hrdash.db"
    now_ms = round(time.time() * 1000) - 600_000
    done = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(path), str(now_ms)],
        capture_output=True,
        timeout=scaled(60),
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    assert (tmp_path / "hrdash.db-wal").exists()
    committed = [(now_ms + 500 * i, 60 + i % 40) for i in range(1000)]
    rec = make(path, clock=time.time)
    assert rec.load_recent("bed-01", 20) == committed[-20:]
    rec.add("bed-01", [*committed[-5:], (now_ms + 500 * 1000, 70)])
    assert rec.flush(timeout=scaled(10))
    assert rec.status()["duplicates"] == 5 and rec.status()["written"] == 1
    assert [(t, b) for _, t, _, b in rows(path)] == [*committed, (now_ms + 500 * 1000, 70)]


# -- the alarm log and the limits -----------------------------------------------------------------


def log_entry(patient: str | None, t: int, event: str = "raised", **fields: Any) -> dict[str, Any]:
    kind = None if patient is None else "hr_high"
    return {
        "time": t,
        "patient": patient,
        "alarm": None if kind is None else f"{patient}:{kind}:{t}",
        "kind": kind,
        "priority": None if kind is None else "medium",
        "event": event,
        "value": 131 if kind else 60,
        "limit": 120,
        "origin": None,
        **fields,
    }


def test_log_and_limits_are_written_and_loaded(
    make: Callable[..., Recorder], tmp_path: Path
) -> None:
    """add_log and set_limits go into the batches: the entries in order (the station's with
    patient NULL, limits as JSON), the newest limits row per patient; load_log gives each
    patient's newest entries in the order they happened, load_limits the rows."""
    rec = make()
    page = Limits(low=45, high=110)
    changed = log_entry("bed-02", T0 + 5, "limits_changed", alarm=None, kind=None, priority=None)
    changed |= {"value": Limits().as_dict(), "limit": page.as_dict(), "origin": "http://a"}
    entries = [
        log_entry("bed-01", T0),
        log_entry(None, T0 + 1, "audio_paused", value=120, origin="http://a"),
        log_entry("bed-01", T0 + 2, "ended"),
        changed,
    ]
    rec.add_log(entries[:2])
    rec.set_limits("bed-02", Limits(low=44), Limits(), T0 + 4, "http://a")
    rec.add_log(entries[2:])
    rec.set_limits("bed-02", page, Limits(), T0 + 5, "http://a")  # replaces the one waiting
    rec.set_limits("late-1", page, Limits(low=51), T0 + 6, "http://b")
    assert rec.status()["alarms"]["pending"] == 6
    assert rec.flush(timeout=scaled(10))
    status = rec.status()["alarms"]
    assert status == {"pending": 0, "written": 4, "limits_written": 2, "dropped": 0, "pruned": 0}
    assert rec.load_log(10) == entries
    assert rec.load_log(1) == [entries[1], entries[2], entries[3]]  # the newest of each
    stored = rec.load_limits()
    assert stored == {
        "bed-02": store.StoredLimits(page, Limits(), T0 + 5, "http://a"),
        "late-1": store.StoredLimits(page, Limits(low=51), T0 + 6, "http://b"),
    }
    settings = Settings.load(env={}).replace(db=str(tmp_path / "hrdash.db"))
    assert history.alarm_log(settings, "bed-01") == [entries[2], entries[0]]
    assert history.alarm_log(settings, "bed-02") == [changed]


def test_the_log_is_pruned_keeping_the_newest_1000_per_patient(
    make: Callable[..., Recorder], clock: FakeClock
) -> None:
    """Log entries older than trend_retention are pruned, except each patient's (and the
    station's) newest LOG_KEEP_MIN; newer ones are all kept."""
    rec = make(retention=HOUR, trend_retention=DAY, prune_interval=60.0)
    now = round(clock() * 1000)
    old = now - 2 * DAY * 1000
    rec.add_log([log_entry("bed-01", old + i) for i in range(1100)])
    rec.add_log([log_entry("bed-02", old + i) for i in range(20)])
    rec.add_log([log_entry(None, old + i, "audio_paused") for i in range(1005)])
    recent = [log_entry("bed-03", now - 1000 + i) for i in range(1010)]
    rec.add_log(recent)
    assert rec.flush(timeout=scaled(10))  # the first cycle prunes (none was done yet)
    assert rec.status()["alarms"]["pruned"] == 100 + 5
    kept = rec.load_log(5000)
    times = {p: sorted(e["time"] for e in kept if e["patient"] == p) for p in PATIENT_IDS}
    assert times["bed-01"] == [old + i for i in range(100, 1100)]
    assert len(times["bed-02"]) == 20
    assert len(times["bed-03"]) == 1010  # newer than the trend retention: all
    assert sum(e["patient"] is None for e in kept) == 1000
    clock.advance(60)
    rec.add_log([log_entry("bed-01", now + 60_000)])
    assert rec.flush(timeout=scaled(10))
    assert rec.status()["alarms"]["pruned"] == 106  # still the newest 1000 of bed-01


def test_log_and_limits_wait_while_locked_and_none_is_lost(
    make: Callable[..., Recorder], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another connection holds the lock the entries and limits wait (counted pending);
    beyond MAX_LOG_PENDING the oldest are dropped and counted; released, the rest is written."""
    monkeypatch.setattr(recorder_module, "MAX_LOG_PENDING", 10)
    path = tmp_path / "hrdash.db"
    rec = make(busy_timeout=0.1, commit_interval=0.1)
    rec.add_log([log_entry("bed-01", T0)])
    assert rec.flush(timeout=scaled(10))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        rec.add_log([log_entry("bed-01", T0 + i) for i in range(1, 4)])
        rec.set_limits("bed-01", Limits(low=45), Limits(), T0 + 20, "http://a")
        wait_status(rec, cause="locked")  # that batch failed: put back
        rec.add_log([log_entry("bed-01", T0 + i) for i in range(4, 7)])
        status = wait_status(rec, retries=2)
        assert status["alarms"]["pending"] == 7 and status["alarms"]["dropped"] == 0
        rec.add_log([log_entry("bed-01", T0 + i) for i in range(7, 15)])
        status = rec.status()["alarms"]
        assert status["pending"] == 11 and status["dropped"] == 4
    finally:
        other.execute("ROLLBACK")
        other.close()
    wait_status(rec, state="ok")
    assert rec.flush(timeout=scaled(10))
    assert [e["time"] - T0 for e in rec.load_log(100)] == [0, *range(5, 15)]
    assert rec.load_limits()["bed-01"].limits == Limits(low=45)
    assert rec.status()["alarms"]["written"] == 11
