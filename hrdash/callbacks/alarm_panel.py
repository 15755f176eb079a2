"""The Alarms panel of the monitor: the patient's current alarms (each active or latched one
with an Acknowledge button), the limits editor and the alarm log, with its CSV export.

Python builds the panel once (:func:`card`, placed by :mod:`hrdash.pages.patient` below the
live chart) and registers one clientside callback; everything else runs in
``assets/alarm_panel.js``. The current alarms and the limits come from the bridge's ``alarm``
frames, which the panel reads from the page's WebSocket itself as they arrive (through Dash's
``message`` an alarm frame followed within a render by a readings frame would be lost; no Dash
request per frame either way); acknowledgements and limits go back on the same socket. The
log is asked from the Dash server's ``/api/patients/<id>/alarms`` route on load and about a
second after a frame changes the alarm state (the recorder commits about once a second).

Python's part is the constants (:func:`config`): the markers, the kind labels, the limits'
bounds and order (checked in the page with the rules of :meth:`hrdash.alarms.Limits.check`
before anything is sent), so each is defined once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dash import ClientsideFunction, Input, Output, State, dcc, html

from hrdash import alarms, ids, routes
from hrdash.layout import _attrs, audio_control

if TYPE_CHECKING:
    import dash

    from hrdash.settings import Settings

NAMESPACE = "hrdash"  # window.dash_clientside.hrdash (assets/alarm_panel.js)
LOG_SHOWN = 50  # log entries the panel shows (newest first); the CSV has them all
LOG_REFETCH_MS = 1_000  # the log is asked again this long after the last state change
LIMIT_LABELS = {
    "extreme_low": "Extreme low",
    "low": "Low",
    "high": "High",
    "extreme_high": "Extreme high",
}
STATE_LABELS = {
    alarms.ACTIVE: "active",
    alarms.LATCHED: "latched (condition gone: acknowledge)",
    alarms.ACKNOWLEDGED: "acknowledged",
    alarms.ENDED: "ended",
}
NO_ALARMS = "No alarms"
LOADING_LOG = "Loading the log…"
LOG_COLUMNS = ("Time", "Event", "Kind", "Priority", "Value", "Limit", "Origin")


def config(patient_id: str, prefix: str = "/") -> dict[str, Any]:
    """The alarm config store's data: what assets/alarm_panel.js needs besides the page config
    (the patient's id, the socket): the constants, the labels, the ids and the log's URL."""
    return {
        "markers": alarms.MARKERS,
        "kind_labels": alarms.KIND_LABELS,
        "priorities": list(alarms.PRIORITIES),
        "state_labels": STATE_LABELS,
        "ackable": [alarms.ACTIVE, alarms.LATCHED],
        "limit_min": alarms.LIMIT_MIN,
        "limit_max": alarms.LIMIT_MAX,
        "limit_order": list(alarms.LIMIT_ORDER),
        "log_shown": LOG_SHOWN,
        "log_refetch_ms": LOG_REFETCH_MS,
        "log_url": routes.patient_path(prefix, patient_id, routes.ALARMS_JSON),
        "no_alarms": NO_ALARMS,
        "loading_log": LOADING_LOG,
        "ids": ids.ALARM_IDS,
        "ack_class": ids.ACK_CLASS,
    }


def _limit_field(name: str) -> html.Label:
    return html.Label(
        className="hr-limits__field",
        children=[
            html.Span(LIMIT_LABELS[name], className="hr-limits__label"),
            # Filled by the page (set_props, from the alarm frames' limits) and read by it
            # from the element when Apply is pressed; no Dash callback listens to it.
            dcc.Input(
                id=ids.limit_input(name),
                type="number",
                min=alarms.LIMIT_MIN,
                max=alarms.LIMIT_MAX,
                step="any",
                className="hr-limits__input",
                debounce=True,
                autoComplete="off",
            ),
        ],
    )


def card(patient_id: str, prefix: str = "/") -> html.Section:
    """The Alarms panel of ``patient_id``: the sound control (:func:`hrdash.layout.audio_control`)
    at its head, the current alarms, the limits editor and the log, with the export link under
    ``prefix`` (the app's URL prefix)."""
    limits = html.Div(
        id=ids.LIMITS,
        className="hr-limits",
        role="group",
        children=[
            html.H3("Limits (bpm)", className="hr-alarms__subhead"),
            html.Div(
                className="hr-limits__fields",
                children=[_limit_field(name) for name in alarms.LIMIT_ORDER],
            ),
            html.Div(
                className="hr-limits__actions",
                children=[
                    html.Button(
                        "Apply",
                        id=ids.LIMITS_APPLY,
                        className="hr-button",
                        type="button",
                        disable_n_clicks=True,
                    ),
                    html.Span(
                        "",
                        id=ids.LIMITS_MESSAGE,
                        className="hr-limits__message",
                        role="status",
                        **_attrs({"aria-live": "polite"}),
                    ),
                ],
            ),
        ],
        **_attrs({"aria-label": "Alarm limits"}),
    )
    log = html.Div(
        className="hr-alarm-log",
        children=[
            html.Div(
                className="hr-alarm-log__head",
                children=[
                    html.H3("Log", className="hr-alarms__subhead"),
                    html.A(
                        "Export log (CSV)",
                        id=ids.ALARM_EXPORT,
                        className="hr-alarm-log__export",
                        href=routes.patient_path(prefix, patient_id, routes.ALARMS_CSV),
                        download="",
                    ),
                ],
            ),
            html.Table(
                id=ids.ALARM_LOG,
                className="hr-alarm-log__table",
                children=[
                    html.Thead(html.Tr([html.Th(name) for name in LOG_COLUMNS])),
                    html.Tbody(),
                ],
            ),
            html.Div(LOADING_LOG, id=ids.ALARM_LOG_STATUS, className="hr-alarm-log__status"),
        ],
    )
    return html.Section(
        id=ids.ALARMS,
        className="hr-card hr-alarms",
        children=[
            dcc.Store(id=ids.ALARM_CONFIG, data=config(patient_id, prefix)),
            html.Div(
                className="hr-alarms__head",
                children=[
                    html.H2("Alarms", className="hr-card__label"),
                    # The sound control (assets/alarm_sound.js): assets/alarm_panel.js hands it
                    # every alarm frame and registers this page's socket as its sender.
                    audio_control(),
                ],
            ),
            html.Div(
                className="hr-alarms__top",
                children=[
                    html.Div(
                        className="hr-alarms__now",
                        children=[
                            html.Ul(
                                id=ids.ALARM_CURRENT,
                                className="hr-alarms__list",
                                **_attrs({"aria-live": "polite"}),
                            ),
                            html.Div(
                                "",
                                id=ids.ALARM_MESSAGE,
                                className="hr-alarms__message",
                                role="status",
                                hidden=True,
                            ),
                        ],
                    ),
                    limits,
                ],
            ),
            log,
        ],
        **_attrs({"data-alarm": "none"}),
    )


def register(app: dash.Dash, settings: Settings) -> None:
    """The panel starts (or restarts, for this page's patient) when its config store mounts.
    The output is never written (no_update): Dash makes the initial call of a callback only
    when it has one."""
    app.clientside_callback(
        ClientsideFunction(NAMESPACE, "alarm_panel_start"),
        Output(ids.ALARM_LOG_STATUS, "title"),
        Input(ids.ALARM_CONFIG, "data"),
        State(ids.CONFIG, "data"),
    )
