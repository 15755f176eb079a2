"""The alarm log and the limits in the history (schema 2): a fresh file, a version 1 file brought
up to 2 in place (its readings kept), a newer one refused; the Dash server's read side
(:func:`hrdash.history.alarm_log`, :func:`hrdash.history.patient_limits`) over a real SQLite
file, and through a real bridge with ``HRDASH_DB=:memory:``."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hrdash import history, store
from hrdash.alarms import Limits
from hrdash.settings import Settings
from tests.conftest import StartBridge, Upstream, free_port

T0 = 1_764_324_000_000
PATIENT = "bed-01"
OTHER = "bed-02"
PAGE = "http://127.0.0.1:8050"

V1_DDL = (  # the version 1 schema, as hrdash 0.x wrote it
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE patients (key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
    " name TEXT NOT NULL DEFAULT '')",
    "CREATE TABLE readings (patient INTEGER NOT NULL, t INTEGER NOT NULL,"
    " n INTEGER NOT NULL DEFAULT 0, bpm NOT NULL, PRIMARY KEY (patient, t, n)) WITHOUT ROWID",
    "CREATE TABLE minutes (patient INTEGER NOT NULL, t INTEGER NOT NULL, min NOT NULL,"
    " sum NOT NULL, max NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (patient, t)) WITHOUT ROWID",
)


def tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'").fetchall()
        return {r[0] for r in rows}
    finally:
        conn.close()


def schema_of(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0])
    finally:
        conn.close()


def v1_file(path: Path, readings: list[tuple[int, int]]) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in V1_DDL:
            conn.execute(statement)
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [("app", store.APP), ("schema", "1")])
        conn.execute("INSERT INTO patients (key, id, name) VALUES (1, ?, 'Bed 1')", (PATIENT,))
        conn.executemany("INSERT INTO readings (patient, t, n, bpm) VALUES (1, ?, 0, ?)", readings)
    finally:
        conn.close()


def entry(time_ms: int, event: str, patient: str = PATIENT, **fields: Any) -> dict[str, Any]:
    """A log entry of the contract's shape (a medium hr_high alarm's unless told otherwise)."""
    base = {
        "time": time_ms,
        "patient": patient,
        "alarm": f"{patient}:hr_high:{time_ms}",
        "kind": "hr_high",
        "priority": "medium",
        "event": event,
        "value": 131,
        "limit": 120,
        "origin": None,
    }
    return {**base, **fields}


def write_log(path: Path, entries: list[dict[str, Any]]) -> None:
    """Rows of ``alarm_log`` as the recorder writes them (store.log_row), in the given order."""
    conn = store.connect(path)
    try:
        store.ensure_schema(conn)
        conn.execute("BEGIN")
        rows = []
        for e in entries:
            key = store.patient_key(conn, e["patient"]) if e["patient"] is not None else None
            rows.append(store.log_row(e, key))
        conn.executemany(
            f"INSERT INTO alarm_log ({store.LOG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def write_limits(path: Path, patient: str, limits: Limits, file: Limits | None) -> None:
    conn = store.connect(path)
    try:
        store.ensure_schema(conn)
        key = store.patient_key(conn, patient)
        conn.execute(
            "INSERT OR REPLACE INTO limits VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                limits.extreme_low,
                limits.low,
                limits.high,
                limits.extreme_high,
                None if file is None else store.limits_json(file),
                T0,
                PAGE,
            ),
        )
    finally:
        conn.close()


def settings_for(db: Path | str, **changes: Any) -> Settings:
    """Settings whose bridge port nothing listens on (the bridge cannot be asked)."""
    base = Settings.load(env={"HRDASH_SIMULATOR_PATIENTS": "2"})
    return base.replace(db=str(db), bridge_port=free_port(), **changes)


def sources_file(path: Path, limits: dict[str, int] | None) -> Path:
    lines = [
        "[[patient]]",
        f'id = "{PATIENT}"',
        'url = "ws://127.0.0.1:9/hr"',
        "[[patient]]",
        f'id = "{OTHER}"',
        'url = "ws://127.0.0.1:9/hr2"',
    ]
    if limits is not None:
        lines[3:3] = ["[patient.limits]", *(f"{k} = {v}" for k, v in limits.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- schema 2 ----------------------------------------------------------------------------------


def test_a_fresh_file_has_schema_2_with_the_alarm_log_and_the_limits(tmp_path: Path) -> None:
    """A new history is schema 2 and has every table, the log's index included."""
    path = tmp_path / "hrdash.db"
    conn = store.connect(path)
    store.ensure_schema(conn)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'index'")}
    conn.close()
    assert store.SCHEMA_VERSION == 2
    assert schema_of(path) == "2"
    assert tables(path) >= {"meta", "patients", "readings", "minutes", "alarm_log", "limits"}
    assert "alarm_log_patient" in indexes


