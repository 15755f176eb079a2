"""Starts, watches and stops the background processes: the simulator (when no upstream URL is set)
and the bridge. Used by ``python app.py`` / ``hrdash run`` and by ``gunicorn.conf.py`` (in the
gunicorn master, so that there is exactly one bridge whatever the number of workers).

With ``HRDASH_REDIS_URL`` the bridge's place is taken by one ``python -m hrdash ingest`` (no
port: it counts as ready once it has lived ``ALIVE_READY`` s) and ``HRDASH_EDGES``
times ``python -m hrdash edge``, all listening on the bridge port (``SO_REUSEPORT``): each edge is
ready once *it* listens there, which is read from ``/proc`` since the port answers as soon as
the first one does (:func:`listens_on`). :func:`children_for` is that list.

Children are plain ``python -m hrdash bridge|simulate|ingest|edge`` processes that receive their
settings as ``HRDASH_*`` environment variables, and ``SUPERVISED_ENV`` (the parent checked that
Redis answered; a child restarted during an outage must ride it out, not stop at the start
check). On Linux each child is told to receive SIGTERM when its parent
dies, so even a SIGKILLed parent leaves no orphan. A child that dies is restarted with backoff
(0.5 s doubling up to 10 s, reset after 30 s of uptime); one that exits with status 2 (a usage
error, such as a port in use) is not restarted, since restarting cannot fix it, and neither is one
that died ``MAX_UNREADY_STARTS`` times in a row before ever opening its port. Either ends in
``on_fatal(message, status)``. Each exit is logged with its true cause (``exited with status N``
or ``killed by signal N (SIGNAME)``), which only the process that started the child can read: in
gunicorn, whose master reaps every child it has, the supervisor therefore runs in a process of
its own (:mod:`hrdash.supervise`).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hrdash.settings import PortInUseError, Settings

log = logging.getLogger("hrdash.supervisor")

RESTART_FIRST = 0.5  # seconds before the first restart
RESTART_CAP = 10.0  # seconds between restarts at most
HEALTHY_AFTER = 30.0  # seconds of uptime after which the restart backoff resets
STOP_GRACE = 4.0  # seconds between SIGTERM and SIGKILL when stopping
READY_TIMEOUT = 15.0  # seconds to wait for a child's port to accept connections
USAGE_ERROR = 2  # exit status of a child that must not be restarted
GAVE_UP = 1  # status reported to on_fatal when a child keeps dying before it is ready
MAX_UNREADY_STARTS = 5  # consecutive starts that die before opening their port, then give up
ALIVE_READY = 1.0  # seconds a child without a port must live to count as ready (the ingest)
PR_SET_PDEATHSIG = 1
SUPERVISED_ENV = "HRDASH_SUPERVISED"  # "1" in a supervised child's environment (not a setting)


def check_port_free(host: str, port: int, setting: str) -> None:
    """Raise :class:`PortInUseError` if nothing can listen on ``host:port``."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError.for_port(host, port, setting) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise PortInUseError(
                    f"cannot listen on {host}:{port}: no such local address (check {setting})"
                ) from None
            raise


