"""The Dash application: :func:`create_app` builds it, :func:`browser_ws_url` tells the page where
the bridge is.

The layout is a function, built per request, because the bridge URL the browser must use depends
on the host name the page was requested with (``localhost`` vs ``127.0.0.1`` vs a LAN address).
Everything per reading runs in the browser (``assets/hrdash.js``); the server only serves the page.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import dash
import flask

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


def _hostname(request_host: str) -> str:
    """``request_host`` (a Host header: ``name``, ``name:port``, ``[v6]:port``) without its port."""
    host = request_host.strip()
    if host.startswith("["):  # IPv6 literal, keep the brackets
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    if host.count(":") > 1:  # bare IPv6 without brackets (not valid in Host, but be kind)
        return f"[{host}]"
    return host


def browser_ws_url(settings: Settings, request_host: str, scheme: str) -> str:
    """The bridge URL the browser connects to, for a page requested as ``scheme://request_host``.

    - ``public_ws_url`` absolute (``ws://``/``wss://``): used as is.
    - ``public_ws_url`` a path (``/ws``): same host as the page, ``wss`` when the page is https
      (``scheme`` is the effective scheme, e.g. from ``X-Forwarded-Proto``).
    - empty: ``ws://<page's host name>:<bridge_port>/ws`` — the bridge serves plain ``ws``.
    """
    public = settings.public_ws_url
    if public and not public.startswith("/"):
        return public
    if public:
        ws_scheme = "wss" if scheme.lower() == "https" else "ws"
        return f"{ws_scheme}://{request_host.strip()}{public}"
    hostname = _hostname(request_host) or settings.bridge_host
    if hostname in ("0.0.0.0", "[::]"):
        hostname = "127.0.0.1"
    return f"ws://{hostname}:{settings.bridge_port}/ws"


def with_overlap(url: str) -> str:
    """The page asks the bridge to repeat recent readings in each live frame (``overlap=1``):
    Dash may hand the page only the last of several frames, and the repeat makes up for it."""
    return url + ("&" if "?" in url else "?") + "overlap=1"


def _request_origin(settings: Settings) -> tuple[str, str]:
    """(host, scheme) of the current request; the configured server address outside a request."""
    if not flask.has_request_context():
        return f"{settings.host}:{settings.port}", "http"
    request = flask.request
    forwarded = request.headers.get("X-Forwarded-Proto", "")
    scheme = forwarded.split(",", 1)[0].strip() or request.scheme
    return request.host, scheme


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
        host, scheme = _request_origin(settings)
        return build_layout(settings, with_overlap(browser_ws_url(settings, host, scheme)), extras)

    app.layout = layout
    callbacks.register_all(app, settings)
    return app
