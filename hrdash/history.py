"""The history's read side, on the Dash server: readings, trends, exports and summaries of any
stored range (pandas over the SQLite history).

Not on the per-reading path: these run when a person or a page asks (a trend range, an export, a
summary). Every call opens the history file (``HRDASH_DB``) read-only and closes it again
(:func:`hrdash.store.connect`); the bridge's recorder is its only writer, and WAL mode keeps
readers and writer out of each other's way. A file that does not exist yet, or has no tables
yet, holds nothing: empty results. With ``HRDASH_DB=:memory:`` nothing is stored, and the same
calls answer from what the bridge keeps in memory (``HRDASH_BUFFER`` readings per patient,
``GET /readings?patient=ID`` on the bridge).

Times are Unix milliseconds; a range is half-open, ``start <= t < end``. Trends come from the
``minutes`` table (:mod:`hrdash.trends`): a bucket of width ``W`` is the merge of the minute rows
inside it; buckets are aligned on the epoch and whole, so a range that starts or ends inside a
bucket gets that whole bucket (the same reading always falls in the same bucket, whoever asks).

Alarms: :func:`alarm_log` reads the ``alarm_log`` table (with ``:memory:``, the bridge's ``GET
/api/alarms/log``); :func:`patient_limits` asks the bridge for a patient's limits in effect and,
when it cannot, works out what the bridge would start with (the stored ``limits`` row or the
sources file's limits: :func:`hrdash.store.limits_at_start`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hrdash import store, trends
from hrdash.alarms import Limits
from hrdash.settings import SettingError, Settings, url_host
from hrdash.sources import station_sources

__all__ = [
    "DEFAULT_SPAN_MS",
    "MAX_READINGS",
    "RANGES_MS",
    "BadRange",
    "HistoryError",
    "UnknownPatient",
    "alarm_log",
    "minute_trend",
    "parse_range",
    "patient_limits",
    "readings",
    "readings_csv",
    "stored_span",
    "summarise",
    "summary",
    "trend",
    "trend_csv",
    "trend_query",
]

FETCH_TIMEOUT = 3.0  # seconds to wait for the bridge's buffer (HRDASH_DB=:memory:)
LIMITS_TIMEOUT = 1.0  # seconds to wait for the bridge's limits before reading them elsewhere
LOG_LIMIT = 100  # alarm log entries alarm_log gives without a limit
LOG_MAX = store.LOG_KEEP_MIN  # alarm log entries one call gives at most (the bridge's LOG_KEPT)
GAP_MS = 10_000  # summary: a reading counts until the next one, at most this long (a gap is
# time without readings, not time at the last reading's rate)
RANGES_MS = {"1h": 3_600_000, "8h": 8 * 3_600_000, "24h": 24 * 3_600_000}  # trend ranges
DEFAULT_SPAN_MS = RANGES_MS["1h"]  # a range without `from` is this long; without both, ends now
MAX_READINGS = trends.MAX_POINTS  # raw readings a trend carries at most (raw=1)
MAX_MS = 253_402_300_800_000  # 10000-01-01T00:00:00Z: times must be in 0 <= t < MAX_MS
READINGS_COLUMNS = ("time", "time_ms", "bpm")
TREND_CSV_COLUMNS = ("time", "time_ms", "min", "mean", "max", "n")


class HistoryError(Exception):
    """One line: the history cannot be read (the file is unreadable, the bridge cannot be
    asked)."""


class UnknownPatient(HistoryError):
    """The patient is not one of the station's (HTTP 404)."""


class BadRange(ValueError):
    """One line: a range, width or flag that cannot be used (HTTP 400)."""


# -- ranges ------------------------------------------------------------------------------------