def test_a_version_1_file_is_migrated_in_place_keeping_its_readings(tmp_path: Path) -> None:
    """ensure_schema on a version 1 file adds alarm_log and limits, sets the schema to 2 and
    leaves the readings and patients as they were; a second call changes nothing."""
    path = tmp_path / "hrdash.db"
    readings = [(T0 + i * 500, 60 + i % 7) for i in range(50)]
    v1_file(path, readings)
    assert "alarm_log" not in tables(path)
    conn = store.connect(path)
    store.ensure_schema(conn)
    store.ensure_schema(conn)
    kept = conn.execute("SELECT t, bpm FROM readings ORDER BY t").fetchall()
    ids = store.patient_keys(conn)
    conn.close()
    assert kept == readings
    assert ids == {PATIENT: 1}
    assert schema_of(path) == "2"
    assert {"alarm_log", "limits"} <= tables(path)


def test_a_version_1_file_is_migrated_by_the_recorder(tmp_path: Path) -> None:
    """The recorder opens a version 1 file (its query-only check lets an older one of ours
    through) and brings it up to 2; the old readings are still there."""
    from hrdash.ingest.recorder import Recorder

    path = tmp_path / "hrdash.db"
    readings = [(T0 + i * 500, 70) for i in range(10)]
    v1_file(path, readings)
    recorder = Recorder(
        str(path),
        [(PATIENT, "Bed 1")],
        retention=3600,
        trend_retention=7200,
        clock=lambda: T0 / 1000 + 60,
    )
    recorder.start()
    try:
        assert recorder.load_recent(PATIENT, 100) == readings  # waits for the first open
        assert recorder.status()["state"] == "ok"
    finally:
        recorder.close(5)
    assert schema_of(path) == "2"


def test_a_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    """A file of schema 3 is refused with one line, and not changed."""
    path = tmp_path / "hrdash.db"
    conn = store.connect(path)
    store.ensure_schema(conn)
    conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema'")
    conn.execute("DROP TABLE limits")  # as if version 3 had replaced it
    with pytest.raises(store.StoreError, match="schema 3, newer than this hrdash's 2"):
        store.ensure_schema(conn)
    conn.close()
    assert schema_of(path) == "3"
    assert "limits" not in tables(path)


def test_log_rows_round_trip_limits_changed_as_dicts() -> None:
    """A limits_changed entry's old and new limits are stored as JSON text and read back as
    dicts; numbers stay numbers."""
    old, new = Limits().as_dict(), Limits(low=45, high=110).as_dict()
    changed = entry(T0, "limits_changed", alarm=None, kind=None, priority=None)
    changed |= {"value": old, "limit": new, "origin": PAGE}
    for e in (changed, entry(T0, "raised")):
        row = store.log_row(e, 1)
        assert isinstance(row[6], str | int | float)
        back = store.log_entry((row[0], PATIENT, *row[2:]))
        assert back == e


# -- history.alarm_log -------------------------------------------------------------------------


def test_alarm_log_reads_the_file_newest_first_in_range(tmp_path: Path) -> None:
    """alarm_log gives one patient's entries with start <= time < end, newest first (the
    insertion order within one millisecond), at most limit, in the /api/alarms/log shape."""
    path = tmp_path / "hrdash.db"
    mine = [entry(T0 + i * 1000, ("raised", "ended")[i % 2]) for i in range(20)]
    mine.append(entry(T0 + 19_000, "acknowledged", origin=PAGE))  # same ms as the last
    other = [entry(T0 + i * 1000, "raised", patient=OTHER) for i in range(5)]
    station = [entry(T0 + 500, "audio_paused", patient=None, alarm=None, kind=None)]
    write_log(path, mine + other + station)
    settings = settings_for(path)
    every = history.alarm_log(settings, PATIENT, limit=1000)
    assert every == list(reversed(mine))
    assert every[0]["event"] == "acknowledged"
    some = history.alarm_log(settings, PATIENT, T0 + 5000, T0 + 10_000, limit=3)
    assert [e["time"] for e in some] == [T0 + 9000, T0 + 8000, T0 + 7000]
    assert history.alarm_log(settings, OTHER, limit=2) == [other[4], other[3]]
    assert history.alarm_log(settings, "bed-99") == []
    assert history.alarm_log(settings_for(tmp_path / "none.db"), PATIENT) == []
    with pytest.raises(history.BadRange):
        history.alarm_log(settings, PATIENT, limit=0)
    with pytest.raises(history.BadRange):
        history.alarm_log(settings, PATIENT, T0, T0)


