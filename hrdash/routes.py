"""The Dash server's HTTP routes beyond its pages: the history's exports and trends
(:mod:`hrdash.history`), under the app's URL prefix.

- ``GET /api/patients/<id>/readings.csv?from=MS&to=MS`` — the stored readings (default: the
  last hour before now) as CSV: ``time`` (ISO-8601 UTC with ms), ``time_ms``, ``bpm``; an
  attachment named ``hrdash-<id>-<from>-<to>.csv``.
- ``GET /api/patients/<id>/trend?range=1h|8h|24h`` or ``?from=MS&to=MS``, optional
  ``width=MS`` and ``raw=1`` — the trend as strict JSON (:func:`hrdash.history.trend`).
- ``GET /api/patients/<id>/trend.csv?from=MS&to=MS`` — the minute trend as CSV: ``time``,
  ``time_ms``, ``min``, ``mean``, ``max``, ``n``.
- ``GET /api/patients/<id>/alarms?limit=N[&from=MS&to=MS]`` — the patient's alarm log as JSON,
  newest first (:func:`hrdash.history.alarm_log`; N: 1 to 1,000, default 100).
- ``GET /api/patients/<id>/alarms.csv[?from=MS&to=MS]`` — the alarm log as CSV, oldest first
  (:func:`hrdash.history.alarm_log_csv`; without ``from`` from the oldest entry kept, without
  ``to`` up to now); an attachment named ``hrdash-<id>-alarms-<from>-<to>.csv``.

Errors are one line of plain text: 400 for a bad range, width or flag, 404 for a patient that
is not one of the station's, 503 when the history cannot be read. ``range=`` and the default
ranges end at the server's clock (:attr:`Routes.clock`).
"""

from __future__ import annotations

import http
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dash
import flask

from hrdash import history

if TYPE_CHECKING:
    from hrdash.settings import Settings

EXTENSION = "hrdash.routes"  # key of the app's Routes in its Flask server's extensions
API = "api/patients/<patient_id>/"  # under the app's routes prefix
CSV_TYPE = "text/csv; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"
JSON_TYPE = "application/json"
ALARMS_JSON = "alarms"  # the route names under API, also linked to by the monitor's pages
ALARMS_CSV = "alarms.csv"


@dataclass
class Routes:
    """One app's history routes: its settings, the ids of its patients (the station's, as its
    pages show them) and the clock that ``range=`` and default ranges end at (Unix seconds)."""

    settings: Settings
    patients: frozenset[str]
    clock: Callable[[], float] = time.time

    def now_ms(self) -> int:
        return int(self.clock() * 1000)


def routes(app: dash.Dash) -> Routes:
    """The :class:`Routes` that :func:`register` attached to ``app``."""
    found: Routes = app.server.extensions[EXTENSION]
    return found


def _text(status: http.HTTPStatus, line: str) -> flask.Response:
    return flask.Response(" ".join(line.split()) + "\n", status=status, content_type=TEXT_TYPE)


def _csv(body: str, filename: str) -> flask.Response:
    response = flask.Response(body, status=http.HTTPStatus.OK, content_type=CSV_TYPE)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def csv_filename(patient_id: str, start: int, end: int, kind: str = "") -> str:
    """``hrdash-<id>-<from>-<to>.csv`` (``kind``: ``-trend`` for the minute trend). Patient ids
    are ``[A-Za-z0-9_-]``, safe in a header."""
    return f"hrdash-{patient_id}{kind}-{start}-{end}.csv"


def patient_path(prefix: str, patient_id: str, name: str) -> str:
    """The path of the patient's route ``name`` (e.g. :data:`ALARMS_CSV`) under the app's URL
    ``prefix`` (requests_pathname_prefix), as a page links to it."""
    return prefix.rstrip("/") + "/" + API.replace("<patient_id>", patient_id) + name


