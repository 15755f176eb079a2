"""The station page (``/`` with more than one patient): a tile per patient and the alarms list.

Python builds the page once (the tile grid, one tile per patient, with the DOM contract of
DESIGN.md); ``assets/station.js`` fills it from the bridge's station feed (``/ws?station=1``),
writing the tiles directly to the DOM. Nothing on the station makes a Dash request per reading:
the callbacks registered here are clientside and have no outputs but the socket's url.

Tiles are plain links (``<a href="/patient/<id>">``, not ``dcc.Link``): ``dcc.Link`` cannot carry
the tile's ``data-*`` attributes, and a full page load gives the monitor a fresh page (its
socket, timers and per-tab state in ``assets/hrdash.js`` start clean, for the right patient).
A tile's ack button cannot sit inside the link (a button inside ``<a>`` is invalid HTML, and its
click would navigate): each tile is in a slot (``hr-tile-slot``), with the button beside it,
placed over the tile's corner by the CSS and shown by ``station.js`` while the tile's highest
alarm is active or latched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from dash import ClientsideFunction, Input, Output, State, dcc, html
from dash_extensions import WebSocket

from hrdash import ids
from hrdash.alarms import KIND_LABELS, MARKERS
from hrdash.hub import (
    SPARK_SECONDS,  # the sparkline: the bridge's first station frame holds this much
)
from hrdash.layout import PLACEHOLDER, TICK_MS, _attrs, audio_control, page_header
from hrdash.origins import canonical_origin
from hrdash.settings import Settings
from hrdash.wsurl import station_ws_url

if TYPE_CHECKING:
    import dash

    from hrdash.sources import Source

NAMESPACE = "hrdash"  # window.dash_clientside.hrdash (assets/station.js)
TITLE = "Station"
NO_ALARMS = "No active alarms"
ACK_TEXT = "Ack"  # an ack button's text (its label names the alarm it acknowledges)
INITIAL_STATE = "connecting"  # data-state of a tile before the first station frame
INITIAL_STATE_TEXT = "Connecting…"


def grid_shape(count: int) -> tuple[int, int]:
    """(columns, rows) of the tile grid for ``count`` patients: the smallest square-ish grid,
    ``ceil(sqrt(count))`` columns and as many rows as they need (1 → 1x1, 4 → 2x2, 16 → 4x4,
    17 → 5x4, 64 → 8x8). The grid fills the screen below the header, so tiles shrink as the
    count grows; at 16 on 1920x1080 every tile is visible without scrolling."""
    count = max(1, count)
    cols = math.ceil(math.sqrt(count))
    return cols, math.ceil(count / cols)


def tile(patient_id: str, name: str, href: str) -> html.A:
    """One patient's tile, as DESIGN.md has it: the only element with ``data-patient``."""
    return html.A(
        id=ids.tile(patient_id),
        className="hr-tile",
        href=href,
        children=[
            html.Div(
                className="hr-tile-head",
                children=[
                    html.Span(name, className="hr-tile-name"),
                    html.Span(INITIAL_STATE_TEXT, className="hr-tile-state"),
                ],
            ),
            html.Div(
                className="hr-tile-main",
                children=[
                    html.Span(PLACEHOLDER, className="hr-tile-bpm"),
                    html.Span("bpm", className="hr-tile-unit"),
                ],
            ),
            html.Div("", className="hr-tile-age"),
            html.Canvas(className="hr-tile-spark"),
        ],
        **_attrs({"data-patient": patient_id, "data-state": INITIAL_STATE, "data-alarm": "none"}),
    )


def slot(patient_id: str, name: str, href: str) -> html.Div:
    """The tile and its ack button (hidden until the tile's highest alarm is active or latched;
    ``station.js`` gives it the alarm's id), side by side in one grid cell."""
    return html.Div(
        className="hr-tile-slot",
        children=[
            tile(patient_id, name, href),
            html.Button(
                ACK_TEXT, className=ids.ACK_CLASS, type="button", hidden=True, disable_n_clicks=True
            ),
        ],
    )


