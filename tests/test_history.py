"""The history's read side (pandas over a real SQLite file filled through hrdash.store's schema):
readings, trends, CSV exports, their HTTP routes on the real Dash app, the Session card over a
stored range, and the fallback to the bridge's buffer with HRDASH_DB=:memory:."""

from __future__ import annotations

import asyncio
import base64
import io
import random
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import werkzeug.serving

from hrdash import history, routes, store, trends
from hrdash.callbacks import session
from hrdash.ingest.recorder import Recorder
from hrdash.settings import Settings
from hrdash.webapp import create_app
from tests.conftest import StartBridge, Upstream, free_port, strict_json, wait_for
from tests.support import app_command, gunicorn_command, hrdash_running

T0 = 1_764_324_000_000  # 2025-11-28T10:00:00Z, on a day boundary of every trend width
HOUR = 3_600_000
PATIENT = "bed-01"
OTHER = "bed-02"

Row = tuple[int, int | float]


# -- a history file filled with plain SQL ------------------------------------------------------


def fill(path: Path, rows: dict[str, Sequence[Row]]) -> None:
    """Write ``rows`` (patient id → ``(t, bpm)``) into the history at ``path`` through the
    store's schema, and the minute rollups recomputed from every raw row, as the recorder
    keeps them."""
    conn = store.connect(path)
    try:
        store.ensure_schema(conn)
        conn.execute("BEGIN")
        for patient, readings in rows.items():
            key = store.patient_key(conn, patient, patient.title())
            seen: dict[int, int] = {}
            values = []
            for t, bpm in readings:
                n = seen.get(t, 0)
                seen[t] = n + 1
                values.append((key, t, n, bpm))
            conn.executemany(
                "INSERT INTO readings (patient, t, n, bpm) VALUES (?, ?, ?, ?)", values
            )
        conn.execute("DELETE FROM minutes")
        conn.execute(
            "INSERT INTO minutes (patient, t, min, sum, max, n)"
            " SELECT patient, t - t % 60000, min(bpm), sum(bpm), max(bpm), count(*)"
            " FROM readings GROUP BY patient, t - t % 60000"
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def day_of_readings(seed: int = 9) -> list[Row]:
    """26 h from T0 - 1 h at irregular intervals (1 to 15 s), integer bpm with a few reals, and
    two gaps without readings: 3 h to 3 h 20 min and 10 h to 12 h after T0."""
    rng = random.Random(seed)
    rows: list[Row] = []
    t = T0 - HOUR
    while t < T0 + 25 * HOUR:
        if not (
            T0 + 3 * HOUR <= t < T0 + 3 * HOUR + 20 * 60_000 or T0 + 10 * HOUR <= t < T0 + 12 * HOUR
        ):
            bpm: int | float = rng.randint(40, 160)
            if rng.random() < 0.05:
                bpm += 0.5
            rows.append((t, bpm))
        t += rng.randint(1_000, 15_000)
    return rows


def settings_for(db: Path | str, **env: str) -> Settings:
    return Settings.load(env={"HRDASH_SIMULATOR_PATIENTS": "2", **env}).replace(db=str(db))


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, list[Row]]:
    """A history file with a day of bed-01's readings (and a few of bed-02's)."""
    path = tmp_path_factory.mktemp("history") / "hrdash.db"
    rows = day_of_readings()
    fill(path, {PATIENT: rows, OTHER: [(T0, 99), (T0 + 500, 98)]})
    return settings_for(path), rows


def client_at(settings: Settings, now_ms: int) -> Any:
    """A Flask test client of the real Dash app whose routes' clock says ``now_ms``."""
    app = create_app(settings)
    routes.routes(app).clock = lambda: now_ms / 1000
    return app.server.test_client()


