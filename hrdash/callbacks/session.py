"""The session card below the table: a summary of everything the bridge keeps (30 min by
default) for the page's patient and a CSV export of it. Python callbacks, run only when a button
is pressed; the patient's id comes from the page's config store."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from dash import Input, Output, State, dcc, html, no_update

from hrdash import history, ids

if TYPE_CHECKING:
    import dash

    from hrdash.settings import Settings


def layout(settings: Settings) -> html.Div:
    return html.Div(
        className="hr-card hr-session",
        children=[
            html.Div("Session", className="hr-card__label"),
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


def summary_text(settings: Settings, patient: str | None = None) -> str:
    """One paragraph about the readings the bridge holds for ``patient``, or why it cannot be
    had."""
    try:
        df = history.table(history.fetch(settings, patient))
    except history.HistoryError as exc:
        return str(exc)
    s = history.summary(df)
    if not s["count"]:
        return "No readings yet."
    minutes = s["span_s"] / 60
    trend = history.minute_trend(df)
    return (
        f"{s['count']} readings over {minutes:.1f} min "
        f"({s['first']:%H:%M:%S} to {s['last']:%H:%M:%S} UTC): "
        f"min {s['min']:.0f}, mean {s['mean']:.1f}, max {s['max']:.0f} bpm; "
        f"{s['below_pct']:.1f}% of the time below {history.LOW_BPM} bpm, "
        f"{s['above_pct']:.1f}% above {history.HIGH_BPM} bpm; "
        f"minute means from {trend['mean'].min():.0f} to {trend['mean'].max():.0f} bpm."
    )


def export(settings: Settings, patient: str | None = None) -> dict[str, Any] | None:
    """A dcc.Download payload with the bridge's readings of ``patient`` as CSV, or None if
    unavailable."""
    try:
        df = history.table(history.fetch(settings, patient))
    except history.HistoryError:
        return None
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return dict(
        dcc.send_string(
            history.to_csv(df), filename=f"hrdash-{patient + '-' if patient else ''}{stamp}.csv"
        )
    )


def _patient(config: dict[str, Any] | None) -> str | None:
    """The page's patient id, from its config store (``None``: the bridge's first patient)."""
    patient = (config or {}).get("patient")
    return patient if isinstance(patient, str) else None


def register(app: dash.Dash, settings: Settings) -> None:
    @app.callback(
        Output(ids.SESSION_SUMMARY, "children"),
        Input(ids.SESSION_SUMMARY_BUTTON, "n_clicks"),
        State(ids.CONFIG, "data"),
        prevent_initial_call=True,
    )
    def summarise(_: int | None, config: dict[str, Any] | None) -> str:
        return summary_text(settings, _patient(config))

    @app.callback(
        Output(ids.SESSION_DOWNLOAD, "data"),
        Output(ids.SESSION_SUMMARY, "children", allow_duplicate=True),
        Input(ids.SESSION_EXPORT_BUTTON, "n_clicks"),
        State(ids.CONFIG, "data"),
        prevent_initial_call=True,
    )
    def download(_: int | None, config: dict[str, Any] | None) -> tuple[Any, Any]:
        patient = _patient(config)
        payload = export(settings, patient)
        if payload is None:
            return no_update, summary_text(settings, patient)
        return payload, no_update
