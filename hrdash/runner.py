"""``python app.py`` / ``hrdash run``: simulator + bridge (supervised children) + the Dash server.

The Dash server runs in this process on werkzeug's threaded server, which is fine for a handful
of viewers on one machine; deploy with gunicorn (see README) for more. Ctrl-C or SIGTERM stops
the server and every child within ``STOP_GRACE`` seconds.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType

from hrdash.settings import Settings, url_host
from hrdash.sources import station_sources
from hrdash.store import MEMORY
from hrdash.supervisor import Supervisor, check_port_free

log = logging.getLogger("hrdash")


class _Stop(BaseException):
    """Raised in the main thread by the SIGTERM handler. A BaseException, like
    KeyboardInterrupt: socketserver handles each request inside ``except Exception``, so a
    SIGTERM landing while the server hands a request to its thread would otherwise be logged
    as a request error and the server would go on serving."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop()


def page_url(settings: Settings) -> str:
    return f"http://{url_host(settings.host)}:{settings.port}/"


def start_line(settings: Settings) -> str:
    """What the start-up line says is being watched (the source, or the station's size) and
    where its history goes (the file's absolute path, or "off" for ``:memory:``)."""
    count = len(station_sources(settings))
    if count > 1:
        watched = f"station of {count} patients from {settings.display_source}"
    else:
        watched = f"source: {settings.display_source}"
    kept = "off" if settings.db == MEMORY else os.path.abspath(settings.db)
    line = f"{watched}; history: {kept}"
    if settings.uses_redis:
        edges = "1 edge" if settings.edges == 1 else f"{settings.edges} edges"
        line += f"; Redis {settings.shown_redis_url}, {edges}"
    return line


def run_all(settings: Settings) -> None:
    """Run until Ctrl-C / SIGTERM. Raises PortInUseError before starting anything."""
    from werkzeug.serving import make_server

    from hrdash.webapp import create_app, freeze_startup

    check_port_free(settings.host, settings.port, "HRDASH_PORT")
    fatal: list[tuple[str, int]] = []

    def on_fatal(message: str, status: int) -> None:
        fatal.append((message, status))
        os.kill(os.getpid(), signal.SIGTERM)

    supervisor = Supervisor(settings, on_fatal=on_fatal)
    supervisor.check_ports()
    app = create_app(settings)
    if settings.log_level != "debug":
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    httpd = make_server(settings.host, settings.port, app.server, threaded=True)
    freeze_startup()
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        supervisor.start()
        print(
            f"hrdash: open {page_url(settings)}  ({start_line(settings)}; Ctrl-C stops)", flush=True
        )
        httpd.serve_forever()
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        httpd.server_close()
        supervisor.stop()
        print("hrdash: stopped", flush=True)
    if fatal:
        message, status = fatal[0]
        print(f"hrdash: error: {message}", file=sys.stderr)
        sys.exit(status)
