"""The history's writer: every accepted reading of every patient, the alarm log and the alarm
limits into SQLite, off the event loop.

The bridge calls :meth:`Recorder.add` on its event loop for the readings it accepted: an
append under a lock, no disk. A writer thread with its own connection (:func:`hrdash.store.
connect`) commits what was added about once a second (``commit_interval``), one transaction per
batch: the raw rows into ``readings`` and, recomputed from those raw rows, the minutes the batch
touched in ``minutes`` (exact and idempotent, whatever arrived late or twice). It prunes in the
same thread every ``prune_interval``, in short transactions. A slow or unhappy disk delays only
this thread; the live path never waits for it.

Rules of the write (the schema is in :mod:`hrdash.store`):

* A reading is (patient, time, bpm). One that is already stored, at the same time with the same
  bpm, is an exact re-send (a service repeating itself after a reconnect, a restarted bridge):
  not stored again, counted ``duplicates``. Another reading at the same millisecond with a
  different bpm gets the next ``n``: no reading overwrites another. (Two readings at the same
  millisecond with the same bpm cannot be told from a re-send; they are stored once, whatever
  the batches they came in.)
* A reading older than ``retention`` (on the injected clock) is not written: counted
  ``too_old``.
* Pruning removes a patient's raw readings minute by minute once the whole minute is older than
  ``retention`` (so raw rows stay up to a minute longer than the retention, and a minute is
  never recomputed from part of its readings), and minute rows once the minute is older than
  ``trend_retention``.

The alarm log and the limits (:meth:`Recorder.add_log`, :meth:`Recorder.set_limits`, also called
on the event loop, no disk) go into the same batches: log entries into ``alarm_log`` in the
order they were added, a patient's limits in effect into its ``limits`` row (only the newest
waiting change of a patient is written: a row is state, not history; the log has every change).
Log entries are pruned with the minute rows, once older than ``trend_retention``, but the newest
:data:`hrdash.store.LOG_KEEP_MIN` of each patient (and of the station's) are always kept. At
start the bridge reads them back (:meth:`Recorder.load_limits`, :meth:`Recorder.load_log`).
Counted in :meth:`Recorder.status` under ``alarms``.

Unhappy disks (:data:`CAUSES`): a failed open or batch puts the recorder in state ``"error"`` with
a cause, a one-line detail and since when; the cause is logged once (logger
``"hrdash.recorder"``) and its end once ("history recording again"). The readings of the failed
batch stay pending, bounded by ``max_pending`` (the oldest are dropped and counted ``dropped``;
log entries likewise, bounded by :data:`MAX_LOG_PENDING`, counted ``alarms.dropped``),
and the writer retries with backoff (:data:`RETRY_DELAYS`, at most 30 s apart). A file that is
not a database or not ours (``corrupt``, ``foreign``) is never written to, renamed or deleted:
before the writer's connection switches a file to WAL, a plain one reads its header and tables
(``query_only``); once found corrupt or foreign, the file is not opened again until it has changed
(moved away, replaced, restored: another inode, size or mtime).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from hrdash import store
from hrdash.alarms import LIMIT_ORDER, Limits
from hrdash.trends import MINUTE_MS

__all__ = [
    "CAUSES",
    "MAX_LOG_PENDING",
    "MAX_PENDING",
    "RETRY_DELAYS",
    "Recorder",
    "classify",
]

log = logging.getLogger("hrdash.recorder")

MAX_PENDING = 100_000  # readings waiting for the disk at most (~13 min of 64 patients at 2 Hz)
MAX_LOG_PENDING = 10_000  # alarm log entries waiting for the disk at most
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)  # seconds between attempts; the last repeats
PRUNE_CHUNK = 20_000  # rows deleted per pruning transaction (about)
PRUNE_CHUNKS = 10  # pruning transactions per writer cycle at most
LOAD_WAIT = 10.0  # seconds load_recent waits for the writer's first open of the file
DETAIL_CHARS = 300  # a status detail is one line of at most this many characters

# Why the history is not being recorded (status()["cause"]).
LOCKED = "locked"  # another connection holds the write lock longer than the busy timeout
FULL = "full"  # no space left (disk, quota, or max_pages)
CORRUPT = "corrupt"  # the file is not a database, or a damaged one
READ_ONLY = "read_only"  # the file or its directory cannot be written
UNAVAILABLE = "unavailable"  # the file cannot be opened (missing directory...)
FOREIGN = "foreign"  # another program's database, or a newer schema (store.StoreError)
ERROR = "error"  # anything else (I/O error...)
CAUSES = (LOCKED, FULL, CORRUPT, READ_ONLY, UNAVAILABLE, FOREIGN, ERROR)
_UNTOUCHABLE = (CORRUPT, FOREIGN)  # retried only once the file has changed

# SQLite primary result codes (sqlite3.h) → cause.
_SQLITE_CAUSES = {
    3: READ_ONLY,  # SQLITE_PERM
    5: LOCKED,  # SQLITE_BUSY
    6: LOCKED,  # SQLITE_LOCKED
    8: READ_ONLY,  # SQLITE_READONLY
    11: CORRUPT,  # SQLITE_CORRUPT
    13: FULL,  # SQLITE_FULL
    14: UNAVAILABLE,  # SQLITE_CANTOPEN
    23: READ_ONLY,  # SQLITE_AUTH
    26: CORRUPT,  # SQLITE_NOTADB
}
_MESSAGE_CAUSES = (  # when an error carries no SQLite code (its message is SQLite's)
    ("database is locked", LOCKED),
    ("database table is locked", LOCKED),
    ("busy", LOCKED),
    ("database or disk is full", FULL),
    ("file is not a database", CORRUPT),
    ("malformed", CORRUPT),
    ("readonly database", READ_ONLY),
    ("read-only", READ_ONLY),
    ("unable to open database", UNAVAILABLE),
)
_ERRNO_CAUSES = {
    errno.EROFS: READ_ONLY,
    errno.EACCES: READ_ONLY,
    errno.EPERM: READ_ONLY,
    errno.ENOSPC: FULL,
    errno.EDQUOT: FULL,
    errno.ENOENT: UNAVAILABLE,
    errno.ENOTDIR: UNAVAILABLE,
}

Reading = tuple[int, int | float]  # (time ms, bpm)
Entry = dict[str, Any]  # an alarm log entry (hrdash.alarms)
LimitsRow = tuple[Limits, Limits, int, str | None]  # in effect, the file's, time ms, origin
_COUNTS_BEFORE = ("written", "duplicates", "too_old", "dropped", "commits")  # status() order
_COUNTS_AFTER = ("pruned", "retries")
_LOG_COUNTS = ("written", "limits_written", "dropped", "pruned")  # status()["alarms"]


def classify(exc: BaseException) -> tuple[str, str]:
    """The cause (one of :data:`CAUSES`) and a one-line detail of an error met while opening,
    writing or pruning the history."""
    detail = " ".join(str(exc).split())[:DETAIL_CHARS] or type(exc).__name__
    if isinstance(exc, store.StoreError):
        return FOREIGN, detail
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and (code & 0xFF) in _SQLITE_CAUSES:
            return _SQLITE_CAUSES[code & 0xFF], detail
        lowered = detail.lower()
        for text, cause in _MESSAGE_CAUSES:
            if text in lowered:
                return cause, detail
        return ERROR, detail
    if isinstance(exc, OSError) and exc.errno in _ERRNO_CAUSES:
        return _ERRNO_CAUSES[exc.errno], detail
    return ERROR, detail


def _minute(t: int) -> int:
    return t - t % MINUTE_MS  # floor, like hrdash.trends (also before 1970)


def _runs(minutes: set[int]) -> Iterator[tuple[int, int]]:
    """Half-open ranges [start, end) covering the given minute starts, consecutive ones merged."""
    start = end = None
    for m in sorted(minutes):
        if end is not None and m == end:
            end = m + MINUTE_MS
            continue
        if start is not None and end is not None:
            yield start, end
        start, end = m, m + MINUTE_MS
    if start is not None and end is not None:
        yield start, end


# The minute rollup of a patient's raw rows in [from, to) (whole minutes), replacing what was
# there: exact whatever arrived late or twice. The minute's start is the floor also before 1970.
_ROLLUP_SQL = (
    "INSERT OR REPLACE INTO minutes (patient, t, min, sum, max, n)"
    " SELECT patient, t - ((t % 60000) + 60000) % 60000 AS m, min(bpm), sum(bpm), max(bpm),"
    " count(*) FROM readings WHERE patient = ? AND t >= ? AND t < ? GROUP BY m"
)
assert MINUTE_MS == 60_000  # the SQL above spells the minute out

_LOG_SQL = f"INSERT INTO alarm_log ({store.LOG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_LIMITS_SQL = (
    f"INSERT OR REPLACE INTO limits (patient, {', '.join(LIMIT_ORDER)}, file, time, origin)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
# The patient's log rows older than a time, except its newest LOG_KEEP_MIN (the row values
# compare (time, id) with the oldest row kept: none deleted while it has fewer).
_PRUNE_LOG_SQL = (
    "DELETE FROM alarm_log WHERE patient IS ?1 AND time < ?2 AND (time, id) < ("
    " SELECT time, id FROM alarm_log WHERE patient IS ?1 ORDER BY time DESC, id DESC"
    " LIMIT 1 OFFSET ?3)"
)


class Recorder:
    """Records readings into the SQLite history at ``path`` from a writer thread.

    ``patients``: (id, name) of the station's patients in the sources' order (their keys in the
    file follow it; an id added later is registered with an empty name). ``retention`` and
    ``trend_retention``: seconds of raw readings and of minute rows kept. ``clock``: Unix
    seconds, for the retention, pruning and the status' times (tests pass a fake one).
    ``commit_interval``: seconds between two commits at most while readings come in.
    ``prune_interval``: seconds (on ``clock``) between two prunings. ``max_pending``: readings
    held at most while they wait for the disk; beyond it the oldest are dropped and counted.

    Options mainly for tests and unusual setups: ``busy_timeout`` (seconds a locked database is
    waited for before an attempt fails; default :data:`hrdash.store.BUSY_TIMEOUT_S`) and
    ``max_pages`` (``PRAGMA max_page_count`` of the writer's connection: a hard cap on the file,
    beyond which the recorder reports ``full``; ``None`` = SQLite's default)."""

    def __init__(
        self,
        path: str,
        patients: Sequence[tuple[str, str]],
        *,
        retention: float,
        trend_retention: float,
        clock: Callable[[], float] = time.time,
        commit_interval: float = 1.0,
        prune_interval: float = 60.0,
        max_pending: int = MAX_PENDING,
        busy_timeout: float = store.BUSY_TIMEOUT_S,
        max_pages: int | None = None,
    ) -> None:
        if str(path) == store.MEMORY:
            raise ValueError(f"the recorder needs a file, not {store.MEMORY}")
        if not retention > 0:
            raise ValueError(f"retention must be > 0 s, got {retention}")
        if not trend_retention >= retention:
            raise ValueError(
                f"trend_retention ({trend_retention} s) must be at least retention ({retention} s)"
            )
        if not commit_interval > 0 or not prune_interval > 0:
            raise ValueError("commit_interval and prune_interval must be > 0 s")
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.path = str(path)
        self.patients = [(str(i), str(n)) for i, n in patients]
        self.retention_ms = round(retention * 1000)
        self.trend_retention_ms = round(trend_retention * 1000)
        self.clock = clock
        self.commit_interval = commit_interval
        self.prune_interval = prune_interval
        self.max_pending = max_pending
        self.busy_timeout = busy_timeout
        self.max_pages = max_pages

        self._cond = threading.Condition()  # guards everything below; never held over disk I/O
        self._pending: deque[tuple[str, int, int | float]] = deque(maxlen=max_pending)
        self._inflight = 0  # readings taken by the writer, not yet committed
        self._added = 0  # readings ever added (a flush waits for those added before it)
        self._settled = 0  # the first _settled readings ever added are committed or dropped
        self._flush_wanted = False
        self._stop = False
        self._thread: threading.Thread | None = None
        self._state = "starting"
        self._cause = ""
        self._detail = ""
        self._since: int | None = None
        self._dropped_logged = False
        self._counts = dict.fromkeys((*_COUNTS_BEFORE, *_COUNTS_AFTER), 0)
        self._last_commit: int | None = None
        self._log: deque[Entry] = deque(maxlen=MAX_LOG_PENDING)
        self._limits: dict[str, LimitsRow] = {}  # patient id → its newest change waiting
        self._log_inflight = 0  # log entries and limits rows taken by the writer
        self._log_counts = dict.fromkeys(_LOG_COUNTS, 0)
        self._log_dropped_logged = False

        # Writer thread only.
        self._conn: sqlite3.Connection | None = None
        self._keys: dict[str, int] = {}
        self._delays: Iterator[float] = self._new_delays()
        self._retry_at = 0.0  # monotonic time of the next attempt while in error
        self._last_prune: float | None = None  # clock time of the last pruning
        self._untouchable: tuple[int, int, int, int] | None = None  # the corrupt file's identity

    # -- the event loop's side ------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread (it opens the file). Once; later calls do nothing."""
        with self._cond:
            if self._thread is not None or self._stop:
                return
            self._thread = threading.Thread(target=self._run, name="hrdash-recorder", daemon=True)
            self._thread.start()

    def add(self, patient_id: str, readings: Sequence[Reading]) -> None:
        """Queue ``readings`` ((time ms, bpm) in accepted order) of ``patient_id`` for the next
        commit. Never touches the disk, never waits for the writer. Beyond ``max_pending``
        readings waiting, the oldest are dropped (counted, logged once per episode)."""
        count = len(readings)
        if not count:
            return
        with self._cond:
            self._added += count
            if self._stop:
                self._discard(count, "the recorder is closed")
                return
            pending = self._pending
            room = self.max_pending - len(pending)
            pending.extend([(patient_id, t, bpm) for t, bpm in readings])
            if count > room:
                self._discard(count - room, "more readings wait for the disk than max_pending")

    def add_log(self, entries: Sequence[Entry]) -> None:
        """Queue alarm log entries (the ``/api/alarms/log`` shape; ``patient`` None for the
        station's) for the next commit, in this order. Never touches the disk. Beyond
        :data:`MAX_LOG_PENDING` waiting, the oldest are dropped (counted, logged once)."""
        count = len(entries)
        if not count:
            return
        with self._cond:
            self._added += count
            if self._stop:
                self._discard_log(count, "the recorder is closed")
                return
            room = MAX_LOG_PENDING - len(self._log)
            self._log.extend(dict(e) for e in entries)
            if count > room:
                self._discard_log(count - room, "more log entries wait than MAX_LOG_PENDING")

    def set_limits(
        self, patient_id: str, limits: Limits, file_limits: Limits, time_ms: int, origin: str | None
    ) -> None:
        """Queue the patient's limits in effect from ``time_ms``, set by ``origin``, and the
        sources file's limits now (``file_limits``: the next start compares them with the file
        then). Never touches the disk; a change still waiting is replaced by this one."""
        with self._cond:
            self._added += 1
            if self._stop:
                self._discard_log(1, "the recorder is closed")
                return
            self._limits[patient_id] = (limits, file_limits, int(time_ms), origin)

    def flush(self, timeout: float = 10.0) -> bool:
        """Commit everything added so far: True once it is (or counted as duplicate, too old,
        dropped), False if that did not happen within ``timeout`` seconds (an unhappy disk:
        see :meth:`status`)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._added
            if self._settled >= target:
                return True
            self._flush_wanted = True
            self._cond.notify_all()
            while self._settled < target:
                if self._thread is None or not self._thread.is_alive():
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout: float = 10.0) -> None:
        """Commit everything added (one last attempt even while the disk is unhappy), stop the
        writer and close the file, within ``timeout`` seconds. Idempotent; readings added later
        are dropped."""
        with self._cond:
            first = not self._stop
            self._stop = True
            self._cond.notify_all()
            thread = self._thread
            if thread is None:  # never started: nothing will write what waits
                if first and self._pending:
                    log.warning("history: %d readings not recorded", len(self._pending))
                if first and (self._log or self._limits):
                    waiting = len(self._log) + len(self._limits)
                    log.warning("history: %d alarm log entries or limits not recorded", waiting)
                self._state = "closed"
                return
        thread.join(timeout)
        if thread.is_alive():
            log.warning("history writer still busy after %.0f s; leaving it to finish", timeout)

    def status(self) -> dict[str, Any]:
        """What the recorder is doing, for /healthz and the Source panel: ``db`` (the path as
        configured), ``state`` (``starting`` until the file is first opened, ``ok``, ``error``,
        ``closed``), ``cause`` (one of :data:`CAUSES` in ``error``, else ``""``), ``detail`` (one
        line), ``since`` (Unix ms the cause began, else None), ``pending`` (readings waiting),
        counts since start: ``written``, ``duplicates``, ``too_old``, ``dropped``, ``commits``,
        ``pruned`` (raw and minute rows), ``retries`` (attempts made in state error),
        ``last_commit`` (Unix ms, None before the first), and ``alarms``: ``pending`` (log
        entries and limits changes waiting), ``written`` (log entries), ``limits_written``,
        ``dropped`` (log entries and limits changes never written), ``pruned`` (log entries)."""
        with self._cond:
            return {
                "db": self.path,
                "state": self._state,
                "cause": self._cause,
                "detail": self._detail,
                "since": self._since,
                "pending": len(self._pending) + self._inflight,
                **{name: self._counts[name] for name in _COUNTS_BEFORE},
                "last_commit": self._last_commit,
                **{name: self._counts[name] for name in _COUNTS_AFTER},
                "alarms": {
                    "pending": len(self._log) + len(self._limits) + self._log_inflight,
                    **self._log_counts,
                },
            }

    def load_recent(self, patient_id: str, limit: int) -> list[Reading]:
        """The newest ``limit`` stored readings of ``patient_id`` within the raw retention,
        oldest first. Blocking (waits up to :data:`LOAD_WAIT` for the writer's first open of the
        file); ``[]`` when there are none or the history is unavailable (:meth:`status` says
        why). Reads through its own read-only connection."""
        if limit <= 0:
            return []
        since = round(self.clock() * 1000) - self.retention_ms
        with self._reader("recent readings") as conn:
            if conn is None:
                return []
            key = store.patient_keys(conn, [patient_id]).get(patient_id)
            if key is None:
                return []
            rows = conn.execute(
                "SELECT t, bpm FROM readings WHERE patient = ? AND t >= ?"
                " ORDER BY t DESC, n DESC LIMIT ?",
                (key, since, limit),
            ).fetchall()
            return [(int(t), bpm) for t, bpm in reversed(rows)]
        return []  # a read error (logged)

    def load_limits(self) -> dict[str, store.StoredLimits]:
        """patient id → its stored limits row (:func:`hrdash.store.read_limits`). Blocking,
        like :meth:`load_recent`; ``{}`` when there are none or the history is unavailable."""
        with self._reader("stored limits") as conn:
            return {} if conn is None else store.read_limits(conn)
        return {}

    def load_log(self, kept: int) -> list[Entry]:
        """The newest ``kept`` alarm log entries of each patient the history knows and of the
        station (``patient`` None), all together in the order they happened (oldest first).
        Blocking, like :meth:`load_recent`; ``[]`` when there are none or the history is
        unavailable."""
        if kept <= 0:
            return []
        with self._reader("the alarm log") as conn:
            if conn is None:
                return []
            keys: list[int | None] = [None, *store.patient_keys(conn).values()]
            rows: list[tuple[Any, ...]] = []
            for key in keys:
                rows += conn.execute(
                    "SELECT a.id, a.time, p.id, a.alarm, a.kind, a.priority, a.event, a.value,"
                    " a.lim, a.origin FROM alarm_log a LEFT JOIN patients p ON p.key = a.patient"
                    " WHERE a.patient IS ? ORDER BY a.time DESC, a.id DESC LIMIT ?",
                    (key, kept),
                ).fetchall()
            rows.sort(key=lambda row: (row[1], row[0]))
            return [store.log_entry(row[1:]) for row in rows]
        return []

    @contextlib.contextmanager
    def _reader(self, what: str) -> Iterator[sqlite3.Connection | None]:
        """A read-only connection once the writer has first opened the file (waited for at most
        :data:`LOAD_WAIT`), closed after; None when there is nothing to read (no file, the
        history unavailable). A read error is logged (one line) and ends the ``with`` block
        early."""
        deadline = time.monotonic() + LOAD_WAIT
        with self._cond:
            while self._state == "starting" and self._thread is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            timed_out = self._state == "starting" and self._thread is not None
            unavailable = timed_out or (
                self._state == "error" and self._cause in (*_UNTOUCHABLE, UNAVAILABLE)
            )
        if unavailable or not os.path.exists(self.path):
            yield None
            return
        try:
            conn = store.connect(self.path, readonly=True, timeout=self.busy_timeout)
        except sqlite3.Error as exc:
            log.warning("history: cannot read %s: %s", what, classify(exc)[1])
            yield None
            return
        try:
            yield conn
        except sqlite3.Error as exc:
            log.warning("history: cannot read %s: %s", what, classify(exc)[1])
        finally:
            conn.close()

    # -- bookkeeping (callers hold self._cond) ---------------------------------------------------

    def _discard(self, count: int, why: str) -> None:
        self._counts["dropped"] += count
        if not self._dropped_logged:
            self._dropped_logged = True
            log.warning("history: dropping the oldest pending readings (%s)", why)

    def _discard_log(self, count: int, why: str) -> None:
        self._log_counts["dropped"] += count
        if not self._log_dropped_logged:
            self._log_dropped_logged = True
            log.warning("history: dropping the oldest pending alarm log entries (%s)", why)

    def _now_ms(self) -> int:
        return round(self.clock() * 1000)

    # -- the writer thread -----------------------------------------------------------------------

    @staticmethod
    def _new_delays() -> Iterator[float]:
        yield from RETRY_DELAYS
        while True:
            yield RETRY_DELAYS[-1]

    def _run(self) -> None:
        next_commit = time.monotonic()
        try:
            while True:
                with self._cond:
                    while not self._stop:
                        now = time.monotonic()
                        if self._state == "error":
                            due = self._retry_at  # a flush does not hurry a retry
                        elif self._flush_wanted:
                            due = now
                        else:
                            due = next_commit
                        if now >= due:
                            break
                        self._cond.wait(due - now)
                    self._flush_wanted = False
                    stopping = self._stop
                next_commit = time.monotonic() + self.commit_interval
                ok = self._cycle(prune=not stopping)
                if stopping:
                    with self._cond:
                        more = bool(self._pending or self._log or self._limits)
                    if ok and more:
                        continue  # added while closing: take those too
                    break
        finally:
            self._shut()

    def _shut(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        with self._cond:
            lost = len(self._pending) + self._inflight
            lost_log = len(self._log) + len(self._limits) + self._log_inflight
            self._state = "closed"
            self._cond.notify_all()
        if lost:
            log.warning("history: %d readings not recorded at close (%s)", lost, self._cause)
        if lost_log:
            log.warning(
                "history: %d alarm log entries or limits not recorded at close (%s)",
                lost_log,
                self._cause,
            )

    def _cycle(self, *, prune: bool) -> bool:
        """One attempt: open if needed, commit what is pending, prune if due. False on error."""
        with self._cond:
            if self._state == "error":
                self._counts["retries"] += 1
        if self._conn is None:
            if not self._may_open():
                self._retry_later()
                return False
            try:
                self._conn = self._open()
            except Exception as exc:
                self._fail(exc)
                return False
        with self._cond:
            batch = self._pending
            upto = self._added
            self._pending = deque(maxlen=self.max_pending)
            self._inflight = len(batch)
            entries, self._log = self._log, deque(maxlen=MAX_LOG_PENDING)
            limits, self._limits = self._limits, {}
            self._log_inflight = len(entries) + len(limits)
        work = bool(batch or entries or limits)
        try:
            counts = self._write(batch, entries, limits) if work else {}
        except Exception as exc:
            self._put_back(batch, entries, limits)
            self._fail(exc)
            return False
        with self._cond:
            self._inflight = 0
            self._log_inflight = 0
            if work:
                for name, value in counts.items():
                    if name.startswith("log_"):
                        self._log_counts[name.removeprefix("log_")] += value
                    else:
                        self._counts[name] += value
                self._counts["commits"] += 1
                self._last_commit = self._now_ms()
        self._recovered()
        ok = True
        if prune and self._prune_due():
            try:
                self._prune()
            except Exception as exc:
                self._fail(exc)
                ok = False
        with self._cond:
            # Every reading added before the batch was taken is in it (committed now) or was
            # dropped before: all settled. (Told after the pruning, so that a flush returns
            # with this cycle done.)
            self._settled = max(self._settled, upto)
            self._cond.notify_all()
        return ok

    def _put_back(
        self,
        batch: deque[tuple[str, int, int | float]],
        entries: deque[Entry],
        limits: dict[str, LimitsRow],
    ) -> None:
        with self._cond:
            merged = deque(batch, maxlen=self.max_pending)
            merged.extend(self._pending)
            lost = len(batch) + len(self._pending) - len(merged)
            self._pending = merged
            self._inflight = 0
            if lost:
                self._discard(lost, "more readings wait for the disk than max_pending")
            log_merged = deque(entries, maxlen=MAX_LOG_PENDING)
            log_merged.extend(self._log)
            lost = len(entries) + len(self._log) - len(log_merged)
            self._log = log_merged
            self._limits = {**limits, **self._limits}  # a newer change replaces the failed one
            self._log_inflight = 0
            if lost:
                self._discard_log(lost, "more log entries wait than MAX_LOG_PENDING")

    def _may_open(self) -> bool:
        """False while the file that was found corrupt or foreign is still the same file."""
        if self._untouchable is None:
            return True
        if self._identity() == self._untouchable:
            return False
        self._untouchable = None
        return True

    def _identity(self) -> tuple[int, int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def _open(self) -> sqlite3.Connection:
        """The writer's connection, the schema checked (or created) and the patients registered.
        An existing file is checked before anything may write to it: a file that is not a
        database or holds another program's tables is left exactly as it is."""
        if os.path.exists(self.path) and os.path.getsize(self.path) > 0:
            # A plain connection reads the header and the tables without writing anything;
            # store.connect would switch the file to WAL first (a write).
            probe = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
            try:
                probe.execute("PRAGMA query_only=ON")
                self._check_ours(probe)
            finally:
                probe.close()
        conn = store.connect(self.path, timeout=self.busy_timeout)
        try:
            if self.max_pages is not None:
                conn.execute(f"PRAGMA max_page_count={int(self.max_pages)}")
            store.ensure_schema(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                for patient_id, name in self.patients:
                    store.patient_key(conn, patient_id, name)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._keys = store.patient_keys(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _check_ours(conn: sqlite3.Connection) -> None:
        """Raise as :func:`hrdash.store.ensure_schema` would, without creating anything: it
        writes only to an empty database or one of ours, and query_only forbids even that."""
        try:
            store.ensure_schema(conn)
        except sqlite3.OperationalError as exc:
            if "query_only" not in str(exc) and "readonly" not in str(exc):
                raise
            # ours but older or incomplete: store.connect + ensure_schema will bring it up

    def _write(
        self,
        batch: deque[tuple[str, int, int | float]],
        entries: deque[Entry] | None = None,
        limits: dict[str, LimitsRow] | None = None,
    ) -> dict[str, int]:
        """One transaction: the batch's new raw rows and the minutes they touched, the log
        entries and the limits rows."""
        conn = self._conn
        assert conn is not None
        oldest = self._now_ms() - self.retention_ms
        by_patient: dict[str, list[tuple[int, int | float]]] = {}
        for patient_id, t, bpm in batch:
            by_patient.setdefault(patient_id, []).append((t, bpm))
        written = duplicates = too_old = 0
        new_keys: dict[str, int] = {}
        conn.execute("BEGIN IMMEDIATE")
        try:
            for patient_id, readings in by_patient.items():
                key = self._keys.get(patient_id)
                if key is None:
                    key = new_keys[patient_id] = store.patient_key(conn, patient_id, "")
                fresh = [r for r in readings if r[0] >= oldest]
                too_old += len(readings) - len(fresh)
                if not fresh:
                    continue
                seen = self._stored(conn, key, fresh)
                rows = []
                minutes = set()
                for t, bpm in fresh:
                    slot = seen.get(t)
                    if slot is None:
                        seen[t] = [0, {bpm}]
                        n = 0
                    elif bpm in slot[1]:
                        duplicates += 1
                        continue
                    else:
                        n = slot[0] = slot[0] + 1
                        slot[1].add(bpm)
                    rows.append((key, t, n, bpm))
                    minutes.add(t - t % MINUTE_MS)
                if not rows:
                    continue
                conn.executemany(
                    "INSERT INTO readings (patient, t, n, bpm) VALUES (?, ?, ?, ?)", rows
                )
                conn.executemany(_ROLLUP_SQL, [(key, a, b) for a, b in _runs(minutes)])
                written += len(rows)

            def key_of(patient_id: str) -> int:
                key = self._keys.get(patient_id, new_keys.get(patient_id))
                if key is None:
                    key = new_keys[patient_id] = store.patient_key(conn, patient_id, "")
                return key

            log_rows = [
                store.log_row(e, None if e.get("patient") is None else key_of(e["patient"]))
                for e in entries or ()
            ]
            conn.executemany(_LOG_SQL, log_rows)
            limits_rows = [
                (
                    key_of(pid),
                    *(getattr(now, n) for n in LIMIT_ORDER),
                    store.limits_json(file),
                    time_ms,
                    origin,
                )
                for pid, (now, file, time_ms, origin) in (limits or {}).items()
            ]
            conn.executemany(_LIMITS_SQL, limits_rows)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        self._keys.update(new_keys)
        return {
            "written": written,
            "duplicates": duplicates,
            "too_old": too_old,
            "log_written": len(log_rows),
            "log_limits_written": len(limits_rows),
        }

    @staticmethod
    def _stored(
        conn: sqlite3.Connection, key: int, readings: list[tuple[int, int | float]]
    ) -> dict[int, list[Any]]:
        """time → [highest n, {bpm}] of the patient's stored rows at the readings' times: one
        look at the newest stored time (readings usually come after it), then an index lookup
        per earlier time (late readings, re-sends), however far apart they are."""
        (last,) = conn.execute("SELECT max(t) FROM readings WHERE patient = ?", (key,)).fetchone()
        if last is None:
            return {}
        earlier = sorted({t for t, _ in readings if t <= last})
        if not earlier:
            return {}
        seen: dict[int, list[Any]] = {}
        for t, n, bpm in conn.execute(
            "SELECT t, n, bpm FROM readings"
            " WHERE patient = ? AND t IN (SELECT value FROM json_each(?))",
            (key, json.dumps(earlier)),
        ):
            slot = seen.setdefault(t, [n, set()])
            slot[0] = max(slot[0], n)
            slot[1].add(bpm)
        return seen

    def _prune_due(self) -> bool:
        return self._last_prune is None or self.clock() - self._last_prune >= self.prune_interval

    def _prune(self) -> None:
        """Delete raw readings of the minutes wholly older than the retention and minute rows
        older than the trend retention, per patient, in short transactions: at most
        :data:`PRUNE_CHUNKS` of them per cycle, so that a long pruning (the first after days
        off) does not hold up the commits; the next cycles go on with it."""
        conn = self._conn
        assert conn is not None
        now = self.clock()
        now_ms = round(now * 1000)
        cutoffs = (
            ("readings", _minute(now_ms - self.retention_ms)),
            ("minutes", _minute(now_ms - self.trend_retention_ms)),
        )
        keys = [k for (k,) in conn.execute("SELECT key FROM patients").fetchall()]
        budget = PRUNE_CHUNKS
        pruned = 0
        try:
            for table, before in cutoffs:
                for key in keys:
                    while budget > 0:
                        budget -= 1
                        deleted, more = self._delete_chunk(conn, table, key, before)
                        pruned += deleted
                        if not more:
                            break
                    else:
                        return  # out of budget: the next cycle goes on
            self._prune_log(conn, [None, *keys], now_ms - self.trend_retention_ms)
            self._last_prune = now
        finally:
            with self._cond:
                self._counts["pruned"] += pruned

    def _prune_log(self, conn: sqlite3.Connection, keys: list[int | None], before: int) -> None:
        """Delete each patient's (and the station's) log entries older than ``before``, but
        its newest :data:`hrdash.store.LOG_KEEP_MIN`: one short transaction per patient."""
        for key in keys:
            cursor = conn.execute(_PRUNE_LOG_SQL, (key, before, store.LOG_KEEP_MIN - 1))
            with self._cond:
                self._log_counts["pruned"] += max(cursor.rowcount, 0)

    @staticmethod
    def _delete_chunk(
        conn: sqlite3.Connection, table: str, key: int, before: int
    ) -> tuple[int, bool]:
        """One transaction deleting :data:`PRUNE_CHUNK` of the patient's rows older than
        ``before`` (a few more if the last time holds several): (rows deleted, whether older
        rows may be left)."""
        row = conn.execute(
            f"SELECT t FROM {table} WHERE patient = ? AND t < ? ORDER BY t LIMIT 1 OFFSET ?",
            (key, before, PRUNE_CHUNK - 1),
        ).fetchone()
        if row is None:
            cursor = conn.execute(f"DELETE FROM {table} WHERE patient = ? AND t < ?", (key, before))
            return max(cursor.rowcount, 0), False
        # up to the chunk's last time (all rows at it: a time holds few of them)
        cursor = conn.execute(f"DELETE FROM {table} WHERE patient = ? AND t <= ?", (key, row[0]))
        return max(cursor.rowcount, 0), True

    # -- state changes (writer thread) -----------------------------------------------------------

    def _explain(self, cause: str, detail: str) -> tuple[str, str]:
        """SQLite says only "unable to open database file" for a missing directory and for one
        it may not write in: tell them apart, and name the directory."""
        if cause != UNAVAILABLE:
            return cause, detail
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            return UNAVAILABLE, f"{detail} (no directory {folder})"
        if not os.access(folder, os.W_OK):
            return READ_ONLY, f"{detail} (directory {folder} is read-only)"
        return cause, detail

    def _fail(self, exc: BaseException) -> None:
        cause, detail = self._explain(*classify(exc))
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        if cause in _UNTOUCHABLE:
            self._untouchable = self._identity()
        with self._cond:
            if self._state != "error" or self._cause != cause:
                self._since = self._now_ms()
                if cause in _UNTOUCHABLE:
                    advice = "the file is left as it is; move it away to start a new history"
                else:
                    advice = f"retrying; up to {self.max_pending} readings wait in memory"
                log.warning(
                    "history not recorded (%s): %s: %s; %s", cause, self.path, detail, advice
                )
            self._state = "error"
            self._cause = cause
            self._detail = detail
            self._cond.notify_all()
        self._retry_later()

    def _retry_later(self) -> None:
        with self._cond:
            self._retry_at = time.monotonic() + next(self._delays)
            self._cond.notify_all()

    def _recovered(self) -> None:
        with self._cond:
            was = self._state
            cause, since = self._cause, self._since
            self._state = "ok"
            self._cause = ""
            self._detail = ""
            self._since = None
            if was == "error" or not self._pending:  # an episode of dropping is over
                self._dropped_logged = False
            self._cond.notify_all()
        self._delays = self._new_delays()
        if was == "error":
            seconds = (self._now_ms() - since) / 1000 if since is not None else math.nan
            log.info("history recording again (%s for %.0f s): %s", cause, seconds, self.path)