def config(settings: Settings, patients: Sequence[Source]) -> dict[str, Any]:
    """What ``assets/station.js`` needs: the station feed's URL (resolved in the browser, as the
    monitor's), the origins the bridge accepts, staleness, the sparkline's span, the period of
    the page's clock, the patients and the element ids."""
    ws_url, ws_port = station_ws_url(settings)
    return {
        "ws_url": ws_url,
        "ws_port": ws_port,
        "allowed_origins": [canonical_origin(o) for o in settings.effective_origins],
        "stale_after": settings.stale_after,
        "spark_seconds": SPARK_SECONDS,
        "tick_ms": TICK_MS,  # the page's clock (a timer in station.js, not a Dash Interval)
        "patients": [{"id": p.id, "name": p.name} for p in patients],
        "ids": ids.STATION_IDS,
        "no_alarms": NO_ALARMS,  # the alarms list's text when it is empty
        "markers": MARKERS,  # the alarms list's priority markers (***, **, *)
        "kind_labels": KIND_LABELS,  # what the list and the ack buttons call each kind
        "ack_class": ids.ACK_CLASS,
        "ack_text": ACK_TEXT,
    }


def layout(
    settings: Settings, patients: Sequence[Source], monitor_href: Callable[[str], str]
) -> html.Div:
    """The station for ``patients`` (in station order); ``monitor_href(id)`` is a tile's link.

    The WebSocket is a direct child of the top-level Div, as on the monitor."""
    cols, rows = grid_shape(len(patients))
    header = page_header(
        ids.STATION_STATUS,
        titles=[
            html.Span(f"{TITLE} · {len(patients)} patients", className="hr-station-title"),
            html.Span(settings.display_source, className="hr-source"),
        ],
    )
    grid = html.Div(
        id=ids.STATION,
        className="hr-station-grid",
        style={"--hr-cols": str(cols), "--hr-rows": str(rows)},
        children=[slot(p.id, p.name, monitor_href(p.id)) for p in patients],
    )
    alarms = html.Aside(
        className="hr-card hr-station-side",
        children=[
            html.H2("Alarms", className="hr-card__label"),
            audio_control(),
            html.Div(
                "",
                id=ids.STATION_MESSAGE,
                className="hr-station-message",
                role="alert",
                hidden=True,
            ),
            html.Ul(
                id=ids.STATION_ALARMS,
                className="hr-station-alarms",
                children=[html.Li(NO_ALARMS, className="hr-station-alarms__empty")],
            ),
        ],
    )
    return html.Div(
        className="hr-app hr-station-page",
        children=[
            WebSocket(id=ids.STATION_WS),  # url: set in the browser (station_connect)
            dcc.Store(id=ids.STATION_CONFIG, data=config(settings, patients)),
            header,
            html.Main(className="hr-station-main", children=[grid, alarms]),
            html.Footer("Not a medical device.", className="hr-footer"),
        ],
    )


def register(app: dash.Dash) -> None:
    """The station's clientside callbacks (``assets/station.js``): the socket's url on page
    load; frames and socket states handled in the browser with no output (the functions write
    the tiles, the badge and the alarms list directly). The page's clock (ages, staleness, the
    socket's watchdog) is a timer inside station.js, started by ``station_connect``: no Dash
    Interval, so no round trip through Dash's renderer four times a second."""
    app.clientside_callback(
        ClientsideFunction(NAMESPACE, "station_connect"),
        Output(ids.STATION_WS, "url"),
        Input(ids.STATION_CONFIG, "data"),
    )
    app.clientside_callback(
        ClientsideFunction(NAMESPACE, "on_station_message"),
        Input(ids.STATION_WS, "message"),
        State(ids.STATION_CONFIG, "data"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        ClientsideFunction(NAMESPACE, "on_station_state"),
        Input(ids.STATION_WS, "state"),
        State(ids.STATION_CONFIG, "data"),
        prevent_initial_call=True,
    )
