"""Scale out on Redis: the settings' start check, and the processes ``python app.py`` and
gunicorn run with ``HRDASH_REDIS_URL`` (ingest + ``HRDASH_EDGES`` edges)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from hrdash.broker.client import check_reachable
from hrdash.settings import PortInUseError, SettingError, Settings
from hrdash.supervisor import (
    MAX_UNREADY_STARTS,
    STOP_GRACE,
    SUPERVISED_ENV,
    Supervisor,
    children_for,
    listens_on,
    port_open,
)
from tests.redis_support import RedisServer
from tests.support import (
    ROOT,
    Running,
    app_command,
    free_port,
    get_json,
    gunicorn_command,
    hrdash_running,
    scaled,
    wait_port,
)
from tests.test_cli import assert_one_line_error, clean_env, hrdash
from tests.test_deploy import (
    make_certificate,
    needs_nginx,
    nginx_running,
    readme_nginx_block,
    site_config,
)


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


# -- supervision: the children with Redis ------------------------------------------------------

REDIS = "redis://127.0.0.1:6379/0"


def test_children_without_redis_are_simulator_and_bridge() -> None:
    """Without Redis nothing changes: simulator (when used) and one bridge."""
    names = [c.name for c in children_for(Settings.load(env={}), "py")]
    assert names == ["simulator", "bridge"]
    upstream = Settings.load(env={"HRDASH_UPSTREAM_URL": "ws://example.org/"})
    (bridge,) = children_for(upstream, "py")
    assert bridge.argv == ["py", "-m", "hrdash", "bridge"] and bridge.port == 8765


def test_children_with_redis_are_one_ingest_and_n_edges_on_the_bridge_port() -> None:
    """With Redis: the simulator (when used), one ingest without a port, HRDASH_EDGES edges all
    on the bridge port; no bridge."""
    settings = Settings.load(
        env={"HRDASH_REDIS_URL": REDIS, "HRDASH_EDGES": "3", "HRDASH_BRIDGE_HOST": "0.0.0.0"}
    )
    children = children_for(settings, "py")
    assert [c.name for c in children] == ["simulator", "ingest", "edge-1", "edge-2", "edge-3"]
    simulator, ingest, *edges = children
    assert simulator.port == settings.simulator_port
    assert ingest.argv == ["py", "-m", "hrdash", "ingest"] and ingest.port is None
    for edge in edges:
        assert edge.argv == ["py", "-m", "hrdash", "edge"]
        assert (edge.host, edge.port, edge.setting) == ("0.0.0.0", 8765, "HRDASH_BRIDGE_PORT")
    one = Settings.load(env={"HRDASH_REDIS_URL": REDIS, "HRDASH_SOURCES": ""}).replace(
        upstream_url="ws://example.org/"
    )
    assert [c.name for c in children_for(one, "py")] == ["ingest", "edge"]


def test_children_get_the_redis_settings_and_skip_the_start_check() -> None:
    """Children read HRDASH_REDIS_URL from their environment, and are told that their parent
    checked Redis (a child restarted during an outage waits for it instead of exiting 2)."""
    settings = Settings.load(env={"HRDASH_REDIS_URL": REDIS, "HRDASH_EDGES": "2"})
    env = Supervisor(settings).env
    assert env["HRDASH_REDIS_URL"] == REDIS and env["HRDASH_EDGES"] == "2"
    assert env[SUPERVISED_ENV] == "1"
    nowhere_env = clean_env(HRDASH_REDIS_URL=nowhere(), **{SUPERVISED_ENV: "1"})
    # `hrdash bridge` is refused with Redis whoever starts it, but not for an unreachable URL:
    line = assert_one_line_error(hrdash("bridge", env=nowhere_env))
    assert "hrdash ingest" in line and "cannot reach" not in line


def test_an_edge_is_ready_when_it_listens_itself() -> None:
    """Edges share the bridge port (SO_REUSEPORT): the port answering says nothing of a given
    edge, so readiness is that process's own listening socket."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            assert port_open("127.0.0.1", port)
            assert listens_on(os.getpid(), "127.0.0.1", port)
            assert not listens_on(sleeper.pid, "127.0.0.1", port)
            assert not listens_on(os.getpid(), "127.0.0.1", free_port())
        finally:
            sleeper.kill()
            sleeper.wait()