def test_alarm_log_of_a_version_1_file_is_empty(tmp_path: Path) -> None:
    """A file the recorder has not migrated yet has no log: empty, not an error."""
    path = tmp_path / "hrdash.db"
    v1_file(path, [(T0, 70)])
    assert history.alarm_log(settings_for(path), PATIENT) == []


async def test_alarm_log_asks_the_bridge_with_memory(
    start_bridge: StartBridge, upstream: Upstream
) -> None:
    """With HRDASH_DB=:memory: the log comes from the bridge's GET /api/alarms/log (its
    in-memory log), filtered to the range; an unknown patient is UnknownPatient."""
    bridge = await start_bridge(upstream.url)
    patient = bridge.source.id
    bridge.alarms.set_limits(patient, Limits(low=45, high=110), PAGE)
    bridge.alarms.set_limits(patient, Limits(low=46, high=111), PAGE)
    settings = Settings.load(env={}).replace(db=store.MEMORY, bridge_port=bridge.port)
    found = await asyncio.to_thread(history.alarm_log, settings, patient)
    assert [e["event"] for e in found] == ["limits_changed", "limits_changed"]
    assert found[0]["limit"]["low"] == 46 and found[1]["limit"]["low"] == 45
    assert found == bridge.alarms.log(patient, 10)
    later = await asyncio.to_thread(history.alarm_log, settings, patient, found[0]["time"] + 1)
    assert later == []
    with pytest.raises(history.UnknownPatient):
        await asyncio.to_thread(history.alarm_log, settings, "nobody")


# -- history.patient_limits --------------------------------------------------------------------


async def test_patient_limits_come_from_the_bridge_when_it_answers(
    start_bridge: StartBridge, upstream: Upstream, tmp_path: Path
) -> None:
    """A running bridge's limits (its /api/patients entry) are the ones in effect, whatever
    the file holds; a patient it does not know is UnknownPatient."""
    bridge = await start_bridge(upstream.url)
    patient = bridge.source.id
    page = Limits(extreme_low=35, low=45, high=110, extreme_high=140)
    bridge.alarms.set_limits(patient, page, PAGE)
    path = tmp_path / "hrdash.db"
    write_limits(path, patient, Limits(low=55, high=100), Limits())
    settings = Settings.load(env={}).replace(db=str(path), bridge_port=bridge.port)
    assert await asyncio.to_thread(history.patient_limits, settings, patient) == page
    with pytest.raises(history.UnknownPatient):
        await asyncio.to_thread(history.patient_limits, settings, "nobody")


def test_patient_limits_without_the_bridge_follow_the_start_rule(tmp_path: Path) -> None:
    """Bridge down: the stored row while the sources file says what it said when the row was
    set; the sources file's limits once it was edited; the defaults with neither."""
    path = tmp_path / "hrdash.db"
    in_file = {"low": 52, "high": 118}
    sources = sources_file(tmp_path / "sources.toml", in_file)
    settings = settings_for(path, sources=str(sources))
    file_limits = Limits(low=52, high=118)
    assert history.patient_limits(settings, PATIENT) == file_limits  # no file yet
    assert history.patient_limits(settings, OTHER) == Limits()
    page = Limits(low=45, high=110)
    write_limits(path, PATIENT, page, file_limits)
    assert history.patient_limits(settings, PATIENT) == page  # set on a page, file unchanged
    sources_file(sources, {"low": 53, "high": 118})  # someone edits the file
    assert history.patient_limits(settings, PATIENT) == Limits(low=53, high=118)
    sources_file(sources, None)  # limits removed from the file: the defaults, the file's now
    assert history.patient_limits(settings, PATIENT) == Limits()
    bare = settings_for(tmp_path / "other.db")
    assert history.patient_limits(bare, PATIENT) == Limits()


def test_limits_at_start_rule() -> None:
    """No row: the file's; row set under the same file: the row's; file changed: the file's,
    to be logged."""
    file = Limits(low=52)
    page = Limits(low=45)
    assert store.limits_at_start(None, file) == (file, False)
    same = store.StoredLimits(page, file, T0, PAGE)
    assert store.limits_at_start(same, file) == (page, False)
    edited = store.StoredLimits(page, Limits(), T0, PAGE)
    assert store.limits_at_start(edited, file) == (file, True)
    assert json.loads(store.limits_json(file)) == file.as_dict()