def _answer(handler: Callable[[Routes, str], flask.Response]) -> Callable[[str], flask.Response]:
    """A view: the app's Routes and the patient id (404 when not one of the station's) to
    ``handler``; :class:`hrdash.history.BadRange` → 400, other history errors → 503."""

    def view(patient_id: str) -> flask.Response:
        found: Routes = flask.current_app.extensions[EXTENSION]
        if patient_id not in found.patients:
            return _text(http.HTTPStatus.NOT_FOUND, f"No patient {patient_id[:40]!r}")
        try:
            return handler(found, patient_id)
        except history.BadRange as exc:
            return _text(http.HTTPStatus.BAD_REQUEST, str(exc))
        except history.UnknownPatient as exc:
            return _text(http.HTTPStatus.NOT_FOUND, str(exc))
        except history.HistoryError as exc:
            return _text(http.HTTPStatus.SERVICE_UNAVAILABLE, str(exc))

    def fresh(patient_id: str) -> flask.Response:
        response = view(patient_id)
        response.headers["Cache-Control"] = "no-store"  # the history grows: never a stale copy
        return response

    fresh.__name__ = handler.__name__
    return fresh


def _readings_csv(found: Routes, patient_id: str) -> flask.Response:
    start, end = history.parse_range(flask.request.args, found.now_ms())
    body = history.readings_csv(found.settings, patient_id, start, end)
    return _csv(body, csv_filename(patient_id, start, end))


def _trend_csv(found: Routes, patient_id: str) -> flask.Response:
    start, end = history.parse_range(flask.request.args, found.now_ms())
    body = history.trend_csv(found.settings, patient_id, start, end)
    return _csv(body, csv_filename(patient_id, start, end, "-trend"))


def _trend(found: Routes, patient_id: str) -> flask.Response:
    query = history.trend_query(flask.request.args, found.now_ms())
    body = history.trend(found.settings, patient_id, **query)
    text = json.dumps(body, allow_nan=False, separators=(",", ":"))
    return flask.Response(text, status=http.HTTPStatus.OK, mimetype=JSON_TYPE)


def _limit(params: Mapping[str, str]) -> int:
    raw = params.get("limit")
    if raw is None or raw == "":
        return history.LOG_LIMIT
    if re.fullmatch(r"[0-9]{1,6}", raw) is None:
        raise history.BadRange(
            f"limit must be a whole number from 1 to {history.LOG_MAX}, got {raw[:40]!r}"
        )
    return int(raw)


def _alarms(found: Routes, patient_id: str) -> flask.Response:
    args = flask.request.args
    start, end = history.parse_open_range(args)
    body = history.alarm_log(found.settings, patient_id, start, end, _limit(args))
    text = json.dumps(body, allow_nan=False, separators=(",", ":"))
    return flask.Response(text, status=http.HTTPStatus.OK, mimetype=JSON_TYPE)


def _alarms_csv(found: Routes, patient_id: str) -> flask.Response:
    start, end = history.parse_open_range(flask.request.args)
    body = history.alarm_log_csv(found.settings, patient_id, start, end)
    # Open ends are named by what they mean: from the first entry kept, up to now.
    name = csv_filename(patient_id, start or 0, found.now_ms() if end is None else end, "-alarms")
    return _csv(body, name)


def register(
    app: dash.Dash,
    settings: Settings,
    patients: Iterable[str],
    clock: Callable[[], float] = time.time,
) -> Routes:
    """Add the history routes for ``patients`` (ids; others get 404) to ``app``'s Flask server,
    under the prefix the server sees (``routes_pathname_prefix``; the same as
    ``requests_pathname_prefix`` unless a proxy strips it). The pages link to these routes, so
    this module does not import them: the app hands it their settings and patients."""
    found = Routes(settings, frozenset(patients), clock)
    app.server.extensions[EXTENSION] = found
    prefix = app.config.routes_pathname_prefix or "/"
    base = prefix.rstrip("/") + "/" + API
    server = app.server
    for name, handler in (
        ("readings.csv", _readings_csv),
        ("trend", _trend),
        ("trend.csv", _trend_csv),
        (ALARMS_JSON, _alarms),
        (ALARMS_CSV, _alarms_csv),
    ):
        endpoint = f"hrdash_history_{handler.__name__.strip('_').replace('.', '_')}"
        server.add_url_rule(base + name, endpoint, _answer(handler), methods=["GET"])
    return found
