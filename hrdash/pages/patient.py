"""The monitor page of one patient (``/patient/<patient_id>``, and ``/`` with one patient).

Today's page (:func:`hrdash.layout.build_layout`) for one patient: its socket asks the bridge for
that patient's feed (``/ws?patient=ID&overlap=1``, resolved in the browser as before), its
config store carries the patient's id and the app's URL prefix (the Session card asks the
bridge for that patient's readings; the Trend card below the live chart asks the Dash server's
history routes, under that prefix), and with several patients its header links back to the
station. Its callbacks are those of :mod:`hrdash.callbacks` (live path, Session card, Trend
card, users' modules), registered on the app once; the modules' ``layout(settings)`` extras go
below the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dash import html

from hrdash import ids
from hrdash.callbacks import alarm_panel, trend
from hrdash.layout import build_layout
from hrdash.settings import Settings
from hrdash.sources import Source, source_settings
from hrdash.wsurl import page_ws_url


def layout(
    settings: Settings,
    patient_id: str,
    name: str,
    extras: Sequence[Any] = (),
    *,
    back_href: str | None = None,
    prefix: str = "/",
) -> html.Div:
    """The monitor of ``patient_id`` (shown as ``name``); a "← Station" link to ``back_href``
    when given. ``prefix``: the app's URL prefix, under which the page asks for the patient's
    trend and exports. The Alarms panel and the Trend card sit below the live chart."""
    ws_url, ws_port = page_ws_url(settings, patient_id)
    return build_layout(
        settings,
        ws_url,
        extras,
        ws_port=ws_port,
        patient=(patient_id, name),
        back_href=back_href,
        prefix=prefix,
        sections=[alarm_panel.card(patient_id, prefix), trend.card(settings)],
    )


def monitor_settings(settings: Settings, source: Source) -> Settings:
    """The settings ``source``'s monitor shows: those that read its service
    (:func:`hrdash.sources.source_settings`), so that the header names the patient's own service
    (redacted), not the station's. Where they would name the service after the patient (a
    simulated ward, a sources file), they name it by its URL instead: the name is in the header
    already."""
    own = source_settings(settings, source)
    return own.replace(source_name="") if own.source_name == source.name else own


def not_found_title(patient_id: str) -> str:
    return f"No patient {patient_id}"


def not_found(patient_id: str, home_href: str, has_station: bool) -> html.Div:
    """The page for an unknown patient id: says so (the id as text) and links to ``/``."""
    return html.Div(
        className="hr-app",
        children=[
            html.Main(
                id=ids.NOT_FOUND,
                className="hr-card hr-not-found",
                children=[
                    html.H1(not_found_title(patient_id), className="hr-not-found__title"),
                    html.A(
                        "← Station" if has_station else "← Monitor",
                        href=home_href,
                        id=ids.BACK_LINK,
                        className="hr-back",
                    ),
                ],
            )
        ],
    )
