"""The page: component tree, bridge URL derivation, callback registration, serving."""

from __future__ import annotations

import json
import pkgutil
from collections import Counter
from typing import Any

import dash
import pytest
from dash import html
from dash_extensions import WebSocket
from plotly.utils import PlotlyJSONEncoder

from hrdash import callbacks, ids, pages
from hrdash.layout import Y_RANGE, build_layout
from hrdash.settings import Settings
from hrdash.webapp import create_app, page_ws_url
from tests.support import routed, walk

# Every element id the package defines (hrdash.ids holds them all, as upper-case constants).
# (``*_CLASS`` constants are class names, not ids.)
ALL_IDS = sorted(
    {
        v
        for k, v in vars(ids).items()
        if k.isupper() and isinstance(v, str) and not k.endswith("_CLASS")
    }
)
# Ids of the other pages (the station, "No patient"), and the link that only a monitor with a
# station to go back to has: the monitor of the one patient holds every other id.
OTHER_PAGES_IDS = {
    *ids.STATION_IDS.values(),
    ids.STATION_CONFIG,
    ids.NOT_FOUND,
    ids.BACK_LINK,
}
MONITOR_IDS = sorted(set(ALL_IDS) - OTHER_PAGES_IDS)
CONTRACT_IDS = [ids.WS, ids.TABLE, ids.CHART, ids.CURRENT_BPM, ids.CURRENT_TIME, ids.STATUS]


def _settings(**overrides: Any) -> Settings:
    return Settings.load(env={}).replace(**overrides)


def _by_id(layout: Any) -> dict[str, Any]:
    return {c.id: c for c in walk(layout) if getattr(c, "id", None)}


def _page(settings: Settings) -> Any:
    """The page at ``/`` as the app serves it (callback modules' extras included)."""
    return pages.site(create_app(settings)).home()


def test_every_id_once() -> None:
    """Every id of hrdash.ids but the other pages' (the contract ids, the internal ones, the
    Source panel's and the Session card's) appears exactly once in the one patient's monitor,
    and no element id appears twice."""
    assert set(CONTRACT_IDS) <= set(MONITOR_IDS)
    counts = Counter(c.id for c in walk(_page(_settings())) if getattr(c, "id", None))
    assert {i: counts[i] for i in MONITOR_IDS if counts[i] != 1} == {}
    assert {i: counts[i] for i in OTHER_PAGES_IDS if counts[i]} == {}
    assert [i for i, n in counts.items() if n > 1] == []


def test_websocket_is_direct_child_of_top_level() -> None:
    """The WebSocket component sits directly in the top-level layout (it closes on unmount) and
    has no url from the server: the browser resolves it (assets/hrdash.js, connect)."""
    layout = build_layout(_settings(), "/ws?overlap=1", ws_port=8765)
    sockets = [c for c in layout.children if isinstance(c, WebSocket)]
    assert len(sockets) == 1
    assert sockets[0].id == ids.WS
    assert getattr(sockets[0], "url", None) is None


def test_config_store_carries_settings_and_url() -> None:
    """The config store hands the page exactly the settings it runs on (window, order, staleness,
    the bridge URL the socket resolves, the chart's base y range) and the id of every element the
    clientside code writes to, each of which is in the page."""
    settings = _settings(window=7, order="newest-first", stale_after=3.5)
    layout = build_layout(settings, "ws://h:1/ws")
    found = _by_id(layout)
    data = found[ids.CONFIG].data
    assert data["window"] == 7
    assert data["order"] == "newest-first"
    assert data["stale_after"] == 3.5
    assert data["ws_url"] == "ws://h:1/ws"
    assert data["ws_port"] is None
    assert data["y_range"] == list(Y_RANGE) == found[ids.CHART].figure["layout"]["yaxis"]["range"]
    named = {
        "ws": ids.WS,
        "chart": ids.CHART,
        "status": ids.STATUS,
        "origin_alert": ids.ORIGIN_ALERT,
        "current_card": ids.CURRENT_CARD,
        "current_time": ids.CURRENT_TIME,
    }
    assert {key: data["ids"][key] for key in named} == named
    assert data["ids"]["source"] == ids.SOURCE_IDS
    handed = [v for k, v in data["ids"].items() if k != "source"]
    handed += list(data["ids"]["source"].values())
    assert [i for i in handed if i not in found] == []