def expected_buckets(rows: Iterable[Row], start: int, end: int, width: int) -> pd.DataFrame:
    """The buckets pandas makes of the raw rows: every epoch-aligned bucket of ``width`` that
    meets ``start`` to ``end``, whole, where it holds readings."""
    df = pd.DataFrame(rows, columns=["t", "bpm"]).astype({"bpm": "float64"})
    lo, hi = start - start % width, -(-end // width) * width
    df = df[(df["t"] >= lo) & (df["t"] < hi)]
    df["time"] = pd.to_datetime(df["t"], unit="ms", utc=True)
    out = df.set_index("time")["bpm"].resample(f"{width}ms", origin="epoch")
    table = out.agg(["min", "mean", "max", "count"])
    table = table[table["count"] > 0]
    table.index = table.index.as_unit("ms").asi8
    return table


def assert_buckets_match(body: dict[str, Any], rows: Sequence[Row]) -> None:
    want = expected_buckets(rows, body["from"], body["to"], body["width"])
    got = pd.DataFrame(body["buckets"], columns=["t", "min", "mean", "max", "n"]).set_index("t")
    assert list(got.index) == list(want.index)
    assert list(got["n"]) == list(want["count"])
    assert list(got["min"].astype(float)) == list(want["min"])
    assert list(got["max"].astype(float)) == list(want["max"])
    assert list(got["mean"]) == pytest.approx(list(want["mean"]), rel=1e-12)


# -- trends ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "span"), [("1h", HOUR), ("8h", 8 * HOUR), ("24h", 24 * HOUR)])
def test_trend_ranges_match_pandas_on_the_raw_rows(
    day: tuple[Settings, list[Row]], name: str, span: int
) -> None:
    """range=1h|8h|24h ends at the server's clock and its buckets (from the minutes table) are
    what pandas makes of the raw readings: min, mean, max, count per epoch-aligned bucket, at
    most 2,000, none where there is no reading."""
    settings, rows = day
    now = T0 + 24 * HOUR + 12_345  # mid-minute: the first and last buckets are whole anyway
    answer = client_at(settings, now).get(f"/api/patients/{PATIENT}/trend?range={name}")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.mimetype == "application/json"
    assert answer.headers["Cache-Control"] == "no-store"
    body = strict_json(answer.get_data())
    assert body["patient"] == PATIENT and body["range"] == name
    assert (body["from"], body["to"]) == (now - span, now)
    assert body["width"] == trends.bucket_width(span)
    assert 0 < len(body["buckets"]) <= trends.MAX_POINTS
    assert body["readings"] is None
    assert_buckets_match(body, rows)


def test_trend_custom_range_and_width_match_pandas(day: tuple[Settings, list[Row]]) -> None:
    """A custom from/to (not on bucket edges) with width=5 min: whole buckets matching pandas;
    the 2-hour gap has no bucket, so trends.series breaks the line there."""
    settings, rows = day
    start, end = T0 + 8 * HOUR + 12_345, T0 + 14 * HOUR + 777
    query = f"from={start}&to={end}&width=300000"
    body = strict_json(
        client_at(settings, T0 + 30 * HOUR).get(f"/api/patients/{PATIENT}/trend?{query}").get_data()
    )
    assert (body["range"], body["from"], body["to"], body["width"]) == (
        "custom",
        start,
        end,
        300_000,
    )
    assert_buckets_match(body, rows)
    starts = [b["t"] for b in body["buckets"]]
    assert not [t for t in starts if T0 + 10 * HOUR <= t < T0 + 12 * HOUR]
    assert starts[0] == start - start % 300_000
    buckets = [trends.Bucket(**b) for b in body["buckets"]]
    assert None in trends.series(buckets, 300_000)["t"]


def test_trend_over_a_long_range_stays_within_2000_buckets(
    day: tuple[Settings, list[Row]],
) -> None:
    """Over 30 days the default width grows (30 min) and the buckets still match pandas."""
    settings, rows = day
    body = history.trend(settings, PATIENT, T0 - 20 * 24 * HOUR, T0 + 10 * 24 * HOUR)
    assert body["width"] == 30 * 60_000
    assert len(body["buckets"]) <= trends.MAX_POINTS
    assert_buckets_match(body, rows)


def test_raw_readings_only_when_they_fit(tmp_path: Path) -> None:
    """raw=1 carries the range's readings (half-open, as stored) when there are at most 2,000,
    and null when there is one more."""
    rows: list[Row] = [(T0 + i * 500, 60 + i % 50) for i in range(2001)]
    rows[3] = (rows[3][0], 72.5)
    path = tmp_path / "h.db"
    fill(path, {PATIENT: rows})
    client = client_at(settings_for(path), T0 + HOUR)
    fits = strict_json(
        client.get(f"/api/patients/{PATIENT}/trend?from={T0}&to={T0 + 2000 * 500}&raw=1").data
    )
    assert fits["readings"] == [{"t": t, "bpm": bpm} for t, bpm in rows[:2000]]
    assert isinstance(fits["readings"][0]["bpm"], int)
    assert fits["readings"][3]["bpm"] == 72.5
    over = strict_json(
        client.get(f"/api/patients/{PATIENT}/trend?from={T0}&to={T0 + 2001 * 500}&raw=1").data
    )
    assert over["readings"] is None and over["buckets"]
    without = strict_json(
        client.get(f"/api/patients/{PATIENT}/trend?from={T0}&to={T0 + 1000}").data
    )
    assert without["readings"] is None


def test_no_raw_readings_where_they_were_pruned(tmp_path: Path) -> None:
    """Where the raw readings are gone and only the minute rollups are kept (older than the raw
    retention), raw=1 gives null, not an empty or partial list; where they are all kept, the
    list."""
    path = tmp_path / "h.db"
    fill(path, {PATIENT: [(T0 + i * 20_000, 70 + i % 5) for i in range(30)]})  # 10 minutes
    conn = store.connect(path)
    conn.execute("DELETE FROM readings WHERE t < ?", (T0 + 5 * 60_000,))  # pruned: 5 minutes
    conn.close()
    settings = settings_for(path)
    partly = history.trend(settings, PATIENT, T0 + 60_000, T0 + 9 * 60_000, raw=True)
    assert len(partly["buckets"]) == 8 and partly["readings"] is None
    gone = history.trend(settings, PATIENT, T0, T0 + 4 * 60_000, raw=True)
    assert len(gone["buckets"]) == 4 and gone["readings"] is None
    kept = history.trend(settings, PATIENT, T0 + 5 * 60_000, T0 + 10 * 60_000, raw=True)
    assert kept["readings"] is not None and len(kept["readings"]) == 15
    empty = history.trend(settings, PATIENT, T0 + HOUR, T0 + 2 * HOUR, raw=True)
    assert (empty["buckets"], empty["readings"]) == ([], [])


# -- readings CSV ------------------------------------------------------------------------------


def test_readings_csv_holds_the_range_as_stored(tmp_path: Path) -> None:
    """readings.csv: header time,time_ms,bpm; ISO-8601 UTC with ms; bpm as stored (72 stays 72,
    72.5 stays 72.5); two readings at the same ms both there; from included, to excluded; an
    attachment named hrdash-<id>-<from>-<to>.csv."""
    rows: list[Row] = [
        (T0, 72),
        (T0 + 500, 72.5),
        (T0 + 500, 80),
        (T0 + 1_001, 75),
        (T0 + 2_000, 90),
    ]
    path = tmp_path / "h.db"
    fill(path, {PATIENT: rows, OTHER: [(T0 + 1, 50)]})
    answer = client_at(settings_for(path), T0 + HOUR).get(
        f"/api/patients/{PATIENT}/readings.csv?from={T0}&to={T0 + 2_000}"
    )
    assert answer.status_code == 200
    assert answer.mimetype == "text/csv"
    assert answer.headers["Content-Disposition"] == (
        f'attachment; filename="hrdash-{PATIENT}-{T0}-{T0 + 2000}.csv"'
    )
    assert answer.get_data(as_text=True) == (
        "time,time_ms,bpm\n"
        f"2025-11-28T10:00:00.000Z,{T0},72\n"
        f"2025-11-28T10:00:00.500Z,{T0 + 500},72.5\n"
        f"2025-11-28T10:00:00.500Z,{T0 + 500},80\n"
        f"2025-11-28T10:00:01.001Z,{T0 + 1001},75\n"
    )


def test_readings_csv_defaults_to_the_last_hour(tmp_path: Path) -> None:
    """Without from/to the export is the hour before now; with only from, up to now; with only
    to, the hour before it."""
    rows: list[Row] = [(T0 + i * 60_000, 60 + i % 30) for i in range(180)]  # 3 hours
    path = tmp_path / "h.db"
    fill(path, {PATIENT: rows})
    now = T0 + 3 * HOUR
    client = client_at(settings_for(path), now)

    def times(query: str) -> list[int]:
        text = client.get(f"/api/patients/{PATIENT}/readings.csv{query}").get_data(as_text=True)
        return list(pd.read_csv(io.StringIO(text))["time_ms"])

    assert times("") == [t for t, _ in rows if now - HOUR <= t < now]
    assert times(f"?from={T0 + 150 * 60_000}") == [t for t, _ in rows if t >= T0 + 150 * 60_000]
    assert times(f"?to={T0 + HOUR}") == [t for t, _ in rows if t < T0 + HOUR]


def test_empty_range_and_unstored_patient_give_the_header_only(
    day: tuple[Settings, list[Row]], tmp_path: Path
) -> None:
    """A range with nothing in it, a station patient with nothing stored and a history file
    that does not exist yet all give the header line alone (200)."""
    settings, _ = day
    client = client_at(settings, T0)
    empty = client.get(f"/api/patients/{PATIENT}/readings.csv?from=1000&to=2000")
    assert (empty.status_code, empty.get_data(as_text=True)) == (200, "time,time_ms,bpm\n")
    nothing = client_at(settings_for(settings.db, HRDASH_SIMULATOR_PATIENTS="3"), T0)
    assert nothing.get("/api/patients/bed-03/readings.csv").get_data(as_text=True) == (
        "time,time_ms,bpm\n"
    )
    missing = client_at(settings_for(tmp_path / "not-yet.db"), T0)
    answer = missing.get(f"/api/patients/{PATIENT}/trend.csv")
    assert (answer.status_code, answer.get_data(as_text=True)) == (
        200,
        "time,time_ms,min,mean,max,n\n",
    )
    trend = strict_json(missing.get(f"/api/patients/{PATIENT}/trend").data)
    assert trend["buckets"] == [] and trend["readings"] is None
    assert not (tmp_path / "not-yet.db").exists()


def test_trend_csv_is_the_minute_rollup(day: tuple[Settings, list[Row]]) -> None:
    """trend.csv: one line per stored minute meeting the range, as pandas makes it of the raw
    readings, times as ISO minute starts."""
    settings, rows = day
    start, end = T0 + 30_000, T0 + 2 * HOUR
    answer = client_at(settings, T0).get(f"/api/patients/{PATIENT}/trend.csv?from={start}&to={end}")
    assert answer.headers["Content-Disposition"].endswith(f'-{start}-{end}.csv"')
    text = answer.get_data(as_text=True)
    assert text.splitlines()[:2] == ["time,time_ms,min,mean,max,n", text.splitlines()[1]]
    assert text.splitlines()[1].startswith(f"2025-11-28T10:00:00.000Z,{T0},")
    got = pd.read_csv(io.StringIO(text))
    want = expected_buckets(rows, start, end, 60_000)
    want = want[want.index < end]
    assert list(got["time_ms"]) == list(want.index)
    assert list(got["n"]) == list(want["count"])
    assert list(got["min"]) == list(want["min"]) and list(got["max"]) == list(want["max"])
    assert list(got["mean"]) == pytest.approx(list(want["mean"]), rel=1e-12)
    assert list(pd.to_datetime(got["time"]).dt.as_unit("ms").astype("int64")) == list(
        got["time_ms"]
    )


# -- bad requests ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "query", "says"),
    [
        ("readings.csv", "?from=abc", "from must be an integer"),
        ("readings.csv", f"?from={T0}&to={T0}", "must be before"),
        ("readings.csv", f"?from={T0 + 1}&to={T0}", "must be before"),
        ("readings.csv", "?to=1.5", "to must be an integer"),
        ("readings.csv", "?to=%EF%BC%91", "to must be an integer"),  # a full-width digit
        ("readings.csv", "?from=-5", "from must be a Unix time"),
        ("trend.csv", "?from=x", "from must be an integer"),
        ("trend", "?range=2h", "range must be one of 1h, 8h, 24h"),
        ("trend", f"?range=1h&from={T0}", "either range or from/to"),
        ("trend", "?range=1h&width=12345", "width must be one of"),
        ("trend", "?range=24h&width=60000", ""),  # 1,441 buckets: fine
        ("trend", f"?from=0&to={T0}&width=86400000", "more than 2000"),
        ("trend", "?range=8h&raw=yes", "raw must be 0 or 1"),
    ],
)
def test_bad_ranges_are_400_with_one_line(
    day: tuple[Settings, list[Row]], route: str, query: str, says: str
) -> None:
    """A bad range, width or flag is a 400 whose body is one line saying what is wrong."""
    settings, _ = day
    answer = client_at(settings, T0 + 24 * HOUR).get(f"/api/patients/{PATIENT}/{route}{query}")
    if not says:
        assert answer.status_code == 200
        return
    text = answer.get_data(as_text=True)
    assert answer.status_code == 400, text
    assert answer.mimetype == "text/plain"
    assert says in text and text.endswith("\n") and text.count("\n") == 1


