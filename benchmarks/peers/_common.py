"""What both peers share: the same element ids as hrdash (``hr-current-bpm``, ``hr-current-time``,
``hr-table``, ``hr-chart``), the same window (20 readings) and rendering done in Python."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import dash_ag_grid as dag
from dash import dcc, html

WINDOW = 20
Y_RANGE = [40, 160]


def clock(ms: int) -> str:
    """Unix ms → local ``HH:MM:SS.mmm`` (integer arithmetic: no float rounding of the ms)."""
    return dt.datetime.fromtimestamp(ms // 1000).strftime("%H:%M:%S") + f".{ms % 1000:03d}"


def plot_time(ms: int) -> str:
    """Unix ms → local ``YYYY-MM-DD HH:MM:SS.mmm`` (what Plotly reads as local wall time)."""
    day = dt.datetime.fromtimestamp(ms // 1000).strftime("%Y-%m-%d %H:%M:%S")
    return f"{day}.{ms % 1000:03d}"


def figure(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "x": [plot_time(r["time"]) for r in rows],
                "y": [r["bpm"] for r in rows],
                "line": {"color": "#c2410c", "width": 2},
                "marker": {"size": 5},
            }
        ],
        "layout": {
            "height": 320,
            "margin": {"l": 48, "r": 16, "t": 12, "b": 40},
            "showlegend": False,
            "xaxis": {"type": "date", "tickformat": "%H:%M:%S", "fixedrange": True},
            "yaxis": {"range": Y_RANGE, "autorange": False, "fixedrange": True},
        },
    }


def table_row(r: dict[str, Any]) -> dict[str, Any]:
    """One AG Grid row for reading ``r``."""
    return {"seq": r["seq"], "time": clock(r["time"]), "bpm": r["bpm"]}


def render(rows: list[dict[str, Any]]) -> tuple[str, str, list[dict[str, Any]], dict[str, Any]]:
    """(current bpm, current time, table rows, chart figure) for ``rows`` (oldest first)."""
    newest = rows[-1]
    table = [table_row(r) for r in rows]
    return str(newest["bpm"]), clock(newest["time"]), table, figure(rows)


def merge(rows: list[dict[str, Any]], run: str | None, frame: dict[str, Any]) -> list[dict]:
    """Rows of the window after ``frame`` (dedupe by seq; a new bridge run starts afresh)."""
    if frame.get("run") != run:
        rows = []
    seen = {r["seq"] for r in rows}
    for r in frame.get("readings") or []:
        if r["seq"] not in seen:
            seen.add(r["seq"])
            rows.append({"seq": r["seq"], "time": r["time"], "bpm": r["bpm"]})
    rows.sort(key=lambda r: r["seq"])
    return rows[-WINDOW:]


def body(*extra: Any) -> html.Div:
    """The page: the extra components (socket, stores, interval), card, chart, table."""
    return html.Div(
        [
            *extra,
            html.Div(
                id="hr-current-card",
                children=[
                    html.Span("\u2013", id="hr-current-bpm"),
                    html.Span(" bpm "),
                    html.Div("waiting", id="hr-current-time"),
                ],
            ),
            dcc.Graph(
                id="hr-chart",
                figure=figure([]),
                config={"displayModeBar": False},
                style={"height": "320px"},
            ),
            dag.AgGrid(
                id="hr-table",
                rowData=[],
                columnDefs=[
                    {"field": "time", "headerName": "Time"},
                    {"field": "bpm", "headerName": "BPM"},
                    {"field": "seq", "headerName": "Seq"},
                ],
                getRowId="params.data.seq.toString()",
                columnSize="sizeToFit",
                dashGridOptions={
                    "animateRows": False,
                    "domLayout": "autoHeight",
                    "suppressCellFocus": True,
                    "rowHeight": 32,
                },
            ),
        ]
    )


def parse_args(
    description: str, extra: Callable[[argparse.ArgumentParser], object] | None = None
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bridge", required=True, help="ws://127.0.0.1:PORT/ws of the bridge")
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    return args