def port_open(host: str, port: int) -> bool:
    """True if ``host:port`` accepts a TCP connection right now (one attempt)."""
    connect_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    connect_host = "::1" if connect_host == "::" else connect_host
    try:
        with socket.create_connection((connect_host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _listening_inodes(port: int) -> set[int] | None:
    """The inodes of the TCP sockets listening on ``port`` (any address), from
    ``/proc/net/tcp`` and ``tcp6``; None where there is no such file (not Linux)."""
    found: set[int] = set()
    read_any = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as lines:
                next(lines, None)  # the header
                read_any = True
                for line in lines:
                    fields = line.split()
                    # sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
                    if len(fields) < 10 or fields[3] != "0A":  # 0A: LISTEN
                        continue
                    if int(fields[1].rsplit(":", 1)[1], 16) == port:
                        found.add(int(fields[9]))
        except OSError:
            continue
    return found if read_any else None


def _socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets process ``pid`` holds open (empty once it is gone)."""
    inodes: set[int] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def listens_on(pid: int, host: str, port: int) -> bool:
    """True if process ``pid`` itself listens on ``port``. Several processes share the bridge
    port (``SO_REUSEPORT``), so a connection that succeeds says nothing of a given one: its
    sockets are matched against the listening ones in ``/proc``. Without ``/proc``: whether
    ``host:port`` accepts a connection."""
    listening = _listening_inodes(port)
    if listening is None:
        return port_open(host, port)
    return bool(listening & _socket_inodes(pid))


def wait_port(
    host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None
) -> bool:
    """True once ``host:port`` accepts a TCP connection; False after ``timeout`` seconds, or as
    soon as ``proc`` (the process that should open it) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def describe_exit(code: int) -> str:
    """A ``Popen.returncode`` in words: ``exited with status 1``, ``killed by signal 9
    (SIGKILL)``."""
    if code >= 0:
        return f"exited with status {code}"
    try:
        name = f" ({signal.Signals(-code).name})"
    except ValueError:
        name = ""
    return f"killed by signal {-code}{name}"


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class Child:
    name: str
    argv: list[str]
    port: int | None  # None: no port (the ingest), ready once alive ALIVE_READY s
    host: str = "127.0.0.1"
    setting: str = ""  # the setting that names its port
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    delay: float = RESTART_FIRST
    restart_at: float | None = None
    given_up: bool = False
    ready: bool = False  # it listens on its port (or lived ALIVE_READY s) since its (re)start
    unready_deaths: int = 0  # consecutive deaths before it was ready
    exit_codes: list[int] = field(default_factory=list)

    def is_ready_now(self, now: float) -> bool:
        """It listens on its port, or (no port) it has lived ``ALIVE_READY`` s, right now."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        if self.port is None:
            return now - self.started_at >= ALIVE_READY
        return listens_on(self.proc.pid, self.host, self.port)

    @property
    def readiness(self) -> str:
        """What being ready means for it, for messages."""
        if self.port is None:
            return f"living {ALIVE_READY:g} s"
        return f"opening port {self.port}"


def children_for(settings: Settings, python: str = sys.executable) -> list[Child]:
    """The processes to run, in start order: the simulator (when used), then the bridge; with
    Redis, one ingest and ``HRDASH_EDGES`` edges on the bridge port instead of the bridge."""
    out: list[Child] = []
    command = [python, "-m", "hrdash"]
    if settings.uses_simulator:
        out.append(
            Child(
                "simulator",
                [*command, "simulate"],
                settings.simulator_port,
                setting="HRDASH_SIMULATOR_PORT",
            )
        )
    host, port, setting = settings.bridge_host, settings.bridge_port, "HRDASH_BRIDGE_PORT"
    if not settings.uses_redis:
        out.append(Child("bridge", [*command, "bridge"], port, host, setting))
        return out
    out.append(Child("ingest", [*command, "ingest"], None))
    for index in range(1, settings.edges + 1):
        name = "edge" if settings.edges == 1 else f"edge-{index}"
        out.append(Child(name, [*command, "edge"], port, host, setting))
    return out


class Supervisor:
    """Runs the simulator and the bridge (with Redis: the ingest and the edges) as child
    processes and keeps them running.

    ``on_fatal(message, status)`` is called (from the watcher thread) once a child is given up:
    ``status`` 2 when it exited with a usage error, 1 when it kept dying before it was ready.
    The process that creates a Supervisor must be the only one that reaps its children.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        on_fatal: Callable[[str, int], None] | None = None,
        python: str = sys.executable,
    ) -> None:
        self.settings = settings
        self.on_fatal = on_fatal
        self.env = {
            **os.environ,
            **settings.to_env(),
            "PYTHONUNBUFFERED": "1",
            SUPERVISED_ENV: "1",
        }
        self.children = children_for(settings, python)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def check_ports(self) -> None:
        """Raise :class:`PortInUseError` if a child's port is taken."""
        checked: set[tuple[str, int]] = set()
        for child in self.children:
            if child.port is None or (child.host, child.port) in checked:
                continue
            checked.add((child.host, child.port))
            check_port_free(child.host, child.port, child.setting)

    def _spawn(self, child: Child) -> None:
        child.proc = subprocess.Popen(
            child.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )
        child.started_at = time.monotonic()
        child.restart_at = None
        child.ready = False

    def start(self, wait: bool = True) -> None:
        """Start every child and the watcher thread. With ``wait``: the simulator first, ready
        before the others start (they connect to it), then the others all at once (N edges
        start side by side), and wait until each is ready (at most ``READY_TIMEOUT`` s each,
        less if it exits)."""
        for child in self.children:
            self._spawn(child)
            if wait and child.name == "simulator":
                self._await_ready(child)
        if wait:
            for child in self.children:
                if child.name != "simulator":
                    self._await_ready(child)
        self._thread = threading.Thread(target=self._watch, name="hrdash-supervisor", daemon=True)
        self._thread.start()

    def _await_ready(self, child: Child) -> None:
        child.ready = self._wait_ready(child)
        if not child.ready and child.proc is not None and child.proc.poll() is None:
            what = (child.name, child.readiness, READY_TIMEOUT)
            log.warning("%s did not finish %s within %g s", *what)

    @staticmethod
    def _wait_ready(child: Child) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if child.is_ready_now(time.monotonic()):
                return True
            if child.proc is None or child.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def pid(self, name: str) -> int | None:
        for child in self.children:
            if child.name == name and child.proc is not None:
                return child.proc.pid
        return None

    def all_ready(self) -> bool:
        """True when every child has been ready since its last (re)start."""
        with self._lock:
            return all(child.ready for child in self.children)

    def _watch(self) -> None:
        while not self._stopping.wait(0.2):
            with self._lock:
                for child in self.children:
                    self._check(child)

    def _check(self, child: Child) -> None:
        if child.given_up or child.proc is None:
            return
        now = time.monotonic()
        if child.restart_at is not None:
            if now >= child.restart_at and not self._stopping.is_set():
                self._spawn(child)
                child.restarts += 1
                log.warning("%s restarted (restart #%d)", child.name, child.restarts)
            return
        code = child.proc.poll()
        if code is None:
            if not child.ready and child.is_ready_now(now):
                child.ready = True
                child.unready_deaths = 0
            if now - child.started_at > HEALTHY_AFTER:
                child.delay = RESTART_FIRST
            return
        child.exit_codes.append(code)
        cause = describe_exit(code)
        if code == USAGE_ERROR:
            self._give_up(child, f"{child.name} {cause} (a usage error); not restarting it", code)
            return
        if not child.ready:
            child.unready_deaths += 1
            if child.unready_deaths >= MAX_UNREADY_STARTS:
                message = (
                    f"{child.name} died {child.unready_deaths} times in a row before "
                    f"{child.readiness} (last: {cause}); giving up"
                )
                self._give_up(child, message, GAVE_UP)
                return
        log.warning("%s %s; restarting in %.1f s", child.name, cause, child.delay)
        child.restart_at = now + child.delay
        child.delay = min(RESTART_CAP, child.delay * 2)

    def _give_up(self, child: Child, message: str, status: int) -> None:
        child.given_up = True
        log.error(message)
        if self.on_fatal is not None:
            self.on_fatal(message, status)

    def stop(self, timeout: float = STOP_GRACE) -> None:
        """SIGTERM every child, SIGKILL what is left after ``timeout`` seconds, reap them all."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
        with self._lock:
            procs = [c.proc for c in reversed(self.children) if c.proc is not None]
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            deadline = time.monotonic() + timeout
            for proc in procs:
                try:
                    proc.wait(timeout=max(0.05, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=1.0)