FAKE = """\
import os, socket, sys, time

role = sys.argv[3]
if role == "ingest":
    if os.environ.get("FAKE_INGEST_EXIT"):
        sys.exit(int(os.environ["FAKE_INGEST_EXIT"]))
elif role == "edge":
    # The n-th edge to start (n = 0, 1, ...) listens after n x FAKE_EDGE_DELAY s.
    for n in range(64):
        try:
            os.close(os.open(f"{os.environ['FAKE_DIR']}/edge-{n}", os.O_CREAT | os.O_EXCL))
            break
        except FileExistsError:
            continue
    time.sleep(n * float(os.environ.get("FAKE_EDGE_DELAY", "0")))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", int(os.environ["HRDASH_BRIDGE_PORT"])))
    sock.listen()
else:
    sys.exit(3)
time.sleep(3600)
"""


@pytest.fixture
def fake_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A stand-in for ``python`` that runs `-m hrdash ingest|edge` as a process that lives (the
    n-th edge started listens on the bridge port with SO_REUSEPORT after n x FAKE_EDGE_DELAY
    s): supervision on its own, whatever the commands do."""
    monkeypatch.setenv("FAKE_DIR", str(tmp_path))  # the supervisor passes its environment on
    script = tmp_path / "fake-python"
    script.write_text(f"#!{sys.executable}\n{FAKE}")
    script.chmod(0o755)
    return str(script)


def fake_settings(**env: str) -> Settings:
    return Settings.load(
        env={
            "HRDASH_REDIS_URL": REDIS,
            "HRDASH_UPSTREAM_URL": "ws://127.0.0.1:9/",  # no simulator
            "HRDASH_PORT": str(free_port()),
            "HRDASH_BRIDGE_PORT": str(free_port()),
            **env,
        }
    )


def test_supervisor_runs_ingest_and_every_edge_and_restarts_a_killed_edge(
    fake_python: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """start() returns once the ingest has lived 1 s and each edge listens itself (the edges
    start side by side and listen 0.6 s apart: the port answering is not enough); a SIGKILLed
    edge is restarted (the others untouched) and listens again; stop() leaves nothing."""
    monkeypatch.setenv("FAKE_EDGE_DELAY", "0.6")
    settings = fake_settings(HRDASH_EDGES="3")
    sup = Supervisor(settings, python=fake_python)
    started = time.monotonic()
    sup.start()
    try:
        assert time.monotonic() - started >= 1.0  # the ingest lived 1 s
        assert sup.all_ready()
        port = settings.bridge_port
        pids = {c.name: c.proc.pid for c in sup.children if c.proc is not None}
        assert set(pids) == {"ingest", "edge-1", "edge-2", "edge-3"}
        for name in ("edge-1", "edge-2", "edge-3"):
            assert listens_on(pids[name], "127.0.0.1", port), name
        os.kill(pids["edge-2"], signal.SIGKILL)
        deadline = time.monotonic() + scaled(10)
        while sup.pid("edge-2") == pids["edge-2"] or not sup.all_ready():
            assert time.monotonic() < deadline, "edge-2 was not restarted"
            time.sleep(0.05)
        new_pid = sup.pid("edge-2")
        assert new_pid is not None and listens_on(new_pid, "127.0.0.1", port)
        assert "edge-2 killed by signal 9 (SIGKILL); restarting in 0.5 s" in caplog.messages
        assert [c.restarts for c in sup.children] == [0, 0, 1, 0]
        family = [psutil.Process(pid) for pid in (*pids.values(), new_pid) if pid != pids["edge-2"]]
    finally:
        sup.stop()
    _, alive = psutil.wait_procs(family, timeout=1.0)
    assert alive == []


def test_an_ingest_that_keeps_dying_at_start_is_given_up(
    fake_python: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ingest has no port: dying before it lived 1 s counts as dying before ready;
    MAX_UNREADY_STARTS of those in a row and it is given up, with status 1."""
    monkeypatch.setenv("FAKE_INGEST_EXIT", "1")
    fatal: list[tuple[str, int]] = []
    sup = Supervisor(
        fake_settings(), python=fake_python, on_fatal=lambda m, s: fatal.append((m, s))
    )
    sup.start(wait=False)
    try:
        deadline = time.monotonic() + scaled(40)
        while not fatal:
            assert time.monotonic() < deadline, "the ingest was never given up"
            time.sleep(0.05)
    finally:
        sup.stop()
    ingest = sup.children[0]
    assert ingest.exit_codes == [1] * MAX_UNREADY_STARTS
    assert fatal == [
        (
            f"ingest died {MAX_UNREADY_STARTS} times in a row before living 1 s "
            "(last: exited with status 1); giving up",
            1,
        )
    ]


