"""``hrdash`` command line: run, bridge, edge, simulate, probe.

Every option is a setting from :data:`hrdash.settings.SETTINGS` (flag > ``HRDASH_*`` variable >
default). User mistakes end with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from hrdash.settings import SETTINGS, PortInUseError, SettingError, Settings

F = TypeVar("F", bound=Callable[..., Any])

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def fail(message: str, status: int = 2) -> NoReturn:
    """One line on stderr, then exit."""
    click.echo(f"hrdash: error: {message}", err=True)
    sys.exit(status)


def settings_options(scope: str) -> Callable[[F], F]:
    """Add one ``--flag`` per setting of ``scope``; documented with its variable and default."""

    def decorate(func: F) -> F:
        for setting in reversed(SETTINGS):
            if scope not in setting.scopes:
                continue
            default = setting.default or "empty"
            func = click.option(
                setting.flag,
                setting.name,
                default=None,
                metavar="VALUE",
                help=f"{setting.help} [env {setting.env}; default: {default}]",
            )(func)
        return func

    return decorate


def load_settings(flags: dict[str, Any]) -> Settings:
    try:
        settings = Settings.load(overrides=flags)
    except SettingError as exc:
        fail(str(exc))
    configure_logging(settings.log_level)
    return settings


def check_sources(settings: Settings) -> None:
    """A bad sources file (or none where the settings name one) ends here, before anything
    serves: one line naming the file, the patient and the field, exit status 2."""
    from hrdash.sources import station_sources

    try:
        station_sources(settings)
    except SettingError as exc:
        fail(str(exc))


def check_redis(settings: Settings) -> None:
    """With HRDASH_REDIS_URL: Redis answers now, or one line and exit status 2 (a wrong URL or
    a Redis not started is a configuration error; an outage later is ridden out). Imports
    redis-py only when the URL is set. A supervised child (``hrdash ingest``/``edge`` under
    ``python app.py`` or gunicorn) skips it: its parent checked, and one restarted during an
    outage must start and wait for Redis, not stop."""
    from hrdash.supervisor import SUPERVISED_ENV

    if not settings.uses_redis or os.environ.get(SUPERVISED_ENV) == "1":
        return
    from hrdash.broker.client import check_reachable

    try:
        check_reachable(settings)
    except SettingError as exc:
        fail(str(exc))


def _run_broker_process(
    flags: dict[str, Any], run: Callable[[Settings], Coroutine[Any, Any, None]], no_url: str
) -> None:
    """`hrdash ingest` / `hrdash edge`: ``no_url`` (one line, exit 2) without HRDASH_REDIS_URL;
    the sources file and Redis checked (one line, exit 2); then ``run`` until stopped."""
    from hrdash.broker.client import BrokerError

    settings = load_settings(flags)
    if not settings.uses_redis:
        fail(no_url)
    check_sources(settings)
    check_redis(settings)
    try:
        _run_async(run(settings))
    except BrokerError as exc:
        fail(str(exc))


BRIDGE_WITH_REDIS = (
    "HRDASH_REDIS_URL is set: `hrdash bridge` is the single process without Redis; with Redis "
    "run `hrdash ingest` and `hrdash edge` (`python app.py` and gunicorn start both)"
)


def configure_logging(level: str) -> None:
    """Our loggers at ``level``; websockets' per-connection chatter only when debugging."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)
    if level != "debug":
        logging.getLogger("websockets").setLevel(logging.WARNING)


def _run_async(main: Any) -> None:
    try:
        asyncio.run(main)
    except SettingError as exc:  # a port in use, or a HRDASH_TRANSFORM hook that cannot load
        fail(str(exc))
    except KeyboardInterrupt:
        pass


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="hrdash")
def cli() -> None:
    """hrdash: a live heart-rate monitor for WebSocket services, built on Plotly Dash.

    Every option is also an HRDASH_* environment variable (the option's help names it).
    Not a medical device.
    """


@cli.command()
@settings_options("run")
def run(**flags: Any) -> None:
    """Run everything: the simulator (when neither an upstream URL nor a sources file is set),
    the bridge and the Dash server. The same as `python app.py`. With HRDASH_REDIS_URL: one
    ingest and HRDASH_EDGES edges in place of the bridge. Ctrl-C or SIGTERM stops them all."""
    from hrdash.runner import run_all

    settings = load_settings(flags)
    check_sources(settings)
    check_redis(settings)
    try:
        run_all(settings)
    except PortInUseError as exc:
        fail(str(exc))


