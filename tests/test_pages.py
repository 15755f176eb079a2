"""The pages: routing through Dash pages' real router, the station's tiles and grid, the monitor
per patient, and the page registry when several apps share one process."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dash
import pytest
from dash import dcc, html
from dash_extensions import WebSocket

from hrdash import ids, pages
from hrdash.alarms import KIND_LABELS, MARKERS
from hrdash.callbacks import session
from hrdash.layout import PLACEHOLDER
from hrdash.pages import station
from hrdash.settings import Settings
from hrdash.sources import Source
from hrdash.webapp import create_app
from tests.support import routed, walk

TILE_CLASSES = [
    "hr-tile-head",
    "hr-tile-name",
    "hr-tile-state",
    "hr-tile-main",
    "hr-tile-bpm",
    "hr-tile-unit",
    "hr-tile-age",
    "hr-tile-spark",
]


def _settings(**env: str) -> Settings:
    return Settings.load(env=env)


def _walk_json(node: Any) -> list[dict[str, Any]]:
    """Every component under ``node`` (layout JSON as Dash serves it)."""
    if isinstance(node, list):
        return [c for item in node for c in _walk_json(item)]
    if not isinstance(node, dict):
        return []
    return [node, *_walk_json(node.get("props", {}).get("children"))]


def _props(layout: Any, element_id: str) -> dict[str, Any]:
    found = [c["props"] for c in _walk_json(layout) if c["props"].get("id") == element_id]
    assert len(found) == 1, (element_id, len(found))
    return dict(found[0])


def _texts(layout: Any) -> list[str]:
    return [
        c["props"]["children"]
        for c in _walk_json(layout)
        if isinstance(c["props"].get("children"), str)
    ]


def _station(count: int, **env: str) -> tuple[html.Div, list[Source]]:
    site = pages.Site.for_settings(_settings(HRDASH_SIMULATOR_PATIENTS=str(count), **env))
    return site.home(), list(site.patients)


@pytest.mark.parametrize(
    ("count", "shape"),
    [(1, (1, 1)), (3, (2, 2)), (4, (2, 2)), (16, (4, 4)), (17, (5, 4)), (64, (8, 8))],
)
def test_grid_shape(count: int, shape: tuple[int, int]) -> None:
    """The grid is the smallest square-ish one: 16 patients 4x4, 17 patients 5x4, 64 8x8."""
    assert station.grid_shape(count) == shape


def test_grid_shape_holds_every_tile_without_an_empty_row() -> None:
    """For 1-256 patients the grid has a cell for each, no empty row, never more rows than
    columns (a wide screen)."""
    for count in range(1, 257):
        cols, rows = station.grid_shape(count)
        assert cols * rows >= count > cols * (rows - 1), count
        assert rows <= cols, count


SOURCES = """
[[patient]]
id = "icu-a"
name = "ICU A"
url = "ws://127.0.0.1:1/a"

[[patient]]
id = "icu-b"
name = "ICU <b>B</b>"
url = "ws://user:pw-9xQ@127.0.0.1:1/b?token=s3cret-b"
"""


def test_station_follows_the_sources_file(tmp_path: Path) -> None:
    """With HRDASH_SOURCES the tiles are its patients, in file order, with their names (as
    text); a patient's monitor names the patient and its own service, redacted."""
    path = tmp_path / "ward.toml"
    path.write_text(SOURCES)
    client = create_app(_settings(HRDASH_SOURCES=str(path))).server.test_client()
    home = routed(client, "/")
    tiles = [c for c in _walk_json(home["layout"]) if "data-patient" in c["props"]]
    assert [t["props"]["data-patient"] for t in tiles] == ["icu-a", "icu-b"]
    assert "ICU <b>B</b>" in _texts(home["layout"])
    monitor = routed(client, "/patient/icu-b")
    assert monitor["title"] == "ICU <b>B</b> — hrdash"
    assert _props(monitor["layout"], ids.PATIENT_NAME)["children"] == "ICU <b>B</b>"
    source = _props(monitor["layout"], ids.SOURCE)["children"]
    assert source == "ws://***@127.0.0.1:1/b?token=***"
    text = json.dumps(monitor)
    assert "pw-9xQ" not in text and "s3cret-b" not in text


def test_monitor_names_its_own_service() -> None:
    """A simulated ward's monitor names its patient's path on the simulator; a single
    simulated patient's still says "Embedded simulator"."""
    ward = pages.Site.for_settings(
        _settings(HRDASH_SIMULATOR_PATIENTS="3", HRDASH_SIMULATOR_PORT="8766")
    )
    found = {c.id: c for c in walk(ward.monitor("bed-02")) if getattr(c, "id", None)}
    assert found[ids.SOURCE].children == "ws://127.0.0.1:8766/patients/bed-02"
    single = pages.Site.for_settings(_settings())
    found = {c.id: c for c in walk(single.home()) if getattr(c, "id", None)}
    assert found[ids.SOURCE].children == "Embedded simulator"


