"""hrdash.supervisor with real child processes (simulator and bridge) on free ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from websockets.sync.client import ClientConnection, connect

from hrdash.settings import PortInUseError, Settings
from hrdash.supervisor import MAX_UNREADY_STARTS, Supervisor, describe_exit
from tests.conftest import free_port, timeout


def settings_on_free_ports(**env: str) -> Settings:
    return Settings.load(
        env={
            "HRDASH_PORT": str(free_port()),
            "HRDASH_BRIDGE_PORT": str(free_port()),
            "HRDASH_SIMULATOR_PORT": str(free_port()),
            "HRDASH_SIMULATOR_PERIOD": "0.05",
            "HRDASH_LOG_LEVEL": "warning",
            "HRDASH_DB": ":memory:",
            **env,
        }
    )


@pytest.fixture
def supervisor() -> Iterator[Supervisor]:
    """A started supervisor (simulator + bridge), stopped at teardown whatever happens."""
    sup = Supervisor(settings_on_free_ports())
    sup.start()
    try:
        yield sup
    finally:
        sup.stop()


def viewer(port: int, seconds: float = 10.0) -> ClientConnection:
    """Connect to the bridge, retrying while it is (re)starting."""
    deadline = time.monotonic() + timeout(seconds)
    while True:
        try:
            return connect(f"ws://127.0.0.1:{port}/ws", open_timeout=timeout(2))
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def first_readings(ws: ClientConnection, seconds: float = 10.0) -> dict[str, Any]:
    """The first readings frame that holds at least one reading."""
    deadline = time.monotonic() + timeout(seconds)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no readings")
        frame = json.loads(ws.recv(timeout=remaining))
        if frame.get("type") == "readings" and frame["readings"]:
            return dict(frame)


def test_runs_simulator_and_bridge(supervisor: Supervisor) -> None:
    """After start() a viewer of the bridge receives the simulator's readings."""
    assert supervisor.pid("simulator") is not None and supervisor.pid("bridge") is not None
    with viewer(supervisor.settings.bridge_port) as ws:
        frame = first_readings(ws)
    assert all(20 <= r["bpm"] <= 300 for r in frame["readings"])


def test_describe_exit_names_status_or_signal() -> None:
    """A return code in words: the exit status, or the signal number and its name."""
    assert describe_exit(0) == "exited with status 0"
    assert describe_exit(2) == "exited with status 2"
    assert describe_exit(-signal.SIGKILL) == "killed by signal 9 (SIGKILL)"
    assert describe_exit(-signal.SIGTERM) == "killed by signal 15 (SIGTERM)"
    assert describe_exit(-200) == "killed by signal 200"


def test_restarts_a_killed_bridge(supervisor: Supervisor, caplog: pytest.LogCaptureFixture) -> None:
    """A SIGKILLed bridge is restarted within a few seconds, with a new run id, and viewers get
    readings from it again; the log names the signal."""
    port = supervisor.settings.bridge_port
    with viewer(port) as ws:
        run_before = first_readings(ws)["run"]
    old_pid = supervisor.pid("bridge")
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout(10)
    while supervisor.pid("bridge") == old_pid:
        assert time.monotonic() < deadline, "bridge was not restarted"
        time.sleep(0.05)
    with viewer(port) as ws:
        frame = first_readings(ws)
    assert frame["run"] != run_before
    assert -signal.SIGKILL in next(c for c in supervisor.children if c.name == "bridge").exit_codes
    assert "bridge killed by signal 9 (SIGKILL); restarting in 0.5 s" in caplog.messages
    simulator = next(c for c in supervisor.children if c.name == "simulator")
    assert simulator.restarts == 0


def test_stop_leaves_no_child_alive() -> None:
    """stop() ends every child within 5 s and reaps it: none is left behind."""
    sup = Supervisor(settings_on_free_ports())
    sup.start()
    try:
        pids = [sup.pid("simulator"), sup.pid("bridge")]
        assert None not in pids
        children = [psutil.Process(pid) for pid in pids if pid is not None]
        assert all(p.is_running() for p in children)
    finally:
        started = time.monotonic()
        sup.stop()
        elapsed = time.monotonic() - started
    assert elapsed < 5 * timeout(1)
    _, alive = psutil.wait_procs(children, timeout=0.5)
    assert alive == []
    mine = psutil.Process().children(recursive=True)
    assert not [p for p in mine if p.pid in pids]


