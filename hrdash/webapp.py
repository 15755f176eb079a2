"""The Dash application: :func:`create_app` builds it, :func:`page_ws_url` tells the page where
the bridge is.

The page resolves the bridge URL itself, against its own location (``localhost`` vs
``127.0.0.1`` vs a LAN address, http or https, the port a proxy listens on): the server never
derives it from request headers, which a reverse proxy may rewrite. Everything per reading runs
in the browser (``assets/hrdash.js``); the server only serves the page.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import dash

from hrdash import callbacks
from hrdash.layout import build_layout
from hrdash.settings import Settings

TITLE = "hrdash"


def assets_folder() -> Path:
    """The page's scripts and styles: ``hrdash/assets/`` in an installed package (the wheel
    ships the top-level ``assets/`` there), else the checkout's ``assets/`` (running from the
    source tree, or an editable install)."""
    packaged = Path(str(files("hrdash"))) / "assets"
    if (packaged / "hrdash.js").is_file():
        return packaged
    return Path(__file__).resolve().parent.parent / "assets"


ASSETS = assets_folder()


def page_ws_url(settings: Settings) -> tuple[str, int | None]:
    """The bridge URL as the page is given it, and the bridge port when the browser must put it
    on the page's host name; ``assets/hrdash.js`` (``resolveWsUrl``) resolves it in the browser.

    - ``public_ws_url`` absolute (``ws://``/``wss://``): used as is.
    - ``public_ws_url`` a path (``/ws``): resolved against the page's own URL, as the browser
      sees it: the same host and port, ``wss`` when the page is https. Whatever a proxy does to
      the Host header, the browser's address bar is right.
    - empty: ``ws://<page's host name>:<bridge_port>/ws`` — the bridge serves plain ``ws``.

    The page asks for ``overlap=1`` (see :func:`with_overlap`).
    """
    public = settings.public_ws_url
    if public:
        return with_overlap(public), None
    return with_overlap("/ws"), settings.bridge_port


def with_overlap(url: str) -> str:
    """The page asks the bridge to repeat recent readings in each live frame (``overlap=1``):
    Dash may hand the page only the last of several frames, and the repeat makes up for it."""
    return url + ("&" if "?" in url else "?") + "overlap=1"


def create_app(settings: Settings | None = None) -> dash.Dash:
    """Build the Dash app for ``settings`` (default: :meth:`Settings.load` from the environment).

    Callbacks come from every module of :mod:`hrdash.callbacks` (see
    :func:`hrdash.callbacks.register_all`).
    """
    settings = Settings.load() if settings is None else settings
    app = dash.Dash(
        __name__,
        assets_folder=str(ASSETS),
        title=TITLE,
        update_title="",  # no "Updating..." flicker in the tab title
    )

    extras = callbacks.extra_layout(settings)

    def layout() -> object:
        ws_url, ws_port = page_ws_url(settings)
        return build_layout(settings, ws_url, extras, ws_port=ws_port)

    app.layout = layout
    callbacks.register_all(app, settings)
    return app
