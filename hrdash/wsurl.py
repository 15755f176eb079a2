"""Where a page's WebSocket connects: the bridge URL as the server hands it to the page.

The page resolves it itself (``resolveWsUrl`` in ``assets/hrdash.js``), against its own location
(``localhost`` vs ``127.0.0.1`` vs a LAN address, http or https, the port a proxy listens on): the
server never derives it from request headers, which a reverse proxy may rewrite.
"""

from __future__ import annotations

import urllib.parse

from hrdash.settings import Settings


def page_ws_url(settings: Settings, patient_id: str | None = None) -> tuple[str, int | None]:
    """The bridge URL as the monitor page is given it, and the bridge port when the browser must
    put it on the page's host name; ``assets/hrdash.js`` (``resolveWsUrl``) resolves it in the
    browser.

    - ``public_ws_url`` absolute (``ws://``/``wss://``): used as is.
    - ``public_ws_url`` a path (``/ws``): resolved against the page's own URL, as the browser
      sees it: the same host and port, ``wss`` when the page is https. Whatever a proxy does to
      the Host header, the browser's address bar is right.
    - empty: ``ws://<page's host name>:<bridge_port>/ws`` — the bridge serves plain ``ws``.

    With ``patient_id`` the page asks for that patient's feed (``patient=ID``); the bridge serves
    its first patient without it. The page asks for ``overlap=1`` (see :func:`with_overlap`).
    """
    base, port = _ws_base(settings)
    if patient_id is not None:
        base = with_query(base, patient=patient_id)
    return with_overlap(base), port


def station_ws_url(settings: Settings) -> tuple[str, int | None]:
    """The station feed's URL (``station=1``) and bridge port, as :func:`page_ws_url`."""
    base, port = _ws_base(settings)
    return with_query(base, station="1"), port


def _ws_base(settings: Settings) -> tuple[str, int | None]:
    public = settings.public_ws_url
    if public:
        return public, None
    return "/ws", settings.bridge_port


def with_query(url: str, **params: str) -> str:
    """``url`` with ``params`` appended to its query string (values URL-encoded)."""
    return url + ("&" if "?" in url else "?") + urllib.parse.urlencode(params)


def with_overlap(url: str) -> str:
    """The page asks the bridge to repeat recent readings in each live frame (``overlap=1``):
    Dash may hand the page only the last of several frames, and the repeat makes up for it."""
    return with_query(url, overlap="1")