@pytest.mark.parametrize("count", [3, 16, 64])
def test_station_has_one_tile_per_patient(count: int) -> None:
    """Exactly one element per patient carries data-patient: its tile, a link to the patient's
    monitor with the contract's id, attributes and parts, in station order, in the grid, each
    in a slot beside its ack button (hidden, never inside the link)."""
    layout, patients = _station(count)
    with_patient = [c for c in walk(layout) if _data(c, "data-patient") is not None]
    assert [_data(c, "data-patient") for c in with_patient] == [p.id for p in patients]
    grid = next(c for c in walk(layout) if getattr(c, "id", None) == ids.STATION)
    assert [slot.children[0] for slot in grid.children] == with_patient
    for slot in grid.children:
        assert slot.className == "hr-tile-slot" and len(slot.children) == 2
        button = slot.children[1]
        assert isinstance(button, html.Button) and button.className == ids.ACK_CLASS
        assert button.hidden is True
        assert not [c for c in walk(slot.children[0]) if isinstance(c, html.Button)]
    for tile, patient in zip(with_patient, patients, strict=True):
        assert isinstance(tile, html.A)
        assert tile.id == ids.tile(patient.id) == f"hr-tile-{patient.id}"
        assert tile.href == f"/patient/{patient.id}"
        assert tile.className == "hr-tile"
        assert (_data(tile, "data-state"), _data(tile, "data-alarm")) == ("connecting", "none")
        parts = {c.className: c for c in walk(tile)[1:] if getattr(c, "className", None)}
        assert sorted(parts) == sorted(TILE_CLASSES)
        assert parts["hr-tile-name"].children == patient.name
        assert parts["hr-tile-bpm"].children == PLACEHOLDER == "\u2013"
        assert parts["hr-tile-unit"].children == "bpm"
        assert parts["hr-tile-state"].children == "Connecting…"
        assert isinstance(parts["hr-tile-spark"], html.Canvas)


def _data(component: Any, name: str) -> Any:
    return component.to_plotly_json()["props"].get(name)


@pytest.mark.parametrize("count", [3, 17, 64])
def test_station_grid_is_shaped_by_python(count: int) -> None:
    """The grid (id hr-station, class hr-station-grid) carries --hr-cols and --hr-rows from
    grid_shape."""
    layout, _ = _station(count)
    grid = next(c for c in walk(layout) if getattr(c, "id", None) == ids.STATION)
    cols, rows = station.grid_shape(count)
    assert grid.className == "hr-station-grid"
    assert grid.style == {"--hr-cols": str(cols), "--hr-rows": str(rows)}


def test_station_components_and_config() -> None:
    """The station holds its socket (a direct child of the top level, no url from the server),
    config, badge and the alarms list saying "No active alarms", and no Dash Interval (its clock
    is a timer in station.js); the config carries the station feed's URL, the origins,
    staleness, the sparkline's span, the clock's 250 ms, the patients and the ids."""
    layout, patients = _station(3, HRDASH_BRIDGE_PORT="9876", HRDASH_STALE_AFTER="3.5")
    found = {c.id: c for c in walk(layout) if getattr(c, "id", None)}
    sockets = [c for c in layout.children if isinstance(c, WebSocket)]
    assert [s.id for s in sockets] == [ids.STATION_WS]
    assert getattr(sockets[0], "url", None) is None
    assert not [c for c in walk(layout) if isinstance(c, dcc.Interval)]
    assert found[ids.STATION_STATUS].children == "Connecting…"
    alarms = found[ids.STATION_ALARMS]
    assert "No active alarms" in [getattr(c, "children", None) for c in walk(alarms)]
    config = found[ids.STATION_CONFIG].data
    assert set(config) == {
        "ws_url",
        "ws_port",
        "allowed_origins",
        "stale_after",
        "spark_seconds",
        "tick_ms",
        "patients",
        "ids",
        "no_alarms",
        "markers",
        "kind_labels",
        "ack_class",
        "ack_text",
    }
    assert config["no_alarms"] == "No active alarms"  # what the list says once emptied again
    assert (config["markers"], config["kind_labels"]) == (MARKERS, KIND_LABELS)
    assert (config["ack_class"], config["ack_text"]) == (ids.ACK_CLASS, station.ACK_TEXT)
    assert {ids.AUDIO, ids.AUDIO_COUNTDOWN, ids.STATION_MESSAGE} <= set(found)
    assert (config["ws_url"], config["ws_port"]) == ("/ws?station=1", 9876)
    assert config["stale_after"] == 3.5
    assert config["spark_seconds"] == 120
    assert config["tick_ms"] == 250
    assert config["patients"] == [{"id": p.id, "name": p.name} for p in patients]
    assert config["ids"] == ids.STATION_IDS
    assert {config["ids"][k] for k in ("grid", "ws", "status", "alarms", "message")} <= set(found)


