"""Peer (ii): dash-extensions' ``WebSocket`` connected to the bridge from the browser, with a
server-side Python callback on every ``message`` that merges the frame into a ``dcc.Store``
window and renders the card, the table and the chart (one HTTP request per frame and viewer).
No gap fill: frames Dash coalesces are simply lost, as in a straightforward implementation.

``python -m benchmarks.peers.server_callback_peer --port 8052 --bridge ws://127.0.0.1:8765/ws``
"""

from __future__ import annotations

import json
from typing import Any

import dash
from dash import Input, Output, State, dcc
from dash.exceptions import PreventUpdate
from dash_extensions import WebSocket

from benchmarks.peers._common import body, merge, parse_args, render


def create(bridge_url: str) -> dash.Dash:
    app = dash.Dash(__name__, title="server-callback peer", update_title="")
    app.layout = body(WebSocket(id="hr-ws", url=bridge_url), dcc.Store(id="peer-store", data=None))

    @app.callback(
        Output("hr-current-bpm", "children"),
        Output("hr-current-time", "children"),
        Output("hr-table", "rowData"),
        Output("hr-chart", "figure"),
        Output("peer-store", "data"),
        Input("hr-ws", "message"),
        State("peer-store", "data"),
        prevent_initial_call=True,
    )
    def on_message(message: Any, store: Any) -> tuple[Any, ...]:
        if not message or not isinstance(message.get("data"), str):
            raise PreventUpdate
        frame = json.loads(message["data"])
        if frame.get("type") != "readings" or not frame.get("readings"):
            raise PreventUpdate  # status/heartbeat frames: still one request each
        store = store or {"run": None, "rows": []}
        rows = merge(list(store["rows"]), store["run"], frame)
        return (*render(rows), {"run": frame.get("run"), "rows": rows})

    return app


if __name__ == "__main__":
    args = parse_args(__doc__ or "")
    create(args.bridge).run(host="127.0.0.1", port=args.port, debug=False)
