"""Peer (i): the classic Dash way. A background thread keeps the bridge's last 20 readings (it is
a bridge viewer, like a browser), and a ``dcc.Interval`` (``--interval-ms``, default 250: see
benchmarks/README.md for why) polls a server callback that renders the card, the table and the
chart in Python, and skips the update when nothing is new since this page's last render.

``python -m benchmarks.peers.interval_peer --port 8051 --bridge ws://127.0.0.1:8765/ws``
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import dash
from dash import Input, Output, State, dcc
from dash.exceptions import PreventUpdate
from websockets.asyncio.client import connect

from benchmarks.peers._common import body, merge, parse_args, render

INTERVAL_MS = 250


class Feed(threading.Thread):
    """Keeps the newest readings from a bridge viewer connection (reconnects forever)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True, name="bridge-feed")
        self.url = url
        self.lock = threading.Lock()
        self.rows: list[dict[str, Any]] = []
        self.run_id: str | None = None

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        async for ws in connect(self.url, compression=None, max_size=2**22):
            try:
                async for message in ws:
                    frame = json.loads(message)
                    if frame.get("type") != "readings":
                        continue
                    with self.lock:
                        self.rows = merge(list(self.rows), self.run_id, frame)
                        self.run_id = frame.get("run")
            except Exception:  # reconnect on any loss
                continue

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.rows)


def create(bridge_url: str, interval_ms: int = INTERVAL_MS) -> dash.Dash:
    feed = Feed(bridge_url)
    feed.start()
    app = dash.Dash(__name__, title="interval peer", update_title="")
    app.layout = body(
        dcc.Interval(id="peer-tick", interval=interval_ms),
        dcc.Store(id="peer-last", data=None),
    )

    @app.callback(
        Output("hr-current-bpm", "children"),
        Output("hr-current-time", "children"),
        Output("hr-table", "rowData"),
        Output("hr-chart", "figure"),
        Output("peer-last", "data"),
        Input("peer-tick", "n_intervals"),
        State("peer-last", "data"),
    )
    def tick(_n: int | None, last: Any) -> tuple[Any, ...]:
        rows = feed.snapshot()
        if not rows:
            raise PreventUpdate
        key = [feed.run_id, rows[-1]["seq"]]
        if key == last:
            raise PreventUpdate  # nothing new since this page's last render
        return (*render(rows), key)

    return app


if __name__ == "__main__":
    args = parse_args(
        __doc__ or "",
        lambda p: p.add_argument("--interval-ms", type=int, default=INTERVAL_MS),
    )
    create(args.bridge, args.interval_ms).run(host="127.0.0.1", port=args.port, debug=False)
