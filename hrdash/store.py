"""The history's file: the SQLite schema shared by its writer and its readers.

The bridge's recorder (:mod:`hrdash.ingest.recorder`) is the only writer; the Dash server's read
side (:mod:`hrdash.history`) opens the same file read-only. WAL mode lets them work at the same
time: readers never block the writer, the writer never blocks readers.

Schema (version :data:`SCHEMA_VERSION`)::

    meta      (key TEXT PRIMARY KEY, value TEXT)                      -- "schema", "app"
    patients  (key INTEGER PRIMARY KEY, id TEXT UNIQUE, name TEXT)    -- small keys for the rows
    readings  (patient, t, n, bpm)  PRIMARY KEY (patient, t, n)  WITHOUT ROWID
    minutes   (patient, t, min, sum, max, n)  PRIMARY KEY (patient, t)  WITHOUT ROWID
    alarm_log (id INTEGER PRIMARY KEY, time, patient, alarm, kind, priority, event,
               value, lim, origin)  INDEX alarm_log_patient (patient, time)
    limits    (patient INTEGER PRIMARY KEY, extreme_low, low, high, extreme_high,
               file TEXT, time, origin)

* ``readings`` holds every recorded reading: ``t`` its time (Unix ms, the service's time as
  the bridge accepted it), ``bpm`` as the service sent it (an integer stays an integer), ``n``
  0 for the first reading of a patient at time ``t`` and 1, 2... for further ones at the same
  millisecond (a service with coarse timestamps), so that no reading overwrites another. The
  table is clustered on its key (``WITHOUT ROWID``): a patient's readings lie together in time
  order, a range of them is one index walk, and no separate index or rowid is stored.
* ``minutes`` is the minute rollup of ``readings`` (``t`` the minute's start, on the epoch):
  min, sum, max and count, so that wider buckets are exact sums of narrower ones
  (:func:`hrdash.trends.merge`) and the mean is ``sum / n``. It is kept longer than the raw
  readings (``HRDASH_TREND_RETENTION`` against ``HRDASH_RETENTION``).
* ``alarm_log`` is the alarm log (:mod:`hrdash.alarms`' entries, the ``/api/alarms/log``
  shape), one row per entry in the order they happened (``id``): ``time`` Unix ms, ``patient``
  the patient's key or NULL for the station's entries (``audio_paused``), ``alarm``, ``kind``,
  ``priority``, ``event`` (raised, latched, acknowledged, ended, audio_paused, limits_changed),
  ``value`` and ``lim`` (the entry's ``limit``; a ``limits_changed`` entry's old and new limits
  are JSON objects, as text) and ``origin`` (who: a page's Origin, ``"sources file"``, or NULL
  for what readings and timers did). Kept ``HRDASH_TREND_RETENTION`` and always the newest
  :data:`LOG_KEEP_MIN` per patient.
* ``limits`` holds each patient's alarm limits in effect (one row per patient, written when they
  change): the four limits in bpm, ``file`` the sources file's limits (JSON) when these were
  set, so that the next start can tell whether someone edited the file since (then the file
  wins), ``time`` (Unix ms) and ``origin`` of the change.
* ``patients`` maps the sources' ids (the URLs' ``/patient/<id>``) to the integer keys the rows
  use: a key takes one byte in a row where the id would take up to 32.

``bpm``, ``min``, ``sum``, ``max``, ``value``, ``lim`` and the limits are declared without a type,
so SQLite stores each value as it came (integer or real), in the fewest bytes.

Versions: 1 had no ``alarm_log`` and ``limits``; :func:`ensure_schema` adds them to a version 1
file in place (one transaction, the readings untouched). A file of a newer version is refused.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hrdash.alarms import Limits

__all__ = [
    "LOG_KEEP_MIN",
    "MEMORY",
    "SCHEMA_VERSION",
    "SOURCES_FILE",
    "StoreError",
    "StoredLimits",
    "connect",
    "ensure_schema",
    "limits_at_start",
    "limits_json",
    "log_entry",
    "log_row",
    "patient_key",
    "patient_keys",
]

SCHEMA_VERSION = 2
LOG_KEEP_MIN = 1000  # alarm log entries always kept per patient, however old
APP = "hrdash"
MEMORY = ":memory:"  # HRDASH_DB value that keeps nothing (no recorder runs)
BUSY_TIMEOUT_S = 5.0  # a locked database is waited for this long before an operation fails

_DDL = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS patients ("
    " key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, name TEXT NOT NULL DEFAULT '')",
    "CREATE TABLE IF NOT EXISTS readings ("
    " patient INTEGER NOT NULL, t INTEGER NOT NULL, n INTEGER NOT NULL DEFAULT 0, bpm NOT NULL,"
    " PRIMARY KEY (patient, t, n)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS minutes ("
    " patient INTEGER NOT NULL, t INTEGER NOT NULL, min NOT NULL, sum NOT NULL, max NOT NULL,"
    " n INTEGER NOT NULL, PRIMARY KEY (patient, t)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS alarm_log ("
    " id INTEGER PRIMARY KEY, time INTEGER NOT NULL, patient INTEGER,"
    " alarm TEXT, kind TEXT, priority TEXT, event TEXT NOT NULL, value, lim, origin TEXT)",
    "CREATE INDEX IF NOT EXISTS alarm_log_patient ON alarm_log (patient, time)",
    "CREATE TABLE IF NOT EXISTS limits ("
    " patient INTEGER PRIMARY KEY, extreme_low NOT NULL, low NOT NULL, high NOT NULL,"
    " extreme_high NOT NULL, file TEXT, time INTEGER NOT NULL, origin TEXT)",
)
SOURCES_FILE = "sources file"  # origin of a limits change the sources file made (at a start)

_TABLES = {"meta", "patients", "readings", "minutes", "alarm_log", "limits"}


class StoreError(Exception):
    """One line: the file is not a history this version can use (another program's database,
    a newer schema). Never "fixed" by overwriting the file."""


def connect(
    path: str | Path, *, readonly: bool = False, timeout: float = BUSY_TIMEOUT_S
) -> sqlite3.Connection:
    """A connection to the history at ``path``. The writer's (``readonly=False``) creates the
    file if needed, in WAL mode with ``synchronous=NORMAL`` (a commit is durable against a
    crash of the process; against a power cut the last commits may be lost, never the file);
    a reader's opens an existing file read-only and fails if there is none. Autocommit is off
    for neither: callers use explicit transactions (``isolation_level=None``).

    Raises :class:`sqlite3.Error` as SQLite does (locked, full, corrupt, read-only...)."""
    if str(path) == MEMORY:
        conn = sqlite3.connect(MEMORY, isolation_level=None, check_same_thread=False)
    elif readonly:
        uri = Path(path).resolve().as_uri() + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
    else:
        conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None)
    try:
        if not readonly and str(path) != MEMORY:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot use WAL mode (journal_mode={mode})")
            conn.execute("PRAGMA synchronous=NORMAL")
        else:
            conn.execute("PRAGMA query_only=ON" if readonly else "PRAGMA synchronous=OFF")
    except BaseException:
        conn.close()
        raise
    return conn


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the tables of an empty database, or check that an existing one is ours and of
    this schema version; an older one of ours is brought up to it in place (the missing tables
    added and ``meta.schema`` updated in one transaction, nothing else touched). Raises
    :class:`StoreError` (one line) for a database that holds other tables and no hrdash marker,
    or a newer schema; :class:`sqlite3.DatabaseError` for a file that is not a database (never
    overwritten)."""
    names = {
        row[0]
        for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'").fetchall()
    }
    if names and "meta" not in names:
        raise StoreError("the file is another program's SQLite database (no hrdash tables)")
    if "meta" in names:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("app") != APP:
            raise StoreError("the file is another program's SQLite database (no hrdash marker)")
        version = int(meta.get("schema", "0"))
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the history has schema {version}, newer than this hrdash's {SCHEMA_VERSION}"
            )
        if version == SCHEMA_VERSION and names >= _TABLES:
            return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _DDL:
            conn.execute(statement)
        conn.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [("app", APP), ("schema", str(SCHEMA_VERSION))],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def patient_key(conn: sqlite3.Connection, patient_id: str, name: str = "") -> int:
    """The integer key of ``patient_id``, added (with ``name``) if it is new; a changed name is
    updated. Runs inside the caller's transaction if there is one."""
    conn.execute(
        "INSERT INTO patients (id, name) VALUES (?, ?)"
        " ON CONFLICT (id) DO UPDATE SET name = excluded.name WHERE name != excluded.name",
        (patient_id, name),
    )
    row = conn.execute("SELECT key FROM patients WHERE id = ?", (patient_id,)).fetchone()
    return int(row[0])


