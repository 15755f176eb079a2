"""The history's file: the SQLite schema shared by its writer and its readers.

The bridge's recorder (:mod:`hrdash.ingest.recorder`) is the only writer; the Dash server's read
side (:mod:`hrdash.history`) opens the same file read-only. WAL mode lets them work at the same
time: readers never block the writer, the writer never blocks readers.

Schema (version :data:`SCHEMA_VERSION`)::

    meta      (key TEXT PRIMARY KEY, value TEXT)                      -- "schema", "app"
    patients  (key INTEGER PRIMARY KEY, id TEXT UNIQUE, name TEXT)    -- small keys for the rows
    readings  (patient, t, n, bpm)  PRIMARY KEY (patient, t, n)  WITHOUT ROWID
    minutes   (patient, t, min, sum, max, n)  PRIMARY KEY (patient, t)  WITHOUT ROWID

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
* ``patients`` maps the sources' ids (the URLs' ``/patient/<id>``) to the integer keys the rows
  use: a key takes one byte in a row where the id would take up to 32.

``bpm``, ``min``, ``sum`` and ``max`` are declared without a type, so SQLite stores each value as
it came (integer or real), in the fewest bytes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "MEMORY",
    "SCHEMA_VERSION",
    "StoreError",
    "connect",
    "ensure_schema",
    "patient_key",
    "patient_keys",
]

SCHEMA_VERSION = 1
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
)


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
    this schema version. Raises :class:`StoreError` (one line) for a database that holds other
    tables and no hrdash marker, or a newer schema; :class:`sqlite3.DatabaseError` for a file
    that is not a database (never overwritten)."""
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
        if version == SCHEMA_VERSION and names >= {"patients", "readings", "minutes"}:
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