@pytest.mark.parametrize("route", ["readings.csv", "trend", "trend.csv"])
def test_unknown_patient_is_404(day: tuple[Settings, list[Row]], route: str) -> None:
    """A patient that is not one of the station's is a 404 with one line, even when the file
    holds rows for that id."""
    settings, _ = day
    client = client_at(settings_for(settings.db, HRDASH_SIMULATOR_PATIENTS="1"), T0)
    answer = client.get(f"/api/patients/{OTHER}/{route}")
    assert answer.status_code == 404
    assert answer.get_data(as_text=True) == f"No patient '{OTHER}'\n"


def test_unreadable_history_is_503_with_one_line(tmp_path: Path) -> None:
    """A file that is not a database: 503 and one line naming it; the file is left as it was."""
    path = tmp_path / "h.db"
    path.write_bytes(b"not a database" * 100)
    answer = client_at(settings_for(path), T0).get(f"/api/patients/{PATIENT}/readings.csv")
    text = answer.get_data(as_text=True)
    assert answer.status_code == 503, text
    assert text.startswith(f"cannot read the history {path}") and text.count("\n") == 1
    assert path.read_bytes() == b"not a database" * 100


def test_routes_live_under_the_apps_prefix(
    day: tuple[Settings, list[Row]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Served under a URL prefix (DASH_URL_BASE_PATHNAME), the routes are under it too."""
    settings, _ = day
    monkeypatch.setenv("DASH_URL_BASE_PATHNAME", "/hr/")
    client = client_at(settings, T0 + HOUR)
    assert client.get(f"/hr/api/patients/{OTHER}/readings.csv?from={T0}").data.count(b"\n") == 3
    assert client.get(f"/api/patients/{OTHER}/readings.csv?from={T0}").status_code == 404


# -- the Python API ----------------------------------------------------------------------------


def test_readings_frame_types(tmp_path: Path) -> None:
    """history.readings: time (UTC), time_ms (int64), bpm int64 when all are integers, and each
    value as stored when some are reals."""
    path = tmp_path / "h.db"
    fill(path, {PATIENT: [(T0, 70), (T0 + 1, 71)], OTHER: [(T0, 70), (T0 + 1, 70.25)]})
    settings = settings_for(path)
    ints = history.readings(settings, PATIENT, T0, T0 + 10)
    assert list(ints.columns) == ["time", "time_ms", "bpm"]
    assert str(ints["time"].dt.tz) == "UTC" and ints["time"].iloc[1].value == (T0 + 1) * 10**6
    assert ints["time_ms"].dtype == "int64" and ints["bpm"].dtype == "int64"
    mixed = history.readings(settings, OTHER, T0, T0 + 10)
    assert [type(v) for v in mixed["bpm"]] == [int, float]
    assert history.readings(settings, "nobody", T0, T0 + 10).empty
    with pytest.raises(history.BadRange):
        history.readings(settings, PATIENT, T0, T0)


def test_reads_while_the_writer_holds_a_transaction(tmp_path: Path) -> None:
    """A reader sees the last commit while the writer is in the middle of its next one (WAL),
    and never writes to the file."""
    path = tmp_path / "h.db"
    fill(path, {PATIENT: [(T0, 70)]})
    writer = store.connect(path)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO readings (patient, t, n, bpm) VALUES (1, ?, 0, 99)", (T0 + 1,))
        settings = settings_for(path)
        assert list(history.readings(settings, PATIENT, T0, T0 + 10)["bpm"]) == [70]
        writer.execute("COMMIT")
        assert list(history.readings(settings, PATIENT, T0, T0 + 10)["bpm"]) == [70, 99]
    finally:
        writer.close()
    with pytest.raises(sqlite3.OperationalError):
        conn = store.connect(path, readonly=True)
        try:
            conn.execute("DELETE FROM readings")
        finally:
            conn.close()


def test_what_the_recorder_wrote_is_what_the_history_reads(tmp_path: Path) -> None:
    """The real Recorder writes a day of readings (two patients, ints and reals, a gap) into a
    file; while it still holds the file open, readings.csv gives them back value for value and
    the trend's buckets, from the minutes it computed, are what pandas makes of them."""
    rows = day_of_readings(seed=3)
    path = tmp_path / "recorded.db"
    recorder = Recorder(
        str(path),
        [(PATIENT, "Bed 1"), (OTHER, "Bed 2")],
        retention=72 * 3600,
        trend_retention=30 * 86400,
        clock=lambda: (T0 + 26 * HOUR) / 1000,
    )
    recorder.start()
    try:
        for i in range(0, len(rows), 500):  # in batches, as the bridge adds them
            recorder.add(PATIENT, rows[i : i + 500])
        recorder.add(OTHER, [(T0, 80)])
        assert recorder.flush()
        assert recorder.status()["written"] == len(rows) + 1
        client = client_at(settings_for(path), T0 + 25 * HOUR)
        query = f"from={T0 - HOUR}&to={T0 + 25 * HOUR}"
        text = client.get(f"/api/patients/{PATIENT}/readings.csv?{query}").get_data(as_text=True)
        back = pd.read_csv(io.StringIO(text), dtype={"bpm": str})
        assert list(back["time_ms"]) == [t for t, _ in rows]
        assert list(back["bpm"]) == [str(bpm) for _, bpm in rows]
        for name in ("1h", "8h", "24h"):
            body = strict_json(client.get(f"/api/patients/{PATIENT}/trend?range={name}").data)
            assert body["buckets"]
            assert_buckets_match(body, rows)
    finally:
        recorder.close()


async def test_readings_sent_by_a_service_come_back_in_the_csv_export(
    upstream: Upstream, start_bridge: StartBridge, tmp_path: Path
) -> None:
    """End to end: a service on 127.0.0.1 sends known readings (integers and reals, two at one
    millisecond), a real bridge records them into HRDASH_DB, and readings.csv over HTTP from the
    real Dash server gives back exactly what was sent, value for value, in order."""
    path = tmp_path / "history.db"
    now = int(time.time() * 1000)
    start = now - now % 60_000 - 10 * 60_000  # ten minutes ago: recorded, not too old
    sent: list[Row] = [(start + i * 500, 60 + i % 50) for i in range(240)]
    sent[7] = (sent[7][0], 72.5)
    sent[8] = (sent[7][0], 73)  # the same millisecond as the one before, another bpm
    bridge = await start_bridge(upstream.url, db=str(path))
    await upstream.wait_connections(1)
    for t, bpm in sent:
        await upstream.send(f'{{"time": {t}, "value": {bpm}}}')
    await wait_for(lambda: bridge.counters["accepted"] == len(sent), 5)
    await wait_for(lambda: bridge.history_status()["written"] == len(sent), 10, "recorded")
    settings = bridge.settings.replace(bridge_port=bridge.port)
    app = create_app(settings)
    server = werkzeug.serving.make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = (
            f"http://127.0.0.1:{server.server_port}/api/patients/patient-1/readings.csv"
            f"?from={start}&to={start + HOUR}"
        )

        def get() -> str:
            with urllib.request.urlopen(url, timeout=10) as answer:
                return str(answer.read().decode())

        text = await asyncio.to_thread(get)
    finally:
        server.shutdown()
        thread.join(5)
    lines = text.splitlines()
    assert lines[0] == "time,time_ms,bpm"
    got = [line.split(",") for line in lines[1:]]
    assert [(int(t), bpm) for _, t, bpm in got] == [(t, str(bpm)) for t, bpm in sent]
    iso = pd.to_datetime([t for t, _, _ in got]).as_unit("ms").asi8
    assert list(iso) == [t for t, _ in sent]


# -- summaries and the Session card --------------------------------------------------------------


def test_summary_weights_each_reading_by_its_duration(tmp_path: Path) -> None:
    """Share of time below 50 / above 120 bpm counts each reading until the next one, and a
    reading before a gap at most GAP_MS."""
    path = tmp_path / "h.db"
    bpms = [45, 45, 80, 80, 130, 130, 80, 80]
    rows: list[Row] = [(T0 + i * 500, b) for i, b in enumerate(bpms)]
    rows.append((T0 + 3_500 + 3 * HOUR, 130))  # after a gap: the 80 before it counts 10 s
    fill(path, {PATIENT: rows})
    s = history.summary(settings_for(path), PATIENT, T0, T0 + 3_500)
    assert (s["count"], s["span_s"], s["min"], s["max"]) == (7, 3.0, 45, 130)
    assert s["mean"] == sum(bpms[:7]) / 7
    assert (s["below_pct"], s["above_pct"]) == pytest.approx((100 / 3.5, 100 / 3.5))
    gap = history.summary(settings_for(path), PATIENT, T0, T0 + 4 * HOUR)
    total = 7 * 0.5 + history.GAP_MS / 1000 + 0.5  # the last one: the median interval
    assert (gap["below_pct"], gap["above_pct"]) == pytest.approx((100 / total, 150 / total))
    assert history.summary(settings_for(path), PATIENT, T0 - 10, T0) == {"count": 0}


def test_session_summary_and_download_over_a_range(day: tuple[Settings, list[Row]]) -> None:
    """The Session card summarises the chosen range of the stored history, ending now, or
    everything stored; its download is readings.csv of the same range."""
    settings, rows = day
    now = T0 + 24 * HOUR
    for choice in ("30m", "8h", "72h"):
        span = session.RANGES[choice][1]
        assert span is not None
        inside = [b for t, b in rows if now - span <= t < now]
        text = session.summary_text(settings, PATIENT, choice, now)
        assert text.startswith(f"{len(inside)} readings over "), text
        assert f"max {max(inside):.0f} bpm" in text
    everything = session.summary_text(settings, PATIENT, session.ALL, now)
    assert everything.startswith(f"{len(rows)} readings over 26.0 h")
    payload = session.export(settings, PATIENT, "1h", now)
    assert payload is not None
    assert payload["filename"] == f"hrdash-{PATIENT}-{now - HOUR}-{now}.csv"
    content = payload["content"]
    if payload.get("base64"):
        content = base64.b64decode(content).decode()
    served = client_at(settings, now).get(f"/api/patients/{PATIENT}/readings.csv")
    assert content == served.get_data(as_text=True)
    all_payload = session.export(settings, PATIENT, session.ALL, now)
    assert all_payload is not None
    assert all_payload["filename"] == f"hrdash-{PATIENT}-{rows[0][0]}-{rows[-1][0] + 1}.csv"
    assert (
        session.summary_text(settings, "bed-09", "1h", now) == "No readings stored in the last 1 h."
    )
    assert session.export(settings, "bed-09", session.ALL, now) is None


# -- HRDASH_DB=:memory: the bridge's buffer ----------------------------------------------------


def test_unreachable_bridge_is_one_line() -> None:
    """With :memory: and no bridge, the summary says so in one line and the export gives
    nothing."""
    settings = Settings.load(env={}).replace(bridge_port=free_port(), db=store.MEMORY)
    text = session.summary_text(settings, None, session.ALL)
    assert text.startswith("cannot reach the bridge at http://127.0.0.1:")
    assert "\n" not in text
    assert session.export(settings, None, session.ALL) is None


async def test_memory_history_falls_back_to_the_bridges_buffer(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """With HRDASH_DB=:memory: the routes and the Session card answer from what a real bridge
    keeps: readings.csv holds exactly its readings in range, the trend its buckets."""
    bridge = await start_bridge(upstream.url, db=store.MEMORY)
    await upstream.wait_connections(1)
    sent = [61, 62, 63, 140, 70]
    for i, bpm in enumerate(sent):
        await upstream.send(f'{{"time": {T0 + i * 30_000}, "value": {bpm}}}')
    await wait_for(lambda: bridge.counters["accepted"] == len(sent), 5)
    settings = bridge.settings.replace(bridge_port=bridge.port)
    client = client_at(settings, T0 + HOUR)

    def get(path: str) -> Any:
        return client.get(f"/api/patients/patient-1/{path}")

    text = (await asyncio.to_thread(get, f"readings.csv?from={T0 + 30_000}")).get_data(as_text=True)
    back = pd.read_csv(io.StringIO(text))
    assert list(back["bpm"]) == sent[1:]
    assert list(back["time_ms"]) == [T0 + i * 30_000 for i in range(1, len(sent))]
    trend = strict_json((await asyncio.to_thread(get, "trend?raw=1")).data)
    assert [(b["t"], b["n"], b["min"], b["max"]) for b in trend["buckets"]] == [
        (T0, 2, 61, 62),
        (T0 + 60_000, 2, 63, 140),
        (T0 + 120_000, 1, 70, 70),
    ]
    assert [r["bpm"] for r in trend["readings"]] == sent
    assert (await asyncio.to_thread(get, "trend.csv")).get_data(as_text=True).count("\n") == 4
    assert (await asyncio.to_thread(client.get, "/api/patients/bed-01/trend")).status_code == 404
    summary = await asyncio.to_thread(session.summary_text, settings, None, session.ALL)
    assert summary.startswith("5 readings over 2.0 min")
    assert "max 140 bpm" in summary


# -- served by the real commands ---------------------------------------------------------------


@pytest.mark.parametrize("command", ["app", "gunicorn"])
def test_routes_served_by_python_app_and_gunicorn(tmp_path: Path, command: str) -> None:
    """`python app.py` and `gunicorn app:server` (2 workers) serve the exports and the trend
    from HRDASH_DB over HTTP, and a 404 for a patient the station does not have."""
    now = int(time.time() * 1000)
    start = now - now % 60_000 - 20 * 60_000  # whole minutes, well inside the retention
    rows: list[Row] = [(start + i * 1_000, 60 + i % 7) for i in range(120)]
    path = tmp_path / "served.db"
    fill(path, {PATIENT: rows})
    argv = app_command() if command == "app" else gunicorn_command(2)
    with hrdash_running(argv, {"HRDASH_DB": str(path)}) as running:
        base = f"http://127.0.0.1:{running.port}/api/patients/{PATIENT}/"
        query = f"from={start}&to={start + 120_000}"
        with urllib.request.urlopen(f"{base}readings.csv?{query}", timeout=10) as answer:
            back = pd.read_csv(io.StringIO(answer.read().decode()))
        assert list(zip(back["time_ms"], back["bpm"], strict=True)) == rows
        with urllib.request.urlopen(f"{base}trend?{query}", timeout=10) as answer:
            trend = strict_json(answer.read())
        assert [b["n"] for b in trend["buckets"]] == [60, 60]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base.replace(PATIENT, "bed-99") + "trend", timeout=10)
        assert refused.value.code == 404