def test_an_ingest_usage_error_is_not_restarted(
    fake_python: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for the bridge: an ingest exiting with status 2 is a usage error, fatal at once."""
    monkeypatch.setenv("FAKE_INGEST_EXIT", "2")
    fatal: list[tuple[str, int]] = []
    sup = Supervisor(
        fake_settings(), python=fake_python, on_fatal=lambda m, s: fatal.append((m, s))
    )
    sup.start()
    try:
        deadline = time.monotonic() + scaled(10)
        while not fatal:
            assert time.monotonic() < deadline, "on_fatal was not called"
            time.sleep(0.05)
    finally:
        sup.stop()
    assert fatal == [("ingest exited with status 2 (a usage error); not restarting it", 2)]


def test_check_ports_checks_the_shared_bridge_port(fake_python: str) -> None:
    """With N edges the bridge port is checked (once); the ingest has none."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        sup = Supervisor(fake_settings(HRDASH_EDGES="2", HRDASH_BRIDGE_PORT=str(taken)))
        with pytest.raises(PortInUseError) as info:
            sup.check_ports()
    assert str(taken) in str(info.value) and "HRDASH_BRIDGE_PORT" in str(info.value)
    Supervisor(fake_settings(HRDASH_EDGES="2")).check_ports()


# -- end to end: real redis-server, ingest, edges, nginx ---------------------------------------


class Processes:
    """hrdash commands started by a test, each in a session of its own, stopped at the end;
    none may be left behind."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.dir = directory
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "hrdash", *args],
            cwd=self.dir,
            env={**self.env, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.dir / f"{name}.log").read_text(errors="replace")

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{self.log(name)[-3000:]}" for name in self.procs)

    def stop(self) -> list[str]:
        """SIGTERM every process still running, SIGKILL after the grace; the names of those
        that needed the SIGKILL."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        killed = []
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=scaled(STOP_GRACE + 2))
            except subprocess.TimeoutExpired:
                killed.append(name)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        return killed


def readings_of(ws: ClientConnection, want: int, seconds: float = 20.0) -> list[dict[str, Any]]:
    """Readings frames from ``ws`` until they hold ``want`` readings in all."""
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + scaled(seconds)
    while sum(len(f["readings"]) for f in frames) < want:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{want} readings did not come in {seconds} s: {frames[-3:]}")
        frame = json.loads(ws.recv(timeout=remaining))
        if frame.get("type") == "readings":
            frames.append(frame)
    return frames


def until_closed(ws: ClientConnection, seconds: float = 10.0) -> list[dict[str, Any]]:
    """Every readings frame left on ``ws`` until its edge is gone."""
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + scaled(seconds)
    while True:
        try:
            frame = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        except ConnectionClosed:
            return frames
        if frame.get("type") == "readings":
            frames.append(frame)
        assert time.monotonic() < deadline, "the connection outlived its edge"


def edge_viewers(port: int) -> int:
    """Viewers of the first patient on the edge at ``port``."""
    return int(get_json(f"http://127.0.0.1:{port}/healthz")["viewers"])


