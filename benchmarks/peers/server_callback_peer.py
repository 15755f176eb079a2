"""Peer (ii): dash-extensions' ``WebSocket`` connected to the bridge from the browser, and a
server-side Python callback on every ``message`` (one HTTP request per frame and viewer) that
merges the frame into a ``dcc.Store`` window and updates the card, the table and the chart.

It has the same repair as hrdash, done in Python: it asks for ``?overlap=1`` (each live frame
repeats the previous readings), takes ``first_seq``/``last_seq`` from every readings and status
frame, and when the window has a hole (Dash hands a page only the last of several messages that
arrive within one render, e.g. the snapshot on connect followed by a status frame) it sends
``{"type": "resend", "since": N, "run": R}`` through the socket's ``send`` prop, at most once a
second. Updates are incremental when the new readings only append to the window: a ``Patch`` of
the grid's ``rowData`` (append + delete the oldest) and the chart's ``extendData``; anything
else (a fill in the middle, a new bridge run) re-sends the whole ``rowData`` and figure.
Not copied from hrdash: no reconnect (dash-extensions does not reconnect; the benchmark does
not restart the bridge), no staleness badge.

``python -m benchmarks.peers.server_callback_peer --port 8052 --bridge ws://127.0.0.1:8765/ws``
"""

from __future__ import annotations

import json
import time
from typing import Any

import dash
from dash import Input, Output, Patch, State, dcc, no_update
from dash.exceptions import PreventUpdate
from dash_extensions import WebSocket

from benchmarks.peers._common import (
    WINDOW,
    body,
    clock,
    figure,
    merge,
    parse_args,
    plot_time,
    table_row,
)

RESEND_EVERY_S = 1.0


def first_hole(rows: list[dict[str, Any]], first_seq: Any, last_seq: Any) -> int | None:
    """The first seq the window should hold but does not, or None when it is whole."""
    if not isinstance(last_seq, int):
        return None
    lo = last_seq - WINDOW + 1
    if isinstance(first_seq, int):
        lo = max(lo, first_seq)
    have = {r["seq"] for r in rows}
    return next((s for s in range(lo, last_seq + 1) if s not in have), None)


def create(bridge_url: str) -> dash.Dash:
    app = dash.Dash(__name__, title="server-callback peer", update_title="")
    url = bridge_url + ("&" if "?" in bridge_url else "?") + "overlap=1"
    app.layout = body(WebSocket(id="hr-ws", url=url), dcc.Store(id="peer-store", data=None))

    @app.callback(
        Output("hr-current-bpm", "children"),
        Output("hr-current-time", "children"),
        Output("hr-table", "rowData"),
        Output("hr-chart", "extendData"),
        Output("hr-chart", "figure"),
        Output("peer-store", "data"),
        Output("hr-ws", "send"),
        Input("hr-ws", "message"),
        State("peer-store", "data"),
        prevent_initial_call=True,
    )
    def on_message(message: Any, store: Any) -> tuple[Any, ...]:
        if not message or not isinstance(message.get("data"), str):
            raise PreventUpdate
        frame = json.loads(message["data"])
        kind = frame.get("type")
        if kind not in ("readings", "status"):
            raise PreventUpdate
        store = store or {"run": None, "rows": [], "first": None, "last": None, "resent": 0}
        before = store["rows"]
        run = frame.get("run", store["run"])
        if run != store["run"]:
            store = {**store, "run": run, "rows": [], "first": None, "last": None}
        rows = merge(list(store["rows"]), run, frame) if kind == "readings" else store["rows"]
        first = frame.get("first_seq", store["first"])
        last = store["last"]
        frame_last = frame.get("last_seq")
        if isinstance(frame_last, int) and (last is None or frame_last > last):
            last = frame_last
        send: Any = no_update
        hole = first_hole(rows, first, last)
        now = time.time()
        resent = store["resent"]
        if hole is not None and now - resent >= RESEND_EVERY_S:
            send = json.dumps({"type": "resend", "since": hole - 1, "run": run})
            resent = now
        new_store = {"run": run, "rows": rows, "first": first, "last": last, "resent": resent}
        if rows == before or not rows:
            return (no_update,) * 5 + (new_store, send)
        newest = rows[-1]
        before_seqs = {r["seq"] for r in before}
        added = [r for r in rows if r["seq"] not in before_seqs]
        append_only = bool(before) and all(r["seq"] > before[-1]["seq"] for r in added)
        table: Any
        extend: Any
        if append_only:
            dropped = len(before) + len(added) - len(rows)
            table = Patch()
            for r in added:
                table.append(table_row(r))
            for _ in range(dropped):
                del table[0]
            extend = (
                {"x": [[plot_time(r["time"]) for r in added]], "y": [[r["bpm"] for r in added]]},
                [0],
                WINDOW,
            )
            fig: Any = no_update
        else:
            table = [table_row(r) for r in rows]
            extend = no_update
            fig = figure(rows)
        return (str(newest["bpm"]), clock(newest["time"]), table, extend, fig, new_store, send)

    return app


if __name__ == "__main__":
    args = parse_args(__doc__ or "")
    create(args.bridge).run(host="127.0.0.1", port=args.port, debug=False)
