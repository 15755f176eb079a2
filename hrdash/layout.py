"""The page's component tree, as a pure function of the settings and the bridge URL.

Nothing here talks to the network or reads a request: :func:`hrdash.webapp.create_app` derives the
URL per request and calls :func:`build_layout`. The live values are filled in by the clientside
functions in ``assets/hrdash.js``; the ids come from :mod:`hrdash.ids`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import dash_ag_grid as dag
from dash import dcc, html
from dash_extensions import WebSocket

from hrdash import ids
from hrdash.alarms import AUDIO_PAUSE_MAX
from hrdash.origins import canonical_origin
from hrdash.settings import Settings

# The chart's y axis stays on this range (bpm) unless a reading in the window falls outside it;
# then it widens to the next multiple of 10 around that reading, and narrows back once it leaves.
Y_RANGE = (40, 160)
TICK_MS = 250  # period of the clientside staleness check (no server requests)
CHART_HEIGHT_PX = 320
LINE_COLOUR = "#c2410c"
PLACEHOLDER = "\u2013"  # en dash: "no value yet"


def initial_figure(settings: Settings) -> dict[str, Any]:
    """The empty line chart: one trace, x = local time, y = bpm, fixed y range, no animation."""
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "x": [],
                "y": [],
                "line": {"color": LINE_COLOUR, "width": 2, "shape": "linear"},
                "marker": {"color": LINE_COLOUR, "size": 5},
                "hovertemplate": "%{x|%H:%M:%S.%L}<br><b>%{y} bpm</b><extra></extra>",
                "cliponaxis": False,
            }
        ],
        "layout": {
            "autosize": True,
            "height": CHART_HEIGHT_PX,
            "margin": {"l": 48, "r": 16, "t": 12, "b": 40},
            "paper_bgcolor": "rgba(0,0,0,0)",
            "plot_bgcolor": "rgba(0,0,0,0)",
            "showlegend": False,
            "hovermode": "closest",
            "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif"},
            "xaxis": {
                "type": "date",
                "tickformat": "%H:%M:%S",
                "fixedrange": True,
                "showgrid": False,
                "linecolor": "#cbd5e1",
                "ticks": "outside",
                "tickcolor": "#cbd5e1",
            },
            "yaxis": {
                "title": {"text": "bpm"},
                "range": list(Y_RANGE),
                "autorange": False,
                "fixedrange": True,
                "gridcolor": "#e2e8f0",
                "zeroline": False,
                "dtick": 20,
            },
        },
    }


def _column_defs() -> list[dict[str, Any]]:
    return [
        {
            "field": "time",
            "headerName": "Time",
            "valueFormatter": {"function": "hrdashTime(params.value)"},
            "cellClass": "hr-num",
            "flex": 2,
            "minWidth": 120,
        },
        {
            "field": "bpm",
            "headerName": "BPM",
            "type": "rightAligned",
            "cellClass": "hr-num hr-bpm-cell ag-right-aligned-cell",
            "flex": 1,
            "minWidth": 70,
        },
        {
            "field": "seq",
            "headerName": "Seq",
            "type": "rightAligned",
            "cellClass": "hr-num hr-seq-cell ag-right-aligned-cell",
            "flex": 1,
            "minWidth": 70,
        },
    ]


def _attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """``aria-*``/``data-*`` attributes, which Dash accepts as keyword arguments."""
    return attrs


def _stat(label: str, value_id: str) -> html.Div:
    return html.Div(
        className="hr-stat",
        children=[
            html.Div(label, className="hr-stat__label"),
            html.Div(PLACEHOLDER, id=value_id, className="hr-stat__value"),
        ],
    )


def _field(label: str, value_id: str, mono: bool = False) -> list[Any]:
    """One ``<dt>``/``<dd>`` pair of a definition list; the value is filled in clientside."""
    return [
        html.Dt(label, className="hr-dl__label"),
        html.Dd(PLACEHOLDER, id=value_id, className="hr-dl__value" + (" hr-mono" if mono else "")),
    ]


def _section(title: str, *children: Any, wide: bool = False) -> html.Section:
    return html.Section(
        className="hr-panel__section" + (" hr-panel__section--wide" if wide else ""),
        children=[html.H2(title, className="hr-panel__heading"), *children],
    )


def source_panel(settings: Settings) -> html.Details:
    """The collapsible Source panel: where the readings come from and how they are read.

    Everything in it is filled by ``assets/source_panel.js`` from the bridge's status frames (the
    summary line always, the body only while the panel is open, from the ``source_detail`` the
    bridge adds once the page asks for it, with the history's recorder in one line). Upstream
    text is only ever set as text children (``html.Pre`` strings), never as HTML. The service
    URL shown is the bridge's redacted one.
    """
    summary = html.Summary(
        className="hr-panel__summary",
        children=[
            html.Span("Source", className="hr-panel__title"),
            html.Span(" — ", className="hr-panel__sep", **_attrs({"aria-hidden": "true"})),
            html.Span(
                settings.display_source, id=ids.SOURCE_SUMMARY_NAME, className="hr-panel__name"
            ),
            html.Span(" · ", className="hr-panel__sep", **_attrs({"aria-hidden": "true"})),
            html.Span(
                "connecting", id=ids.SOURCE_SUMMARY_STATE, className="hr-state hr-state--connecting"
            ),
            html.Span("", id=ids.SOURCE_SUMMARY_COUNTS, className="hr-panel__counts"),
        ],
    )
    connection = _section(
        "Connection",
        html.Dl(
            className="hr-dl",
            children=[
                *_field("Service", ids.SOURCE_URL, mono=True),
                *_field("State", ids.SOURCE_STATE),
                *_field("Since", ids.SOURCE_SINCE),
                *_field("Detail", ids.SOURCE_DETAIL),
            ],
        ),
    )
    frames = _section(
        "Frames",
        html.Dl(
            className="hr-dl hr-dl--numbers",
            children=[
                *_field("Received", ids.SOURCE_FRAMES),
                *_field("Accepted", ids.SOURCE_ACCEPTED),
                *_field("Rejected", ids.SOURCE_REJECTED),
            ],
        ),
        html.Table(
            className="hr-reasons",
            children=[
                html.Thead(html.Tr([html.Th("Rejected because"), html.Th("Count")])),
                html.Tbody(id=ids.SOURCE_REASONS, children=[]),
            ],
        ),
    )
    mapping = _section(
        "Mapping",
        html.Dl(
            className="hr-dl",
            children=[
                *_field("Value", ids.SOURCE_MAP_VALUE, mono=True),
                *_field("Time", ids.SOURCE_MAP_TIME, mono=True),
                *_field("Chosen", ids.SOURCE_MAP_ORIGIN),
                *_field("Transform", ids.SOURCE_MAP_TRANSFORM, mono=True),
            ],
        ),
    )
    last_frame = _section(
        "Last frame",
        html.Div(PLACEHOLDER, id=ids.SOURCE_LAST_FRAME_AT, className="hr-panel__meta"),
        html.Pre("", id=ids.SOURCE_LAST_FRAME, className="hr-raw"),
        wide=True,
    )
    last_rejection = _section(
        "Last rejection",
        html.Dl(
            className="hr-dl",
            children=[
                *_field("Reason", ids.SOURCE_REJ_REASON, mono=True),
                *_field("Detail", ids.SOURCE_REJ_DETAIL),
                *_field("When", ids.SOURCE_REJ_AT),
            ],
        ),
        html.Pre("", id=ids.SOURCE_REJ_FRAME, className="hr-raw hr-raw--rejected"),
        wide=True,
    )
    history = _section(
        "History",
        html.Div(PLACEHOLDER, id=ids.SOURCE_HISTORY, className="hr-panel__meta"),
        wide=True,
    )
    return html.Details(
        id=ids.SOURCE_PANEL,
        className="hr-card hr-panel",
        disable_n_clicks=True,
        children=[
            summary,
            html.Div(
                className="hr-panel__body",
                children=[connection, frames, mapping, history, last_frame, last_rejection],
            ),
        ],
    )


AUDIO_TEXT = {  # the sound control's states (assets/alarm_sound.js writes them)
    "off": "Alarm sound is off \u2014 click to enable",
    "on": "Sound on",
    "unsupported": "Alarm sound is not available in this browser",
    "paused": "Audio paused",  # + " 1:43"
    "not_sent": "Not connected: the audio pause was not sent",
}


def audio_control() -> html.Div:
    """The sound control ``hr-audio`` (the same on every page; ``assets/alarm_sound.js`` drives
    it): the prompt that enables the sound (browsers allow audio only after a click), which
    then says the sound is on; the button that pauses the audio for the longest pause
    (:data:`hrdash.alarms.AUDIO_PAUSE_MAX`), sent on the page's socket by the sender its client
    registers; the pause's countdown (hidden when none runs); a line for a refused pause.
    The ids, texts and the pause length reach the script in ``data-config``."""
    seconds = int(AUDIO_PAUSE_MAX)
    minutes = f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"
    config = {
        "ids": {
            "enable": ids.AUDIO_ENABLE,
            "pause": ids.AUDIO_PAUSE,
            "countdown": ids.AUDIO_COUNTDOWN,
            "message": ids.AUDIO_MESSAGE,
        },
        "text": AUDIO_TEXT,
        "pause_seconds": seconds,
    }
    return html.Div(
        id=ids.AUDIO,
        className="hr-audio",
        children=[
            html.Button(
                AUDIO_TEXT["off"],
                id=ids.AUDIO_ENABLE,
                className="hr-audio__enable",
                type="button",
                disable_n_clicks=True,
            ),
            html.Div(
                className="hr-audio__row",
                children=[
                    html.Button(
                        f"Pause audio {minutes}",
                        id=ids.AUDIO_PAUSE,
                        className="hr-audio__pause",
                        type="button",
                        disable_n_clicks=True,
                    ),
                    html.Span(
                        "",
                        id=ids.AUDIO_COUNTDOWN,
                        className="hr-audio__countdown",
                        role="timer",
                        hidden=True,
                    ),
                ],
            ),
            html.Div(
                "", id=ids.AUDIO_MESSAGE, className="hr-audio__message", role="alert", hidden=True
            ),
        ],
        **_attrs({"data-sound": "off", "data-sounding": "none", "data-config": json.dumps(config)}),
    )


def page_header(
    badge_id: str, *, lead: Sequence[Any] = (), titles: Sequence[Any] = ()
) -> html.Header:
    """The header every page shares: ``lead`` (e.g. a link back), the brand, ``titles`` (what
    the page shows) and the connection badge ``badge_id``, connecting until the socket opens."""
    brand = [
        *lead,
        html.Span("♥", className="hr-brand__mark", **_attrs({"aria-hidden": "true"})),
        html.H1("hrdash", className="hr-brand__title"),
        *titles,
    ]
    return html.Header(
        className="hr-header",
        children=[
            html.Div(className="hr-brand", children=brand),
            html.Span(
                "Connecting…",
                id=badge_id,
                className="hr-badge hr-badge--connecting",
                role="status",
                **_attrs({"aria-live": "polite"}),
            ),
        ],
    )


def build_layout(
    settings: Settings,
    ws_url: str,
    extras: Sequence[Any] = (),
    *,
    ws_port: int | None = None,
    patient: tuple[str, str] | None = None,
    back_href: str | None = None,
    prefix: str = "/",
    sections: Sequence[Any] = (),
) -> html.Div:
    """The whole page for ``settings``, with the browser connecting to ``ws_url``.

    ``patient`` (id, name): whose monitor this is; the name is shown in the header and the id is
    in the config store (``patient``). ``back_href``: where the "← Station" link in the header
    leads (no link without it). ``prefix``: the app's URL prefix (requests_pathname_prefix), in
    the config store for the page's own requests to the Dash server. ``sections``: cards
    placed below the chart, full width (the trend).

    ``ws_url`` may be relative (``/ws``): the browser resolves it against the page's own
    location, on port ``ws_port`` of the page's host name when that is given (see
    :func:`hrdash.wsurl.page_ws_url`); the WebSocket gets its ``url`` from the clientside
    ``connect`` callback. The WebSocket component is a direct child of the returned top-level
    Div: it closes its socket when unmounted, so it must never sit inside something that
    re-renders.
    """
    config = {
        "window": settings.window,
        "order": settings.order,
        "stale_after": settings.stale_after,
        "ws_url": ws_url,
        "ws_port": ws_port,
        "patient": patient[0] if patient else None,
        "prefix": prefix,
        # The page compares its own origin with these to say why the bridge refuses it.
        "allowed_origins": [canonical_origin(o) for o in settings.effective_origins],
        "y_range": list(Y_RANGE),
        # The clientside code addresses components through these, never through literals.
        "ids": {
            "ws": ids.WS,
            "chart": ids.CHART,
            "table": ids.TABLE,
            "status": ids.STATUS,
            "origin_alert": ids.ORIGIN_ALERT,
            "current_card": ids.CURRENT_CARD,
            "current_bpm": ids.CURRENT_BPM,
            "current_time": ids.CURRENT_TIME,
            "source": ids.SOURCE_IDS,
        },
    }
    back = [html.A("← Station", href=back_href, id=ids.BACK_LINK, className="hr-back")]
    name = [html.Span(patient[1], id=ids.PATIENT_NAME, className="hr-patient")] if patient else []
    header = page_header(
        ids.STATUS,
        lead=back if back_href else [],
        titles=[*name, html.Span(settings.display_source, id=ids.SOURCE, className="hr-source")],
    )
    current = html.Div(
        id=ids.CURRENT_CARD,
        className="hr-card hr-current hr-current--empty",
        children=[
            html.Div("Heart rate", className="hr-card__label"),
            html.Div(
                className="hr-current__reading",
                children=[
                    html.Span(PLACEHOLDER, id=ids.CURRENT_BPM, className="hr-current__bpm"),
                    html.Span("bpm", className="hr-current__unit"),
                ],
            ),
            html.Div(
                "waiting for the first reading", id=ids.CURRENT_TIME, className="hr-current__time"
            ),
        ],
    )
    stats = html.Div(
        className="hr-card hr-stats",
        children=[
            html.Div(f"Last {settings.window} readings", className="hr-card__label"),
            html.Div(
                className="hr-stats__row",
                children=[
                    _stat("Min", ids.STAT_MIN),
                    _stat("Avg", ids.STAT_AVG),
                    _stat("Max", ids.STAT_MAX),
                ],
            ),
        ],
    )
    chart = html.Div(
        className="hr-card hr-chart",
        children=[
            dcc.Graph(
                id=ids.CHART,
                figure=initial_figure(settings),
                config={"displayModeBar": False, "responsive": True, "staticPlot": False},
                animate=False,
                style={"height": f"{CHART_HEIGHT_PX}px"},
            )
        ],
    )
    table = html.Div(
        className="hr-card hr-table",
        children=[
            html.Div(
                f"Readings (newest {'first' if settings.order == 'newest-first' else 'last'})",
                className="hr-card__label",
            ),
            dag.AgGrid(
                id=ids.TABLE,
                rowData=[],
                columnDefs=_column_defs(),
                columnSize="sizeToFit",
                getRowId="params.data.id",
                defaultColDef={"sortable": False, "resizable": False, "suppressMovable": True},
                dashGridOptions={
                    "animateRows": False,
                    "domLayout": "autoHeight",
                    "suppressCellFocus": True,
                    "suppressPaginationPanel": True,
                    "rowHeight": 32,
                    "headerHeight": 34,
                    "localeText": {"noRowsToShow": "Waiting for readings…"},
                },
                className="hr-grid",
            ),
        ],
    )
    return html.Div(
        className="hr-app",
        children=[
            WebSocket(id=ids.WS),  # url: set in the browser (assets/hrdash.js, connect)
            dcc.Store(id=ids.CONFIG, data=config),
            dcc.Store(id=ids.STORE, data=None),
            dcc.Interval(id=ids.TICK, interval=TICK_MS),
            header,
            html.Div("", id=ids.ORIGIN_ALERT, className="hr-alert", role="alert", hidden=True),
            html.Main(
                className="hr-main",
                children=[
                    source_panel(settings),
                    html.Div(
                        className="hr-top",
                        children=[chart, html.Div(className="hr-side", children=[current, stats])],
                    ),
                    *sections,
                    table,
                    *([html.Section(list(extras), className="hr-extras")] if extras else []),
                ],
            ),
            html.Footer("Not a medical device.", className="hr-footer"),
        ],
    )
