"""gunicorn configuration, picked up by `gunicorn app:server` from the working directory.

The gunicorn master starts exactly one simulator (when no upstream URL is set) and one bridge,
whatever the number of workers, and stops them when gunicorn stops. Workers only serve the page.
Settings come from the same HRDASH_* variables as everything else; HRDASH_HOST/HRDASH_PORT give
the default bind address (a -b/--bind flag overrides it).
"""

from __future__ import annotations

from typing import Any

from hrdash.cli import configure_logging, fail
from hrdash.settings import SettingError, Settings
from hrdash.supervisor import Supervisor

try:
    _settings = Settings.load()
except SettingError as _exc:
    fail(str(_exc))

bind = [f"{_settings.host}:{_settings.port}"]
control_socket_disable = True  # gunicorn 27's control socket is not needed here
_supervisor: Supervisor | None = None


def _bound_port(server: Any) -> int | None:
    """The port of the first TCP address gunicorn binds, if any."""
    for address in server.cfg.address:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return None


def on_starting(server: Any) -> None:
    """Master, before workers: start the background processes once."""
    global _supervisor
    configure_logging(_settings.log_level)
    settings = _settings
    port = _bound_port(server)
    if port is not None and port != settings.port:
        # The page is served from another port than HRDASH_PORT: the bridge must accept it.
        settings = settings.replace(port=port)
    _supervisor = Supervisor(settings)
    try:
        _supervisor.check_ports()
    except SettingError as exc:
        fail(str(exc))
    _supervisor.start()


def on_exit(server: Any) -> None:
    """Master, on shutdown: stop the background processes."""
    if _supervisor is not None:
        _supervisor.stop()