@needs_nginx
def test_a_viewer_through_nginx_moves_to_the_other_edge_with_no_gap_and_no_duplicate(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The README's nginx block in front of two `hrdash edge` on two ports, one `hrdash ingest`,
    a real redis-server and the simulator: a viewer through nginx gets readings; when the edge
    it is on is SIGKILLed, it reconnects through nginx with since and run, lands on the other
    edge and resumes: every seq once, none missing, same run."""
    nginx_port, sim_port = free_port(), free_port()
    edge_ports = [free_port(), free_port()]
    origin = f"https://127.0.0.1:{nginx_port}"
    env = clean_env(
        HRDASH_REDIS_URL=redis_server.url,
        HRDASH_SIMULATOR_PORT=str(sim_port),
        HRDASH_SIMULATOR_PATIENTS="2",
        HRDASH_SIMULATOR_PERIOD="0.1",
        HRDASH_ALLOWED_ORIGINS=origin,
        HRDASH_DB=":memory:",
        HRDASH_PORT=str(free_port()),
    )
    procs = Processes(tmp_path, env)
    try:
        procs.start("simulator", "simulate")
        wait_port(sim_port, 15, procs.procs["simulator"])
        procs.start("ingest", "ingest")
        for index, port in enumerate(edge_ports):
            procs.start(f"edge-{index}", "edge", HRDASH_BRIDGE_PORT=str(port))
        for index, port in enumerate(edge_ports):
            wait_port(port, 20, procs.procs[f"edge-{index}"])
        (tmp_path / "tls").mkdir()
        chain, key = make_certificate(tmp_path / "tls")
        site = site_config(
            readme_nginx_block(scale_out=True),
            {
                "listen 443 ssl;": f"listen 127.0.0.1:{nginx_port} ssl;",
                "/etc/ssl/certs/monitor.example.org.pem": chain,
                "/etc/ssl/private/monitor.example.org.key": key,
                "server 10.0.0.11:8765": f"server 127.0.0.1:{edge_ports[0]}",
                "server 10.0.0.12:8765": f"server 127.0.0.1:{edge_ports[1]}",
                "proxy_pass http://10.0.0.11:8050;": f"proxy_pass http://127.0.0.1:{free_port()};",
            },
        )
        tls = ssl.create_default_context(cafile=None)
        tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
        url = f"wss://127.0.0.1:{nginx_port}/ws?patient=bed-01"
        with nginx_running(site, nginx_port):
            with connect(url, ssl=tls, origin=origin, open_timeout=scaled(5)) as ws:
                before = readings_of(ws, 10)
                on = [edge_viewers(port) for port in edge_ports]
                assert sorted(on) == [0, 1], on  # the viewer is on exactly one edge
                victim = on.index(1)
                procs.procs[f"edge-{victim}"].send_signal(signal.SIGKILL)
                before += until_closed(ws)
            run = before[0]["run"]
            last = before[-1]["readings"][-1]["seq"]
            resume = f"{url}&since={last}&run={run}"
            with connect(resume, ssl=tls, origin=origin, open_timeout=scaled(5)) as ws:
                after = readings_of(ws, 20)
                assert edge_viewers(edge_ports[1 - victim]) == 1
        seqs = [r["seq"] for f in before + after for r in f["readings"]]
        assert {f["run"] for f in before + after} == {run}
        assert len(seqs) == len(set(seqs)), "a reading came twice"
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a reading is missing"
        assert next(f for f in after if f["readings"])["readings"][0]["seq"] == last + 1
    except BaseException:
        print(procs.logs())
        raise
    finally:
        killed = procs.stop()
    assert killed == [], f"needed SIGKILL: {killed}"


def hrdash_children(running: Running) -> list[tuple[psutil.Process, str, float]]:
    """Every ``python -m hrdash COMMAND`` under ``running``: (process, COMMAND, seconds alive)."""
    out = []
    for proc in psutil.Process(running.proc.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            argv = proc.cmdline()
            if argv[-3:-1] == ["-m", "hrdash"]:
                out.append((proc, argv[-1], time.time() - proc.create_time()))
    return out


def assert_pages_and_broker_health(running: Running, edges: int) -> None:
    """The pages are served, /healthz has the broker section, readings flow, and the processes
    are one ingest and ``edges`` edges (no bridge)."""
    running.wait_readings(3)
    health = running.health()
    broker = health["broker"]
    assert broker["role"] == "edge" and broker["redis"].startswith("redis://127.0.0.1:")
    assert broker["reader"]["state"] == "up"
    for path in ("", "patient/bed-01"):
        with urllib.request.urlopen(running.url + path, timeout=scaled(10)) as response:
            assert response.status == 200
    commands = sorted(word for _, word, _ in hrdash_children(running) if word != "simulate")
    assert commands == ["edge"] * edges + ["ingest"]


def test_app_py_with_redis_runs_ingest_and_two_edges(redis_server: RedisServer) -> None:
    """`python app.py` with HRDASH_REDIS_URL and HRDASH_EDGES=2: the pages, /healthz with the
    broker section, readings; stops with no process left behind (hrdash_running checks)."""
    env = {
        "HRDASH_REDIS_URL": redis_server.url,
        "HRDASH_EDGES": "2",
        "HRDASH_SIMULATOR_PATIENTS": "2",
    }
    with hrdash_running(app_command(), env) as running:
        assert_pages_and_broker_health(running, 2)
        assert "Redis redis://127.0.0.1:" in running.log() and "2 edges" in running.log()


def test_gunicorn_with_redis_runs_ingest_and_two_edges(redis_server: RedisServer) -> None:
    """gunicorn likewise: its supervising process runs the ingest and the two edges."""
    env = {
        "HRDASH_REDIS_URL": redis_server.url,
        "HRDASH_EDGES": "2",
        "HRDASH_SIMULATOR_PATIENTS": "2",
    }
    with hrdash_running(gunicorn_command(2), env) as running:
        assert_pages_and_broker_health(running, 2)


def test_children_restarted_during_a_redis_outage_wait_for_it(redis_server: RedisServer) -> None:
    """Once Redis has answered, an outage is ridden out: an ingest and an edge killed while
    Redis is down are restarted and wait for it (they skip the start check: their parent made
    it), `python app.py` goes on, and readings flow again once Redis is back."""
    env = {"HRDASH_REDIS_URL": redis_server.url, "HRDASH_EDGES": "2"}
    with hrdash_running(app_command(), env) as running:
        running.wait_readings(3)
        redis_server.stop()
        killed = [running.child("ingest"), running.child("edge")]
        for proc in killed:
            proc.kill()
        gone = {proc.pid for proc in killed}
        deadline = time.monotonic() + scaled(15)
        while True:  # both restarted, and alive past the start check
            found = hrdash_children(running)
            words = sorted(word for _, word, _ in found if word != "simulate")
            fresh = [age for proc, _, age in found if proc.pid not in gone]
            if words == ["edge", "edge", "ingest"] and all(age > 2 for age in fresh):
                break
            assert running.proc.poll() is None, running.log()[-2000:]
            assert time.monotonic() < deadline, f"not restarted: {words}\n{running.log()[-2000:]}"
            time.sleep(0.2)
        assert running.proc.poll() is None
        redis_server.start()
        deadline = time.monotonic() + scaled(30)
        while True:
            health = running.health()
            if health["broker"]["reader"]["state"] == "up" and health["upstream"] == "live":
                break
            assert time.monotonic() < deadline, f"no readings after the outage: {health}"
            time.sleep(0.2)
    assert "not restarting it" not in running.log()


def scale_out_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Scale out\n")
    return text[start : text.index("\n## ", start + 1)]


def test_readme_scale_out_names_only_real_settings_and_commands() -> None:
    """Every HRDASH_* the Scale out section names is a setting, every `hrdash X` a command, and
    each command line of its shell blocks loads as settings (the values as written)."""
    from hrdash.cli import cli
    from hrdash.settings import SETTINGS

    section = scale_out_section()
    named = set(re.findall(r"HRDASH_[A-Z_]+", section))
    assert named and named <= {s.env for s in SETTINGS}, named - {s.env for s in SETTINGS}
    commands = set(re.findall(r"\bhrdash (\w+)", section))
    assert {"ingest", "edge"} <= commands and commands <= set(cli.commands), commands
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    lines = [line for b in blocks for line in b.replace("\\\n", " ").splitlines()]
    lines = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    assert len(lines) == 4, lines
    for line in lines:
        env = dict(re.findall(r"(HRDASH_[A-Z_]+)=(\S+)", line))
        env.pop("HRDASH_SOURCES", None)  # ward.toml is the reader's own file
        settings = Settings.load(env=env)
        assert settings.uses_redis, line
        assert line.split()[-1] in ("app.py", "app:server", "edge"), line
