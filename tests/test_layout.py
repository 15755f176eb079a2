"""The page: component tree, bridge URL derivation, callback registration, serving."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from dash import html
from dash_extensions import WebSocket
from plotly.utils import PlotlyJSONEncoder

from hrdash import callbacks, ids
from hrdash.layout import build_layout
from hrdash.settings import Settings
from hrdash.webapp import browser_ws_url, create_app

CONTRACT_IDS = [
    ids.WS,
    ids.TABLE,
    ids.CHART,
    ids.CURRENT_BPM,
    ids.CURRENT_TIME,
    ids.STATUS,
    ids.STORE,
    ids.CONFIG,
    ids.TICK,
    ids.STAT_MIN,
    ids.STAT_AVG,
    ids.STAT_MAX,
    ids.CURRENT_CARD,
    ids.SOURCE,
    *ids.SOURCE_IDS.values(),
]


def _walk(component: Any) -> list[Any]:
    found = [component]
    children = getattr(component, "children", None)
    if isinstance(children, list | tuple):
        for child in children:
            found.extend(_walk(child))
    elif children is not None and not isinstance(children, str | int | float):
        found.extend(_walk(children))
    return found


def _settings(**overrides: Any) -> Settings:
    return Settings.load(env={}).replace(**overrides)


def _by_id(layout: Any) -> dict[str, Any]:
    return {c.id: c for c in _walk(layout) if getattr(c, "id", None)}


def test_every_contract_id_once() -> None:
    """Every id of hrdash.ids appears exactly once in the page."""
    layout = build_layout(_settings(), "ws://127.0.0.1:8765/ws")
    counts = Counter(getattr(c, "id", None) for c in _walk(layout))
    for element_id in CONTRACT_IDS:
        assert counts[element_id] == 1, element_id


def test_websocket_is_direct_child_of_top_level() -> None:
    """The WebSocket component sits directly in the top-level layout (it closes on unmount)."""
    layout = build_layout(_settings(), "ws://example:8765/ws")
    sockets = [c for c in layout.children if isinstance(c, WebSocket)]
    assert len(sockets) == 1
    assert sockets[0].id == ids.WS
    assert sockets[0].url == "ws://example:8765/ws"


def test_config_store_carries_settings_and_url() -> None:
    """The config store hands window, order, staleness and the bridge URL to the browser."""
    layout = build_layout(_settings(window=7, order="newest-first", stale_after=3.5), "ws://h:1/ws")
    data = _by_id(layout)[ids.CONFIG].data
    assert data["window"] == 7
    assert data["order"] == "newest-first"
    assert data["stale_after"] == 3.5
    assert data["ws_url"] == "ws://h:1/ws"
    assert data["ids"]["ws"] == ids.WS


def test_table_options() -> None:
    """The grid uses string row ids, no row animation and auto height (all rows visible)."""
    grid = _by_id(build_layout(_settings(), "ws://h:1/ws"))[ids.TABLE]
    assert grid.getRowId == "params.data.id"
    assert grid.dashGridOptions["animateRows"] is False
    assert grid.dashGridOptions["domLayout"] == "autoHeight"
    assert [c["field"] for c in grid.columnDefs] == ["time", "bpm", "seq"]


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
    ("public", "host", "scheme", "expected"),
    [
        ("", "localhost:8050", "http", "ws://localhost:8765/ws"),
        ("", "192.168.1.5:8050", "http", "ws://192.168.1.5:8765/ws"),
        ("", "[::1]:8050", "http", "ws://[::1]:8765/ws"),
        ("", "example.org", "https", "ws://example.org:8765/ws"),
        ("/ws", "example.org", "https", "wss://example.org/ws"),
        ("/hr/ws", "example.org:8080", "http", "ws://example.org:8080/hr/ws"),
        ("wss://bridge.example.org/ws", "anything:1", "http", "wss://bridge.example.org/ws"),
    ],
)
def test_browser_ws_url(public: str, host: str, scheme: str, expected: str) -> None:
    """The browser's bridge URL follows HRDASH_PUBLIC_WS_URL, else the page's host name."""
    assert browser_ws_url(_settings(public_ws_url=public), host, scheme) == expected


def test_register_all_finds_live() -> None:
    """register_all calls register() of every callback module, live.py included."""
    app = create_app(_settings())
    names = callbacks.register_all(app.__class__(__name__), _settings())
    assert "hrdash.callbacks.live" in names


def test_app_serves_page_and_layout() -> None:
    """The app serves / and /_dash-layout, with the bridge URL derived from the request host."""
    app = create_app(_settings(bridge_port=9999))
    client = app.server.test_client()
    page = client.get("/", headers={"Host": "monitor.local:8050"})
    assert page.status_code == 200
    assert b"<title>hrdash</title>" in page.data
    layout = client.get("/_dash-layout", headers={"Host": "monitor.local:8050"})
    assert layout.status_code == 200
    assert "ws://monitor.local:9999/ws" in json.dumps(layout.get_json())


def test_layout_uses_forwarded_proto() -> None:
    """Behind a TLS proxy (X-Forwarded-Proto: https) a path URL becomes wss://."""
    app = create_app(_settings(public_ws_url="/ws"))
    client = app.server.test_client()
    layout = client.get(
        "/_dash-layout", headers={"Host": "hr.example.org", "X-Forwarded-Proto": "https"}
    )
    assert "wss://hr.example.org/ws" in json.dumps(layout.get_json())


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
    live = {ids.WS, ids.TICK, ids.STORE}
    server_side = [cb for cb in app.callback_map.values() if "callback" in cb]
    assert all(dep["id"] not in live for cb in server_side for dep in cb["inputs"])
