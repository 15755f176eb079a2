"""The live path: socket frames → window → table, chart, cards, badge. All clientside.

The functions live in ``assets/hrdash.js`` under ``window.dash_clientside.hrdash``; this module only
wires them. None of these callbacks makes a request to the Dash server, so readings cost the
server nothing however many viewers are open.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dash import ClientsideFunction, Input, Output, State

from hrdash import ids

if TYPE_CHECKING:
    import dash

    from hrdash.settings import Settings

NAMESPACE = "hrdash"


def register(app: dash.Dash, settings: Settings) -> None:
    """Register the clientside callbacks of the live page on ``app``."""
    # Page load: the socket's url, resolved against the page's own location (a relative
    # HRDASH_PUBLIC_WS_URL keeps the scheme, host and port the browser used, behind any proxy).
    app.clientside_callback(
        ClientsideFunction(NAMESPACE, "connect"),
        Output(ids.WS, "url"),
        Input(ids.CONFIG, "data"),
    )
    # One frame from the bridge: update the window and everything drawn from it in one go, and ask
    # the bridge to resend when the window has a hole (coalesced frames).
    app.clientside_callback(
        ClientsideFunction(NAMESPACE, "on_message"),
        Output(ids.STORE, "data"),
        Output(ids.TABLE, "rowData"),
        Output(ids.CHART, "extendData"),
        Output(ids.CHART, "figure"),
        Output(ids.CURRENT_BPM, "children"),
        Output(ids.CURRENT_TIME, "children"),
        Output(ids.STAT_MIN, "children"),
        Output(ids.STAT_AVG, "children"),
        Output(ids.STAT_MAX, "children"),
        Output(ids.WS, "send"),
        Input(ids.WS, "message"),
        State(ids.STORE, "data"),
        State(ids.CONFIG, "data"),
        prevent_initial_call=True,
    )
    # Socket opened/closed: reconnect with backoff (dash-extensions does not reconnect by itself).
    app.clientside_callback(
        ClientsideFunction(NAMESPACE, "on_state"),
        Input(ids.WS, "state"),
        State(ids.STORE, "data"),
        State(ids.CONFIG, "data"),
        prevent_initial_call=True,
    )
    # Four times a second: badge, staleness of the current value, watchdog on a silent socket.
    app.clientside_callback(
        ClientsideFunction(NAMESPACE, "on_tick"),
        Output(ids.STATUS, "children"),
        Output(ids.STATUS, "className"),
        Output(ids.CURRENT_CARD, "className"),
        Output(ids.CURRENT_TIME, "children", allow_duplicate=True),
        Input(ids.TICK, "n_intervals"),
        State(ids.WS, "state"),
        State(ids.STORE, "data"),
        State(ids.CONFIG, "data"),
        prevent_initial_call=True,
    )