def patient_keys(conn: sqlite3.Connection, ids: Iterable[str] | None = None) -> dict[str, int]:
    """id → key of the patients the history knows (all, or those of ``ids`` it knows)."""
    rows = conn.execute("SELECT id, key FROM patients").fetchall()
    known = {str(i): int(k) for i, k in rows}
    if ids is None:
        return known
    return {i: known[i] for i in ids if i in known}


# -- the alarm log and the limits ------------------------------------------------------------

LOG_COLUMNS = "time, patient, alarm, kind, priority, event, value, lim, origin"


def _stored_value(value: Any) -> Any:
    """A log entry's ``value``/``limit`` as a column holds it: a dict (the limits of a
    ``limits_changed`` entry) as JSON text, anything else as it is."""
    return json.dumps(value, sort_keys=True) if isinstance(value, Mapping) else value


def log_row(entry: Mapping[str, Any], key: int | None) -> tuple[Any, ...]:
    """The ``alarm_log`` row (:data:`LOG_COLUMNS`) of a log entry of the patient with ``key``
    (None: the station's)."""
    return (
        int(entry["time"]),
        key,
        entry.get("alarm"),
        entry.get("kind"),
        entry.get("priority"),
        entry["event"],
        _stored_value(entry.get("value")),
        _stored_value(entry.get("limit")),
        entry.get("origin"),
    )