@pytest.mark.parametrize(
    ("public", "expected"),
    [
        ("/ws", "/ws?station=1"),
        ("wss://hr.example.org/ws?k=1", "wss://hr.example.org/ws?k=1&station=1"),
    ],
)
def test_station_ws_url_follows_the_public_url(public: str, expected: str) -> None:
    """HRDASH_PUBLIC_WS_URL stays a base: the station asks it for station=1 (the browser
    resolves a path, so no port)."""
    layout, _ = _station(2, HRDASH_PUBLIC_WS_URL=public)
    config = next(c for c in walk(layout) if getattr(c, "id", None) == ids.STATION_CONFIG).data
    assert (config["ws_url"], config["ws_port"]) == (expected, None)


def test_routes_with_several_patients() -> None:
    """With 3 patients: / is the station; /patient/bed-02 is Bed 2's monitor (its socket on
    patient=bed-02, its config naming it, a link back to /); an unknown id says so and links to
    /. Each page has its title."""
    client = create_app(_settings(HRDASH_SIMULATOR_PATIENTS="3")).server.test_client()
    home = routed(client, "/")
    assert home["title"] == "Station — hrdash"
    assert len([c for c in _walk_json(home["layout"]) if "data-patient" in c["props"]]) == 3
    assert _props(home["layout"], ids.STATION)

    monitor = routed(client, "/patient/bed-02")
    assert monitor["title"] == "Bed 2 — hrdash"
    config = _props(monitor["layout"], ids.CONFIG)["data"]
    assert config["patient"] == "bed-02"
    assert config["ws_url"] == "/ws?patient=bed-02&overlap=1"
    assert _props(monitor["layout"], ids.PATIENT_NAME)["children"] == "Bed 2"
    back = _props(monitor["layout"], ids.BACK_LINK)
    assert (back["href"], back["children"]) == ("/", "← Station")
    assert not [c for c in _walk_json(monitor["layout"]) if "data-patient" in c["props"]]

    missing = routed(client, "/patient/bed-99")
    assert missing["title"] == "No patient bed-99 — hrdash"
    assert "No patient bed-99" in _texts(missing["layout"])
    assert _props(missing["layout"], ids.BACK_LINK)["href"] == "/"
    assert not [c for c in _walk_json(missing["layout"]) if c["props"].get("id") == ids.WS]


def test_routes_with_one_patient() -> None:
    """With one patient / is its monitor (no station, no link back) and /patient/<id> the same
    monitor; the station's callbacks are not registered."""
    app = create_app(_settings())
    client = app.server.test_client()
    home = routed(client, "/")
    assert home["title"] == "Bed 1 — hrdash"
    assert _props(home["layout"], ids.CONFIG)["data"]["ws_url"] == "/ws?patient=bed-01&overlap=1"
    assert not [c for c in _walk_json(home["layout"]) if c["props"].get("id") == ids.BACK_LINK]
    assert not [c for c in _walk_json(home["layout"]) if c["props"].get("id") == ids.STATION]
    assert routed(client, "/patient/bed-01")["layout"] == home["layout"]
    assert not [k for k in app.callback_map if "hr-station" in k]


def test_patient_ids_in_urls_are_text() -> None:
    """An unknown id that looks like markup is shown as text (a string child), never as HTML."""
    client = create_app(_settings(HRDASH_SIMULATOR_PATIENTS="2")).server.test_client()
    missing = routed(client, "/patient/<b>x</b>")
    assert "No patient <b>x</b>" in _texts(missing["layout"])


def test_two_apps_in_one_process_route_with_their_own_patients() -> None:
    """Dash's page registry is one per process: after a second create_app it holds our two
    pages once each, and each app still routes with its own settings."""
    several = create_app(_settings(HRDASH_SIMULATOR_PATIENTS="3")).server.test_client()
    one = create_app(_settings(HRDASH_SIMULATOR_PATIENTS="1")).server.test_client()
    ours = [key for key in dash.page_registry if key.startswith("hrdash.pages.")]
    assert sorted(ours) == sorted([pages.HOME, pages.MONITOR])
    assert routed(several, "/")["title"] == "Station — hrdash"
    assert routed(one, "/")["title"] == "Bed 1 — hrdash"
    assert routed(several, "/patient/bed-03")["title"] == "Bed 3 — hrdash"
    assert routed(one, "/patient/bed-03")["title"] == "No patient bed-03 — hrdash"


