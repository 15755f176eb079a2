"""The ``hrdash`` command as a user runs it: ``python -m hrdash ...`` in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from websockets.sync.client import connect

from hrdash.settings import SETTINGS
from tests.conftest import free_port, http_get, timeout

COMMANDS = ["run", "bridge", "simulate"]


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any HRDASH_* variable but the session's HRDASH_DB (no
    history in the repo), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HRDASH_")}
    return {**env, "HRDASH_DB": os.environ["HRDASH_DB"], "PYTHONUNBUFFERED": "1", **extra}


def hrdash(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hrdash", *args],
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout(30),
        stdin=subprocess.DEVNULL,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *names: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def listening_socket() -> Iterator[int]:
    """A port on 127.0.0.1 that another program is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections for the whole test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        yield int(sock.getsockname()[1])


def test_top_level_help() -> None:
    """`hrdash --help` exits 0 and lists the commands."""
    result = hrdash("--help")
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_names_every_env_var(command: str) -> None:
    """`hrdash CMD --help` exits 0 and names the flag and HRDASH_* variable of every setting
    that the command uses."""
    result = hrdash(command, "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    scoped = [s for s in SETTINGS if command in s.scopes]
    assert scoped
    for setting in scoped:
        assert setting.env in text, setting.env
        assert setting.flag in text, setting.flag


@pytest.mark.parametrize(
    ("args", "env", "names"),
    [
        (["bridge", "--bridge-port", "abc"], {}, ["--bridge-port"]),
        (["bridge", "--upstream-url", "http://example.org/"], {}, ["--upstream-url"]),
        (["bridge"], {"HRDASH_WINDOW": "0"}, ["HRDASH_WINDOW"]),
        (["bridge"], {"HRDASH_BUFFER": "5"}, ["HRDASH_BUFFER", "HRDASH_WINDOW"]),
        (["bridge"], {"HRDASH_BRIDGE_PORT": "8050"}, ["HRDASH_BRIDGE_PORT", "HRDASH_PORT"]),
        (["simulate", "--simulator-port", "70000"], {}, ["--simulator-port"]),
        (["simulate"], {"HRDASH_SIMULATOR_PERIOD": "fast"}, ["HRDASH_SIMULATOR_PERIOD"]),
        (["run", "--order", "sideways"], {}, ["--order"]),
        (["run"], {"HRDASH_ALLOWED_ORIGINS": "example.org"}, ["HRDASH_ALLOWED_ORIGINS"]),
    ],
)
def test_bad_setting_is_one_line_and_status_2(
    args: list[str], env: dict[str, str], names: list[str]
) -> None:
    """A bad setting ends with exit status 2 and one stderr line naming it, no traceback."""
    assert_one_line_error(hrdash(*args, env=clean_env(**env)), *names)


def test_bridge_port_in_use(listening_socket: int, dead_port: int) -> None:
    """`hrdash bridge` on a taken port exits 2 with one line naming the port."""
    result = hrdash(
        "bridge",
        "--bridge-port",
        str(listening_socket),
        "--upstream-url",
        f"ws://127.0.0.1:{dead_port}/",
    )
    assert_one_line_error(result, str(listening_socket), "HRDASH_BRIDGE_PORT")


def test_simulator_port_in_use(listening_socket: int) -> None:
    """`hrdash simulate` on a taken port exits 2 with one line naming the port."""
    result = hrdash("simulate", "--simulator-port", str(listening_socket))
    assert_one_line_error(result, str(listening_socket), "HRDASH_SIMULATOR_PORT")


def wait_until_listening(proc: subprocess.Popen[str], port: int, seconds: float = 15.0) -> None:
    import time

    deadline = time.monotonic() + timeout(seconds)
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open within {seconds} s")


def stop_with_sigterm(proc: subprocess.Popen[str]) -> str:
    """SIGTERM ``proc``; it must exit 0 within 5 s. Returns its stderr."""
    proc.send_signal(signal.SIGTERM)
    try:
        _, stderr = proc.communicate(timeout=5 * timeout(1))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("did not stop within 5 s of SIGTERM") from None
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    return stderr


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hrdash", *args],
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_simulate_serves_frames_and_stops_on_sigterm() -> None:
    """`hrdash simulate` serves reference frames on its port and exits 0 within 5 s of SIGTERM."""
    port = free_port()
    proc = spawn("simulate", "--simulator-port", str(port), "--simulator-period", "0.05")
    try:
        wait_until_listening(proc, port)
        with connect(f"ws://127.0.0.1:{port}/", open_timeout=timeout(5)) as ws:
            frames = [json.loads(ws.recv(timeout=timeout(5))) for _ in range(3)]
        for frame in frames:
            assert set(frame) == {"time", "value"}
            assert type(frame["time"]) is int and type(frame["value"]) is int
    finally:
        if proc.poll() is None:
            stop_with_sigterm(proc)


def test_bridge_answers_healthz_and_stops_on_sigterm(dead_port: int) -> None:
    """`hrdash bridge` answers /healthz (upstream not live) and exits 0 within 5 s of SIGTERM."""
    port = free_port()
    proc = spawn(
        "bridge", "--bridge-port", str(port), "--upstream-url", f"ws://127.0.0.1:{dead_port}/"
    )
    try:
        wait_until_listening(proc, port)
        status, body = http_get(port, "/healthz")
        assert status == 200
        assert json.loads(body)["upstream"] in ("connecting", "down")
    finally:
        if proc.poll() is None:
            stop_with_sigterm(proc)