def log_entry(row: tuple[Any, ...]) -> dict[str, Any]:
    """The log entry (the ``/api/alarms/log`` shape) of a row ``(time, patient id, alarm,
    kind, priority, event, value, lim, origin)``: a ``limits_changed`` entry's limits are
    dicts again."""
    time_ms, patient, alarm, kind, priority, event, value, lim, origin = row
    if event == "limits_changed":
        value, lim = (json.loads(v) if isinstance(v, str) else v for v in (value, lim))
    return {
        "time": time_ms,
        "patient": patient,
        "alarm": alarm,
        "kind": kind,
        "priority": priority,
        "event": event,
        "value": value,
        "limit": lim,
        "origin": origin,
    }


def limits_json(limits: Limits) -> str:
    """The ``limits.file`` text of a sources file's limits."""
    return json.dumps(limits.as_dict(), sort_keys=True)


@dataclass(frozen=True)
class StoredLimits:
    """A patient's row of ``limits``: the limits in effect, the sources file's limits when they
    were set (None if unknown or unreadable), when (Unix ms) and by whom."""

    limits: Limits
    file: Limits | None
    time: int
    origin: str | None


def read_limits(conn: sqlite3.Connection) -> dict[str, StoredLimits]:
    """patient id → its stored limits, for every patient with a row (a row whose limits are
    not valid any more is left out: the sources file's apply). Empty when the file has no
    ``limits`` table yet (version 1, not yet migrated)."""
    try:
        rows = conn.execute(
            "SELECT p.id, l.extreme_low, l.low, l.high, l.extreme_high, l.file, l.time, l.origin"
            " FROM limits l JOIN patients p ON p.key = l.patient"
        ).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return {}
        raise
    found = {}
    for pid, extreme_low, low, high, extreme_high, file, time_ms, origin in rows:
        values = {"extreme_low": extreme_low, "low": low, "high": high}
        values["extreme_high"] = extreme_high
        try:
            limits = Limits.from_mapping(values)
        except ValueError:
            continue
        try:
            in_file = Limits.from_mapping(json.loads(file)) if file is not None else None
        except (ValueError, TypeError, AttributeError):
            in_file = None
        found[str(pid)] = StoredLimits(limits, in_file, int(time_ms), origin)
    return found


def limits_at_start(stored: StoredLimits | None, file: Limits) -> tuple[Limits, bool]:
    """The limits a patient starts with, and whether the sources file overrides stored ones.

    No stored row: the sources file's (or default) limits ``file``. A stored row set while the
    sources file said what it says now: the stored limits (set on a page). A stored row set when
    the file said something else (someone edited the file since): the file's limits win, and
    the second value is True (the change is to be logged, ``origin`` :data:`SOURCES_FILE`)."""
    if stored is None:
        return file, False
    if stored.file == file:
        return stored.limits, False
    return file, True
