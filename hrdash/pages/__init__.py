"""The Dash pages and their routing: ``/`` and ``/patient/<patient_id>``.

- ``/`` is the station (:mod:`hrdash.pages.station`) when there is more than one patient, else
  the one patient's monitor (:mod:`hrdash.pages.patient`).
- ``/patient/<patient_id>`` is that patient's monitor; an unknown id gets a short
  "No patient <id>" page with a link to ``/``.

Routing belongs to Dash pages (its router callback reads the browser's path): the layout request
does not carry it. :func:`register` registers both pages with ``dash.register_page``.

Dash's page registry is one dict per process (``dash.page_registry``), while ``create_app`` may
run more than once in a process (tests; two apps side by side). So the registered entries are the
same four functions every time (registering again replaces them, under the same module names),
and those functions know nothing of any app: they look up the :class:`Site` of the app that is
serving the request, kept in its Flask server's ``extensions``. Each app routes with its own
settings and patients, whichever was created last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dash
import flask

from hrdash.pages import patient, station
from hrdash.settings import Settings
from hrdash.sources import Source, station_sources

HOME = "hrdash.pages.home"  # page registry key of "/"
MONITOR = "hrdash.pages.patient"  # page registry key of "/patient/<patient_id>"
MONITOR_TEMPLATE = "/patient/<patient_id>"
EXTENSION = "hrdash.pages"  # key of the app's Site in its Flask server's extensions
TITLE_SUFFIX = " — hrdash"


@dataclass
class Site:
    """One app's pages: its settings, patients (:func:`hrdash.sources.station_sources`, in
    station order), the monitor's extra components (from the callback modules'
    ``layout(settings)``) and the URL prefix the app is served under."""

    settings: Settings
    patients: tuple[Source, ...]
    extras: Sequence[Any] = ()
    prefix: str = "/"  # the app's requests_pathname_prefix
    by_id: dict[str, Source] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.by_id = {p.id: p for p in self.patients}

    @classmethod
    def for_settings(
        cls, settings: Settings, extras: Sequence[Any] = (), prefix: str = "/"
    ) -> Site:
        """The site of ``settings``'s patients. Raises :class:`hrdash.sources.SourcesError` for a
        bad sources file."""
        return cls(settings, tuple(station_sources(settings)), extras, prefix)

    @property
    def has_station(self) -> bool:
        """More than one patient: ``/`` is the station and monitors link back to it."""
        return len(self.patients) > 1

    def href(self, path: str) -> str:
        """``path`` (``/…``) under the app's URL prefix."""
        return self.prefix.rstrip("/") + path

    def monitor_href(self, patient_id: str) -> str:
        return self.href(f"/patient/{patient_id}")

    def home(self) -> Any:
        """The layout of ``/``."""
        if self.has_station:
            return station.layout(self.settings, self.patients, self.monitor_href)
        return self.monitor(self.patients[0].id)

    def home_title(self) -> str:
        if self.has_station:
            return station.TITLE + TITLE_SUFFIX
        return self.patients[0].name + TITLE_SUFFIX

    def monitor(self, patient_id: str | None) -> Any:
        """The layout of ``/patient/<patient_id>`` (``None``: the first patient, as Dash asks
        when it collects every page's layout to validate callbacks)."""
        found = self.patients[0] if patient_id is None else self.by_id.get(patient_id)
        back = self.href("/") if self.has_station else None
        if found is None:
            return patient.not_found(str(patient_id), self.href("/"), self.has_station)
        return patient.layout(
            patient.monitor_settings(self.settings, found),
            found.id,
            found.name,
            self.extras,
            back_href=back,
            prefix=self.prefix,
        )

    def monitor_title(self, patient_id: str | None) -> str:
        found = self.patients[0] if patient_id is None else self.by_id.get(patient_id)
        if found is None:
            return patient.not_found_title(str(patient_id)) + TITLE_SUFFIX
        return found.name + TITLE_SUFFIX


def site(app: dash.Dash) -> Site:
    """The :class:`Site` that :func:`register` attached to ``app``."""
    found: Site = app.server.extensions[EXTENSION]
    return found


def _current() -> Site:
    """The Site of the app serving the current request."""
    found: Site = flask.current_app.extensions[EXTENSION]
    return found


# The registered functions: the same for every app (see the module docstring). Dash passes the
# path variables and the query string's parameters as keyword arguments.
def _home_layout(**_query: Any) -> Any:
    return _current().home()


def _home_title() -> str:
    return _current().home_title()


def _monitor_layout(patient_id: str | None = None, **_query: Any) -> Any:
    return _current().monitor(patient_id)


def _monitor_title(patient_id: str | None = None) -> str:
    return _current().monitor_title(patient_id)


def register(app: dash.Dash, settings: Settings, extras: Sequence[Any] = ()) -> Site:
    """Register ``/`` and ``/patient/<patient_id>`` (``app`` must have ``use_pages=True``) and
    the station page's clientside callbacks; return the app's :class:`Site`."""
    prefix = app.config.requests_pathname_prefix or "/"
    found = Site.for_settings(settings, extras, prefix)
    app.server.extensions[EXTENSION] = found
    dash.register_page(HOME, path="/", name="Home", title=_home_title, layout=_home_layout)
    dash.register_page(
        MONITOR,
        path_template=MONITOR_TEMPLATE,
        name="Monitor",
        title=_monitor_title,
        layout=_monitor_layout,
    )
    if found.has_station:  # with one patient no page holds the station's components
        station.register(app)
    return found