def _integer(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if re.fullmatch(r"-?[0-9]{1,20}", raw) is None:
        raise BadRange(f"{name} must be an integer number of ms, got {raw[:40]!r}")
    value = int(raw)
    if not 0 <= value < MAX_MS:
        raise BadRange(f"{name} must be a Unix time in ms from 0 to {MAX_MS - 1}, got {value}")
    return value


def check_range(start: int, end: int) -> None:
    """Raises :class:`BadRange` unless ``0 <= start < end <= MAX_MS``."""
    if not 0 <= start < MAX_MS or not 0 < end <= MAX_MS:
        raise BadRange(f"a range must lie within 0 to {MAX_MS} ms, got {start} to {end}")
    if start >= end:
        raise BadRange(f"from ({start}) must be before to ({end})")


def parse_range(params: Mapping[str, str], now_ms: int) -> tuple[int, int]:
    """``from`` and ``to`` (Unix ms) of a query: without ``to`` the range ends at ``now_ms``,
    without ``from`` it starts :data:`DEFAULT_SPAN_MS` before its end. Raises
    :class:`BadRange` (one line) for a value that is not an integer or ``from >= to``."""
    start, end = _integer(params, "from"), _integer(params, "to")
    end = now_ms if end is None else end
    start = max(0, end - DEFAULT_SPAN_MS) if start is None else start
    check_range(start, end)
    return start, end


def trend_query(params: Mapping[str, str], now_ms: int) -> dict[str, Any]:
    """The arguments of :func:`trend` from a trend query: ``range=1h|8h|24h`` (ending at
    ``now_ms``) or ``from``/``to`` (custom, defaults as :func:`parse_range`; neither: ``1h``),
    ``width`` (ms) and ``raw`` (``0``/``1``). Raises :class:`BadRange` (one line)."""
    name = params.get("range")
    if name is not None and name != "":
        if name not in RANGES_MS:
            raise BadRange(f"range must be one of {', '.join(RANGES_MS)}, got {name[:40]!r}")
        if params.get("from") or params.get("to"):
            raise BadRange("give either range or from/to, not both")
        start, end = max(0, now_ms - RANGES_MS[name]), now_ms
    elif not params.get("from") and not params.get("to"):
        name = "1h"
        start, end = max(0, now_ms - RANGES_MS[name]), now_ms
    else:
        name = "custom"
        start, end = parse_range(params, now_ms)
    check_range(start, end)
    width = _integer(params, "width")
    raw = params.get("raw", "0")
    if raw not in ("0", "1"):
        raise BadRange(f"raw must be 0 or 1, got {raw[:40]!r}")
    return {"start": start, "end": end, "width": width, "raw": raw == "1", "range_name": name}


def check_width(start: int, end: int, width: int) -> None:
    """Raises :class:`BadRange` unless ``width`` (ms) is one of the trend widths and cuts
    ``start`` to ``end`` into at most :data:`hrdash.trends.MAX_POINTS` buckets."""
    allowed = [s * 1000 for s in trends.NICE_WIDTHS_S]
    if width not in allowed:
        raise BadRange(f"width must be one of {', '.join(map(str, allowed))} ms, got {width}")
    count = (_ceil(end, width) - _floor(start, width)) // width
    if count > trends.MAX_POINTS:
        raise BadRange(
            f"width {width} ms gives {count} buckets over {start} to {end}, more than "
            f"{trends.MAX_POINTS}"
        )


def _floor(t: int, width: int) -> int:
    return t - t % width


def _ceil(t: int, width: int) -> int:
    return -(-t // width) * width


# -- the sources: the SQLite file, or the bridge's buffer ---------------------------------------


def _in_memory(settings: Settings) -> bool:
    return str(settings.db) == store.MEMORY


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def bridge_http_url(settings: Settings, path: str) -> str:
    return f"http://{url_host(settings.bridge_host)}:{settings.bridge_port}{path}"


def _get_json(settings: Settings, path: str, timeout: float, patient: str | None) -> Any:
    """The bridge's JSON answer to ``GET path``. Raises :class:`UnknownPatient` for its 404,
    :class:`HistoryError` when it cannot be asked."""
    url = bridge_http_url(settings, path)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise UnknownPatient(f"no patient {patient!r}") from None
        raise HistoryError(f"the bridge at {url} answered {exc.code}") from None
    except (OSError, ValueError) as exc:
        raise HistoryError(f"cannot reach the bridge at {url}: {_one_line(exc)}") from None


def fetch(settings: Settings, patient: str | None = None) -> list[dict[str, Any]]:
    """The readings the bridge holds for ``patient`` (``None``: its first patient), oldest
    first, as ``{"seq", "time", "bpm"}``. Raises :class:`UnknownPatient` when the bridge does
    not know the patient, :class:`HistoryError` when it cannot be asked."""
    query = "" if patient is None else "?" + urllib.parse.urlencode({"patient": patient})
    body = _get_json(settings, "/readings" + query, FETCH_TIMEOUT, patient)
    found = body.get("readings") if isinstance(body, dict) else None
    if not isinstance(found, list):
        raise HistoryError("the bridge answered without readings")
    return found


Row = tuple[int, Any]  # (t, bpm) of a reading


class _Stored:
    """What is stored of one patient, read in one snapshot: nothing (no file, no tables yet,
    an id the history does not know)."""

    def raw(self, start: int, end: int, limit: int | None = None) -> list[Row]:
        """``(t, bpm)`` of the readings with ``start <= t < end``, in time order (at most
        ``limit``)."""
        return []

    def minutes(self, start: int, end: int) -> list[trends.Bucket]:
        """The minute rollups with ``start <= t < end`` (minute starts), in time order."""
        return []

    def span(self) -> tuple[int, int] | None:
        """``(first, last + 1)`` of the stored readings; ``None`` when there is none."""
        return None


class _File(_Stored):
    """A patient's rows in the history file, through one read transaction."""

    RAW = "SELECT t, bpm FROM readings WHERE patient = ? AND t >= ? AND t < ? ORDER BY t, n"
    MINUTES = (
        "SELECT t, min, sum, max, n FROM minutes WHERE patient = ? AND t >= ? AND t < ? ORDER BY t"
    )
    EDGE = "SELECT t FROM readings WHERE patient = ? ORDER BY t {} LIMIT 1"

    def __init__(self, conn: sqlite3.Connection, key: int) -> None:
        self.conn, self.key = conn, key

    def raw(self, start: int, end: int, limit: int | None = None) -> list[Row]:
        if limit is None:
            return self.conn.execute(self.RAW, (self.key, start, end)).fetchall()
        return self.conn.execute(self.RAW + " LIMIT ?", (self.key, start, end, limit)).fetchall()

    def minutes(self, start: int, end: int) -> list[trends.Bucket]:
        rows = self.conn.execute(self.MINUTES, (self.key, start, end)).fetchall()
        return [trends.Bucket(t, lo, total / n, hi, n) for t, lo, total, hi, n in rows if n > 0]

    def span(self) -> tuple[int, int] | None:
        first = self.conn.execute(self.EDGE.format("ASC"), (self.key,)).fetchone()
        last = self.conn.execute(self.EDGE.format("DESC"), (self.key,)).fetchone()
        if first is None or last is None:
            return None
        return int(first[0]), int(last[0]) + 1


class _Buffer(_Stored):
    """The readings the bridge keeps in memory for a patient (``HRDASH_DB=:memory:``); its
    minutes are rolled up from them."""

    def __init__(self, rows: list[Row]) -> None:
        self.rows = sorted(rows, key=lambda r: r[0])

    def raw(self, start: int, end: int, limit: int | None = None) -> list[Row]:
        found = [r for r in self.rows if start <= r[0] < end]
        return found if limit is None else found[:limit]

    def minutes(self, start: int, end: int) -> list[trends.Bucket]:
        return trends.rollup(self.raw(start, end), trends.MINUTE_MS)

    def span(self) -> tuple[int, int] | None:
        return (self.rows[0][0], self.rows[-1][0] + 1) if self.rows else None


@contextlib.contextmanager
def _stored(settings: Settings, patient: str) -> Iterator[_Stored]:
    """What is stored of ``patient``, in one snapshot for every query of the ``with`` block:
    the history file opened read-only inside one read transaction (closed after), or with
    ``:memory:`` the bridge's buffer fetched once. Raises :class:`HistoryError` (one line),
    :class:`UnknownPatient` (only the bridge tells)."""
    if _in_memory(settings):
        yield _Buffer([(int(r["time"]), r["bpm"]) for r in fetch(settings, patient)])
        return
    path = Path(settings.db)
    if not path.exists():
        yield _Stored()
        return
    try:
        conn = store.connect(path, readonly=True)
    except sqlite3.Error as exc:
        raise HistoryError(f"cannot open the history {settings.db}: {_one_line(exc)}") from None
    try:
        conn.execute("BEGIN")
        try:
            row = conn.execute("SELECT key FROM patients WHERE id = ?", (patient,)).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            row = None  # the recorder has not created its tables yet
        yield _Stored() if row is None else _File(conn, int(row[0]))
    except sqlite3.Error as exc:
        raise HistoryError(f"cannot read the history {settings.db}: {_one_line(exc)}") from None
    finally:
        conn.close()


def stored_span(settings: Settings, patient: str) -> tuple[int, int] | None:
    """``(first, last + 1)``: the half-open range holding every stored reading of the patient
    (with ``:memory:``, those the bridge keeps); ``None`` when there is none."""
    with _stored(settings, patient) as found:
        return found.span()


# -- tables ------------------------------------------------------------------------------------


def _as_stored(values: Sequence[Any]) -> np.ndarray[Any, Any]:
    """Values as SQLite gave them: int64 when all are integers, float64 when all are reals,
    else objects (each keeps its type: 72 stays 72, 72.5 stays 72.5)."""
    kinds = {type(v) for v in values}
    if kinds <= {int}:
        return np.fromiter(values, dtype=np.int64, count=len(values))
    if kinds <= {float}:
        return np.fromiter(values, dtype=np.float64, count=len(values))
    return np.array(values, dtype=object)


def _times(ms: np.ndarray[Any, Any]) -> pd.Series:
    return pd.Series(ms.astype("datetime64[ms]")).dt.tz_localize("UTC")


def _iso(ms: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """ISO-8601 UTC with milliseconds (``2026-11-29T12:00:00.500Z``) of Unix-ms times."""
    return np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms", timezone="UTC")


def readings(settings: Settings, patient: str, start: int, end: int) -> pd.DataFrame:
    """The stored readings of ``patient`` with ``start <= t < end``, in time order: columns
    ``time`` (UTC timestamps), ``time_ms`` (Unix ms) and ``bpm`` (as stored). Empty when
    nothing is stored. Raises :class:`BadRange`, :class:`HistoryError`."""
    check_range(start, end)
    with _stored(settings, patient) as found:
        rows = found.raw(start, end)
    t = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    bpm = _as_stored([r[1] for r in rows])
    return pd.DataFrame({"time": _times(t), "time_ms": t, "bpm": bpm})


def _to_csv(df: pd.DataFrame) -> str:
    return str(df.to_csv(index=False, lineterminator="\n"))


def readings_csv(settings: Settings, patient: str, start: int, end: int) -> str:
    """:func:`readings` as CSV: ``time`` (ISO-8601 UTC with ms), ``time_ms``, ``bpm``; the
    header line alone when the range holds nothing."""
    df = readings(settings, patient, start, end)
    out = pd.DataFrame(
        {"time": _iso(df["time_ms"].to_numpy()), "time_ms": df["time_ms"], "bpm": df["bpm"]}
    )
    return _to_csv(out)


def trend(
    settings: Settings,
    patient: str,
    start: int,
    end: int,
    *,
    width: int | None = None,
    raw: bool = False,
    range_name: str = "custom",
) -> dict[str, Any]:
    """The trend of ``patient`` over ``start`` to ``end`` (the JSON body of ``GET
    /api/patients/<id>/trend``): ``{"patient", "range", "from", "to", "width", "buckets":
    [{"t", "min", "mean", "max", "n"}], "readings": [{"t", "bpm"}] | None}``.

    ``width`` (ms; default :func:`hrdash.trends.bucket_width` of the span) must be one of the
    trend widths and give at most :data:`hrdash.trends.MAX_POINTS` buckets. Every bucket that
    meets the range is there, whole, if it holds a reading (gaps are absent buckets).
    ``readings`` are the raw readings in range when ``raw``, they are at most
    :data:`MAX_READINGS` and none of them has been pruned yet (else ``None``: the buckets are
    all there is). Raises :class:`BadRange`, :class:`HistoryError`."""
    check_range(start, end)
    width = trends.bucket_width(end - start) if width is None else width
    check_width(start, end, width)
    lo, hi = _floor(start, width), _ceil(end, width)
    shown: list[dict[str, Any]] | None = None
    with _stored(settings, patient) as found:
        minutes = found.minutes(lo, hi)
        if raw:
            rows = found.raw(start, end, limit=MAX_READINGS + 1)
            if len(rows) <= MAX_READINGS and _raw_kept(found, minutes, start, end):
                shown = [{"t": t, "bpm": bpm} for t, bpm in rows]
    buckets = trends.merge(minutes, width)
    return {
        "patient": patient,
        "range": range_name,
        "from": start,
        "to": end,
        "width": width,
        "buckets": [b.as_dict() for b in buckets],
        "readings": shown,
    }


def _raw_kept(found: _Stored, minutes: Sequence[trends.Bucket], start: int, end: int) -> bool:
    """Whether the raw readings of ``start`` to ``end`` are all still stored: no minute rollup
    meeting the range lies before the patient's oldest stored reading (the raw readings are
    pruned sooner than the minutes, ``HRDASH_RETENTION`` against ``HRDASH_TREND_RETENTION``)."""
    inside = [m.t for m in minutes if m.t + trends.MINUTE_MS > start and m.t < end]
    if not inside:
        return True
    kept = found.span()
    return kept is not None and inside[0] >= _floor(kept[0], trends.MINUTE_MS)


def trend_table(settings: Settings, patient: str, start: int, end: int) -> pd.DataFrame:
    """The minute rollups that meet ``start`` to ``end``, in time order: columns ``time`` (the
    minute's start, UTC), ``time_ms``, ``min``, ``mean``, ``max``, ``n``."""
    check_range(start, end)
    with _stored(settings, patient) as found:
        rows = found.minutes(_floor(start, trends.MINUTE_MS), end)
    t = np.fromiter((b.t for b in rows), dtype=np.int64, count=len(rows))
    return pd.DataFrame(
        {
            "time": _times(t),
            "time_ms": t,
            "min": _as_stored([b.min for b in rows]),
            "mean": np.fromiter((b.mean for b in rows), dtype=np.float64, count=len(rows)),
            "max": _as_stored([b.max for b in rows]),
            "n": np.fromiter((b.n for b in rows), dtype=np.int64, count=len(rows)),
        }
    )


def trend_csv(settings: Settings, patient: str, start: int, end: int) -> str:
    """:func:`trend_table` as CSV (``time`` ISO-8601 UTC with ms); the header alone when the
    range holds nothing."""
    df = trend_table(settings, patient, start, end)
    df["time"] = _iso(df["time_ms"].to_numpy())
    return _to_csv(df)


# -- summaries ---------------------------------------------------------------------------------


def summarise(df: pd.DataFrame, limits: Limits | None = None) -> dict[str, Any]:
    """Count, span, min / mean / max of a :func:`readings` table, and the share of time below
    the ``low`` and above the ``high`` alarm limit of ``limits`` (default: the adult defaults),
    ``below_pct`` and ``above_pct``: each reading weighted by the time until the next one, at
    most :data:`GAP_MS` (the last one: the median interval). ``low`` and ``high`` are the
    limits used."""
    limits = Limits() if limits is None else limits
    if df.empty:
        return {"count": 0}
    span = (df["time"].iloc[-1] - df["time"].iloc[0]).total_seconds()
    weights = df["time_ms"].diff().shift(-1).clip(upper=GAP_MS)
    weights = weights.fillna(weights.median() if len(df) > 1 else 1.0).fillna(1.0)
    total = float(weights.sum()) or 1.0
    bpm = df["bpm"].astype("float64")
    return {
        "count": len(df),
        "low": limits.low,
        "high": limits.high,
        "span_s": span,
        "first": df["time"].iloc[0],
        "last": df["time"].iloc[-1],
        "min": float(bpm.min()),
        "mean": float(bpm.mean()),
        "max": float(bpm.max()),
        "below_pct": 100.0 * float(weights[bpm < limits.low].sum()) / total,
        "above_pct": 100.0 * float(weights[bpm > limits.high].sum()) / total,
    }


def summary(settings: Settings, patient: str, start: int, end: int) -> dict[str, Any]:
    """:func:`summarise` of the stored readings of ``patient`` in ``start`` to ``end``, against
    the patient's alarm limits (:func:`patient_limits`)."""
    df = readings(settings, patient, start, end)
    return summarise(df, patient_limits(settings, patient))


def minute_trend(df: pd.DataFrame) -> pd.DataFrame:
    """One row per minute of a :func:`readings` table: min, mean and max bpm and the number of
    readings (minutes without readings are left out)."""
    if df.empty:
        return pd.DataFrame(columns=["minute", "min", "mean", "max", "count"])
    grouped = df.set_index("time")["bpm"].astype("float64").resample("1min")
    out = grouped.agg(["min", "mean", "max", "count"]).reset_index(names="minute")
    return out[out["count"] > 0].reset_index(drop=True)


# -- alarms ------------------------------------------------------------------------------------

_LOG_SQL = (
    "SELECT a.time, p.id, a.alarm, a.kind, a.priority, a.event, a.value, a.lim, a.origin"
    " FROM alarm_log a JOIN patients p ON p.key = a.patient"
    " WHERE p.id = ? AND a.time >= ? AND a.time < ? ORDER BY a.time DESC, a.id DESC LIMIT ?"
)


def alarm_log(
    settings: Settings,
    patient_id: str,
    start: int | None = None,
    end: int | None = None,
    limit: int = LOG_LIMIT,
) -> list[dict[str, Any]]:
    """The patient's alarm log entries with ``start <= time < end`` (either open when None),
    newest first, at most ``limit`` (1 to :data:`LOG_MAX`): the ``GET /api/alarms/log`` shape,
    ``{"time", "patient", "alarm", "kind", "priority", "event", "value", "limit", "origin"}``
    (a ``limits_changed`` entry's ``value`` and ``limit`` are the old and new limits, dicts).

    From the history file (``alarm_log``, every entry still kept: ``HRDASH_TREND_RETENTION``,
    at least the newest 1,000); with ``:memory:`` from the bridge (``GET /api/alarms/log``: the
    newest ``LOG_KEPT`` it holds, filtered to the range here). Empty when nothing is stored.
    Raises :class:`BadRange` (a bad limit or range), :class:`HistoryError`,
    :class:`UnknownPatient` (only the bridge tells)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LOG_MAX:
        raise BadRange(f"limit must be a whole number from 1 to {LOG_MAX}, got {limit!r}")
    lo = 0 if start is None else start
    hi = MAX_MS if end is None else end
    check_range(lo, hi)
    if _in_memory(settings):
        query = urllib.parse.urlencode({"patient": patient_id, "limit": LOG_MAX})
        body = _get_json(settings, "/api/alarms/log?" + query, FETCH_TIMEOUT, patient_id)
        if not isinstance(body, list):
            raise HistoryError("the bridge answered without a log")
        found = [e for e in body if isinstance(e, dict) and lo <= e.get("time", -1) < hi]
        return found[:limit]
    path = Path(settings.db)
    if not path.exists():
        return []
    try:
        conn = store.connect(path, readonly=True)
    except sqlite3.Error as exc:
        raise HistoryError(f"cannot open the history {settings.db}: {_one_line(exc)}") from None
    try:
        rows = conn.execute(_LOG_SQL, (patient_id, lo, hi, limit)).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []  # no tables yet, or a version 1 file the recorder has not migrated yet
        raise HistoryError(f"cannot read the history {settings.db}: {_one_line(exc)}") from None
    except sqlite3.Error as exc:
        raise HistoryError(f"cannot read the history {settings.db}: {_one_line(exc)}") from None
    finally:
        conn.close()
    return [store.log_entry(row) for row in rows]


def _file_limits(settings: Settings, patient_id: str) -> Limits:
    """The patient's limits in the sources file (the defaults when it names none, or cannot
    be read, or does not know the patient)."""
    try:
        sources = station_sources(settings)
    except SettingError:
        return Limits()
    return next((s.limits for s in sources if s.id == patient_id), Limits())


def _stored_limits(settings: Settings, patient_id: str) -> store.StoredLimits | None:
    if _in_memory(settings) or not Path(settings.db).exists():
        return None
    try:
        conn = store.connect(Path(settings.db), readonly=True)
    except sqlite3.Error:
        return None
    try:
        return store.read_limits(conn).get(patient_id)
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def patient_limits(settings: Settings, patient_id: str) -> Limits:
    """The patient's alarm limits in effect: the bridge's (its ``GET /api/patients`` entry's
    ``limits``). When the bridge cannot be asked (or is an older one without limits), what it
    would start with: the stored ``limits`` row if the sources file still says what it said
    when they were set, else the sources file's limits, else the defaults
    (:func:`hrdash.store.limits_at_start`). Raises :class:`UnknownPatient` when the bridge
    answers without the patient."""
    try:
        body = _get_json(settings, "/api/patients", LIMITS_TIMEOUT, patient_id)
    except HistoryError:
        body = None
    if isinstance(body, list):
        entry = next((e for e in body if isinstance(e, dict) and e.get("id") == patient_id), None)
        if entry is None:
            raise UnknownPatient(f"no patient {patient_id!r}")
        found = entry.get("limits")
        if isinstance(found, dict):
            try:
                return Limits.from_mapping(found)
            except ValueError:
                pass
    file = _file_limits(settings, patient_id)
    return store.limits_at_start(_stored_limits(settings, patient_id), file)[0]


# -- alarm log exports -------------------------------------------------------------------------

ALARM_CSV_COLUMNS = (
    "time",
    "time_ms",
    "event",
    "kind",
    "priority",
    "value",
    "limit",
    "origin",
    "alarm",
)
ALARM_CSV_MAX = 200_000  # log entries one CSV export holds at most (the oldest are left out)


def parse_open_range(params: Mapping[str, str]) -> tuple[int | None, int | None]:
    """``from`` and ``to`` (Unix ms) of a query, each None when absent (the range open on that
    side). Raises :class:`BadRange` (one line) for a value that is not an integer or
    ``from >= to``."""
    start, end = _integer(params, "from"), _integer(params, "to")
    check_range(0 if start is None else start, MAX_MS if end is None else end)
    return start, end


def _csv_cell(value: Any) -> Any:
    """A log entry's value as a CSV cell: None empty, a dict (old and new limits of a
    ``limits_changed`` entry) as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    return value


def alarm_log_entries(
    settings: Settings, patient: str, start: int | None, end: int | None
) -> list[dict[str, Any]]:
    """Every kept alarm log entry of ``patient`` with ``start <= time < end`` (open sides
    None), oldest first, at most :data:`ALARM_CSV_MAX` (the newest). Read
    :data:`LOG_MAX` at a time, newest first, each page ending where the last one began."""
    pages: list[list[dict[str, Any]]] = []
    kept = 0
    hi = end
    while kept < ALARM_CSV_MAX:
        page = alarm_log(settings, patient, start, hi, LOG_MAX)
        if len(page) < LOG_MAX:
            pages.append(page)
            break
        oldest = page[-1]["time"]
        newer = [e for e in page if e["time"] > oldest]
        if not newer:  # a whole page in one ms: take it and go on before it
            pages.append(page)
            hi = oldest
        else:  # the entries of the oldest ms come whole with the next page
            pages.append(newer)
            hi = oldest + 1
        kept += len(pages[-1])
    entries = [e for page in pages for e in page][:ALARM_CSV_MAX]
    entries.reverse()
    return entries


def alarm_log_csv(settings: Settings, patient: str, start: int | None, end: int | None) -> str:
    """The patient's alarm log entries in range as CSV, oldest first (:func:`alarm_log_entries`):
    ``time`` (ISO-8601 UTC with ms), ``time_ms``, ``event``, ``kind``, ``priority``, ``value``,
    ``limit``, ``origin``, ``alarm``; the header line alone when there is none."""
    entries = alarm_log_entries(settings, patient, start, end)
    times = np.fromiter((e["time"] for e in entries), dtype=np.int64, count=len(entries))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(ALARM_CSV_COLUMNS)
    for entry, iso in zip(entries, _iso(times), strict=True):
        writer.writerow(
            [iso, entry["time"]] + [_csv_cell(entry.get(name)) for name in ALARM_CSV_COLUMNS[2:]]
        )
    return out.getvalue()
