"""The monitor's Alarms panel, Python side: its layout and config (the constants come from
hrdash.alarms), the alarm log routes of the Dash server over a real SQLite file with alarm_log
rows (JSON newest first, CSV oldest first, ranges, limits, errors, an export longer than one
page of the log), and the Session summary measured against the patient's limits."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from hrdash import alarms, history, ids, routes, store
from hrdash.callbacks import alarm_panel, session
from hrdash.settings import Settings
from hrdash.webapp import create_app
from tests.support import free_port, routed, walk
from tests.test_alarm_store import entry, write_log

T0 = 1_764_324_000_000  # 2025-11-28T10:00:00Z
PATIENT = "bed-01"
OTHER = "bed-02"
PAGE = "http://127.0.0.1:8050"


def settings_for(db: Path | str, **env: str) -> Settings:
    """Settings on the history ``db`` whose bridge nothing listens on (it cannot be asked)."""
    base = Settings.load(env={"HRDASH_SIMULATOR_PATIENTS": "2", **env})
    return base.replace(db=str(db), bridge_port=free_port())


def write_readings(path: Path, patient: str, rows: list[tuple[int, float]]) -> None:
    conn = store.connect(path)
    try:
        store.ensure_schema(conn)
        conn.execute("BEGIN")
        key = store.patient_key(conn, patient)
        conn.executemany(
            "INSERT INTO readings (patient, t, n, bpm) VALUES (?, ?, 0, ?)",
            [(key, t, bpm) for t, bpm in rows],
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def client_at(settings: Settings, now_ms: int) -> Any:
    app = create_app(settings)
    routes.routes(app).clock = lambda: now_ms / 1000
    return app.server.test_client()


# An episode and a limits change, in time order: what the log of a patient looks like.
EPISODE = [
    entry(T0, "raised"),
    entry(T0 + 4_000, "raised", alarm=f"{PATIENT}:hr_extreme_high:{T0 + 4_000}",
          kind="hr_extreme_high", priority="high", value=162, limit=150),
    entry(T0 + 4_000, "ended", value=162),
    entry(T0 + 9_000, "acknowledged", alarm=f"{PATIENT}:hr_extreme_high:{T0 + 4_000}",
          kind="hr_extreme_high", priority="high", value=171, limit=150, origin=PAGE),
    entry(T0 + 20_000, "limits_changed", alarm=None, kind=None, priority=None,
          value={"extreme_low": 40, "low": 50, "high": 120, "extreme_high": 150},
          limit={"extreme_low": 40, "low": 55, "high": 110, "extreme_high": 140},
          origin=PAGE),
    entry(T0 + 30_000, "raised", alarm=f"{PATIENT}:no_signal:{T0 + 30_000}",
          kind="no_signal", priority="low", value=None, limit=10),
]  # fmt: skip


@pytest.fixture
def logged(tmp_path: Path) -> Settings:
    """A history file with the EPISODE of bed-01 and an entry of bed-02 among it."""
    path = tmp_path / "h.db"
    write_log(path, [*EPISODE[:3], entry(T0 + 5_000, "raised", OTHER), *EPISODE[3:]])
    return settings_for(path)


# -- layout and config -------------------------------------------------------------------------


def _props(layout: Any, element_id: str) -> dict[str, Any]:
    for component in walk(layout):
        if getattr(component, "id", None) == element_id:
            return component.to_plotly_json()["props"]
    raise LookupError(element_id)


def test_monitor_has_the_alarms_panel_with_its_ids() -> None:
    """The monitor of bed-02 holds the panel, the log table, the limits editor (four number
    inputs within the limits' bounds, Apply, the message line) and the export link to its own
    alarms.csv under the app's prefix; the station has none of it."""
    from hrdash.pages import patient

    settings = settings_for(store.MEMORY)
    layout = patient.layout(settings, OTHER, "Bed 2", prefix="/ward/")
    for element_id in (ids.ALARMS, ids.ALARM_LOG, ids.LIMITS, ids.LIMITS_APPLY,
                       ids.LIMITS_MESSAGE, ids.ALARM_CURRENT):  # fmt: skip
        assert _props(layout, element_id) is not None
    assert [ids.limit_input(n) for n in alarms.LIMIT_ORDER] == [
        "hr-limit-extreme_low",
        "hr-limit-low",
        "hr-limit-high",
        "hr-limit-extreme_high",
    ]
    for name in alarms.LIMIT_ORDER:
        field = _props(layout, ids.limit_input(name))
        assert (field["type"], field["min"], field["max"]) == (
            "number",
            alarms.LIMIT_MIN,
            alarms.LIMIT_MAX,
        )
    export = _props(layout, ids.ALARM_EXPORT)
    assert export["href"] == "/ward/api/patients/bed-02/alarms.csv"
    assert export["children"] == "Export log (CSV)"
    config = _props(layout, ids.ALARM_CONFIG)["data"]
    assert config["log_url"] == "/ward/api/patients/bed-02/alarms"
    client = create_app(settings_for(store.MEMORY, HRDASH_SIMULATOR_PATIENTS="3")).server
    station = routed(client.test_client(), "/")["layout"]
    assert ids.ALARMS not in json.dumps(station)


def test_panel_config_carries_pythons_constants() -> None:
    """Markers, kind labels, priorities and the limits' bounds and order reach the page from
    hrdash.alarms (one place), with the ids the page addresses."""
    config = alarm_panel.config(PATIENT)
    assert config["markers"] == {"high": "***", "medium": "**", "low": "*"}
    assert config["kind_labels"] == alarms.KIND_LABELS
    assert set(alarms.KIND_LABELS) == set(alarms.KINDS)
    assert alarms.KIND_LABELS["hr_extreme_high"] == "HR extremely high"
    assert config["priorities"] == ["high", "medium", "low"]
    assert (config["limit_min"], config["limit_max"]) == (20, 300)
    assert config["limit_order"] == ["extreme_low", "low", "high", "extreme_high"]
    assert config["ids"]["ws"] == ids.WS
    assert config["ack_class"] == "hr-ack"
    assert config["log_shown"] == 50
    json.dumps(config, allow_nan=False)


# -- the JSON route ------------------------------------------------------------------------------


def test_alarms_route_answers_the_log_newest_first(logged: Settings) -> None:
    """GET /api/patients/<id>/alarms: the patient's entries only, newest first, in the
    /api/alarms/log shape (a limits change's limits are objects); ?limit keeps the newest."""
    client = client_at(logged, T0 + HOUR_MS)
    answer = client.get(f"/api/patients/{PATIENT}/alarms")
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.get_json()
    assert body == list(reversed(EPISODE))
    assert body[1]["value"] == EPISODE[4]["value"]
    newest = client.get(f"/api/patients/{PATIENT}/alarms?limit=2").get_json()
    assert newest == [EPISODE[5], EPISODE[4]]
    other = client.get(f"/api/patients/{OTHER}/alarms").get_json()
    assert [(e["patient"], e["time"]) for e in other] == [(OTHER, T0 + 5_000)]
    ranged = client.get(f"/api/patients/{PATIENT}/alarms?from={T0 + 4_000}&to={T0 + 20_000}")
    assert ranged.get_json() == [EPISODE[3], EPISODE[2], EPISODE[1]]


HOUR_MS = 3_600_000


@pytest.mark.parametrize(
    ("query", "status", "says"),
    [
        ("limit=0", 400, "limit must be a whole number from 1 to 1000, got 0"),
        ("limit=abc", 400, "limit must be a whole number from 1 to 1000, got 'abc'"),
        ("limit=1001", 400, "limit must be a whole number from 1 to 1000, got 1001"),
        (f"from={T0}&to={T0}", 400, f"from ({T0}) must be before to ({T0})"),
        ("to=x", 400, "to must be an integer number of ms, got 'x'"),
    ],
)
def test_alarms_route_refuses_bad_queries_in_one_line(
    logged: Settings, query: str, status: int, says: str
) -> None:
    """A bad limit or range is a 400 with one line of text naming it."""
    answer = client_at(logged, T0).get(f"/api/patients/{PATIENT}/alarms?{query}")
    assert answer.status_code == status
    assert answer.get_data(as_text=True) == says + "\n"


def test_alarm_routes_of_an_unknown_patient_are_404(logged: Settings) -> None:
    """A patient that is not one of the station's is a 404 on both routes."""
    client = client_at(logged, T0)
    for name in ("alarms", "alarms.csv"):
        answer = client.get(f"/api/patients/bed-77/{name}")
        assert answer.status_code == 404
        assert answer.get_data(as_text=True) == "No patient 'bed-77'\n"


def test_alarms_route_of_a_file_without_a_log_is_empty(tmp_path: Path) -> None:
    """No history file yet: an empty list and a CSV header."""
    client = client_at(settings_for(tmp_path / "none.db"), T0)
    assert client.get(f"/api/patients/{PATIENT}/alarms").get_json() == []
    text = client.get(f"/api/patients/{PATIENT}/alarms.csv").get_data(as_text=True)
    assert text == ",".join(history.ALARM_CSV_COLUMNS) + "\n"


# -- the CSV route -------------------------------------------------------------------------------


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_alarms_csv_is_the_log_oldest_first(logged: Settings) -> None:
    """GET /api/patients/<id>/alarms.csv: every entry of the patient, oldest first, with an
    ISO-8601 UTC time, the limits of a limits change as JSON, empty cells for None; an
    attachment named for the patient and the range (open ends: 0 and now)."""
    now = T0 + HOUR_MS
    answer = client_at(logged, now).get(f"/api/patients/{PATIENT}/alarms.csv")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert answer.headers["Content-Disposition"] == (
        f'attachment; filename="hrdash-{PATIENT}-alarms-0-{now}.csv"'
    )
    text = answer.get_data(as_text=True)
    assert text.splitlines()[0] == ("time,time_ms,event,kind,priority,value,limit,origin,alarm")
    got = rows_of(text)
    assert [int(r["time_ms"]) for r in got] == [e["time"] for e in EPISODE]
    assert [r["event"] for r in got] == [e["event"] for e in EPISODE]
    assert got[0]["time"] == "2025-11-28T10:00:00.000Z"
    assert (got[1]["kind"], got[1]["priority"], got[1]["value"], got[1]["limit"]) == (
        "hr_extreme_high",
        "high",
        "162",
        "150",
    )
    assert got[3]["origin"] == PAGE
    assert (got[0]["origin"], got[4]["alarm"], got[4]["kind"], got[5]["value"]) == ("",) * 4
    assert json.loads(got[4]["value"]) == EPISODE[4]["value"]
    assert json.loads(got[4]["limit"]) == EPISODE[4]["limit"]


def test_alarms_csv_range(logged: Settings) -> None:
    """from/to keep the entries with from <= time < to, and name the file."""
    client = client_at(logged, T0 + HOUR_MS)
    start, end = T0 + 4_000, T0 + 20_000
    answer = client.get(f"/api/patients/{PATIENT}/alarms.csv?from={start}&to={end}")
    assert f"alarms-{start}-{end}.csv" in answer.headers["Content-Disposition"]
    got = rows_of(answer.get_data(as_text=True))
    assert [int(r["time_ms"]) for r in got] == [T0 + 4_000, T0 + 4_000, T0 + 9_000]
    bad = client.get(f"/api/patients/{PATIENT}/alarms.csv?from=soon")
    assert (bad.status_code, bad.get_data(as_text=True)) == (
        400,
        "from must be an integer number of ms, got 'soon'\n",
    )


def test_alarms_csv_holds_more_than_one_page_of_the_log(tmp_path: Path) -> None:
    """An export longer than history.LOG_MAX entries (read a page at a time), with several
    entries in the millisecond where a page ends, has every entry once, oldest first."""
    path = tmp_path / "h.db"
    count = 2 * history.LOG_MAX + 500
    # Three entries per ms: every page boundary falls inside a millisecond.
    entries = [entry(T0 + i // 3, "raised", alarm=f"a{i}") for i in range(count)]
    write_log(path, entries)
    text = client_at(settings_for(path), T0 + HOUR_MS).get(f"/api/patients/{PATIENT}/alarms.csv")
    got = rows_of(text.get_data(as_text=True))
    assert len(got) == count
    assert sorted(r["alarm"] for r in got) == sorted(f"a{i}" for i in range(count))
    times = [int(r["time_ms"]) for r in got]
    assert times == sorted(times)


# -- the Session summary against the patient's limits ------------------------------------------


def sources_file(path: Path, low: int, high: int) -> Path:
    path.write_text(
        "\n".join(
            [
                "[[patient]]",
                f'id = "{PATIENT}"',
                'url = "ws://127.0.0.1:9/hr"',
                "[patient.limits]",
                f"low = {low}",
                f"high = {high}",
                "[[patient]]",
                f'id = "{OTHER}"',
                'url = "ws://127.0.0.1:9/hr2"',
            ]
        )
        + "\n"
    )
    return path


def test_session_summary_measures_against_the_patients_limits(tmp_path: Path) -> None:
    """The share of time below / above is below the patient's low and above its high limit
    (here from the sources file: 60 and 100), and the text names them; another patient's
    summary uses the defaults (50 and 120)."""
    path = tmp_path / "h.db"
    bpms = [55, 55, 80, 80, 110, 110, 80, 80]  # 55 and 110: inside 50-120, outside 60-100
    write_readings(path, PATIENT, [(T0 + i * 500, b) for i, b in enumerate(bpms)])
    write_readings(path, OTHER, [(T0 + i * 500, b) for i, b in enumerate(bpms)])
    sources = sources_file(tmp_path / "sources.toml", 60, 100)
    settings = settings_for(path).replace(sources=str(sources))
    now = T0 + 10_000
    text = session.summary_text(settings, PATIENT, "30m", now)
    assert "25.0% of the time below 60 bpm, 25.0% above 100 bpm" in text, text
    other = session.summary_text(settings, OTHER, "30m", now)
    assert "0.0% of the time below 50 bpm, 0.0% above 120 bpm" in other, other
    s = history.summary(settings, PATIENT, T0, now)
    assert (s["low"], s["high"], s["below_pct"], s["above_pct"]) == (60, 100, 25.0, 25.0)