@cli.command()
@settings_options("bridge")
def bridge(**flags: Any) -> None:
    """Run only the bridge: connect to the heart-rate service (or every patient of the sources
    file) and relay the readings to browsers on ws://BRIDGE_HOST:BRIDGE_PORT/ws?patient=ID, the
    station feed on /ws?station=1 (health: GET /healthz; patients: GET /api/patients)."""
    from hrdash.bridge import run_bridge

    settings = load_settings(flags)
    if settings.uses_redis:
        fail(BRIDGE_WITH_REDIS)
    check_sources(settings)
    _run_async(run_bridge(settings))


@cli.command()
@settings_options("bridge")
def edge(**flags: Any) -> None:
    """Run one edge of the Redis fan-out: read every patient's streams from HRDASH_REDIS_URL
    (written by `hrdash ingest`) and serve viewers on ws://BRIDGE_HOST:BRIDGE_PORT as the bridge
    does. Several edges may share the port (SO_REUSEPORT), on this machine or others with the
    same sources file. Redis must answer at the start (else one line, exit status 2); later
    outages are ridden out."""
    from hrdash.broker.edge_node import run_edge

    _run_broker_process(
        flags,
        run_edge,
        "hrdash edge needs HRDASH_REDIS_URL (the Redis that hrdash ingest writes to)",
    )


@cli.command()
@settings_options("bridge")
def ingest(**flags: Any) -> None:
    """Run an ingest for the fan-out on Redis (HRDASH_REDIS_URL): read every patient whose lease
    it gets and write each reading, status and alarm frame once to Redis Streams. Listens on no
    port; run any number, on any machines, with the same sources file: one holds each patient,
    another takes it over when it dies."""
    from hrdash.broker.ingest import run_ingest

    _run_broker_process(
        flags, run_ingest, "hrdash ingest needs HRDASH_REDIS_URL (the Redis that hrdash edge reads)"
    )


@cli.command()
@settings_options("simulate")
def simulate(**flags: Any) -> None:
    """Run only the embedded heart-rate service on ws://127.0.0.1:SIMULATOR_PORT/, sending
    {"time": <Unix ms>, "value": <bpm>} every SIMULATOR_PERIOD seconds to every client; with
    SIMULATOR_PATIENTS=N, patients bed-01 … bed-NN at /patients/<id> (/ is bed-01)."""
    from hrdash.simulator import run_simulator

    settings = load_settings(flags)
    _run_async(
        run_simulator(
            settings.simulator_port,
            settings.simulator_period,
            settings.simulator_seed,
            patients=settings.simulator_patients,
        )
    )


@cli.command()
@click.argument("url", required=False)
@click.option(
    "--count",
    default=5,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Frames to receive before inferring.",
)
@click.option(
    "--timeout",
    "timeout_s",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1, 3600),
    help="Seconds to wait for the frames.",
)
@click.option(
    "--sample",
    type=click.Path(path_type=Path),
    default=None,
    help="Infer from a saved sample (JSON lines or a JSON array) instead of connecting.",
)
@settings_options("probe")
def probe(url: str | None, count: int, timeout_s: float, sample: Path | None, **flags: Any) -> None:
    """Connect to the heart-rate service at URL, print its first frames, and infer where the
    heart rate and the time are: prints the settings to use and a [[patient]] table for a
    sources file. Exit status 0 when a mapping was
    found, 1 when the service could not be reached or sent nothing in time, 3 when no field
    fits."""
    from hrdash import probe as probing

    # `hrdash probe ... | head` ends quietly. Only here: the bridge and simulator must keep
    # Python's default (SIGPIPE ignored), or a viewer vanishing mid-write would kill them.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if (url is None) == (sample is None):
        fail("give a service URL or --sample FILE (one of them)")
    if url is not None and not url.startswith(("ws://", "wss://")):
        fail(f"URL: expected a ws:// or wss:// URL, got {url!r}")
    # The URL given is the one service probed: a station's sources file does not apply.
    settings = load_settings({**flags, "upstream_url": url or None, "sources": ""})
    try:
        text, status = probing.probe(settings, count, timeout_s, sample)
    except probing.ProbeError as exc:
        fail(str(exc), status=1)
    click.echo(text)
    sys.exit(status)


@cli.command(hidden=True)
@click.option("--report-fd", type=int, required=True, help="Pipe to the gunicorn master.")
def supervise(report_fd: int) -> None:
    """Internal (gunicorn): run the simulator and the bridge as this process's children, restart
    them, and report to the gunicorn master on REPORT_FD. Settings come from HRDASH_*."""
    from hrdash.supervise import serve

    settings = load_settings({})
    sys.exit(serve(settings, report_fd))


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="hrdash")