def test_check_ports_names_a_taken_port() -> None:
    """check_ports() refuses to start when a child's port is taken, naming port and setting."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        sup = Supervisor(settings_on_free_ports(HRDASH_BRIDGE_PORT=str(taken)))
        with pytest.raises(PortInUseError) as info:
            sup.check_ports()
    assert str(taken) in str(info.value) and "HRDASH_BRIDGE_PORT" in str(info.value)


def test_usage_error_is_not_restarted() -> None:
    """A child that exits with status 2 (its port is taken) is not restarted; on_fatal hears
    about it once."""
    fatal: list[tuple[str, int]] = []
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        sup = Supervisor(
            settings_on_free_ports(HRDASH_BRIDGE_PORT=str(taken)),
            on_fatal=lambda message, status: fatal.append((message, status)),
        )
        sup.start()
        try:
            deadline = time.monotonic() + timeout(15)
            while not fatal:
                assert time.monotonic() < deadline, "on_fatal was not called"
                time.sleep(0.05)
            time.sleep(1.0)  # two watcher rounds past a restart delay: nothing more happens
            bridge = next(c for c in sup.children if c.name == "bridge")
            assert bridge.exit_codes == [2]
            assert bridge.restarts == 0
            assert fatal == [("bridge exited with status 2 (a usage error); not restarting it", 2)]
        finally:
            sup.stop()


def test_gives_up_on_a_child_that_keeps_dying_before_it_is_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bridge that dies at every start before opening its port (status 1, not a usage error)
    is restarted with backoff, then given up after MAX_UNREADY_STARTS starts: on_fatal hears
    once, with status 1 and the last cause, and nothing more is started."""
    (tmp_path / "crash_on_import.py").write_text("import os\n\nos._exit(1)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    fatal: list[tuple[str, int]] = []
    settings = settings_on_free_ports(
        HRDASH_UPSTREAM_URL=f"ws://127.0.0.1:{free_port()}/",  # no simulator: the bridge only
        HRDASH_TRANSFORM="crash_on_import:hook",
    )
    sup = Supervisor(settings, on_fatal=lambda message, status: fatal.append((message, status)))
    sup.start(wait=False)
    try:
        deadline = time.monotonic() + timeout(40)  # backoff 0.5 + 1 + 2 + 4 s, and 5 starts
        while not fatal:
            assert time.monotonic() < deadline, "the bridge was never given up"
            time.sleep(0.05)
        time.sleep(1.0)  # past the next restart delay: nothing more happens
        (bridge,) = sup.children
        assert bridge.exit_codes == [1] * MAX_UNREADY_STARTS
        assert bridge.restarts == MAX_UNREADY_STARTS - 1
        assert bridge.proc is not None and bridge.proc.poll() == 1
        assert fatal == [
            (
                f"bridge died {MAX_UNREADY_STARTS} times in a row before opening port "
                f"{settings.bridge_port} (last: exited with status 1); giving up",
                1,
            )
        ]
    finally:
        sup.stop()


def test_sigterm_while_handing_over_a_request_stops_the_server() -> None:
    """The SIGTERM handler's exception gets out of socketserver's per-request
    ``except Exception`` (it used to be swallowed there, and `python app.py` went on serving)."""
    from werkzeug.serving import make_server

    from hrdash.runner import _raise_stop, _Stop

    httpd = make_server("127.0.0.1", 0, lambda environ, start_response: [], threaded=True)
    handed: list[object] = []

    def process_request(request: object, client_address: object) -> None:
        handed.append(request)
        _raise_stop(signal.SIGTERM, None)

    httpd.process_request = process_request  # type: ignore[method-assign]
    try:
        with (
            socket.create_connection(httpd.server_address[:2], timeout=5),
            pytest.raises(_Stop),
        ):
            httpd._handle_request_noblock()
        assert len(handed) == 1
    finally:
        httpd.server_close()