def test_station_callbacks_are_clientside_without_outputs() -> None:
    """The station's socket url comes from station_connect; message and state go to
    on_station_message/state, which have no outputs; there is no tick callback (the page's clock
    is a timer in station.js); nothing on the station is a Python callback."""
    app = create_app(_settings(HRDASH_SIMULATOR_PATIENTS="3"))
    station_ids = {ids.STATION_WS, ids.STATION_CONFIG}
    found = {
        cb["clientside_function"]["function_name"]: cb
        for cb in app._callback_list
        if any(dep["id"] in station_ids for dep in cb["inputs"])
    }
    assert set(found) == {
        "station_connect",
        "on_station_message",
        "on_station_state",
    }
    ticks = [
        cb
        for cb in app._callback_list
        if (cb.get("clientside_function") or {}).get("function_name") == "on_station_tick"
    ]
    assert ticks == []
    assert found["station_connect"]["output"] == f"{ids.STATION_WS}.url"
    assert [d["id"] + "." + d["property"] for d in found["station_connect"]["inputs"]] == [
        f"{ids.STATION_CONFIG}.data"
    ]
    triggers = {
        "on_station_message": f"{ids.STATION_WS}.message",
        "on_station_state": f"{ids.STATION_WS}.state",
    }
    for name, trigger in triggers.items():
        cb = found[name]
        assert [d["id"] + "." + d["property"] for d in cb["inputs"]] == [trigger]
        assert [d["id"] + "." + d["property"] for d in cb["state"]] == [
            f"{ids.STATION_CONFIG}.data"
        ]
        assert cb["clientside_function"]["namespace"] == "hrdash"
        assert not cb["output"] or cb["no_output"], cb["output"]
    server_side = [cb for cb in app.callback_map.values() if "callback" in cb]
    assert all(dep["id"] not in station_ids for cb in server_side for dep in cb["inputs"])


class _Bridge(http.server.BaseHTTPRequestHandler):
    """A stand-in for the bridge's GET /readings: records the paths asked for."""

    paths: list[str] = []

    def do_GET(self) -> None:
        self.paths.append(self.path)
        body = json.dumps({"readings": [{"seq": 1, "time": 1764324000000, "bpm": 71}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@contextlib.contextmanager
def _bridge() -> Iterator[tuple[int, list[str]]]:
    paths: list[str] = []
    handler = type("Handler", (_Bridge,), {"paths": paths})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], paths
    finally:
        server.shutdown()
        server.server_close()


def test_session_card_asks_for_the_pages_patient() -> None:
    """Summarise and Download CSV on Bed 2's monitor ask the bridge for bed-02's readings (the
    id from the page's config store), through the app's real callbacks; the summary also asks
    it for the patients' limits (/api/patients)."""
    with _bridge() as (port, paths):
        settings = _settings(
            HRDASH_SIMULATOR_PATIENTS="3", HRDASH_BRIDGE_PORT=str(port), HRDASH_DB=":memory:"
        )
        client = create_app(settings).server.test_client()
        config = _props(routed(client, "/patient/bed-02")["layout"], ids.CONFIG)["data"]
        body = {
            "output": f"{ids.SESSION_SUMMARY}.children",
            "outputs": {"id": ids.SESSION_SUMMARY, "property": "children"},
            "inputs": [{"id": ids.SESSION_SUMMARY_BUTTON, "property": "n_clicks", "value": 1}],
            "state": [
                {"id": ids.SESSION_RANGE, "property": "value", "value": "all"},
                {"id": ids.CONFIG, "property": "data", "value": config},
            ],
            "changedPropIds": [f"{ids.SESSION_SUMMARY_BUTTON}.n_clicks"],
        }
        answer = client.post("/_dash-update-component", json=body)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        assert "1 readings" in answer.get_data(as_text=True)
        assert session.export(settings, "bed-02", "all") is not None
    assert paths and set(paths) == {"/readings?patient=bed-02", "/api/patients"}


@pytest.mark.parametrize(
    ("public", "expected"),
    [
        ("", ("/ws?patient=bed-02&overlap=1", 8765)),
        ("/ws", ("/ws?patient=bed-02&overlap=1", None)),
        (
            "wss://hr.example.org/ws?k=1",
            ("wss://hr.example.org/ws?k=1&patient=bed-02&overlap=1", None),
        ),
    ],
)
def test_monitor_ws_url_names_the_patient(public: str, expected: tuple[str, int | None]) -> None:
    """HRDASH_PUBLIC_WS_URL stays a base (resolved in the browser as before): the monitor adds
    patient=ID, then overlap=1."""
    settings = _settings(HRDASH_SIMULATOR_PATIENTS="3", HRDASH_PUBLIC_WS_URL=public)
    layout = pages.Site.for_settings(settings).monitor("bed-02")
    config = next(c for c in walk(layout) if getattr(c, "id", None) == ids.CONFIG).data
    assert (config["ws_url"], config["ws_port"]) == expected
