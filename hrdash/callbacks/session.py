"""The session card below the table: a summary of the page's patient over a chosen range of the
stored history (the last 30 min … 72 h, or everything stored) and a CSV export of the same
range, the same file as ``GET /api/patients/<id>/readings.csv``. Python callbacks, run only when
a button is pressed; the patient's id comes from the page's config store. The summary's shares
of time below and above are measured against the patient's alarm limits low and high. With
``HRDASH_DB=:memory:`` the history is what the bridge keeps in memory."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dash import Input, Output, State, dcc, html, no_update

from hrdash import history, ids
from hrdash.routes import csv_filename
from hrdash.sources import station_sources

if TYPE_CHECKING:
    import dash

    from hrdash.settings import Settings

ALL = "all"  # the range choice "everything stored"
RANGES: dict[str, tuple[str, int | None]] = {  # choice → (label, span in ms; None: all stored)
    "30m": ("30 min", 30 * 60_000),
    "1h": ("1 h", history.RANGES_MS["1h"]),
    "8h": ("8 h", history.RANGES_MS["8h"]),
    "24h": ("24 h", history.RANGES_MS["24h"]),
    "72h": ("72 h", 72 * 3_600_000),
    ALL: ("All stored", None),
}
DEFAULT_RANGE = "1h"


def layout(settings: Settings) -> html.Div:
    return html.Div(
        className="hr-card hr-session",
        children=[
            html.Div("Session", className="hr-card__label"),
            dcc.RadioItems(
                id=ids.SESSION_RANGE,
                options=[{"label": label, "value": key} for key, (label, _) in RANGES.items()],
                value=DEFAULT_RANGE,
                inline=True,
                className="hr-session__range",
            ),
            html.Div(
                className="hr-session__actions",
                children=[
                    html.Button("Summarise", id=ids.SESSION_SUMMARY_BUTTON, className="hr-button"),
                    html.Button(
                        "Download CSV", id=ids.SESSION_EXPORT_BUTTON, className="hr-button"
                    ),
                    dcc.Download(id=ids.SESSION_DOWNLOAD),
                ],
            ),
            html.Div(id=ids.SESSION_SUMMARY, className="hr-session__summary"),
        ],
    )


def span(
    settings: Settings, patient: str, choice: str | None, now_ms: int
) -> tuple[int, int] | None:
    """The half-open range of ``choice`` (one of :data:`RANGES`; unknown: the default), ending
    at ``now_ms``; for "all stored", the stored readings' range (``None``: nothing stored).
    Raises :class:`hrdash.history.HistoryError`."""
    _, length = RANGES.get(choice or DEFAULT_RANGE, RANGES[DEFAULT_RANGE])
    if length is None:
        return history.stored_span(settings, patient)
    return max(0, now_ms - length), now_ms


def _label(choice: str | None) -> str:
    label, length = RANGES.get(choice or DEFAULT_RANGE, RANGES[DEFAULT_RANGE])
    return "stored" if length is None else f"stored in the last {label}"


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def summary_text(
    settings: Settings,
    patient: str | None = None,
    choice: str | None = DEFAULT_RANGE,
    now_ms: int | None = None,
) -> str:
    """One paragraph about ``patient``'s readings over the range ``choice`` (ending at
    ``now_ms``, default now), or why there is none. The shares of time below and above are
    measured against the patient's alarm limits low and high in effect
    (:func:`hrdash.history.patient_limits`)."""
    patient = patient or _first_patient(settings)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    try:
        found = span(settings, patient, choice, now_ms)
        df = history.readings(settings, patient, *found) if found else None
        if df is None or df.empty:
            return f"No readings {_label(choice)}."
        limits = history.patient_limits(settings, patient)
    except (history.HistoryError, history.BadRange) as exc:
        return str(exc)
    s = history.summarise(df, limits)
    trend = history.minute_trend(df)
    day = "%Y-%m-%d " if s["first"].date() != s["last"].date() else ""
    return (
        f"{s['count']} readings over {_duration(s['span_s'])} "
        f"({s['first'].strftime(day + '%H:%M:%S')} to {s['last'].strftime(day + '%H:%M:%S')} "
        f"UTC): min {s['min']:.0f}, mean {s['mean']:.1f}, max {s['max']:.0f} bpm; "
        f"{s['below_pct']:.1f}% of the time below {s['low']:g} bpm, "
        f"{s['above_pct']:.1f}% above {s['high']:g} bpm (the alarm limits low and high); "
        f"minute means from {trend['mean'].min():.0f} to {trend['mean'].max():.0f} bpm."
    )


def export(
    settings: Settings,
    patient: str | None = None,
    choice: str | None = DEFAULT_RANGE,
    now_ms: int | None = None,
) -> dict[str, Any] | None:
    """A dcc.Download payload with ``patient``'s readings over the range ``choice`` as CSV (the
    file ``readings.csv`` serves for that range), or None when there is nothing to export (all
    stored: none) or the history cannot be read."""
    patient = patient or _first_patient(settings)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    try:
        found = span(settings, patient, choice, now_ms)
        if found is None:
            return None
        body = history.readings_csv(settings, patient, *found)
    except (history.HistoryError, history.BadRange):
        return None
    return dict(dcc.send_string(body, filename=csv_filename(patient, *found)))


def _first_patient(settings: Settings) -> str:
    return station_sources(settings)[0].id


def _patient(config: dict[str, Any] | None) -> str | None:
    """The page's patient id, from its config store (``None``: the station's first patient)."""
    patient = (config or {}).get("patient")
    return patient if isinstance(patient, str) else None


def register(app: dash.Dash, settings: Settings, clock: Callable[[], float] = time.time) -> None:
    @app.callback(
        Output(ids.SESSION_SUMMARY, "children"),
        Input(ids.SESSION_SUMMARY_BUTTON, "n_clicks"),
        State(ids.SESSION_RANGE, "value"),
        State(ids.CONFIG, "data"),
        prevent_initial_call=True,
    )
    def summarise(_: int | None, choice: str | None, config: dict[str, Any] | None) -> str:
        return summary_text(settings, _patient(config), choice, int(clock() * 1000))

    @app.callback(
        Output(ids.SESSION_DOWNLOAD, "data"),
        Output(ids.SESSION_SUMMARY, "children", allow_duplicate=True),
        Input(ids.SESSION_EXPORT_BUTTON, "n_clicks"),
        State(ids.SESSION_RANGE, "value"),
        State(ids.CONFIG, "data"),
        prevent_initial_call=True,
    )
    def download(
        _: int | None, choice: str | None, config: dict[str, Any] | None
    ) -> tuple[Any, Any]:
        patient = _patient(config)
        now_ms = int(clock() * 1000)
        payload = export(settings, patient, choice, now_ms)
        if payload is None:
            return no_update, summary_text(settings, patient, choice, now_ms)
        return payload, no_update
