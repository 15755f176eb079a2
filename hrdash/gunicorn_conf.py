"""gunicorn configuration shipped with the package: ``gunicorn -c python:hrdash.gunicorn_conf
hrdash.wsgi:server`` (an installed hrdash), or through the checkout's ``gunicorn.conf.py``.

The gunicorn master starts exactly one simulator (when no upstream URL is set) and one bridge
(with ``HRDASH_REDIS_URL``: one ingest and ``HRDASH_EDGES`` edges, once Redis has answered),
whatever the number of workers, and stops them when gunicorn stops. They run under one small
supervising process (:mod:`hrdash.supervise`), not under the master, because the master reaps
every child it has and would hide their exit status. When the supervisor gives up on the bridge
(a configuration error only the bridge detects, or ``MAX_UNREADY_STARTS`` deaths before it was
ready), gunicorn stops with one line ``hrdash: error: ...`` and that exit status (2 or 1), as
``python app.py`` does. Workers only serve the page.

Settings come from the same HRDASH_* variables as everything else; HRDASH_HOST/HRDASH_PORT give
the default bind address (a -b/--bind flag overrides it).
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from hrdash.cli import check_redis, configure_logging, fail
from hrdash.settings import SettingError, Settings
from hrdash.sources import station_sources
from hrdash.supervise import START_TIMEOUT, SupervisorFailed, SupervisorProcess

__all__ = ["bind", "control_socket_disable", "on_exit", "on_starting", "when_ready"]

try:
    _settings = Settings.load()
    station_sources(_settings)  # a bad sources file stops gunicorn before it serves
except SettingError as _exc:
    fail(str(_exc))

bind = [f"{_settings.host}:{_settings.port}"]
control_socket_disable = True  # gunicorn 27's control socket is not needed here
_process: SupervisorProcess | None = None
_fatal: list[tuple[str, int]] = []
_signals_ready = threading.Event()  # set in when_ready: gunicorn handles SIGTERM by then


def _bound_port(server: Any) -> int | None:
    """The port of the first TCP address gunicorn binds, if any."""
    for address in server.cfg.address:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return None


def _stop_gunicorn(message: str, status: int) -> None:
    """The supervisor gave a child up: stop gunicorn (on_exit prints the line and exits)."""
    _fatal.append((message, status))
    _signals_ready.wait(START_TIMEOUT)
    os.kill(os.getpid(), signal.SIGTERM)


def on_starting(server: Any) -> None:
    """Master, before it binds: start the supervising process once, wait until it is ready."""
    global _process
    configure_logging(_settings.log_level)
    check_redis(_settings)  # Redis answers, or one line and exit 2 before anything starts
    settings = _settings
    port = _bound_port(server)
    if port is not None and port != settings.port:
        # The page is served from another port than HRDASH_PORT: the bridge must accept it, and
        # the workers (forked later, reading the environment) must tell the page the same list.
        settings = settings.replace(port=port)
        os.environ["HRDASH_PORT"] = str(port)
    _process = SupervisorProcess(settings, on_fatal=_stop_gunicorn)
    try:
        _process.check_ports()
    except SettingError as exc:
        fail(str(exc))
    try:
        _process.start()
    except SupervisorFailed as exc:
        _process.stop()
        fail(exc.message, exc.status)


def when_ready(server: Any) -> None:
    """Master, listening: a fatal report may now stop gunicorn through SIGTERM."""
    _signals_ready.set()


def on_exit(server: Any) -> None:
    """Master, on shutdown: stop the background processes; after a fatal report, exit with its
    status and one line."""
    if _process is not None:
        _process.stop()
    if _fatal:
        message, status = _fatal[0]
        fail(message, status)