@pytest.mark.parametrize(("order", "label"), [("newest-last", "last"), ("newest-first", "first")])
def test_order_and_window_reach_the_page(order: str, label: str) -> None:
    """HRDASH_ORDER and HRDASH_WINDOW reach the config store and the labels a person reads."""
    layout = build_layout(_settings(order=order, window=12), "ws://h:1/ws")
    found = _by_id(layout)
    assert found[ids.CONFIG].data["order"] == order
    assert found[ids.CONFIG].data["window"] == 12
    texts = [c for c in walk(layout) if isinstance(c, str)]
    texts += [c.children for c in walk(layout) if isinstance(getattr(c, "children", None), str)]
    assert f"Readings (newest {label})" in texts
    assert "Last 12 readings" in texts


def test_config_store_carries_the_allowed_origins() -> None:
    """The page learns the bridge's allowed origins, to say when they exclude its own."""
    data = _by_id(build_layout(_settings(port=9001), "/ws"))[ids.CONFIG].data
    assert data["allowed_origins"] == ["http://127.0.0.1:9001", "http://localhost:9001"]
    settings = _settings(allowed_origins=("https://hr.example.org:8443",))
    data = _by_id(build_layout(settings, "/ws"))[ids.CONFIG].data
    assert data["allowed_origins"] == ["https://hr.example.org:8443"]
    alert = _by_id(build_layout(settings, "/ws"))[ids.ORIGIN_ALERT]
    assert alert.hidden is True
    assert data["ids"]["origin_alert"] == ids.ORIGIN_ALERT


def test_table_options() -> None:
    """The grid uses string row ids, no row animation and auto height (all rows visible)."""
    grid = _by_id(build_layout(_settings(), "ws://h:1/ws"))[ids.TABLE]
    assert grid.getRowId == "params.data.id"  # a string expression, as dash-ag-grid requires
    assert grid.rowData == []
    assert grid.dashGridOptions["animateRows"] is False
    assert grid.dashGridOptions["domLayout"] == "autoHeight"
    assert grid.dashGridOptions["suppressPaginationPanel"] is True
    columns = [(c["field"], c["headerName"]) for c in grid.columnDefs]
    assert columns == [("time", "Time"), ("bpm", "BPM"), ("seq", "Seq")]
    time_column = grid.columnDefs[0]
    assert time_column["valueFormatter"] == {"function": "hrdashTime(params.value)"}
    assert all(c.get("sortable") is not True for c in grid.columnDefs)
    assert grid.defaultColDef["sortable"] is False  # the window's order is the page's


def test_chart_has_fixed_y_range_and_no_modebar() -> None:
    """The chart starts with a fixed y range, no mode bar and no animation."""
    graph = _by_id(build_layout(_settings(), "ws://h:1/ws"))[ids.CHART]
    assert graph.figure["layout"]["yaxis"]["range"] == [40, 160]
    assert graph.config["displayModeBar"] is False
    assert graph.animate is False


def test_source_name_in_header() -> None:
    """The header shows the display name of the source."""
    source = _by_id(build_layout(_settings(source_name="Ward 3"), "ws://h:1/ws"))[ids.SOURCE]
    assert source.children == "Ward 3"


def test_source_panel_is_a_closed_details_below_the_header() -> None:
    """The Source panel is a <details>, closed at first, the first thing in the main area; its
    summary names the source, and the browser learns every panel id from the config store."""
    layout = build_layout(_settings(source_name="Ward 3"), "ws://h:1/ws")
    found = _by_id(layout)
    details = found[ids.SOURCE_PANEL]
    assert isinstance(details, html.Details)
    assert not getattr(details, "open", None)
    main = next(c for c in layout.children if isinstance(c, html.Main))
    assert main.children[0] is details
    summary = details.children[0]
    assert isinstance(summary, html.Summary)
    assert found[ids.SOURCE_SUMMARY_NAME].children == "Ward 3"
    assert found[ids.CONFIG].data["ids"]["source"] == ids.SOURCE_IDS


def test_source_panel_raw_frames_are_text_blocks() -> None:
    """Raw upstream frames go into <pre> elements as string children (text, never HTML)."""
    found = _by_id(build_layout(_settings(), "ws://h:1/ws"))
    for element_id in (ids.SOURCE_LAST_FRAME, ids.SOURCE_REJ_FRAME):
        assert isinstance(found[element_id], html.Pre)
        assert found[element_id].children == ""
    assert isinstance(found[ids.SOURCE_REASONS], html.Tbody)


