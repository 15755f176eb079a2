"""hrdash.supervisor with real child processes (simulator and bridge) on free ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from websockets.sync.client import ClientConnection, connect

from hrdash.settings import PortInUseError, Settings
from hrdash.supervisor import Supervisor
from tests.conftest import free_port, timeout


def settings_on_free_ports(**env: str) -> Settings:
    return Settings.load(
        env={
            "HRDASH_PORT": str(free_port()),
            "HRDASH_BRIDGE_PORT": str(free_port()),
            "HRDASH_SIMULATOR_PORT": str(free_port()),
            "HRDASH_SIMULATOR_PERIOD": "0.05",
            "HRDASH_LOG_LEVEL": "warning",
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


def test_restarts_a_killed_bridge(supervisor: Supervisor) -> None:
    """A SIGKILLed bridge is restarted within a few seconds, with a new run id, and viewers get
    readings from it again."""
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
    fatal: list[str] = []
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        sup = Supervisor(
            settings_on_free_ports(HRDASH_BRIDGE_PORT=str(taken)), on_fatal=fatal.append
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
            assert len(fatal) == 1 and "bridge" in fatal[0]
        finally:
            sup.stop()
