"""The Dash application: :func:`create_app` builds it; :func:`page_ws_url` (from
:mod:`hrdash.wsurl`) tells the page where the bridge is.

The page resolves the bridge URL itself, against its own location (``localhost`` vs
``127.0.0.1`` vs a LAN address, http or https, the port a proxy listens on): the server never
derives it from request headers, which a reverse proxy may rewrite. Everything per reading runs
in the browser (``assets/hrdash.js``); the server only serves the page.
"""

from __future__ import annotations

import gc
from importlib.resources import files
from pathlib import Path

import dash

from hrdash import callbacks, pages, routes
from hrdash.settings import Settings
from hrdash.wsurl import page_ws_url

TITLE = "hrdash"

__all__ = ["ASSETS", "TITLE", "create_app", "freeze_startup", "page_ws_url"]


def assets_folder() -> Path:
    """The page's scripts and styles: ``hrdash/assets/`` in an installed package (the wheel
    ships the top-level ``assets/`` there), else the checkout's ``assets/`` (running from the
    source tree, or an editable install)."""
    packaged = Path(str(files("hrdash"))) / "assets"
    if (packaged / "hrdash.js").is_file():
        return packaged
    return Path(__file__).resolve().parent.parent / "assets"


ASSETS = assets_folder()


def create_app(settings: Settings | None = None) -> dash.Dash:
    """Build the Dash app for ``settings`` (default: :meth:`Settings.load` from the environment).

    A multi-page app (Dash pages, registered by :func:`hrdash.pages.register`): ``/`` is the
    station when there are several patients, else the one patient's monitor;
    ``/patient/<id>`` is a patient's monitor. Callbacks come from every module of
    :mod:`hrdash.callbacks` (see :func:`hrdash.callbacks.register_all`); their ``layout`` extras
    belong to the monitor page. The history's exports and trends are HTTP routes of its server
    (:mod:`hrdash.routes`).
    """
    settings = Settings.load() if settings is None else settings
    app = dash.Dash(
        __name__,
        assets_folder=str(ASSETS),
        title=TITLE,
        update_title="",  # no "Updating..." flicker in the tab title
        use_pages=True,
        pages_folder="",  # the pages are registered explicitly, by hrdash.pages.register
    )
    pages.register(app, settings, callbacks.extra_layout(settings))
    callbacks.register_all(app, settings)
    site = pages.site(app)
    routes.register(app, site.settings, site.by_id)
    return app


def freeze_startup() -> None:
    """For a serving process, once its app is built: move every object made so far (modules,
    the app, its layouts) out of the garbage collector's sight (``gc.freeze``), so that a full
    collection walks only what requests allocate. Without it, a request that happened to
    trigger one (a 24 h trend allocates a few thousand objects) paused about 50 ms walking
    Dash's, pandas' and Plotly's import-time objects. Called by the serving entry points
    (``python app.py``, ``gunicorn app:server``), never by tests that build many apps."""
    gc.collect()
    gc.freeze()
