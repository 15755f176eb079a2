"""The Trend card of the monitor: the patient's stored history over 1 h, 8 h, 24 h or a custom
range, drawn as a min-max band with the mean line, and the raw readings once zoomed in far enough.

Python builds the card once (:func:`card`, placed by :mod:`hrdash.pages.patient` below the live
chart) and registers one clientside callback; everything else runs in ``assets/trend.js``. The
page asks the Dash server's history routes for JSON itself (``fetch``, relative to the app's
URL prefix, which the page config carries) and draws with ``Plotly.react`` on the graph's div:
no Dash callback runs per update, the figure never travels through Dash's renderer, and the
zoom events come from the same div. Python's part is the figure's base layout and the constants
(:func:`config`), handed to the page in the trend config store, so each is defined once.

The trend moves on while it is watched: every :data:`REFRESH_MS` the page asks for the range
from the start of its last bucket to now, at the same bucket width, replaces that bucket and
appends the new ones. Zooming in (a drag on the chart) asks for the zoomed range with
``raw=1``: the readings themselves are drawn when the route returns them (at most
:data:`hrdash.trends.MAX_POINTS`), else the narrower buckets; a double click goes back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dash import ClientsideFunction, Input, Output, State, dcc, html

from hrdash import history, ids, store, trends
from hrdash.layout import _attrs

if TYPE_CHECKING:
    import dash

    from hrdash.settings import Settings

NAMESPACE = "hrdash"  # window.dash_clientside.hrdash (assets/trend.js)
# The ranges of the buttons: the route's ``range=`` names (each ends at the server's now).
RANGES = history.RANGES_MS
RANGE_LABELS = {"1h": "1 h", "8h": "8 h", "24h": "24 h"}
DEFAULT_RANGE = "1h"
REFRESH_MS = 10_000  # the trend moves on this often while it is watched (one small request)
HEIGHT_PX = 300
LOADING = "Loading the trend…"
# Said after what is drawn when nothing is recorded (the routes answer from the bridge's buffer).
MEMORY_NOTE = "History is off (HRDASH_DB=:memory:): only what the bridge still holds"
TIME_FORMAT = "YYYY-MM-DD HH:MM"  # the custom range's fields, local time


def base_layout() -> dict[str, Any]:
    """The figure's layout without data or colours: assets/trend.js adds the ranges and the
    theme's colours (read from the card's CSS) on every draw. The x axis zooms (drag), the y
    axis does not."""
    return {
        "autosize": True,
        "height": HEIGHT_PX,
        "margin": {"l": 48, "r": 16, "t": 8, "b": 36},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "showlegend": False,
        "hovermode": "closest",
        "dragmode": "zoom",
        "bargap": 0,
        "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif"},
        "xaxis": {
            "type": "date",
            "fixedrange": False,
            "showgrid": False,
            "ticks": "outside",
            "hoverformat": "%H:%M:%S",
        },
        "yaxis": {
            "title": {"text": "bpm"},
            "autorange": False,
            "fixedrange": True,
            "zeroline": False,
            "dtick": 20,
        },
    }


def initial_figure() -> dict[str, Any]:
    """The empty figure dcc.Graph draws first, without axes (an empty date axis would show
    arbitrary dates); the page replaces it once the trend arrives."""
    layout = base_layout()
    layout["xaxis"]["visible"] = False
    layout["yaxis"]["visible"] = False
    return {"data": [], "layout": layout}


def config(settings: Settings) -> dict[str, Any]:
    """The trend config store's data: what assets/trend.js needs besides the page config
    (patient, URL prefix, y range)."""
    return {
        "ranges": RANGES,
        "default_range": DEFAULT_RANGE,
        "refresh_ms": REFRESH_MS,
        "max_points": trends.MAX_POINTS,
        # Raw readings further apart than this are drawn with a gap between them: the monitor
        # would have shown the value as stale there.
        "raw_gap_ms": round(settings.stale_after * 1000),
        "layout": base_layout(),
        "loading": LOADING,
        "time_format": TIME_FORMAT,
        "note": MEMORY_NOTE if settings.db == store.MEMORY else "",
        "ids": ids.TREND_IDS,
    }


def _range_button(name: str) -> html.Button:
    return html.Button(
        RANGE_LABELS[name],
        className="hr-trend__range",
        type="button",
        **_attrs({"data-range": name, "aria-pressed": str(name == DEFAULT_RANGE).lower()}),
    )


def card(settings: Settings) -> html.Section:
    """The Trend card: header (ranges, custom range), the chart, a status line and the export
    links (their hrefs are set by the page to the shown range)."""
    ranges = html.Div(
        id=ids.TREND_RANGES,
        className="hr-trend__ranges",
        role="group",
        children=[_range_button(name) for name in RANGES],
        **_attrs({"aria-label": "Trend range"}),
    )
    custom = html.Div(
        className="hr-trend__custom",
        children=[
            html.Label(
                [html.Span("From", className="hr-trend__field"), _time_input(ids.TREND_FROM)],
            ),
            html.Label([html.Span("to", className="hr-trend__field"), _time_input(ids.TREND_TO)]),
            html.Button("Show", id=ids.TREND_SHOW, className="hr-button", type="button"),
        ],
    )
    exports = html.Div(
        className="hr-trend__exports",
        children=[
            html.Span("Export", className="hr-trend__field"),
            _export_link("Readings CSV", ids.TREND_READINGS_CSV),
            _export_link("Trend CSV", ids.TREND_TREND_CSV),
        ],
    )
    return html.Section(
        id=ids.TREND_CARD,
        className="hr-card hr-trend",
        children=[
            dcc.Store(id=ids.TREND_CONFIG, data=config(settings)),
            html.Div(
                className="hr-trend__head",
                children=[html.H2("Trend", className="hr-card__label"), ranges, custom],
            ),
            dcc.Graph(
                id=ids.TREND,
                figure=initial_figure(),
                config={"displayModeBar": False, "responsive": True, "doubleClick": "autosize"},
                animate=False,
                style={"height": f"{HEIGHT_PX}px"},
            ),
            html.Div(
                className="hr-trend__foot",
                children=[
                    html.Div(
                        LOADING,
                        id=ids.TREND_STATUS,
                        className="hr-trend__status",
                        role="status",
                        **_attrs({"aria-live": "polite"}),
                    ),
                    exports,
                ],
            ),
        ],
        **_attrs({"data-range": DEFAULT_RANGE, "data-mode": "", "data-drawn": "0"}),
    )


def _time_input(element_id: str) -> dcc.Input:
    # dcc.Input has no datetime-local type: local time as text, filled in with the shown range.
    return dcc.Input(
        id=element_id,
        type="text",
        placeholder=TIME_FORMAT,
        className="hr-trend__time",
        spellCheck=False,
        autoComplete="off",
        size="16",
    )


def _export_link(text: str, element_id: str) -> html.A:
    # No href until assets/trend.js sets the shown range's; `download` keeps the page where it is.
    return html.A(text, id=element_id, className="hr-trend__export", download="")


def register(app: dash.Dash, settings: Settings) -> None:
    """The trend starts (or restarts, for this page's patient) when its config store mounts.
    The output is never written (no_update): Dash makes the initial call of a callback only when
    it has one."""
    app.clientside_callback(
        ClientsideFunction(NAMESPACE, "trend_start"),
        Output(ids.TREND_STATUS, "title"),
        Input(ids.TREND_CONFIG, "data"),
        State(ids.CONFIG, "data"),
    )