def test_source_panel_never_shows_the_raw_upstream_url() -> None:
    """Only the redacted display name reaches the page; the URL itself is not in the layout."""
    settings = _settings(upstream_url="ws://user:pw@example.org/hr?token=s3cret")
    text = json.dumps(build_layout(settings, "ws://h:1/ws"), cls=PlotlyJSONEncoder)
    assert "s3cret" not in text
    assert "user:pw" not in text
    assert "ws://***@example.org/hr?token=***" in text


@pytest.mark.parametrize(
    ("public", "expected"),
    [
        ("", ("/ws?overlap=1", 8765)),
        ("/ws", ("/ws?overlap=1", None)),
        ("/hr/ws?x=1", ("/hr/ws?x=1&overlap=1", None)),
        ("wss://bridge.example.org/ws", ("wss://bridge.example.org/ws?overlap=1", None)),
    ],
)
def test_page_ws_url(public: str, expected: tuple[str, int | None]) -> None:
    """The page is given HRDASH_PUBLIC_WS_URL as configured (a path stays a path, for the
    browser to resolve), or /ws with the bridge port; always with overlap=1."""
    assert page_ws_url(_settings(public_ws_url=public)) == expected


def test_register_all_registers_every_module_in_name_order() -> None:
    """register_all calls register() of every module of hrdash/callbacks (not those starting
    with _), in name order, and what each registers is in the app: the live path's clientside
    callbacks and the Session card's server callbacks."""
    found = sorted(
        f"hrdash.callbacks.{info.name}"
        for info in pkgutil.iter_modules(callbacks.__path__)
        if not info.name.startswith("_")
    )
    app = dash.Dash(__name__)
    names = callbacks.register_all(app, _settings())
    assert names == found
    assert {"hrdash.callbacks.live", "hrdash.callbacks.session"} <= set(names)
    outputs = " ".join(app.callback_map)
    assert f"{ids.STORE}.data" in outputs
    assert f"{ids.SESSION_SUMMARY}.children" in outputs
    assert f"{ids.SESSION_DOWNLOAD}.data" in outputs


def _config_served(app: Any, headers: dict[str, str]) -> dict[str, Any]:
    layout = routed(app.server.test_client(), "/", headers)["layout"]
    found = [c for c in _walk_json(layout) if c.get("props", {}).get("id") == ids.CONFIG]
    assert len(found) == 1
    return dict(found[0]["props"]["data"])


def _walk_json(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, list):
        return [c for item in node for c in _walk_json(item)]
    if not isinstance(node, dict):
        return []
    children = node.get("props", {}).get("children")
    return [node, *_walk_json(children)]


def test_app_serves_page_and_layout() -> None:
    """The app serves / and its layout (Dash pages' router), with the bridge's port for the
    browser to use."""
    app = create_app(_settings(bridge_port=9999))
    client = app.server.test_client()
    page = client.get("/", headers={"Host": "monitor.local:8050"})
    assert page.status_code == 200
    assert b"<title>hrdash</title>" in page.data
    config = _config_served(app, {"Host": "monitor.local:8050"})
    assert (config["ws_url"], config["ws_port"]) == ("/ws?patient=bed-01&overlap=1", 9999)


def test_served_ws_url_ignores_request_headers() -> None:
    """Behind a proxy the served URL stays the configured path, whatever Host and
    X-Forwarded-Proto say (a proxy's `Host $host` drops the port): the browser resolves it."""
    app = create_app(_settings(public_ws_url="/ws"))
    proxied = {"Host": "hr.example.org", "X-Forwarded-Proto": "https"}
    assert _config_served(app, proxied)["ws_url"] == "/ws?patient=bed-01&overlap=1"
    assert _config_served(app, {"Host": "other:1"}) == _config_served(app, proxied)


def test_no_python_callback_on_the_reading_path() -> None:
    """Everything triggered by the socket or the tick is clientside (no server request)."""
    app = create_app(_settings())
    triggered = [
        cb
        for cb in app._callback_list
        if any(dep["id"] in (ids.WS, ids.TICK) for dep in cb["inputs"])
    ]
    assert len(triggered) == 3
    assert all(cb.get("clientside_function") for cb in triggered)
    connect = [cb for cb in app._callback_list if cb["output"] == f"{ids.WS}.url"]
    assert len(connect) == 1 and connect[0].get("clientside_function")
    live = {ids.WS, ids.TICK, ids.STORE}
    server_side = [cb for cb in app.callback_map.values() if "callback" in cb]
    assert all(dep["id"] not in live for cb in server_side for dep in cb["inputs"])
