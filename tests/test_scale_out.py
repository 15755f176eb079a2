"""Scale out on Redis: the settings' start check, and the processes ``python app.py`` and
gunicorn run with ``HRDASH_REDIS_URL`` (ingest + ``HRDASH_EDGES`` edges)."""

from __future__ import annotations

import subprocess

import pytest

from hrdash.broker.client import check_reachable
from hrdash.settings import SettingError, Settings
from tests.redis_support import RedisServer
from tests.support import ROOT, app_command, free_port, gunicorn_command, scaled
from tests.test_cli import assert_one_line_error, clean_env, hrdash


def nowhere() -> str:
    """A Redis URL with a password, on a port nothing listens on."""
    return f"redis://:s3cret@127.0.0.1:{free_port()}/0"


def test_start_check_passes_when_redis_answers(redis_server: RedisServer) -> None:
    """A Redis that answers PING passes; without HRDASH_REDIS_URL nothing is checked."""
    check_reachable(Settings.load(env={"HRDASH_REDIS_URL": redis_server.url}))
    check_reachable(Settings.load(env={}))


def test_start_check_is_one_line_without_the_password() -> None:
    """Redis not there: a SettingError, one line naming the setting, the URL redacted."""
    url = nowhere()
    with pytest.raises(SettingError) as err:
        check_reachable(Settings.load(env={"HRDASH_REDIS_URL": url}))
    message = str(err.value)
    port = url.rsplit(":", 1)[1].split("/")[0]
    assert message == (
        f"HRDASH_REDIS_URL: cannot reach Redis at 'redis://***@127.0.0.1:{port}/0': "
        "connection refused"
    )


def test_app_with_redis_pointing_nowhere_stops_at_once() -> None:
    """`python app.py` with a Redis URL that answers nothing: one line, exit status 2, before
    anything starts (no port opened, no child)."""
    result = subprocess.run(
        app_command(),
        cwd=ROOT,
        env=clean_env(HRDASH_REDIS_URL=nowhere(), HRDASH_EDGES="2"),
        capture_output=True,
        text=True,
        timeout=scaled(30),
        stdin=subprocess.DEVNULL,
    )
    line = assert_one_line_error(result, "HRDASH_REDIS_URL", "cannot reach Redis")
    assert line.startswith("hrdash: error: HRDASH_REDIS_URL: ") and "s3cret" not in line
    assert "hrdash: open" not in result.stdout


def test_gunicorn_with_redis_pointing_nowhere_stops_at_once() -> None:
    """The gunicorn master checks Redis before it starts the supervisor: one line, exit 2."""
    result = subprocess.run(
        gunicorn_command(),
        cwd=ROOT,
        env=clean_env(HRDASH_REDIS_URL=nowhere(), HRDASH_PORT=str(free_port())),
        capture_output=True,
        text=True,
        timeout=scaled(30),
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors and errors[-1].startswith("hrdash: error: HRDASH_REDIS_URL: cannot reach Redis")
    assert "s3cret" not in result.stderr and "Traceback" not in result.stderr
    assert "Booting worker" not in result.stderr


def test_bridge_refuses_to_run_with_redis() -> None:
    """`hrdash bridge` is the single process: with Redis set it names the commands to run."""
    result = hrdash("bridge", env=clean_env(HRDASH_REDIS_URL="redis://127.0.0.1:6379/0"))
    line = assert_one_line_error(result, "HRDASH_REDIS_URL", "hrdash ingest", "hrdash edge")
    assert line.startswith("hrdash: error: ")


def test_edges_without_redis_is_one_line() -> None:
    """HRDASH_EDGES other than 1 needs Redis: `python app.py` says so and stops (exit 2)."""
    result = hrdash("run", env=clean_env(HRDASH_EDGES="2"))
    assert assert_one_line_error(result) == "hrdash: error: HRDASH_EDGES needs HRDASH_REDIS_URL"
