"""`gunicorn app:server` (with gunicorn.conf.py) when its background processes fail: the log gives
the true cause of each exit, a killed bridge is restarted, a bridge that cannot start stops
gunicorn with one line and status 2, and no process is left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time

import psutil

from tests.conftest import timeout
from tests.support import (
    ROOT,
    Running,
    free_port,
    gunicorn_command,
    hrdash_running,
    routed_url,
)

USAGE_LINE = "bridge exited with status 2 (a usage error); not restarting it"


def wait_new_child(running: Running, word: str, old_pid: int, seconds: float) -> psutil.Process:
    """The descendant running ``word`` once it is another process than ``old_pid``."""
    deadline = time.monotonic() + timeout(seconds)
    while True:
        with contextlib.suppress(LookupError, psutil.Error):
            child = running.child(word)
            if child.pid != old_pid:
                return child
        assert time.monotonic() < deadline, f"no new {word} process:\n{running.log()}"
        time.sleep(0.05)


def wait_health_run(running: Running, old_run: str, seconds: float) -> dict[str, object]:
    """/healthz once it answers with another run than ``old_run``."""
    deadline = time.monotonic() + timeout(seconds)
    while True:
        with contextlib.suppress(OSError, ValueError):
            health = running.health()
            if health["run"] != old_run:
                return health
        assert time.monotonic() < deadline, f"no bridge with a new run:\n{running.log()}"
        time.sleep(0.1)


def ours(simulator_port: int) -> list[psutil.Process]:
    """Processes started with our (unique) HRDASH_SIMULATOR_PORT in their environment."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("HRDASH_SIMULATOR_PORT") == str(simulator_port):
                found.append(proc)
    return found


def test_sigkilled_bridge_is_logged_with_its_signal_and_restarted() -> None:
    """SIGKILL to the bridge under gunicorn: the log says "killed by signal 9 (SIGKILL)" (not a
    status read after gunicorn's master reaped it), and a new bridge serves a new run."""
    with hrdash_running(gunicorn_command(workers=2)) as running:
        running.wait_readings(1)
        old_run = str(running.health()["run"])
        old = running.child("bridge")
        old.kill()
        wait_new_child(running, "bridge", old.pid, 10)
        health = wait_health_run(running, old_run, 15)
        assert health["run"] != old_run
        log = running.log()
        assert "bridge killed by signal 9 (SIGKILL); restarting in 0.5 s" in log, log
        assert "status 0" not in log, log


def test_bridge_usage_error_at_start_stops_gunicorn_with_one_line() -> None:
    """A setting only the bridge checks (a HRDASH_TRANSFORM that cannot be imported): the
    bridge exits 2 once, is not restarted, and gunicorn stops before serving, with status 2
    and the cause as its last line; nothing is left running."""
    simulator_port = free_port()
    env = {
        **os.environ,
        "HRDASH_PORT": str(free_port()),
        "HRDASH_BRIDGE_PORT": str(free_port()),
        "HRDASH_SIMULATOR_PORT": str(simulator_port),
        "HRDASH_TRANSFORM": "no_such_hook_module:hook",
        "PYTHONUNBUFFERED": "1",
    }
    with tempfile.TemporaryFile() as log_file:
        started = time.monotonic()
        proc = subprocess.Popen(
            gunicorn_command(workers=2),
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            status = proc.wait(timeout=timeout(30))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        elapsed = time.monotonic() - started
        log_file.seek(0)
        log = log_file.read().decode(errors="replace")
    lines = [line for line in log.splitlines() if line.strip()]
    assert status == 2, log
    assert lines[-1] == f"hrdash: error: {USAGE_LINE}", log
    assert log.count("No module named 'no_such_hook_module'") == 1, log  # started once
    assert log.count(USAGE_LINE) == 2, log  # the supervisor's log line and gunicorn's last line
    assert "restarting in" not in log and "Listening at" not in log, log
    assert "Traceback" not in log, log
    assert elapsed < timeout(30)
    _, alive = psutil.wait_procs(ours(simulator_port), timeout=timeout(2))
    assert alive == [], [p.cmdline() for p in alive]


def test_restarted_bridge_that_cannot_start_stops_gunicorn() -> None:
    """The bridge SIGKILLed and its port taken before the restart: the new bridge exits 2, and
    gunicorn, already serving, stops with status 2 and that cause as its last line."""
    running_proc: subprocess.Popen[bytes] | None = None
    taken = socket.socket()
    try:
        with contextlib.ExitStack() as stack:
            running = stack.enter_context(hrdash_running(gunicorn_command(workers=1)))
            running_proc = running.proc
            running.wait_readings(1)
            running.child("bridge").kill()
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            deadline = time.monotonic() + 2.0
            while True:  # the restart comes 0.5 s after the supervisor sees the death
                try:
                    taken.bind(("127.0.0.1", running.bridge_port))
                    break
                except OSError:
                    assert time.monotonic() < deadline, "the killed bridge's port stayed taken"
                    time.sleep(0.01)
            taken.listen()
            status = running.proc.wait(timeout=timeout(30))
            log = running.log()
        assert status == 2, log
        lines = [line for line in log.splitlines() if line.strip()]
        assert lines[-1] == f"hrdash: error: {USAGE_LINE}", log
        assert "bridge killed by signal 9 (SIGKILL); restarting in 0.5 s" in log, log
        assert log.count("bridge restarted") == 1, log
    finally:
        taken.close()
        if running_proc is not None and running_proc.poll() is None:
            running_proc.kill()


def test_killed_supervising_process_is_started_again() -> None:
    """SIGKILL to the supervising process: its children stop (they die with their parent), the
    master logs it and starts it again once their ports are free, and a new bridge serves."""
    with hrdash_running(gunicorn_command(workers=1)) as running:
        running.wait_readings(1)
        old_run = str(running.health()["run"])
        supervisor = running.child("supervise")
        old_bridge = running.child("bridge")
        supervisor.send_signal(signal.SIGKILL)
        psutil.wait_procs([old_bridge], timeout=timeout(10))
        assert not old_bridge.is_running()
        wait_new_child(running, "supervise", supervisor.pid, 15)
        wait_health_run(running, old_run, 20)
        log = running.log()
        assert f"the supervising process (pid {supervisor.pid}) ended without a report" in log


def test_bind_flag_port_is_allowed_by_the_bridge_and_named_to_the_page() -> None:
    """``gunicorn -b`` on another port than HRDASH_PORT: the bridge accepts that port's origins,
    and the page (served by workers forked later) is told the same allowed list."""
    bound = free_port()
    command = [*gunicorn_command(workers=2), "-b", f"127.0.0.1:{bound}"]
    with hrdash_running(command, page_port=bound) as running:
        assert running.port == bound
        allowed = running.health()["origins"]["allowed"]
        assert f"http://127.0.0.1:{bound}" in allowed, allowed
        layout = routed_url(f"http://127.0.0.1:{bound}", "/")["layout"]
        page_allowed = _find_key(layout, "allowed_origins")
        assert page_allowed == allowed, (page_allowed, allowed)


def _find_key(tree: object, key: str) -> object:
    """The first value stored under ``key`` anywhere in a JSON tree (raises if there is none)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if key in node:
                return node[key]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    raise LookupError(key)
